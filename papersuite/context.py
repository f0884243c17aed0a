"""Global CLI options (--device, --seed, --quiet, --verbose), set once by the root callback.

Commands read them through `options()` rather than threading four arguments through every call.
"""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class GlobalOptions:
    device: str = "auto"
    seed: int = 0
    quiet: bool = False
    verbose: bool = False


_current = GlobalOptions()


def options() -> GlobalOptions:
    return _current


def set_options(**changes) -> GlobalOptions:
    global _current
    _current = replace(_current, **changes)
    return _current
