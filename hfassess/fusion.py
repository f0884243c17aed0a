"""Fusion of tabular, echo and text features, every modality subset, modality Shapley.

Strategies (all fitted inside training folds):
- `early` (HAIM recipe): concatenate modality features (text = MiniLM after in-fold PCA) -> LR.
- `late`: one LR per modality; inner-CV out-of-fold probabilities -> stacked LR.
- `fixed`: per-modality LR logits combined with constant user weights (the paper's fixed rows).
The paper's learned-attention module is not built here (see README: not done yet).
"""
from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np

MODALITIES = ("tabular", "echo", "text")


def modality_features(cohort, level: int = 1, device: str = "cpu") -> dict[str, np.ndarray]:
    """tabular: the table; echo: geometric raw EF from each SYNTHETIC clip; text: MiniLM (384-d)."""
    from hfassess.echo import raw_ef
    from hfassess.notes import embed_notes

    echo = np.array([[raw_ef(c.frames)] for c in cohort.clips(level=level)])
    text = embed_notes(cohort.notes, device=device)
    return {"tabular": cohort.table.to_numpy(dtype=float), "echo": echo, "text": text}


def _block(name: str, n_pca: int = 8):
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), PCA(n_pca)) if name == "text" else StandardScaler()


class FusionClassifier:
    """sklearn-style: `fit(blocks, y)` / `predict_proba(blocks)` where blocks maps modality -> array.

    A modality missing at predict time (None) is handled: early fills its (standardised) columns
    with 0 = the training mean; late/fixed drop it and renormalise the weights.
    """

    def __init__(self, strategy: str = "early", modalities=MODALITIES, weights: dict | None = None,
                 random_state: int = 0):
        self.strategy = strategy
        self.modalities = tuple(modalities)
        self.weights = weights
        self.random_state = random_state

    def fit(self, blocks: dict[str, np.ndarray], y: np.ndarray) -> "FusionClassifier":
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import cross_val_predict

        self.enc_ = {m: _block(m).fit(blocks[m]) for m in self.modalities}
        Z = {m: self.enc_[m].transform(blocks[m]) for m in self.modalities}
        if self.strategy == "early":
            self.clf_ = LogisticRegression(C=0.5, max_iter=2000).fit(np.hstack([Z[m] for m in self.modalities]), y)
        else:
            self.per_ = {m: LogisticRegression(C=0.5, max_iter=2000).fit(Z[m], y) for m in self.modalities}
            if self.strategy == "late":
                oof = np.column_stack([cross_val_predict(LogisticRegression(C=0.5, max_iter=2000), Z[m], y, cv=3,
                                                         method="decision_function") for m in self.modalities])
                self.stack_ = LogisticRegression(max_iter=1000).fit(oof, y)
            elif self.strategy == "fixed":
                w = self.weights or {m: 1.0 for m in self.modalities}
                self.w_ = np.array([w.get(m, 0.0) for m in self.modalities], dtype=float)
            else:
                raise ValueError(f"unknown fusion strategy {self.strategy!r}")
        return self

    def predict_proba(self, blocks: dict[str, np.ndarray | None]) -> np.ndarray:
        n = next(len(b) for b in blocks.values() if b is not None)
        present = [m for m in self.modalities if blocks.get(m) is not None]
        Z = {m: self.enc_[m].transform(blocks[m]) if m in present else None for m in self.modalities}
        if self.strategy == "early":
            cols = [Z[m] if Z[m] is not None else np.zeros((n, self.enc_[m].transform(
                np.zeros((1, self.enc_[m].n_features_in_))).shape[1])) for m in self.modalities]
            p = self.clf_.predict_proba(np.hstack(cols))[:, 1]
        else:
            logits = np.column_stack([self.per_[m].decision_function(Z[m]) if Z[m] is not None else np.zeros(n)
                                      for m in self.modalities])
            if self.strategy == "late":
                p = self.stack_.predict_proba(logits)[:, 1]
            else:
                w = np.array([wi if m in present else 0.0 for wi, m in zip(self.w_, self.modalities)])
                s = logits @ (w / max(w.sum(), 1e-9)) * len(present)
                p = 1 / (1 + np.exp(-s))
        return np.column_stack([1 - p, p])


def subsets(modalities=MODALITIES):
    return [frozenset(c) for k in range(1, len(modalities) + 1) for c in combinations(modalities, k)]


def run_ablation(n: int = 600, folds: int = 5, repeats: int = 1, seed: int = 0,
                 strategies=("early", "late", "fixed"), level: int = 1, feats: dict | None = None,
                 cohort=None) -> dict[str, Any]:
    """Every subset x strategy on identical folds of the SYNTHETIC cohort; CV AUROC; Shapley."""
    from sklearn.metrics import roc_auc_score

    from hfassess.evaluation import repeated_folds
    from hfassess.explain import modality_shapley
    from hfassess.synth_cohort import make_cohort

    cohort = cohort or make_cohort(n=n, seed=seed)
    feats = feats or modality_features(cohort, level=level)
    y = cohort.y
    fl = repeated_folds(y, folds, repeats, seed)
    table: dict[str, dict[str, float]] = {}
    values: dict[str, dict[frozenset, float]] = {}
    for strat in strategies:
        values[strat] = {}
        for S in subsets():
            mods = [m for m in MODALITIES if m in S]
            aucs = []
            for r in range(repeats):
                p = np.zeros(len(y))
                for f in [f for f in fl if f.repeat == r]:
                    m = FusionClassifier(strat, mods, random_state=seed).fit(
                        {k: feats[k][f.train] for k in mods}, y[f.train])
                    p[f.test] = m.predict_proba({k: feats[k][f.test] for k in mods})[:, 1]
                aucs.append(roc_auc_score(y, p))
            values[strat][S] = float(np.mean(aucs))
            table.setdefault("+".join(mods), {})[strat] = round(float(np.mean(aucs)), 4)
    shap = {s: modality_shapley(values[s], list(MODALITIES)) for s in strategies}
    return {"data": f"SYNTHETIC cohort n={len(y)}, planted equal shares (1/3 each)", "auroc": table,
            "shapley": shap, "planted_shares": cohort.shares, "folds": f"{repeats}x{folds}"}
