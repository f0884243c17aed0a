"""Execution plans: pipelines of stages, micro-batch shares and the routing table.

A plan says, for each pipeline p and stage s, which rank runs which module range, which global
micro-batches the pipeline owns, and (the routing table) which rank runs (p, s, m) when it is not
the stage's own rank. Rerouting and asymmetric pipelines are therefore table changes, and the
runtime and the estimator read the same object.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable


@dataclass(frozen=True)
class Stage:
    rank: int
    lo: int  # first module index (0 = embedding)
    hi: int  # one past the last module index

    @property
    def modules(self) -> range:
        return range(self.lo, self.hi)


@dataclass
class Plan:
    pipelines: list[list[Stage]]
    micro: list[list[int]]  # global micro-batch indices per pipeline
    route: dict[tuple[int, int, int], int] = field(default_factory=dict)  # (p, s, m) -> rank
    kind: str = "symmetric"
    dead: list[int] = field(default_factory=list)  # stage ranks routed around (rerouting)

    # -- queries ---------------------------------------------------------------------------
    def rank_of(self, p: int, s: int, m: int) -> int:
        return self.route.get((p, s, m), self.pipelines[p][s].rank)

    @property
    def ranks(self) -> list[int]:
        out = {st.rank for pipe in self.pipelines for st in pipe} | set(self.route.values())
        return sorted(out - set(self.dead))

    def modules_of(self, rank: int) -> list[int]:
        if rank in self.dead:
            return []
        mods = {i for pipe in self.pipelines for st in pipe if st.rank == rank for i in st.modules}
        return sorted(mods)

    def owners(self) -> dict[int, tuple[int, ...]]:
        """Module -> ranks holding it (its gradient all-reduce group)."""
        out: dict[int, set[int]] = {}
        for pipe in self.pipelines:
            for st in pipe:
                for i in st.modules:
                    out.setdefault(i, set())
                    if st.rank not in self.dead:
                        out[i].add(st.rank)
        return {i: tuple(sorted(r)) for i, r in sorted(out.items())}

    def n_modules(self) -> int:
        return self.pipelines[0][-1].hi

    def shape(self) -> list[int]:
        return [len(p) for p in self.pipelines]

    # -- (de)serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"kind": self.kind,
                "pipelines": [[[st.rank, st.lo, st.hi] for st in pipe] for pipe in self.pipelines],
                "micro": self.micro,
                "route": [[p, s, m, r] for (p, s, m), r in sorted(self.route.items())],
                "dead": sorted(self.dead)}

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        return cls(pipelines=[[Stage(*st) for st in pipe] for pipe in d["pipelines"]],
                   micro=[list(m) for m in d["micro"]],
                   route={(p, s, m): r for p, s, m, r in d.get("route", [])}, kind=d.get("kind", "symmetric"),
                   dead=list(d.get("dead", [])))


def split_blocks(layers: int, stages: int, extra_at: Iterable[int] = ()) -> list[int]:
    """Blocks per stage: layers // stages each, one more at the `extra_at` positions."""
    base = layers // stages
    counts = [base] * stages
    extra = list(extra_at)
    if len(extra) != layers % stages:
        raise ValueError("need exactly layers % stages extra positions")
    for e in extra:
        counts[e] += 1
    return counts


def stage_ranges(block_counts: list[int]) -> list[tuple[int, int]]:
    """Module ranges for block counts: embedding joins the first stage, head the last."""
    ranges, lo = [], 0
    n = len(block_counts)
    for s, c in enumerate(block_counts):
        hi = lo + c + (1 if s == 0 else 0) + (1 if s == n - 1 else 0)
        ranges.append((lo, hi))
        lo = hi
    return ranges


def even_micro(micro_batches: int, dp: int) -> list[list[int]]:
    """Global micro-batch indices dealt to dp pipelines in contiguous, near-equal shares."""
    base, rem = divmod(micro_batches, dp)
    out, lo = [], 0
    for p in range(dp):
        n = base + (1 if p < rem else 0)
        out.append(list(range(lo, lo + n)))
        lo += n
    return out


def shares_to_micro(shares: list[int]) -> list[list[int]]:
    out, lo = [], 0
    for n in shares:
        out.append(list(range(lo, lo + n)))
        lo += n
    return out


def symmetric(dp: int, pp: int, layers: int, micro_batches: int) -> Plan:
    """The failure-free DP x PP layout; rank = pipeline * pp + stage."""
    if pp > layers:
        raise ValueError(f"pp={pp} exceeds layers={layers}")
    if micro_batches < dp:
        raise ValueError(f"{micro_batches} micro-batches cannot feed {dp} pipelines")
    extra = list(range(pp - layers % pp, pp)) if layers % pp else []
    ranges = stage_ranges(split_blocks(layers, pp, extra))
    pipes = [[Stage(p * pp + s, lo, hi) for s, (lo, hi) in enumerate(ranges)] for p in range(dp)]
    return Plan(pipes, even_micro(micro_batches, dp))


def reroute(plan: Plan, dead: Iterable[int]) -> Plan | None:
    """Send each dead rank's micro-batches to healthy ranks running the same module range.

    Returns None when some slot has no healthy same-stage peer (Eq. 12-13: F_i >= N_dp).
    Micro-batches are dealt round-robin over peers, least loaded first.
    """
    dead = set(dead) | set(plan.dead)
    route = {k: r for k, r in plan.route.items() if r not in dead}
    load: dict[int, int] = {}
    for p, pipe in enumerate(plan.pipelines):
        for s, _ in enumerate(pipe):
            for m in plan.micro[p]:
                r = route.get((p, s, m), pipe[s].rank)
                load[r] = load.get(r, 0) + 1
    for p, pipe in enumerate(plan.pipelines):
        for s, st in enumerate(pipe):
            for m in plan.micro[p]:
                cur = route.get((p, s, m), st.rank)
                if cur not in dead:
                    continue
                peers = sorted({q[s2].rank for q in plan.pipelines for s2 in range(len(q))
                                if (q[s2].lo, q[s2].hi) == (st.lo, st.hi) and q[s2].rank not in dead})
                if not peers:
                    return None
                best = min(peers, key=lambda r: (load.get(r, 0), r))
                route[(p, s, m)] = best
                load[best] = load.get(best, 0) + 1
    return Plan(plan.pipelines, plan.micro, route, kind="reroute", dead=sorted(dead))


def substitute(plan: Plan, mapping: dict[int, int]) -> Plan:
    """The same plan with ranks renamed (a spare taking a dead rank's slots)."""
    pipes = [[Stage(mapping.get(st.rank, st.rank), st.lo, st.hi) for st in pipe] for pipe in plan.pipelines]
    route = {k: mapping.get(r, r) for k, r in plan.route.items()}
    return Plan(pipes, plan.micro, route, kind=plan.kind, dead=[mapping.get(r, r) for r in plan.dead])
