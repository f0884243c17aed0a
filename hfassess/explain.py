"""Explanations: permutation importance on held-out folds, sampled Shapley values, modality Shapley.

Why these and not the paper's "importance" (attention weight per feature group): attention
weights are not attributions. Permutation importance measures AUROC lost on *held-out* rows;
Shapley values (Strumbelj & Kononenko's permutation sampling, interventional, against a
background sample of training rows) split one patient's prediction among features; modality
Shapley splits the CV AUROC gain among modalities from the ablation's subset values.
"""
from __future__ import annotations

from itertools import combinations
from math import factorial
from typing import Any, Callable

import numpy as np


def permutation_global(make_model: Callable[[], Any], X, y: np.ndarray, folds, n_repeats: int = 5,
                       seed: int = 0) -> list[dict[str, Any]]:
    """AUROC drop when a feature is shuffled in the held-out fold; mean and 2.5-97.5 percentiles."""
    import pandas as pd
    from sklearn.inspection import permutation_importance
    from threadpoolctl import threadpool_limits

    X = pd.DataFrame(X)
    drops: dict[str, list[float]] = {c: [] for c in X.columns}
    with threadpool_limits(1):
        for f in folds:
            m = make_model().fit(X.iloc[f.train], y[f.train])
            r = permutation_importance(m, X.iloc[f.test], y[f.test], scoring="roc_auc",
                                       n_repeats=n_repeats, random_state=seed)
            for j, c in enumerate(X.columns):
                drops[c].extend(r.importances[j].tolist())
    rows = [{"feature": c, "importance": round(float(np.mean(v)), 4),
             "ci95": [round(float(x), 4) for x in np.percentile(v, [2.5, 97.5])]} for c, v in drops.items()]
    return sorted(rows, key=lambda r: -r["importance"])


def sampled_shapley(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray, background: np.ndarray,
                    n_permutations: int = 64, seed: int = 0) -> np.ndarray:
    """Interventional Shapley values of one row by permutation sampling (antithetic pairs).

    For each sampled feature order and background row, features are switched from the background
    to `x` one by one; each switch's change in the prediction is that feature's marginal gain.
    Values sum to predict(x) - mean predict(background rows used).
    """
    rng = np.random.default_rng(seed)
    d = len(x)
    phi = np.zeros(d)
    batch, owners = [], []
    for k in range(n_permutations // 2):
        order = rng.permutation(d)
        for perm in (order, order[::-1]):
            z = background[rng.integers(len(background))].copy()
            batch.append(z.copy())
            for j in perm:
                z[j] = x[j]
                batch.append(z.copy())
            owners.append(perm)
    preds = predict(np.array(batch))
    step = d + 1
    for t, perm in enumerate(owners):
        seg = preds[t * step:(t + 1) * step]
        phi[perm] += np.diff(seg)
    return phi / len(owners)


def shap_global(model, X, n_rows: int = 40, n_permutations: int = 32, seed: int = 0
                ) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Mean |Shapley value| over a sample of rows (probability scale); returns rows and the matrix."""
    import pandas as pd

    X = pd.DataFrame(X)
    cols = list(X.columns)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(X), size=min(n_rows, len(X)), replace=False)
    bg = X.to_numpy(dtype=float)[rng.choice(len(X), size=min(100, len(X)), replace=False)]
    predict = lambda A: model.predict_proba(pd.DataFrame(A, columns=cols))[:, 1]  # noqa: E731
    phis = np.array([sampled_shapley(predict, X.to_numpy(dtype=float)[i], bg, n_permutations, seed + i)
                     for i in idx])
    mags = np.abs(phis)
    rows = []
    for j, c in enumerate(cols):
        boot = [mags[rng.integers(0, len(idx), len(idx)), j].mean() for _ in range(200)]
        rows.append({"feature": c, "importance": round(float(mags[:, j].mean()), 4),
                     "ci95": [round(float(x), 4) for x in np.percentile(boot, [2.5, 97.5])]})
    return sorted(rows, key=lambda r: -r["importance"]), phis


def shap_local(model, X_background, rows, n_permutations: int = 64, seed: int = 0) -> list[list[dict]]:
    """Shapley values of given rows, sorted by magnitude, in probability units."""
    import pandas as pd

    cols = list(X_background.columns)
    bg = X_background.to_numpy(dtype=float)
    predict = lambda A: model.predict_proba(pd.DataFrame(A, columns=cols))[:, 1]  # noqa: E731
    out = []
    for k, r in enumerate(np.asarray(rows, dtype=float)):
        phi = sampled_shapley(predict, r, bg, n_permutations, seed + k)
        order = np.argsort(-np.abs(phi))
        out.append([{"feature": cols[j], "shapley": round(float(phi[j]), 4)} for j in order])
    return out


def modality_shapley(values: dict[frozenset, float], modalities: list[str], empty: float = 0.5
                     ) -> dict[str, float]:
    """phi_m = sum_S |S|!(M-|S|-1)!/M! (v(S+m) - v(S)), v(empty) = 0.5 (chance AUROC)."""
    M = len(modalities)
    v = dict(values)
    v[frozenset()] = empty
    phi = {}
    for m in modalities:
        others = [o for o in modalities if o != m]
        total = 0.0
        for k in range(M):
            for S in combinations(others, k):
                S = frozenset(S)
                w = factorial(len(S)) * factorial(M - len(S) - 1) / factorial(M)
                total += w * (v[S | {m}] - v[S])
        phi[m] = round(total, 4)
    return phi
