"""Operator timings for the estimator: expert FFN, dense layer part, slow-tier load, draft step.

Each is measured on the real model and store (medians of a few repeats) and fitted as
`a + b * n` (piecewise-linear enough for the CPU sizes here).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch


def _median_time(fn, repeats: int = 5) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _fit(xs, ys) -> tuple[float, float]:
    """Least-squares a + b*x, clamped to non-negative coefficients."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0
    b = max(b, 0.0)
    return max(my - b * mx, 0.0), b


@dataclass
class Profile:
    """Fitted costs (seconds). `dense_layer(n)`: one layer's non-expert work for n tokens."""

    num_layers: int
    num_experts: int
    top_k: int
    slots: int
    load: float  # one expert from the slow tier
    ffn_ab: tuple[float, float]
    dense_ab: tuple[float, float]
    draft_ab: tuple[float, float]

    def ffn(self, n: float) -> float:
        return self.ffn_ab[0] + self.ffn_ab[1] * n

    def dense_layer(self, n: float) -> float:
        return self.dense_ab[0] + self.dense_ab[1] * n

    def draft_step(self, b: float) -> float:
        return self.draft_ab[0] + self.draft_ab[1] * b

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@torch.inference_mode()
def profile(target, draft, store, slots: int, token_counts=(1, 8, 32), batches=(1, 4), load_samples: int = 4,
            repeats: int = 3) -> Profile:
    """Measure the four operators on `target` (engine MixtralModel), `draft` and the `ExpertStore`."""
    from papersuite.engine.moe import expert_ffn
    from specmoeoff.target import prefill_logits

    cfg = target.config
    dtype = next(target.parameters()).dtype
    H = cfg.hidden_size
    gu, dn = store.load(0, 0)
    ffn_y = [_median_time(lambda n=n: expert_ffn(torch.randn(n, H, dtype=dtype), gu, dn), repeats) for n in token_counts]
    loads = []
    for e in range(min(load_samples, cfg.num_experts)):
        t0 = time.perf_counter()
        store.load(cfg.num_hidden_layers - 1, e)
        loads.append(time.perf_counter() - t0)
    store.reset_counters()
    # dense part: the target with every MoE block reduced to its router (attention, norms, LM head)
    dense_y = []
    for n in token_counts:
        ids = torch.randint(0, cfg.vocab_size, (n,))
        t = _median_time(lambda ids=ids: _dense_only(target, ids), repeats)
        dense_y.append(t / cfg.num_hidden_layers)
    draft_y = []
    for b in batches:
        ids = torch.randint(0, cfg.vocab_size, (b,))
        draft_y.append(_median_time(lambda ids=ids: prefill_logits(draft, ids), repeats))
    return Profile(cfg.num_hidden_layers, cfg.num_experts, cfg.num_experts_per_tok, slots,
                   statistics.median(loads), _fit(list(token_counts), ffn_y), _fit(list(token_counts), dense_y),
                   _fit(list(batches), draft_y))


def _dense_only(target, ids) -> None:
    from specmoeoff.target import prefill_logits

    blocks = target.moe_blocks
    saved = [b.forward for b in blocks]
    try:
        for b in blocks:
            b.forward = lambda x, b=b: (b.gate(x), x)[1] * 0
        prefill_logits(target, ids)
    finally:
        for b, f in zip(blocks, saved):
            b.forward = f
