"""papersuite's shared LLM inference engine: paged KV, prefix caching, continuous batching.

Import the parts from their modules (`papersuite.engine.engine.LLMEngine`,
`papersuite.engine.attention.paged_decode`, ...); this package file stays import-light so
`papersuite --help` does not pay for torch.
"""
