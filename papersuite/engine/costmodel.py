"""Step-time cost model: T = a + b*n_prefill + c*n_decode + d*sum_ctx, fitted on profiled steps.

ARES and Echo replay traces on virtual clocks; at cluster scale no forward pass runs at all and
this model supplies each step's duration. It is profiled on the real engine (same scheduler, same
model, same thread count), at most `budget_s` seconds, and cached per machine, thread count, model
and device so later runs start at once.

Features of one step (`StepFeatures.of(batch)`):
- n_prefill: prompt tokens computed this step (chunked prefill rows);
- n_decode: rows that decode one token;
- sum_ctx: tokens attended over, summed over rows (context length after the step).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

FEATURES = ("n_prefill", "n_decode", "sum_ctx")


@dataclass(frozen=True)
class StepFeatures:
    n_prefill: int
    n_decode: int
    sum_ctx: int

    @classmethod
    def of(cls, batch) -> "StepFeatures":
        """Features of a `ScheduledBatch` (decode rows come first in it)."""
        n_prefill = sum(batch.num_new_tokens[batch.num_decodes:])
        sum_ctx = sum(s.num_computed_tokens + n for s, n in zip(batch.seqs, batch.num_new_tokens))
        return cls(int(n_prefill), int(batch.num_decodes), int(sum_ctx))

    def row(self) -> list[float]:
        return [self.n_prefill, self.n_decode, self.sum_ctx]


class StepCostModel:
    """Linear step-time model with non-negative coefficients (scikit-learn style).

    Attributes after `fit`: `intercept_` (a, seconds), `coef_` (b, c, d), `mape_` on the fit data.
    """

    def __init__(self, positive: bool = True) -> None:
        self.positive = positive

    def fit(self, features: Sequence[StepFeatures], seconds: Sequence[float]) -> "StepCostModel":
        from sklearn.linear_model import LinearRegression

        if len(features) < 4:
            raise ValueError(f"need at least 4 profiled steps to fit, got {len(features)}")
        X = np.array([f.row() for f in features], dtype=float)
        y = np.asarray(seconds, dtype=float)
        reg = LinearRegression(positive=self.positive).fit(X, y)
        self.intercept_ = float(max(reg.intercept_, 0.0))
        self.coef_ = np.asarray(reg.coef_, dtype=float)
        self.mape_ = self.mape(features, seconds)
        return self

    def predict_one(self, f: StepFeatures) -> float:
        return float(self.intercept_ + self.coef_ @ np.array(f.row(), dtype=float))

    def predict(self, features: Sequence[StepFeatures]) -> np.ndarray:
        X = np.array([f.row() for f in features], dtype=float).reshape(-1, 3)
        return self.intercept_ + X @ self.coef_

    def mape(self, features: Sequence[StepFeatures], seconds: Sequence[float]) -> float:
        """Mean absolute percentage error, the figure Echo's estimator reports on held-out steps."""
        y = np.asarray(seconds, dtype=float)
        return float(np.mean(np.abs(self.predict(features) - y) / np.maximum(y, 1e-9)))

    # unloaded references for default SLOs (TTFT <= 5x, TPOT <= 3x these)
    def unloaded_ttft(self, prompt_tokens: int, chunk: int = 512) -> float:
        """Prefill alone, in chunks of `chunk` tokens, plus nothing else running."""
        t, done = 0.0, 0
        while done < prompt_tokens:
            n = min(chunk, prompt_tokens - done)
            done += n
            t += self.predict_one(StepFeatures(n, 0, done))
        return t

    def unloaded_tpot(self, context_tokens: int) -> float:
        return self.predict_one(StepFeatures(0, 1, context_tokens + 1))

    def to_dict(self) -> dict:
        return {"intercept_s": self.intercept_, "coef": dict(zip(FEATURES[:], self.coef_.tolist())),
                "mape": self.mape_}

    @classmethod
    def from_dict(cls, d: dict) -> "StepCostModel":
        m = cls()
        m.intercept_ = float(d["intercept_s"])
        m.coef_ = np.array([d["coef"][k] for k in FEATURES], dtype=float)
        m.mape_ = float(d.get("mape", float("nan")))
        return m


def profile_engine(engine, budget_s: float = 60.0, max_steps: int = 400, seed: int = 0,
                   max_prompt: int = 384, max_output: int = 48) -> tuple[list[StepFeatures], list[float]]:
    """Drive `engine` with random synthetic requests and time every `step()`.

    Request mixes vary (few/many rows, short/long prompts) so all three features move
    independently; outputs ignore EOS so lengths are what was asked for. Returns the per-step
    features and wall seconds. The engine must be idle when called; it is idle again after.
    """
    from papersuite.llm import SamplingParams

    rng = np.random.default_rng(seed)
    vocab = int(engine.model.config.vocab_size)
    last_batch: list = []
    original_run = engine.runner.run

    def recording_run(batch):
        last_batch.append(StepFeatures.of(batch))
        return original_run(batch)

    engine.runner.run = recording_run
    feats, secs = [], []
    t_end = time.perf_counter() + budget_s
    max_prompt = min(max_prompt, engine.max_model_len - max_output - 1)
    try:
        while time.perf_counter() < t_end and len(feats) < max_steps:
            n_req = int(rng.choice([1, 2, 4, 8, 16]))
            for _ in range(n_req):
                plen = int(rng.integers(4, max_prompt + 1))
                olen = int(rng.integers(2, max_output + 1))
                ids = rng.integers(10, vocab, size=plen).tolist()
                engine.add_request(None, SamplingParams(max_tokens=olen, ignore_eos=True), prompt_token_ids=ids)
            while engine.has_unfinished() and len(feats) < max_steps:
                last_batch.clear()
                t0 = time.perf_counter()
                engine.step()
                dt = time.perf_counter() - t0
                if last_batch:
                    feats.append(last_batch[-1])
                    secs.append(dt)
                if time.perf_counter() > t_end:
                    break
            for rid in list(engine.requests):
                engine.abort(rid)
    finally:
        engine.runner.run = original_run
    return feats, secs


def cache_key(engine) -> str:
    import torch

    ident = {"machine": platform.machine(), "processor": platform.processor(), "node_cpus": os.cpu_count(),
             "threads": torch.get_num_threads(), "model": engine.model_name,
             "device": str(engine.config.device), "block_size": engine.config.block_size,
             "max_batched": engine.config.max_num_batched_tokens, "host": platform.node()}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def fitted_cost_model(engine, budget_s: float = 60.0, seed: int = 0, refresh: bool = False,
                      holdout: float = 0.25) -> StepCostModel:
    """The engine's cost model: from the cache, else profiled (<= budget_s) and fitted, then cached.

    A quarter of the profiled steps is held out; `heldout_mape` in the cache file is their error.
    """
    from papersuite.io import write_json
    from papersuite.models import cache_root

    path = cache_root() / "costmodel" / f"{cache_key(engine)}.json"
    if path.exists() and not refresh:
        return StepCostModel.from_dict(json.loads(path.read_text()))
    feats, secs = profile_engine(engine, budget_s=budget_s, seed=seed)
    idx = np.random.default_rng(seed).permutation(len(feats))
    n_test = max(1, int(len(feats) * holdout))
    test, train = idx[:n_test], idx[n_test:]
    model = StepCostModel().fit([feats[i] for i in train], [secs[i] for i in train])
    heldout = model.mape([feats[i] for i in test], [secs[i] for i in test])
    model = StepCostModel().fit(feats, secs)
    d = model.to_dict() | {"heldout_mape": heldout, "steps": len(feats),
                           "samples": [asdict(f) | {"s": s} for f, s in zip(feats, secs)]}
    write_json(path, d)
    return model
