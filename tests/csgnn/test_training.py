"""The training loop and the leakage guard of the cv protocol."""
import json

import numpy as np

from csgnn import data
from csgnn.experiment import GraphClassifier, class_indices, cross_validate
from csgnn.inputs import ModelConfig, build_structures
from csgnn.training import TrainConfig, make_folds, summarise


def test_flipping_test_labels_changes_no_selection(tiny_jsonl):
    gset = data.load(str(tiny_jsonl))
    cfg = ModelConfig(model="csgnn", cycle_len=6, hidden=8, layers=2)
    structs, _ = build_structures(gset.graphs, cfg, workers=0)
    folds = make_folds(class_indices(gset), 4, 0.25, seed=0)[:1]  # as a --splits file with one fold
    tcfg = TrainConfig(epochs=3, lr=1e-2, batch_size=8, seed=0)
    base = summarise(cross_validate(gset, structs, cfg, tcfg, folds), "cv")
    flipped = data.load(str(tiny_jsonl))
    for i in folds[0]["test"]:
        g = flipped.graphs[i]
        g.y = "path" if g.y == "ring" else "ring"
    other = summarise(cross_validate(flipped, structs, cfg, tcfg, folds), "cv")
    a, b = base["folds"][0], other["folds"][0]
    assert a["selected_epoch"] == b["selected_epoch"] and a["val_accuracy"] == b["val_accuracy"]
    assert a["test_accuracy"] + b["test_accuracy"] == 1.0  # every test label flipped: only this moves


def test_folds_are_stratified_and_disjoint():
    y = np.array([0] * 30 + [1] * 20)
    folds = make_folds(y, 5, 0.1, seed=1)
    test = np.concatenate([f["test"] for f in folds])
    assert sorted(test.tolist()) == list(range(50))
    for f in folds:
        assert not set(f["train"]) & set(f["val"]) and not set(f["train"]) & set(f["test"])
        assert sum(y[f["test"]]) == 4


def test_classifier_round_trips_through_a_checkpoint(tiny_jsonl, tmp_path):
    gset = data.load(str(tiny_jsonl))
    cfg = ModelConfig(model="gin-cycles", cycle_len=6, hidden=8, layers=2)
    structs, _ = build_structures(gset.graphs, cfg, workers=0)
    est = GraphClassifier(cfg, TrainConfig(epochs=2, batch_size=8)).fit(gset, structs)
    est.save(tmp_path / "m.pt")
    back = GraphClassifier.load(tmp_path / "m.pt")
    assert back.classes_ == ["path", "ring"]
    np.testing.assert_allclose(est.predict_proba(gset, structs), back.predict_proba(gset, structs), atol=1e-6)
    assert json.dumps(back.config.as_dict())
