"""Hand `FlashForgeBackend` to the engine's `ATTENTION_BACKENDS` as "flashforge" and
`PrefixGroupPolicy` to its `SCHEDULING_POLICIES` as "prefix-group", without importing torch at
CLI start-up.

`cli.py` calls `register_when_engine_loads()`: for each engine module already imported the entry
is added now; otherwise a one-shot import hook adds it right after that module first executes (so
`papersuite --help` stays fast and the engine is not edited).
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys

def _backend():
    from flashforge.backend import FlashForgeBackend

    return FlashForgeBackend()


def _policy():
    from flashforge.policy import PrefixGroupPolicy

    return PrefixGroupPolicy()


# module -> (registry attribute, name, factory)
TARGETS = {
    "papersuite.engine.attention": ("ATTENTION_BACKENDS", "flashforge", _backend),
    "papersuite.engine.scheduler": ("SCHEDULING_POLICIES", "prefix-group", _policy),
}


def _register(module) -> None:
    registry, name, factory = TARGETS[module.__name__]
    getattr(module, registry).setdefault(name, factory)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the real loaders of TARGETS to register after they run."""

    def __init__(self) -> None:
        self.pending = set(TARGETS)

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.pending:
            return None
        self.pending.discard(fullname)
        if not self.pending:
            sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_register(module):
            exec_module(module)
            _register(module)

        spec.loader.exec_module = exec_and_register  # type: ignore[method-assign]
        return spec


def register_when_engine_loads() -> None:
    if any(isinstance(f, _AfterImport) for f in sys.meta_path):
        return
    hook = _AfterImport()
    for name in TARGETS:
        if name in sys.modules:
            _register(sys.modules[name])
            hook.pending.discard(name)
    if hook.pending:
        sys.meta_path.insert(0, hook)
