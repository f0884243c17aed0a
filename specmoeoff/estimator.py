"""Iteration-time estimate: a DAG of one verify iteration, timed by its longest path.

Nodes carry durations; an edge `a -> b` means b starts after a ends. Per layer: the dense part
(attention and the rest) of the target, then the loads of the experts missing from the fast
tier, serialised on one I/O lane, then each expert's FFN after its own load and after the
layer's attention. With `prefetch`, a layer's loads may start as soon as the I/O lane is free
(they no longer wait for the layer's router), which is how overlap shortens the path.
The draft's k steps come first. Costs come from a `Profile` (profiler.py).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Hashable, Iterable


def longest_path(durations: dict[Hashable, float], edges: Iterable[tuple[Hashable, Hashable]]) -> float:
    """Length of the longest (critical) path of a DAG; raises ValueError on a cycle."""
    succ: dict[Hashable, list] = defaultdict(list)
    indeg = {n: 0 for n in durations}
    for a, b in edges:
        succ[a].append(b)
        indeg[b] += 1
    finish = {n: 0.0 for n in durations}
    start = {n: 0.0 for n in durations}
    ready = [n for n, d in indeg.items() if d == 0]
    seen = 0
    while ready:
        n = ready.pop()
        seen += 1
        finish[n] = start[n] + durations[n]
        for m in succ[n]:
            start[m] = max(start[m], finish[n])
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    if seen != len(durations):
        raise ValueError("the graph has a cycle")
    return max(finish.values(), default=0.0)


def expected_distinct(num_experts: int, top_k: int, tokens: int) -> float:
    """Expected distinct experts a layer touches for `tokens` independently routed tokens."""
    return num_experts * (1.0 - (1.0 - top_k / num_experts) ** tokens)


def expected_misses(num_experts: int, top_k: int, tokens: int, slots: int) -> float:
    """Distinct experts not already resident (C of E resident, routing independent of residency)."""
    return expected_distinct(num_experts, top_k, tokens) * (1.0 - slots / num_experts)


def iteration_graph(profile, batch: int, k: int, prefetch: bool = False, stream_all: bool = False):
    """Durations and edges of one iteration with `batch` requests and draft length k.

    `stream_all`: every non-resident expert of a layer is loaded (MoE-Lightning streaming), not
    only the missing ones the tokens need."""
    n = batch * (k + 1)
    L, E = profile.num_layers, profile.num_experts
    dur: dict[Hashable, float] = {"draft": k * profile.draft_step(batch)}
    edges: list[tuple[Hashable, Hashable]] = []
    prev_end: Hashable = "draft"
    prev_dense: Hashable = "draft"
    prev_load: Hashable | None = None
    misses = (E - profile.slots) if stream_all else expected_misses(E, profile.top_k, n, profile.slots)
    distinct = expected_distinct(E, profile.top_k, n)
    per_expert_tokens = n * profile.top_k / max(distinct, 1e-9)
    for i in range(L):
        dur[("dense", i)] = profile.dense_layer(n)
        edges.append((prev_end, ("dense", i)))
        dur[("load", i)] = misses * profile.load
        edges.append((prev_dense if prefetch else ("dense", i), ("load", i)))
        if prev_load is not None:
            edges.append((prev_load, ("load", i)))  # one I/O lane
        dur[("ffn", i)] = distinct * profile.ffn(per_expert_tokens)
        edges += [(("dense", i), ("ffn", i)), (("load", i), ("ffn", i))]
        prev_end, prev_load, prev_dense = ("ffn", i), ("load", i), ("dense", i)
    return dur, edges


def iteration_time(profile, batch: int, k: int, prefetch: bool = False, stream_all: bool = False) -> float:
    dur, edges = iteration_graph(profile, batch, k, prefetch, stream_all)
    return longest_path(dur, edges)


def tau(alpha: float, k: int) -> float:
    """Expected tokens per request per iteration with chain length k and per-token acceptance alpha."""
    if alpha >= 1.0:
        return float(k + 1)
    return (1.0 - alpha ** (k + 1)) / (1.0 - alpha)
