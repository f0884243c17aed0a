"""The units of work behind the commands: fit one model, cross-validate, save and load checkpoints."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from csgnn.data import GraphSet
from csgnn.features import FeatureSpec
from csgnn.inputs import ModelConfig, build_structures, label_map, to_data
from csgnn.training import History, TrainConfig, make_folds, summarise, train_model, val_split
from papersuite.device import seed_everything
from papersuite.errors import UserError


class GraphClassifier:
    """A scikit-learn style estimator: hyperparameters in __init__, `fit`, learned state in `*_`."""

    def __init__(self, config: ModelConfig = ModelConfig(), train: TrainConfig = TrainConfig(),
                 val_fraction: float = 0.1) -> None:
        self.config, self.train, self.val_fraction = config, train, val_fraction

    def fit(self, gset: GraphSet, structs: Sequence, on_epoch: Callable[[int], None] | None = None
            ) -> "GraphClassifier":
        self.label_index_, self.classes_ = label_map(gset.graphs)
        y = np.array([self.label_index_[k] for k in _keys(gset)])
        tr, va = val_split(np.arange(len(y)), y, self.val_fraction, self.train.seed)
        self.spec_ = FeatureSpec.fit([gset.graphs[i] for i in tr] + [gset.graphs[i] for i in va])
        datas = to_data(gset.graphs, structs, self.spec_, self.config, self.label_index_)
        seed_everything(self.train.seed)
        self.model_ = self.config.build(self.spec_.dim, len(self.classes_))
        self.history_, state = train_model(self.model_, [datas[i] for i in tr], [datas[i] for i in va],
                                           self.train, on_epoch=on_epoch)
        self.model_.load_state_dict(state)
        self.selected_epoch_ = self.history_.best_epoch() + 1
        return self

    def save(self, path: str | Path) -> None:
        from papersuite.io import atomic_path

        blob = {"format": "csgnn-1", "config": self.config.as_dict(), "train": asdict(self.train),
                "spec": self.spec_.as_dict(), "classes": self.classes_, "state_dict": self.model_.state_dict(),
                "selected_epoch": self.selected_epoch_,
                "val_accuracy": self.history_.val_acc[self.selected_epoch_ - 1] if self.history_.val_acc else None}
        with atomic_path(path) as tmp:
            torch.save(blob, tmp)

    @classmethod
    def load(cls, path: str | Path) -> "GraphClassifier":
        p = Path(path)
        if not p.exists():
            raise UserError(f"{p}: no such checkpoint")
        try:
            blob = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:
            raise UserError(f"{p}: not a graph-classify checkpoint ({type(e).__name__})") from None
        if not isinstance(blob, dict) or blob.get("format") != "csgnn-1":
            raise UserError(f"{p}: not a graph-classify checkpoint")
        self = cls(ModelConfig(**blob["config"]), TrainConfig(**blob["train"]))
        self.spec_ = FeatureSpec(**blob["spec"])
        self.classes_ = blob["classes"]
        from csgnn.inputs import json_key

        self.label_index_ = {json_key(v): i for i, v in enumerate(self.classes_)}
        self.model_ = self.config.build(self.spec_.dim, len(self.classes_))
        self.model_.load_state_dict(blob["state_dict"])
        self.selected_epoch_ = blob.get("selected_epoch")
        return self

    def predict_proba(self, gset: GraphSet, structs: Sequence, device: str = "cpu") -> np.ndarray:
        from csgnn.training import predict_proba

        return predict_proba(self.model_, to_data(gset.graphs, structs, self.spec_, self.config), device=device)


def _keys(gset: GraphSet) -> list[str]:
    from csgnn.inputs import json_key

    return [json_key(g.y) for g in gset.graphs]


def class_indices(gset: GraphSet) -> np.ndarray:
    index, _ = label_map(gset.graphs)
    return np.array([index[k] for k in _keys(gset)])


def _fold(args) -> History:
    """Train fold k; a top-level function so that folds can run in worker processes."""
    graphs, structs, cfg, tcfg, f, k, threads = args
    torch.set_num_threads(threads)
    gset = GraphSet("fold", graphs, "classification")
    index, classes = label_map(gset.graphs)
    train_ids = f["train"] + f["val"]
    spec = FeatureSpec.fit([gset.graphs[i] for i in train_ids])  # fitted without the test fold
    datas = to_data(gset.graphs, structs, spec, cfg, index)
    seed_everything(tcfg.seed + k)
    model = cfg.build(spec.dim, len(classes))
    fold_cfg = TrainConfig(tcfg.epochs, tcfg.lr, tcfg.batch_size, tcfg.seed + k, tcfg.device)
    hist, _ = train_model(model, [datas[i] for i in f["train"]], [datas[i] for i in f["val"]], fold_cfg,
                          test=[datas[i] for i in f["test"]])
    return hist


def cross_validate(gset: GraphSet, structs: Sequence, cfg: ModelConfig, tcfg: TrainConfig,
                   folds: list[dict[str, list[int]]], on_fold: Callable[[int], None] | None = None,
                   jobs: int = 1) -> list[History]:
    """Train one model per fold (same folds for every model); returns the per-fold histories.

    jobs > 1 runs folds in that many spawned processes of one torch thread each: on a shared
    2-core machine, processes beat intra-op threads (notes §6). Results do not depend on jobs.
    """
    threads = torch.get_num_threads()
    args = [(gset.graphs, structs, cfg, tcfg, f, k, 1 if jobs > 1 else threads) for k, f in enumerate(folds)]
    if jobs <= 1:
        out = []
        for a in args:
            out.append(_fold(a))
            if on_fold:
                on_fold(1)
        return out
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(min(jobs, len(folds)), mp_context=mp.get_context("spawn")) as pool:
        out = []
        for h in pool.map(_fold, args):
            out.append(h)
            if on_fold:
                on_fold(1)
        return out


def evaluate_protocol(gset: GraphSet, structs: Sequence, cfg: ModelConfig, tcfg: TrainConfig,
                      folds: list[dict[str, list[int]]], protocol: str,
                      on_fold: Callable[[int], None] | None = None, jobs: int = 1) -> dict[str, Any]:
    """`cv` or `xu` result for one model; `cv` also carries the `xu` selection, labelled optimistic."""
    hist = cross_validate(gset, structs, cfg, tcfg, folds, on_fold, jobs)
    res = summarise(hist, protocol)
    if protocol == "cv":
        xu = summarise(hist, "xu")
        res["xu_optimistic"] = {"accuracy_mean": xu["accuracy_mean"], "accuracy_std": xu["accuracy_std"],
                                "selected_epoch": xu["folds"][0]["selected_epoch"],
                                "note": "epoch picked on the mean test curve of the same runs (selects on test)"}
    return res


__all__ = ["GraphClassifier", "cross_validate", "evaluate_protocol", "make_folds", "build_structures"]
