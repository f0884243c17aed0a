"""Echo's estimation toolkit: batch time, future memory, (via `cosim.plan`) offline throughput.

- `StepTimeEstimator`: the shared linear step-time model (`T = a + b*prefill + c*decodes +
  d*sum_ctx`) applied to a candidate plan's rows, plus held-out MAPE (`heldout_mape`).
- `MemoryEstimator`: expected remaining output tokens of a request, from the empirical length
  distribution of completed requests of the same class, conditioned on the tokens it already
  generated: E[L - g | L > g], capped by its max_tokens. Before `min_samples` completions the
  estimate is the cap (conservative).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from papersuite.engine.costmodel import StepCostModel, StepFeatures


def plan_features(rows: Iterable[tuple[int, int, bool]]) -> StepFeatures:
    """Features of a plan given rows (computed_before, n_new, is_decode)."""
    n_prefill = n_decode = sum_ctx = 0
    for computed, n, decode in rows:
        if decode:
            n_decode += 1
        else:
            n_prefill += n
        sum_ctx += computed + n
    return StepFeatures(n_prefill, n_decode, sum_ctx)


class StepTimeEstimator:
    """Predicts a plan's step time from the shared cost model."""

    def __init__(self, cost_model: StepCostModel) -> None:
        self.cost_model = cost_model

    def predict(self, features: StepFeatures) -> float:
        return self.cost_model.predict_one(features)

    def max_prefill_tokens(self, features: StepFeatures, budget_s: float, context: int) -> int:
        """Most prefill tokens one more chunk can add (starting at `context`) within `budget_s`."""
        a, (b, c, d) = self.cost_model.intercept_, self.cost_model.coef_
        room = budget_s - self.predict(features) - d * context
        per_token = b + d
        if room <= 0:
            return 0
        return int(room / per_token) if per_token > 0 else 1 << 30


def heldout_mape(features: Sequence[StepFeatures], seconds: Sequence[float], holdout: float = 0.25,
                 random_state: int = 0) -> dict:
    """Fit on (1 - holdout) of profiled steps, report MAPE on the rest (the estimator's accuracy)."""
    idx = np.random.default_rng(random_state).permutation(len(features))
    n_test = max(1, int(len(features) * holdout))
    test, train = idx[:n_test], idx[n_test:]
    model = StepCostModel().fit([features[i] for i in train], [seconds[i] for i in train])
    return {"train_mape": model.mape_, "heldout_mape": model.mape([features[i] for i in test],
                                                                   [seconds[i] for i in test]),
            "train_steps": len(train), "heldout_steps": len(test), "model": model.to_dict()}


class MemoryEstimator:
    """Per-class empirical output lengths -> expected remaining tokens given tokens generated."""

    def __init__(self, min_samples: int = 8, max_samples: int = 2000) -> None:
        self.min_samples = min_samples
        self.max_samples = max_samples
        self.lengths_: dict[str, list[int]] = {}

    def observe(self, cls: str, output_tokens: int) -> None:
        xs = self.lengths_.setdefault(cls, [])
        xs.append(int(output_tokens))
        if len(xs) > self.max_samples:
            del xs[: len(xs) - self.max_samples]

    def fit(self, samples: Iterable[tuple[str, int]]) -> "MemoryEstimator":
        for cls, n in samples:
            self.observe(cls, n)
        return self

    def expected_remaining(self, cls: str, generated: int, max_tokens: int) -> float:
        cap = max(0, max_tokens - generated)
        xs = self.lengths_.get(cls, [])
        if len(xs) < self.min_samples:
            return float(cap)
        arr = np.asarray(xs)
        longer = arr[arr > generated]
        if len(longer) == 0:
            return float(min(cap, 1))
        return float(min(cap, longer.mean() - generated))

    def future_tokens(self, seqs, cls_of) -> float:
        """sum_r (ctx_r + E[remaining_r]): tokens the given sequences will hold at their peak."""
        return float(sum(s.num_tokens + self.expected_remaining(cls_of(s), s.num_output_tokens, s.params.max_tokens)
                         for s in seqs))
