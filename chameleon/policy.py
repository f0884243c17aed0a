"""Swap-policy generation: SmartSwap's peak-driven greedy over a profiled step.

While the predicted peak is above the target, take the worst op, list the candidates live across
it (swapped out before it, needed again after it), score them as SmartSwap does
(coverage / max coverage + 2 * cbrt(size) / max cbrt(size)), and among the best few add the one
the timeline simulator says delays the step least. A swapped candidate lowers the predicted
memory between its last forward use and its fetch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from chameleon.matcher import Fingerprint
from chameleon.profiler import Candidate, Profile
from chameleon.simulate import SimResult, Transfer, simulate

TOP_K = 4


@dataclass
class Policy:
    """What to swap (by fingerprint), how far ahead to fetch, and what the model predicts."""

    entries: frozenset[Fingerprint]
    prefetch_blocks: int
    predicted_peak: int
    floor: int
    target: int
    sim: SimResult
    swapped_bytes: int
    feasible: bool = True
    chosen: list[Candidate] = field(default_factory=list, repr=False)


def _prefetch_op(c: Candidate, profile: Profile, distance: int) -> int:
    """Op at which the copy in is issued: the start of the backward stage `distance` blocks earlier."""
    if distance <= 0:
        return c.in_op
    starts = profile.bwd_block_start
    later = [op for b, op in starts.items() if c.block < b <= c.block + distance]
    return min(later, default=max(profile.bwd_start, c.out_op + 1)) if later else c.in_op


def _transfers(chosen: list[Candidate], profile: Profile, distance: int) -> list[Transfer]:
    return [Transfer(c.nbytes, c.out_op, c.in_op, min(c.in_op, _prefetch_op(c, profile, distance)))
            for c in chosen]


def _saving(c: Candidate, profile: Profile, distance: int) -> tuple[int, int]:
    """Op range [lo, hi) over which swapping c lowers memory."""
    return c.out_op + 1, min(c.in_op, _prefetch_op(c, profile, distance))


def generate(profile: Profile, budget: int, bandwidth: tuple[float, float], overlap: bool,
             margin: int = 0, min_bytes: int = 1 << 20, distances: tuple[int, ...] | None = None) -> Policy:
    """Plan swaps so the predicted step peak (plus the unseen transient) is <= budget - margin."""
    distances = distances if distances is not None else ((1, 2, 3) if overlap else (0,))
    best: Policy | None = None
    for d in distances:
        pol = _greedy(profile, budget, bandwidth, overlap, margin, min_bytes, d)
        if best is None or _rank(pol) > _rank(best):
            best = pol
    assert best is not None
    return best


def _rank(p: Policy) -> tuple:
    """Feasible first; then least stall (feasible) or lowest predicted peak; then nearer prefetch."""
    return (p.feasible, -p.sim.stall_seconds if p.feasible else -p.predicted_peak, -p.prefetch_blocks)


def _greedy(profile: Profile, budget: int, bandwidth, overlap: bool, margin: int, min_bytes: int,
            distance: int) -> Policy:
    mem = np.asarray(profile.mem, dtype=np.int64)
    target = budget - margin - profile.transient
    cands = [c for c in profile.candidates if c.nbytes >= min_bytes]
    ranges = [_saving(c, profile, distance) for c in cands]
    floor_curve = mem.copy()
    for c, (lo, hi) in zip(cands, ranges):
        if lo < hi:
            floor_curve[lo:hi] -= c.nbytes
    floor = int(floor_curve.max(initial=0)) + profile.transient  # at this prefetch distance
    pred = mem.copy()
    chosen: list[Candidate] = []
    taken = [False] * len(cands)
    sim = simulate(profile.seconds, [], bandwidth, overlap)
    while pred.size and pred.max() > target:
        p = int(pred.argmax())
        over = pred > target
        live = [i for i, (lo, hi) in enumerate(ranges) if not taken[i] and lo <= p < hi]
        if not live:
            break
        cov = np.array([over[ranges[i][0]:ranges[i][1]].sum() for i in live], dtype=float)
        size = np.cbrt(np.array([cands[i].nbytes for i in live], dtype=float))
        score = cov / max(cov.max(), 1.0) + 2.0 * size / max(size.max(), 1.0)
        top = [live[j] for j in np.argsort(-score, kind="stable")[:TOP_K]]
        trials = []
        for i in top:
            r = simulate(profile.seconds, _transfers(chosen + [cands[i]], profile, distance),
                         bandwidth, overlap)
            trials.append((r.stall_seconds if overlap else 0.0, top.index(i), i, r))
        _, _, pick, sim = min(trials)
        taken[pick] = True
        chosen.append(cands[pick])
        lo, hi = ranges[pick]
        pred[lo:hi] -= cands[pick].nbytes
    predicted = int(pred.max(initial=0)) + profile.transient
    return Policy(frozenset(c.fp for c in chosen), distance, predicted, floor, target, sim,
                  sum(c.nbytes for c in chosen), feasible=predicted <= budget - margin, chosen=chosen)
