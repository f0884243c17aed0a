"""Restorer: put survivors into a new plan's slots moving the fewest bytes.

Cost of giving slot j to survivor r = bytes (parameters + optimizer state) of the slot's modules
that r does not hold. A Hungarian assignment (scipy's linear_sum_assignment) minimises the total.
A module whose last copy died makes the plan unrestorable: only a checkpoint restart remains.
"""
from __future__ import annotations

from .layout import Plan, Stage


def lost_modules(holdings: dict[int, list[int]], n_modules: int) -> list[int]:
    """Modules no survivor holds."""
    held = {m for mods in holdings.values() for m in mods}
    return [m for m in range(n_modules) if m not in held]


def assign(template: Plan, holdings: dict[int, list[int]], module_bytes: list[float]) -> tuple[Plan, dict]:
    """Map the template's slot ranks (0..k-1 placeholders) onto survivors.

    Returns the plan with real ranks and the transfers {dst: [(module, src), ...]}; sources are
    survivors holding the module (the least-loaded one first, so transfers spread out).
    """
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    slots = [st for pipe in template.pipelines for st in pipe]
    survivors = sorted(holdings)
    if len(slots) != len(survivors):
        raise ValueError(f"{len(slots)} slots for {len(survivors)} survivors")
    cost = np.zeros((len(survivors), len(slots)))
    for i, r in enumerate(survivors):
        have = set(holdings[r])
        for j, st in enumerate(slots):
            cost[i, j] = sum(module_bytes[m] for m in st.modules if m not in have)
    rows, cols = linear_sum_assignment(cost)
    slot_rank = {cols[k]: survivors[rows[k]] for k in range(len(rows))}
    pipes, j = [], 0
    for pipe in template.pipelines:
        new = []
        for st in pipe:
            new.append(Stage(slot_rank[j], st.lo, st.hi))
            j += 1
        pipes.append(new)
    plan = Plan(pipes, template.micro, {}, kind=template.kind)
    return plan, transfers(plan, holdings)


def transfers(plan: Plan, holdings: dict[int, list[int]]) -> dict[int, list[tuple[int, int]]]:
    """{dst: [(module, src)]} for every module a rank must receive; ValueError if a copy is lost."""
    sent: dict[int, int] = {}
    out: dict[int, list[tuple[int, int]]] = {}
    for r in plan.ranks:
        have = set(holdings.get(r, []))
        for m in plan.modules_of(r):
            if m in have:
                continue
            srcs = [s for s, mods in holdings.items() if m in mods]
            if not srcs:
                raise ValueError(f"module {m} has no surviving copy")
            src = min(srcs, key=lambda s: (sent.get(s, 0), s))
            sent[src] = sent.get(src, 0) + 1
            out.setdefault(r, []).append((m, src))
    return out


def transfer_bytes(moves: dict[int, list[tuple[int, int]]], module_bytes: list[float]) -> float:
    """The largest number of bytes one rank receives (receivers run concurrently)."""
    return max((sum(module_bytes[m] for m, _ in lst) for lst in moves.values()), default=0.0)
