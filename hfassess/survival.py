"""Survival models with `time` as the *duration* and DEATH_EVENT as the event (scikit-survival).

Why survival at all: a yes/no label over follow-ups of 4 to 285 days mixes early censoring with
survival; a survival model uses `time` the right way, and gives risk at 30/90/180 days for the
risk timeline the paper draws as bands. Documented deviation from the paper: a single task
(death), not five heads.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from hfassess.records import assert_no_leak
from hfassess.tabular import _log_columns

HORIZONS = (30, 90, 180)
IBS_TIMES = np.arange(30, 241, 15)
BANDS = ((0.10, "low"), (0.25, "medium"), (1.01, "high"))


def band(p: float) -> str:
    """Risk band of a probability: low < 0.10 <= medium < 0.25 <= high (documented cut-offs)."""
    for cut, name in BANDS:
        if p < cut:
            return name
    return "high"


def surv_y(event: np.ndarray, duration: np.ndarray):
    from sksurv.util import Surv

    return Surv.from_arrays(event=np.asarray(event).astype(bool), time=np.asarray(duration, dtype=float))


def make_survival(name: str, random_state: int | None = 0):
    """`cox` (ridge Cox on log labs, standardised), `rsf`, `gbsa`."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    if name == "cox":
        from sksurv.linear_model import CoxPHSurvivalAnalysis

        return make_pipeline(FunctionTransformer(_log_columns), SimpleImputer(strategy="median"),
                             StandardScaler(), CoxPHSurvivalAnalysis(alpha=0.1))
    if name == "rsf":
        from sksurv.ensemble import RandomSurvivalForest

        return make_pipeline(SimpleImputer(strategy="median"),
                             RandomSurvivalForest(n_estimators=200, min_samples_leaf=8, max_features="sqrt",
                                                  n_jobs=1, random_state=random_state))
    if name == "gbsa":
        from sksurv.ensemble import GradientBoostingSurvivalAnalysis

        return make_pipeline(SimpleImputer(strategy="median"),
                             GradientBoostingSurvivalAnalysis(n_estimators=150, learning_rate=0.05,
                                                              max_depth=2, subsample=0.8,
                                                              random_state=random_state))
    raise ValueError(f"unknown survival model {name!r}")


def risk_at(model, X, horizons=HORIZONS) -> np.ndarray:
    """P(death by each horizon) = 1 - S(t): rows = patients, columns = horizons."""
    fns = model.predict_survival_function(X)
    return np.array([[1.0 - float(fn(min(t, fn.x[-1]))) for t in horizons] for fn in fns])


def evaluate_survival(X, event: np.ndarray, duration: np.ndarray, folds, names=("cox", "rsf", "gbsa"),
                      seed: int = 0, n_boot: int = 1000) -> dict[str, Any]:
    """Per model: Harrell's C-index (OOF per repeat, patient bootstrap CI) and IBS 30-240 days."""
    import pandas as pd
    from sksurv.metrics import concordance_index_censored, integrated_brier_score
    from threadpoolctl import threadpool_limits

    X = pd.DataFrame(X)
    assert_no_leak(X.columns)
    reps = max(f.repeat for f in folds) + 1
    ev = np.asarray(event).astype(bool)
    out: dict[str, Any] = {}
    for name in names:
        score = np.zeros((reps, len(event)))
        ibs = []
        with threadpool_limits(1):
            for f in folds:
                ytr, yte = surv_y(ev[f.train], duration[f.train]), surv_y(ev[f.test], duration[f.test])
                m = make_survival(name, seed).fit(X.iloc[f.train], ytr)
                score[f.repeat, f.test] = m.predict(X.iloc[f.test])
                times = IBS_TIMES[(IBS_TIMES < duration[f.test].max()) & (IBS_TIMES < duration[f.train].max())]
                fns = m.predict_survival_function(X.iloc[f.test])
                sp = np.array([[fn(t) for t in times] for fn in fns])
                ibs.append(integrated_brier_score(ytr, yte, sp, times))
        cis = [concordance_index_censored(ev, duration, score[r])[0] for r in range(reps)]
        avg = score.mean(0)
        rng = np.random.default_rng(seed)
        boot = []
        for _ in range(n_boot):
            idx = rng.integers(0, len(ev), len(ev))
            if ev[idx].any():
                boot.append(concordance_index_censored(ev[idx], duration[idx], avg[idx])[0])
        out[name] = {
            "c_index": {"mean": round(float(np.mean(cis)), 4),
                        "ci95": [round(float(x), 4) for x in np.percentile(boot, [2.5, 97.5])]},
            "ibs": {"mean": round(float(np.mean(ibs)), 4),
                    "ci95": [round(float(x), 4) for x in np.percentile(ibs, [2.5, 97.5])],
                    "ci_method": "2.5-97.5 percentile over folds"},
            "oof_score": avg,
        }
    return out
