"""Gradient owner groups and their DSATUR rounds.

After re-planning, each module's gradient all-reduce spans the ranks holding it ("owner groups").
Groups sharing a rank conflict; a DSATUR colouring of the conflict graph gives rounds in which
all groups are disjoint and can all-reduce concurrently.
"""
from __future__ import annotations

from .layout import Plan


def owner_groups(plan: Plan) -> dict[tuple[int, ...], list[int]]:
    """Owner set -> modules reduced over it (sets of one rank need no reduction but are kept)."""
    out: dict[tuple[int, ...], list[int]] = {}
    for mod, ranks in plan.owners().items():
        out.setdefault(ranks, []).append(mod)
    return out


def dsatur_rounds(groups: list[tuple[int, ...]]) -> list[list[tuple[int, ...]]]:
    """Colour the conflict graph (shared rank = edge) with networkx's DSATUR; colour = round."""
    import networkx as nx

    multi = sorted(g for g in groups if len(g) > 1)
    graph = nx.Graph()
    graph.add_nodes_from(multi)
    for i, a in enumerate(multi):
        for b in multi[i + 1:]:
            if set(a) & set(b):
                graph.add_edge(a, b)
    colours = nx.greedy_color(graph, strategy="saturation_largest_first")
    rounds: dict[int, list[tuple[int, ...]]] = {}
    for g in multi:
        rounds.setdefault(colours[g], []).append(g)
    return [sorted(rounds[c]) for c in sorted(rounds)]
