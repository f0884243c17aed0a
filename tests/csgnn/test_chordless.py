"""Chordless structures against brute force; budget fallback, time limit and cache."""
from itertools import combinations

import networkx as nx
import numpy as np
import pytest

from csgnn.chordless import CycleOptions, StructureBuilder, compute, enumerate_cycles, relations
from csgnn.graph import Graph, from_networkx


def brute_induced_cycles(g: nx.Graph, bound: int) -> set[frozenset]:
    """Node sets whose induced subgraph is one cycle (an induced cycle is fixed by its nodes)."""
    out = set()
    for k in range(3, bound + 1):
        for nodes in combinations(g.nodes(), k):
            h = g.subgraph(nodes)
            if h.number_of_edges() == k and all(d == 2 for _, d in h.degree()) and nx.is_connected(h):
                out.add(frozenset(nodes))
    return out


def random_graphs(count=50, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(count):
        n = int(rng.integers(4, 9))
        yield nx.gnp_random_graph(n, float(rng.uniform(0.25, 0.7)), seed=int(rng.integers(1 << 30)))


def test_chordless_matches_brute_force_and_chords_are_a_superset():
    for g in random_graphs():
        gr = from_networkx(g, "r")
        cyc = enumerate_cycles(gr.num_nodes, gr.edges, 7)
        ours = [frozenset(c) for c in cyc]
        assert len(ours) == len(set(ours))  # each once
        assert set(ours) == brute_induced_cycles(g, 7)  # all induced, none missed
        simple = {frozenset(c) for c in enumerate_cycles(gr.num_nodes, gr.edges, 7, chords=True)}
        assert set(ours) <= simple


def test_relations_follow_cycle_distances():
    # a hexagon: P_0 = each node once, P_1 = its edges, P_2 two apart, P_3 opposite
    counts, ri, rt, rm = relations(6, [[0, 1, 2, 3, 4, 5]], cycle_len=6)
    rel = {(int(v), int(u)): int(d) for (v, u), d in zip(ri.T, rt)}
    assert rel[(0, 0)] == 0 and rel[(0, 1)] == 1 and rel[(0, 5)] == 1 and rel[(0, 2)] == 2 and rel[(0, 3)] == 3
    assert counts[:, 6 - 3].tolist() == [1] * 6 and rm.tolist() == [1] * 36
    # two triangles sharing an edge (a diamond without its chord is not a 4-cycle: it is chorded)
    s = compute(4, np.array([[0, 1], [0, 2], [1, 2], [1, 3], [2, 3]]), CycleOptions(cycle_len=6))
    assert s.num_cycles == 2
    m = {(int(v), int(u), int(d)): int(k) for (v, u), d, k in zip(s.rel_index.T, s.rel_type, s.rel_mult)}
    assert m[(1, 2, 1)] == 2  # edge 1-2 lies on both triangles: multiplicity 2


def test_budget_fallback_is_deterministic():
    g = from_networkx(nx.complete_graph(7), "k7")  # 35 triangles, no longer chordless cycles
    grid = from_networkx(nx.grid_2d_graph(4, 4), "grid")
    opts = CycleOptions(cycle_len=8, max_cycles=10)
    a = [compute(x.num_nodes, x.edges, opts) for x in (g, grid)]
    b = [compute(x.num_nodes, x.edges, opts) for x in (g, grid)]
    assert a[0].fallback == "budget" and a[0].bound == 2 and a[0].num_cycles == 0
    assert a[1].fallback == "budget" and a[1].bound < 8
    for x, y in zip(a, b):
        assert x.bound == y.bound and np.array_equal(x.rel_index, y.rel_index)


def test_cache_rerun_computes_nothing(tmp_path):
    graphs = [from_networkx(nx.cycle_graph(n), str(n)) for n in range(3, 9)]
    opts = CycleOptions(cycle_len=6)
    first, s1 = StructureBuilder(opts, workers=0, cache_dir=tmp_path).build(graphs)
    again, s2 = StructureBuilder(opts, workers=0, cache_dir=tmp_path).build(graphs)
    assert s1.computed_graphs == 6 and s2.computed_graphs == 0 and s2.cached_graphs == 6
    for x, y in zip(first, again):
        assert np.array_equal(x.rel_index, y.rel_index) and np.array_equal(x.counts, y.counts)
    _, s3 = StructureBuilder(CycleOptions(cycle_len=5), workers=0, cache_dir=tmp_path).build(graphs)
    assert s3.computed_graphs == 6  # options are part of the key


def test_workers_match_in_process_and_enforce_time_limit():
    graphs = [from_networkx(nx.gnp_random_graph(12, 0.4, seed=s), str(s)) for s in range(6)]
    opts = CycleOptions(cycle_len=6)
    a, _ = StructureBuilder(opts, workers=0).build(graphs)
    b, _ = StructureBuilder(opts, workers=2).build(graphs)
    for x, y in zip(a, b):
        assert np.array_equal(x.rel_index, y.rel_index) and np.array_equal(x.rel_mult, y.rel_mult)
    # a dense graph at a long bound cannot finish in 0.3 s: killed, retried lower until it fits
    big = from_networkx(nx.gnp_random_graph(60, 0.3, seed=1), "big")
    (s,), stats = StructureBuilder(CycleOptions(cycle_len=12, time_limit=0.3, max_cycles=10**7), workers=1).build([big])
    assert s.fallback == "timeout" and s.bound < 12 and stats.fallbacks == 1


def test_edgeless_and_single_node():
    for g in (Graph("a", 1, np.zeros((0, 2), np.int64)), Graph("b", 3, np.zeros((0, 2), np.int64))):
        s = compute(g.num_nodes, g.edges, CycleOptions(cycle_len=6, complement=True))
        assert s.num_cycles == 0 and s.counts.shape == (g.num_nodes, 4)
