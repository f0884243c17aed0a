"""Eq. 8: pick the candidate with the most samples per second over the window D.

score = (B / t_step) * (D - t_transition) / D. A candidate whose transition outlasts the window is
unusable (no negative scores). Ties: smaller transition, then the strategy name (a deterministic
choice, not a paper rule). The rule is not "minimum step time".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Candidate:
    strategy: str
    feasible: bool
    t_step_s: float | None = None
    t_transition_s: float | None = None
    score: float | None = None
    reason: str = ""
    possible: bool = True  # structurally possible (a forced strategy ignores the window)
    plan: Any = field(default=None, repr=False)
    extra: dict = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict:
        d = {"strategy": self.strategy, "feasible": self.feasible, "t_step_s": self.t_step_s,
             "t_transition_s": self.t_transition_s, "score": self.score, "reason": self.reason}
        d.update(self.extra)
        return d


def eq8_score(global_batch: float, t_step: float, t_transition: float, window: float) -> float | None:
    """Mean samples/s until the next failure; None when the transition eats the whole window."""
    if window <= t_transition or t_step <= 0:
        return None
    return (global_batch / t_step) * (window - t_transition) / window


def score_all(cands: list[Candidate], global_batch: float, window: float) -> list[Candidate]:
    for c in cands:
        c.possible = c.possible and c.feasible
        if not c.feasible:
            c.score = None
            continue
        c.score = eq8_score(global_batch, c.t_step_s, c.t_transition_s, window)
        if c.score is None:
            c.feasible = False
            c.reason = (c.reason + "; " if c.reason else "") + f"transition {c.t_transition_s:.3g}s >= window {window:.3g}s"
    return cands


def choose(cands: list[Candidate], forced: str | None = None) -> Candidate | None:
    """Eq. 8 argmax among feasible candidates, or the forced strategy if it is feasible."""
    if forced is not None:
        ok = [c for c in cands if c.strategy == forced and c.possible]
        return ok[0] if ok else None
    ok = [c for c in cands if c.feasible and c.score is not None]
    if not ok:
        return None
    return max(ok, key=lambda c: (c.score, -c.t_transition_s, [-ord(ch) for ch in c.strategy]))
