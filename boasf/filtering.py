"""Adaptive successive filtering: Gaussian UCB scores, random keep/drop, softmax resource shares.

Pure functions of the arms' rewards, so the round loop in `bandit.py` stays short and these
formulas can be unit-tested against the paper notes (section 2).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

EMPTY_SD = 1e-5  # the authors' sd for an arm with no reward yet


def ucb(rewards: Sequence[float], c: float = 2.0, bonus: str = "log2", score: str = "mean-ucb") -> float:
    """Gaussian UCB: centre + c * sd / log2(n + 2) (or / sqrt(n)); centre = mean or best reward.

    No rewards: centre 0, sd 1e-5, as in the authors' code.
    """
    x = np.asarray(list(rewards), dtype=float)
    n = len(x)
    if n == 0:
        centre, sd = 0.0, EMPTY_SD
    else:
        centre = float(x.max()) if score == "max-ucb" else float(x.mean())
        sd = float(x.std())  # population sd
    if bonus == "log2":
        div = math.log2(n + 2)
    elif bonus == "sqrt":
        div = math.sqrt(max(n, 1))
    else:
        raise ValueError(f"unknown UCB bonus {bonus!r}")
    return centre + c * sd / div


def keep_probabilities(scores: dict[str, float]) -> dict[str, float]:
    """Min-max normalised scores: best arm 1, worst 0; all equal -> 1/n each."""
    vals = list(scores.values())
    lo, hi = min(vals), max(vals)
    if hi - lo <= 1e-12:
        return {a: 1.0 / len(scores) for a in scores}
    return {a: (s - lo) / (hi - lo) for a, s in scores.items()}


def filter_arms(scores: dict[str, float], rng: np.random.Generator, max_draws: int = 1000
                ) -> tuple[list[str], dict[str, float]]:
    """Keep each arm with its keep probability (independent draws); redraw while nobody survives."""
    p = keep_probabilities(scores)
    arms = list(scores)
    for _ in range(max_draws):
        kept = [a for a in arms if rng.random() < p[a]]
        if kept:
            return kept, p
    return [max(arms, key=lambda a: scores[a])], p  # unreachable unless every p is ~0


def softmax_shares(scores: dict[str, float], temperature: float | str = "paper") -> dict[str, float]:
    """Resource shares. `paper`: softmax of the raw UCBs (temperature 1, near-uniform for scores in
    [0, 1]); a number: softmax of standardised UCBs divided by that temperature."""
    arms = list(scores)
    u = np.array([scores[a] for a in arms], dtype=float)
    if temperature != "paper":
        sd = u.std()
        u = (u - u.mean()) / sd if sd > 1e-12 else np.zeros_like(u)
        u = u / float(temperature)
    e = np.exp(u - u.max())
    return dict(zip(arms, (e / e.sum()).tolist()))


def integer_allocation(total: int, shares: dict[str, float], minimum: int = 1) -> dict[str, int]:
    """Split `total` trials by shares (largest remainder), at least `minimum` each when possible."""
    arms = list(shares)
    base = {a: minimum for a in arms} if total >= minimum * len(arms) else {a: 0 for a in arms}
    rest = total - sum(base.values())
    raw = {a: shares[a] * rest for a in arms}
    alloc = {a: base[a] + int(math.floor(raw[a])) for a in arms}
    left = total - sum(alloc.values())
    for a in sorted(arms, key=lambda a: (-(raw[a] - math.floor(raw[a])), arms.index(a)))[:left]:
        alloc[a] += 1
    return alloc


def round_budgets(total: float, rounds: int) -> list[float]:
    """Equal shares of the budget per round (the authors' default)."""
    return [total / rounds] * rounds
