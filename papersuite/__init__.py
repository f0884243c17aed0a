"""papersuite: the shared layer every paper package builds on.

It knows no paper package. Heavy libraries (torch, transformers) are imported inside the
functions that need them so that `papersuite --help` stays fast.
"""
__version__ = "0.1.0"
