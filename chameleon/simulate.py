"""Timeline simulator: how much a set of swaps delays the step.

Ops run back to back with their profiled durations. Each swap is a copy out issued after its last
forward use and a copy in issued at its prefetch op, both on one copy channel with the tier's
measured bandwidth per direction. With `overlap` (a GPU copy stream) a copy in that lands after
its first use stalls compute by the difference; without overlap (CPU: every copy is CPU work)
each copy simply adds its duration.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Transfer:
    nbytes: int
    out_op: int  # copy out issued after this op
    in_op: int  # first backward use (compute waits here)
    prefetch_op: int  # copy in issued before this op (== in_op: fetched on demand)


@dataclass(frozen=True)
class SimResult:
    step_seconds: float
    stall_seconds: float
    late: int  # copies in that landed after their use


def simulate(seconds: list[float], transfers: list[Transfer], bandwidth: tuple[float, float],
             overlap: bool) -> SimResult:
    base = sum(seconds)
    bw_out, bw_in = bandwidth
    if not overlap:
        copies = sum(t.nbytes / bw_out + t.nbytes / bw_in for t in transfers)
        return SimResult(base + copies, copies, 0)
    outs: dict[int, list[Transfer]] = {}
    pre: dict[int, list[Transfer]] = {}
    uses: dict[int, list[Transfer]] = {}
    for t in transfers:
        outs.setdefault(t.out_op, []).append(t)
        pre.setdefault(min(t.prefetch_op, t.in_op), []).append(t)
        uses.setdefault(t.in_op, []).append(t)
    clock = channel = stall = 0.0
    done_in: dict[int, float] = {}
    late = 0
    for i, dur in enumerate(seconds):
        for t in pre.get(i, ()):
            channel = max(channel, clock) + t.nbytes / bw_in
            done_in[id(t)] = channel
        for t in uses.get(i, ()):
            ready = done_in.get(id(t), clock)
            if ready > clock:
                stall += ready - clock
                late += 1
                clock = ready
        clock += dur
        for t in outs.get(i, ()):
            channel = max(channel, clock) + t.nbytes / bw_out
    return SimResult(clock, stall, late)
