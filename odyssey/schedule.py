"""The 1F1B op graph of a plan, simulated to give each rank's op order and the step makespan.

Every (pipeline, stage) slot runs its micro-batches in 1F1B order (warm-up forwards, one forward /
one backward, cool-down backwards). A rank serving several slots (rerouting) interleaves their
queues. A list-scheduling simulation (Eq. 10-11: start = max(end of predecessors, rank free),
end = start + duration) yields start times; each rank executes its ops in start-time order, which
with non-blocking sends cannot deadlock (every op waits only on ops that started earlier).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .layout import Plan

Op = tuple[str, int, int, int]  # ("F" | "B", pipeline, stage, global micro-batch)


@dataclass
class Schedule:
    order: dict[int, list[Op]]  # rank -> ops in execution order
    start: dict[Op, float]
    end: dict[Op, float]
    makespan: float


def one_f_one_b(n_stages: int, stage: int, micro: list[int]) -> list[tuple[str, int]]:
    """1F1B order of one slot: min(P - s - 1, n) warm-up forwards, steady pairs, cool-down."""
    n = len(micro)
    warm = min(n_stages - stage - 1, n)
    ops = [("F", micro[i]) for i in range(warm)]
    for i in range(n - warm):
        ops += [("F", micro[warm + i]), ("B", micro[i])]
    ops += [("B", micro[i]) for i in range(n - warm, n)]
    return ops


def simulate(plan: Plan, duration: Callable[[str, int, int], float],
             p2p: Callable[[int, int], float] = lambda p, s: 0.0) -> Schedule:
    """Simulate one step. `duration(kind, p, s)` is one micro-batch's F/B time on slot (p, s);
    `p2p(p, s)` the activation (or gradient) transfer time between stage s and s + 1 of p."""
    queues: list[tuple[int, list[Op]]] = []
    for p, pipe in enumerate(plan.pipelines):
        for s in range(len(pipe)):
            by_rank: dict[int, list[int]] = {}
            for m in plan.micro[p]:
                by_rank.setdefault(plan.rank_of(p, s, m), []).append(m)
            for r, ms in sorted(by_rank.items()):
                queues.append((r, [(k, p, s, m) for k, m in one_f_one_b(len(pipe), s, ms)]))
    heads = [0] * len(queues)
    free: dict[int, float] = {}
    start: dict[Op, float] = {}
    end: dict[Op, float] = {}
    order: dict[int, list[Op]] = {}
    remaining = sum(len(q) for _, q in queues)
    while remaining:
        best = None
        for qi, (r, q) in enumerate(queues):
            if heads[qi] >= len(q):
                continue
            op = q[heads[qi]]
            ready = _ready(plan, op, end, p2p)
            if ready is None:
                continue
            t = max(ready, free.get(r, 0.0))
            if best is None or (t, qi) < best[:2]:
                best = (t, qi, op, r)
        if best is None:
            raise RuntimeError("1F1B schedule deadlocked: inconsistent plan")
        t, qi, op, r = best
        heads[qi] += 1
        remaining -= 1
        d = max(duration(op[0], op[1], op[2]), 1e-12)
        start[op], end[op] = t, t + d
        free[r] = t + d
        order.setdefault(r, []).append(op)
    return Schedule(order, start, end, max(end.values(), default=0.0))


def _ready(plan: Plan, op: Op, end: dict[Op, float], p2p) -> float | None:
    kind, p, s, m = op
    r = plan.rank_of(p, s, m)
    deps: list[tuple[Op, float]] = []
    if kind == "F" and s > 0:
        deps.append((("F", p, s - 1, m), p2p(p, s - 1)))
    if kind == "B":
        deps.append((("F", p, s, m), 0.0))
        if s < len(plan.pipelines[p]) - 1:
            deps.append((("B", p, s + 1, m), p2p(p, s)))
    t = 0.0
    for dep, c in deps:
        if dep not in end:
            return None
        other = plan.rank_of(dep[1], dep[2], dep[3])
        t = max(t, end[dep] + (c if other != r else 0.0))
    return t
