"""The measured error model: how wrong a predictor is, by progress bin, for cluster simulation.

At cluster scale no hidden states exist, so the simulator's `ares` and `prompt-only` policies get
r_hat = r * exp(e), with e drawn from the log-ratio errors the real predictor made on held-out
records in the same progress bin; never the truth itself (that is `oracle`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ares.evaluate import BINS
from papersuite.errors import UserError


def measure(t: np.ndarray, r: np.ndarray, r_hat: np.ndarray, n_quantiles: int = 101) -> dict[str, list[float]]:
    """Quantiles of log(r_hat / r) per progress bin."""
    out = {}
    err = np.log(np.maximum(r_hat, 1.0) / np.maximum(r, 1.0))
    qs = np.linspace(0, 1, n_quantiles)
    for lo, hi, name in BINS:
        m = (t >= lo) & (t < hi)
        if m.sum() >= 5:
            out[name] = np.quantile(err[m], qs).round(5).tolist()
    if not out:
        raise ValueError("too few records to measure an error model")
    return out


class ErrorModel:
    def __init__(self, bins: dict[str, list[float]], provenance: dict | None = None) -> None:
        self.bins = {k: np.asarray(v) for k, v in bins.items()}
        self.provenance = provenance or {}

    @classmethod
    def load(cls, path: str | Path, predictor: str = "ares") -> "ErrorModel":
        p = Path(path)
        if not p.exists():
            raise UserError(f"{p}: no error model; run `python benchmarks/ares.py` to measure one")
        data = json.loads(p.read_text())
        if predictor not in data.get("predictors", {}):
            raise UserError(f"{p}: no error model for predictor {predictor!r}")
        return cls(data["predictors"][predictor], data.get("provenance"))

    def _bin(self, t: int) -> np.ndarray:
        for lo, hi, name in BINS:
            if lo <= t < hi:
                if name in self.bins:
                    return self.bins[name]
        return self.bins[list(self.bins)[-1]]  # past the measured range: the last bin's errors

    def sample(self, r: float, t: int, rng: np.random.Generator) -> float:
        q = self._bin(t)
        e = np.interp(rng.random(), np.linspace(0, 1, len(q)), q)
        return float(max(1.0, r * np.exp(e)))


class SimulatedPredictions:
    """An `on_step` callback for replay: refresh r_hat every k tokens of every running request.

    With `error_model=None` it is the oracle (true remaining length, known in forced-length runs).
    """

    def __init__(self, instances, error_model: ErrorModel | None, k: int = 4, seed: int = 0) -> None:
        self.instances, self.error_model, self.k = instances, error_model, k
        self.rng = np.random.default_rng(seed)

    def __call__(self, i, outcome, clock) -> None:
        for seq in outcome.emitted:
            t = seq.num_output_tokens
            if seq.is_finished or (t % self.k and "r_hat" in seq.annotations):
                continue
            true_r = max(1, seq.params.max_tokens - t)
            seq.annotations["r_hat"] = (float(true_r) if self.error_model is None
                                        else self.error_model.sample(true_r, t, self.rng))
