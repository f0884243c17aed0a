"""The fast tier: C expert slots per layer, LRU, with hit counters and an optional prefetch thread.

`ExpertCache` is the engine's `ExpertProvider` for an offloaded model. `fetch(layer, ids)` returns
every requested expert, loading misses from the `ExpertStore` once each; the layer then keeps its
C most recently used experts. A `PrefetchPolicy` sees each layer's MoE input (`begin_layer`) and
may queue loads for a later layer on a background thread (file reads and tensor copies release
the GIL), which is how the `prefetch` and `lightning` peers overlap I/O with compute.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Sequence

from torch import Tensor

from specmoeoff.expert_store import ExpertStore

Pair = tuple[Tensor, Tensor]
# (cache, layer, hidden) -> list of (layer, expert) to prefetch
PrefetchPolicy = Callable[["ExpertCache", int, Tensor], Sequence[tuple[int, int]]]


class ExpertCache:
    """LRU slots per layer over a slow `ExpertStore`; counts hits, misses and I/O wait."""

    def __init__(self, store: ExpertStore, num_layers: int, num_experts: int, slots: int,
                 prefetch: PrefetchPolicy | None = None, top_k: int = 2) -> None:
        if not 1 <= slots <= num_experts:
            raise ValueError(f"cache slots must be in 1..{num_experts}, got {slots}")
        self.store, self.num_layers, self.num_experts, self.slots = store, num_layers, num_experts, slots
        self.top_k = top_k
        self.prefetch_policy = prefetch
        self.lru: list[OrderedDict[int, Pair]] = [OrderedDict() for _ in range(num_layers)]
        self.pending: dict[tuple[int, int], Future] = {}
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=1) if prefetch is not None else None
        self.hits = self.misses = self.prefetched_hits = self.wasted = 0
        self.io_wait = 0.0  # seconds the compute thread waited on loads

    # -- ExpertProvider -----------------------------------------------------------------------
    def begin_layer(self, layer: int, hidden: Tensor) -> None:
        if self.prefetch_policy is None:
            return
        for li, e in self.prefetch_policy(self, layer, hidden):
            self.prefetch(li, e)

    def fetch(self, layer: int, experts: Sequence[int]) -> dict[int, Pair]:
        lru = self.lru[layer]
        out: dict[int, Pair] = {}
        missing = []
        for e in experts:  # hits first, so this call's misses cannot evict them
            if e in lru:
                lru.move_to_end(e)
                out[e] = lru[e]
                self.hits += 1
            else:
                missing.append(e)
        for e in missing:
            t0 = time.perf_counter()
            fut = self.pending.pop((layer, e), None)
            if fut is not None:
                pair = fut.result()
                self.prefetched_hits += 1
            else:
                pair = self.store.load(layer, e)
                self.misses += 1
            self.io_wait += time.perf_counter() - t0
            out[e] = pair
            self._insert(layer, e, pair)
        for key in [key for key in self.pending if key[0] == layer]:  # streamed but not needed: dropped
            self.pending.pop(key).cancel()
            self.wasted += 1
        return out

    def set_prefetch(self, policy: PrefetchPolicy | None) -> None:
        self.prefetch_policy = policy
        if policy is not None and self.pool is None:
            self.pool = ThreadPoolExecutor(max_workers=1)

    # -- slots ---------------------------------------------------------------------------------
    def _insert(self, layer: int, expert: int, pair: Pair) -> None:
        lru = self.lru[layer]
        lru[expert] = pair
        lru.move_to_end(expert)
        while len(lru) > self.slots:
            lru.popitem(last=False)

    def resident(self, layer: int) -> list[int]:
        return list(self.lru[layer])

    def prefetch(self, layer: int, expert: int) -> None:
        """Queue a background load unless the expert is resident or already on its way."""
        if self.pool is None or expert in self.lru[layer] or (layer, expert) in self.pending:
            return
        self.pending[(layer, expert)] = self.pool.submit(self.store.load, layer, expert)

    def counters(self) -> dict:
        total = self.hits + self.misses + self.prefetched_hits
        return {"hits": self.hits, "misses": self.misses, "prefetched": self.prefetched_hits,
                "wasted_prefetches": self.wasted,
                "hit_rate": self.hits / total if total else 0.0, "loads": self.store.loads,
                "bytes": self.store.bytes_read, "io_wait_s": self.io_wait}

    def close(self) -> None:
        if self.pool is not None:
            for fut in self.pending.values():
                fut.cancel()
            self.pool.shutdown(wait=True)
            self.pending.clear()
