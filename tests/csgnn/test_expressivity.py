"""Invariance, untrained pair tests and their exact colour-refinement ceilings."""
import networkx as nx
import numpy as np
import pytest

from csgnn import data
from csgnn.chordless import CycleOptions, compute
from csgnn.data import GraphSet
from csgnn.expressivity import embeddings, pair_test, wl_test
from csgnn.features import FeatureSpec
from csgnn.graph import from_networkx
from csgnn.inputs import ModelConfig, build_structures


@pytest.mark.parametrize("model,faithful,complement", [("csgnn", False, False), ("csgnn", True, True),
                                                       ("csgnn-chords", False, False), ("gin-cycles", False, False),
                                                       ("gin", False, False), ("gcn", False, False)])
def test_relabelling_keeps_float64_embeddings(model, faithful, complement):
    cfg = ModelConfig(model=model, cycle_len=6, faithful=faithful, complement=complement, hidden=16, layers=3)
    rng = np.random.default_rng(0)
    graphs = [from_networkx(nx.gnp_random_graph(10, 0.35, seed=s), str(s)) for s in range(4)]
    perm = [g.permuted(rng.permutation(g.num_nodes)) for g in graphs]
    opts = cfg.cycle_options()
    # structures are recomputed on the relabelled copies: enumeration itself must be invariant
    s1 = [compute(g.num_nodes, g.edges, opts) if opts else None for g in graphs]
    s2 = [compute(g.num_nodes, g.edges, opts) if opts else None for g in perm]
    spec = FeatureSpec.fit(graphs)
    a = embeddings(cfg, graphs, s1, spec, seed=3)
    b = embeddings(cfg, perm, s2, spec, seed=3)
    assert float((a - b).abs().max() / a.abs().max()) < 1e-9


def _subset(gset: GraphSet, n_pairs: int) -> GraphSet:
    return GraphSet(gset.name, gset.graphs[:2 * n_pairs], gset.kind)


def test_exp_first_100_pairs_and_wl_agrees():
    exp = _subset(data.load("EXP"), 100)
    res = {}
    for m in ("csgnn", "gin"):
        cfg = ModelConfig(model=m, cycle_len=8, hidden=16, layers=4)
        structs, _ = build_structures(exp.graphs, cfg, workers=0)
        res[m] = pair_test(exp, structs, cfg, seeds=2)
        wl = wl_test(exp, structs, cfg)
        assert wl["distinguished"] == res[m]["distinguished"]
        assert res[m]["reliability_failures"] == 0 and wl["reliability_failures"] == 0
    assert res["csgnn"]["distinguished"] == 100 and res["gin"]["distinguished"] == 0


def test_sr25_all_105_pairs_gin_none():
    sr = data.load("SR25")
    for m, want in (("csgnn", 105), ("gin", 0)):
        cfg = ModelConfig(model=m, cycle_len=6, hidden=16, layers=3)
        structs, _ = build_structures(sr.graphs, cfg, workers=0)
        assert pair_test(sr, structs, cfg, seeds=2)["distinguished"] == want
        assert wl_test(sr, structs, cfg)["distinguished"] == want


def test_bound_below_the_only_cycles_separates_nothing():
    # C8 and two disjoint C4s are 1-WL-equal; only cycles of length 4+ tell them apart
    c8 = from_networkx(nx.cycle_graph(8), "c8", pair="p")
    two_c4 = from_networkx(nx.disjoint_union(nx.cycle_graph(4), nx.cycle_graph(4)), "2c4", pair="p")
    gset = GraphSet("toy", [c8, two_c4], "pairs")
    for bound, want in ((3, 0), (8, 1)):
        cfg = ModelConfig(model="csgnn", cycle_len=bound, hidden=8, layers=2)
        structs, _ = build_structures(gset.graphs, cfg, workers=0)
        assert pair_test(gset, structs, cfg, seeds=2)["distinguished"] == want
        assert wl_test(gset, structs, cfg)["distinguished"] == want
