"""Choosing the draft length: k* = argmax_k b * tau(k) / T(b, k), re-solved as the run goes.

`tau` comes from a measured acceptance table (k -> tokens per iteration) when one is given,
else from the acceptance rate alpha via (1 - alpha^(k+1)) / (1 - alpha); alpha is updated from
the run's own accepted/proposed counts. k = 0 is always a candidate, so when speculation would
give fewer tokens per unit time than plain decoding the gate turns it off (Cascade's utility test).
"""
from __future__ import annotations

from specmoeoff.estimator import iteration_time, tau


def best_k(profile, batch: int, alpha: float, k_max: int = 8, table: dict[int, float] | None = None,
           prefetch: bool = False, stream_threshold: float | None = None) -> tuple[int, dict[int, float]]:
    """k* and the estimated throughput (tokens/s) of every candidate k in 0..k_max.

    `stream_threshold`: passes with at least this many tokens stream every expert (system.py)."""
    rate = {}
    for k in range(k_max + 1):
        t = table[k] if table and k in table else tau(alpha, k)
        stream = stream_threshold is not None and batch * (k + 1) >= stream_threshold
        rate[k] = batch * t / iteration_time(profile, batch, k, prefetch, stream)
    return max(rate, key=rate.get), rate


class KOptimizer:
    """A `KChooser` for `SpeculativeDecoder`: re-solves k* every `every` iterations (and early on)."""

    def __init__(self, profile, k_max: int = 8, every: int = 16, prior_alpha: float = 0.7,
                 table: dict[int, float] | None = None) -> None:
        self.profile, self.k_max, self.every = profile, k_max, every
        self.prior_alpha, self.table = prior_alpha, table
        self.k_: int | None = None
        self.history_: list[tuple[int, int, float]] = []  # (iteration, k, alpha)

    def alpha(self, stats) -> float:
        # prior counts as 8 proposals, so a few iterations cannot swing it to 0 or 1
        acc = stats.accepted + 8 * self.prior_alpha
        return min(acc / (stats.proposed + 8), 0.99)

    def __call__(self, batch: int, stats) -> int:
        # re-solve at iterations 1, 2, 4, 8 (the prior alpha fades fast), then every `every`
        early = stats.iterations in (1, 2, 4, 8)
        if self.k_ is None or early or stats.iterations % self.every == 0:
            a = self.alpha(stats)
            from specmoeoff.system import stream_threshold

            p = self.profile
            self.k_, _ = best_k(p, batch, a, self.k_max, self.table, prefetch=True,
                                stream_threshold=stream_threshold(p.num_experts, p.top_k, p.slots))
            self.history_.append((stats.iterations, self.k_, a))
        return self.k_
