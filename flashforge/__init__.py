"""FlashForge (arXiv 2505.17694, now CoDec): shared-prefix attention for the decode phase.

`build_plan` turns a decode step's block tables into a prefix tree and a work split;
`shared_prefix_decode` runs it (float64 reference, PyTorch, Triton) and merges partial attention
states exactly by log-sum-exp. Imports torch lazily so `import flashforge` stays cheap.
"""
from flashforge.plan import Plan, build_plan

__all__ = ["Plan", "build_plan"]
