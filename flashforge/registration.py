"""Hand `FlashForgeBackend` to the engine's `ATTENTION_BACKENDS` under the name "flashforge"
without importing torch at CLI start-up.

`cli.py` calls `register_when_engine_loads()`: if the engine's attention module is already
imported the entry is added now; otherwise a one-shot import hook adds it right after that
module first executes (so `papersuite --help` stays fast and the engine is not edited).
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys

TARGET = "papersuite.engine.attention"
NAME = "flashforge"


def _factory():
    from flashforge.backend import FlashForgeBackend

    return FlashForgeBackend()


def _register(module) -> None:
    module.ATTENTION_BACKENDS.setdefault(NAME, _factory)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the real loader of TARGET to register after it runs."""

    def find_spec(self, fullname, path, target=None):
        if fullname != TARGET:
            return None
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
    if TARGET in sys.modules:
        _register(sys.modules[TARGET])
    elif not any(isinstance(f, _AfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport())
