"""Honest predictor evaluation: request-level 70/15/15 splits, MAE by progress bin, Kendall tau."""
from __future__ import annotations

import time

import numpy as np

from ares.collect import Records
from ares.predictor import make_predictor

BINS = ((0, 1, "t=0"), (1, 32, "[1,32)"), (32, 128, "[32,128)"), (128, 512, "[128,512)"), (512, 10**9, ">=512"))


def split(rec: Records, seed: int = 0, fractions=(0.7, 0.15, 0.15)) -> tuple[Records, Records, Records]:
    """Split by request, never one request's records across splits."""
    reqs = np.unique(rec.req)
    rng = np.random.default_rng(seed)
    rng.shuffle(reqs)
    n_tr = int(round(fractions[0] * len(reqs)))
    n_va = int(round(fractions[1] * len(reqs)))
    parts = (reqs[:n_tr], reqs[n_tr:n_tr + n_va], reqs[n_tr + n_va:])
    return tuple(rec.subset(np.isin(rec.req, p)) for p in parts)  # type: ignore[return-value]


def mae_by_bin(t: np.ndarray, r: np.ndarray, r_hat: np.ndarray) -> dict[str, float | None]:
    out = {}
    for lo, hi, name in BINS:
        m = (t >= lo) & (t < hi)
        out[name] = float(np.abs(r_hat[m] - r[m]).mean()) if m.any() else None
    return out


def kendall_tau(t: np.ndarray, r: np.ndarray, r_hat: np.ndarray, min_group: int = 5) -> float | None:
    """Mean Kendall tau between predicted and true remaining length among requests at the same progress t
    (the requests a scheduler would rank against each other), weighted by group size."""
    from scipy.stats import kendalltau

    taus, weights = [], []
    for tv in np.unique(t):
        m = t == tv
        if m.sum() < min_group or np.unique(r[m]).size < 2:
            continue
        tau = kendalltau(r_hat[m], r[m]).statistic
        if np.isfinite(tau):
            taus.append(tau)
            weights.append(m.sum())
    return float(np.average(taus, weights=weights)) if taus else None


def us_per_call(pred, rec: Records, batch: int = 16, repeats: int = 20) -> float:
    """Median microseconds for one batched prediction of `batch` records."""
    idx = np.arange(min(batch, len(rec.t)))
    sub = rec.subset(idx)
    pred.predict(sub)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        pred.predict(sub)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e6)


def evaluate(rec: Records, predictors: list[str], seeds: list[int], epochs: int = 100,
             on_result=None) -> dict:
    """Per predictor: mean over seeds of MAE, MAE by bin, Kendall tau; params and us/call."""
    results: dict[str, dict] = {}
    for name in predictors:
        per_seed = []
        for seed in seeds:
            train, val, test = split(rec, seed)
            pred = make_predictor(name, epochs=epochs, random_state=seed).fit(train, val)
            r_hat = pred.predict(test)
            per_seed.append({"mae": float(np.abs(r_hat - test.r).mean()),
                             "mae_by_bin": mae_by_bin(test.t, test.r, r_hat),
                             "kendall_tau": kendall_tau(test.t, test.r, r_hat),
                             "params": pred.n_params, "us_per_call": us_per_call(pred, test)})
        bins = {b: _mean([s["mae_by_bin"][b] for s in per_seed]) for _, _, b in BINS}
        results[name] = {"mae": _mean([s["mae"] for s in per_seed]), "mae_std": float(np.std([s["mae"] for s in per_seed])),
                         "mae_by_bin": bins, "kendall_tau": _mean([s["kendall_tau"] for s in per_seed]),
                         "params": per_seed[0]["params"], "us_per_call": _mean([s["us_per_call"] for s in per_seed]),
                         "seeds": seeds}
        if on_result:
            on_result(name, results[name])
    return results


def _mean(values):
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None
