"""The objective every method shares: shuffled, seeded stratified k-fold CV of one pipeline.

The folds are made once per (data, seed) and passed to every arm and every method, so scores are
comparable across them (the authors' code built unshuffled folds with a random state, which today's
scikit-learn refuses: every trial failed).
"""
from __future__ import annotations

import math
import time
import traceback
import warnings
from dataclasses import dataclass
from typing import Any

from papersuite.errors import UserError

METRICS = {"balanced_accuracy": "balanced_accuracy", "accuracy": "accuracy", "roc_auc": "roc_auc",
           "f1_macro": "f1_macro", "log_loss": "neg_log_loss"}


def scorer_name(metric: str, n_classes: int) -> str:
    """sklearn scorer name for a metric (higher is better; multi-class ROC-AUC is one-vs-rest)."""
    if metric not in METRICS:
        raise UserError(f"unknown --metric {metric!r}; choose from {', '.join(METRICS)}")
    if metric == "roc_auc" and n_classes > 2:
        return "roc_auc_ovr"
    return METRICS[metric]


def make_folds(y, cv: int, seed: int) -> list[tuple[Any, Any]]:
    from sklearn.model_selection import StratifiedKFold

    skf = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
    return [(tr, te) for tr, te in skf.split(y.reshape(-1, 1), y)]


@dataclass
class Evaluator:
    """Scores one (family, params) configuration by CV; run inside worker processes."""

    X: Any
    y: Any
    folds: list
    scorer: str
    num_cols: list[str]
    cat_cols: list[str]
    seed: int = 0

    def evaluate(self, family: str, params: dict[str, Any]) -> dict[str, Any]:
        from sklearn.base import clone
        from sklearn.metrics import get_scorer

        from boasf.space import build_pipeline

        t0 = time.perf_counter()
        fold_scores: list[float] = []
        try:
            pipe = build_pipeline(family, params, self.num_cols, self.cat_cols, self.seed)
            score = get_scorer(self.scorer)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for tr, te in self.folds:
                    model = clone(pipe).fit(self.X.iloc[tr], self.y[tr])
                    s = float(score(model, self.X.iloc[te], self.y[te]))
                    if not math.isfinite(s):
                        raise ValueError(f"fold score is {s}")
                    fold_scores.append(s)
        except Exception as e:  # a failing configuration is a result, not a crash
            last = traceback.format_exception_only(type(e), e)[-1].strip().splitlines()[0]
            return {"status": "failed", "score": None, "fold_scores": fold_scores, "error": last[:300],
                    "fit_s": time.perf_counter() - t0}
        return {"status": "ok", "score": sum(fold_scores) / len(fold_scores), "fold_scores": fold_scores,
                "error": None, "fit_s": time.perf_counter() - t0}


def refit(table, family: str, params: dict[str, Any], seed: int = 0):
    """Fit the chosen configuration on every row of the table."""
    from boasf.space import build_pipeline

    pipe = build_pipeline(family, params, table.num_cols, table.cat_cols, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pipe.fit(table.X, table.y)


def score_model(model, table, metric: str) -> float:
    from sklearn.metrics import get_scorer

    return float(get_scorer(scorer_name(metric, len(table.classes)))(model, table.X, table.y))
