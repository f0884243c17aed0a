"""FlashForge (arXiv 2505.17694, now CoDec): shared-prefix attention for the decode phase.

`build_plan` turns a decode step's block tables into a prefix tree and a work split;
`shared_prefix_decode` runs it (float64 reference, PyTorch, Triton) and merges partial attention
states exactly by log-sum-exp; `FlashForgeBackend` plugs it into the engine. Attributes load
lazily so that importing the CLI stays cheap.
"""
from __future__ import annotations

_EXPORTS = {
    "Plan": "flashforge.plan", "build_plan": "flashforge.plan",
    "shared_prefix_decode": "flashforge.attention", "merge_states": "flashforge.merge",
    "reference_decode": "flashforge.reference", "FlashForgeBackend": "flashforge.backend",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'flashforge' has no attribute {name!r}")
