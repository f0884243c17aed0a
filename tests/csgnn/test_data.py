"""Readers: TU raw against PyG's TUDataset (the oracle), JSONL round trip, file:line errors."""
import json
import shutil

import numpy as np
import pytest

from csgnn import data
from csgnn.graph import Graph
from papersuite.errors import UserError


@pytest.mark.slow
@pytest.mark.parametrize("name", ["MUTAG", "PROTEINS"])
def test_tu_reader_matches_tudataset(name, tmp_path):
    from torch_geometric.datasets import TUDataset

    src = data.default_data_dir() / name
    shutil.copytree(src / "raw", tmp_path / name / "raw")
    oracle = TUDataset(str(tmp_path), name=name, use_node_attr=True)
    ours = data.load(name)
    assert len(ours) == len(oracle)
    _, ys = np.unique([g.y for g in ours.graphs], return_inverse=True)
    for i, (g, d) in enumerate(zip(ours.graphs, oracle)):
        assert g.num_nodes == d.num_nodes
        theirs = {tuple(sorted(e)) for e in d.edge_index.t().tolist()}
        assert {tuple(e) for e in g.edges.tolist()} == theirs
        assert int(d.y) == ys[i]
        x = d.x.numpy()
        width = x.shape[1] - (0 if g.x is None else g.x.shape[1])
        if g.x is not None:
            np.testing.assert_allclose(x[:, :g.x.shape[1]], g.x, rtol=1e-6)
        onehot = x[:, x.shape[1] - width:]
        np.testing.assert_array_equal(onehot.argmax(1), g.node_labels - ours_min(ours))


def ours_min(gset):
    return min(int(g.node_labels.min()) for g in gset.graphs)


def test_jsonl_export_reloads_unchanged(tmp_path):
    gset = data.load("MUTAG")
    p = tmp_path / "m.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in data.iter_records(gset.graphs)))
    back = data.load(str(p))
    assert len(back) == len(gset) and back.kind == "classification"
    for a, b in zip(gset.graphs, back.graphs):
        assert a.id == b.id and a.y == b.y and a.num_nodes == b.num_nodes
        np.testing.assert_array_equal(a.edges, b.edges)
        np.testing.assert_array_equal(a.node_labels, b.node_labels)


def test_malformed_tu_line_names_file_and_line(tmp_path):
    raw = tmp_path / "MUTAG" / "raw"
    shutil.copytree(data.default_data_dir() / "MUTAG" / "raw", raw)
    lines = (raw / "MUTAG_A.txt").read_text().splitlines()
    lines[6] = "3, x"
    (raw / "MUTAG_A.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"MUTAG_A.txt:7"):
        data.load(str(tmp_path / "MUTAG"))
    (raw / "MUTAG_graph_labels.txt").unlink()
    with pytest.raises(UserError, match=r"MUTAG_graph_labels.txt: no such file"):
        data.load(str(tmp_path / "MUTAG"))


@pytest.mark.parametrize("line,msg", [
    ('{"num_nodes": 3, "edges": [[0, 5]]}', "outside 0..2"),
    ('{"num_nodes": 0, "edges": []}', "at least one node"),
    ('{"num_nodes": 2, "edges": [[0, 1]', "malformed JSON"),
])
def test_bad_jsonl(tmp_path, line, msg):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"num_nodes": 1, "edges": []}\n' + line + "\n")
    with pytest.raises(UserError, match=rf"bad.jsonl:2: .*{msg}"):
        data.load(str(p))


def test_pair_id_must_name_two_graphs(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text("".join(json.dumps({"num_nodes": 3, "edges": [], "pair": "x"}) + "\n" for _ in range(3)))
    with pytest.raises(UserError, match="names 3 graph"):
        data.load(str(p)).pairs()


def test_unknown_dataset_lists_known():
    with pytest.raises(UserError, match="known: MUTAG"):
        data.load("NOPE")


def test_pair_sets_and_generators():
    exp = data.load("EXP")
    assert len(exp) == 1200 and len(exp.pairs()) == 600
    assert exp.graphs[0].node_labels is not None  # labels kept
    csl = data.load("CSL")
    assert len(csl) == 150 and len(csl.pairs()) == 45
    brec = data.load("BREC", categories=["Basic"])
    assert len(brec.pairs()) == 60
    sr = data.load("SR25")
    assert len(sr) == 15 and len(sr.pairs()) == 105


def test_edgeless_and_single_node_graphs_are_graphs():
    g = Graph("x", 1, np.zeros((0, 2), dtype=np.int64))
    assert g.degrees().tolist() == [0]
