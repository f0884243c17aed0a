"""Name Echo's policies in the engine's registries ("echo" scheduler and KV policy) for `serve api`.

The factories import `echo.scheduler` / `echo.kv` (numpy) only when a server asks for them, so
`papersuite --help` stays fast. Without a cost model the registry's Echo policy keeps the online
reserve, prefix-aware ordering and online-first preemption but no step-time budget; `serve echo
api` builds the full policy with the estimator.
"""
from __future__ import annotations


def _policy():
    from echo.scheduler import echo_policy

    return echo_policy()


def _eviction():
    from echo.kv import EchoEviction

    return EchoEviction()


def register() -> None:
    from papersuite.engine import kv_cache, scheduler

    scheduler.SCHEDULING_POLICIES.setdefault("echo", _policy)
    kv_cache.EVICTION_POLICIES.setdefault("echo", _eviction)
