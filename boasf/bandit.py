"""BOASF: rounds of per-arm TPE, then adaptive successive filtering of the arms.

Each round the surviving arms get softmax shares of the round's resource (seconds of worker time,
or trials with `--budget-trials`); every arm runs its own warm `optuna.Study` (ask/tell) inside its
share; between rounds arms are kept at random with a min-max normalised UCB probability. The answer
is the best configuration any arm ever found, including arms dropped on the way.

Controller state (pass, round, survivors, allocation, round log) lives in the controller study's
user attributes, so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from boasf.filtering import filter_arms, integer_allocation, softmax_shares, ucb
from boasf.search import Budget, Session, derived_seed
from boasf.space import Arm
from boasf.workers import Job


class BOASF:
    """Bandit over arms with TPE inside each (hyperparameters here; `run` does the search)."""

    def __init__(self, arms: list[Arm], budget: Budget, *, rounds: int = 3, ucb_c: float = 2.0,
                 ucb_bonus: str = "log2", arm_score: str = "mean-ucb", temperature: float | str = "paper",
                 filtering: bool = True, allocation: str = "softmax", inner: str = "tpe", n_startup: int = 5,
                 random_state: int = 0):
        self.arms = arms
        self.budget = budget
        self.rounds = rounds
        self.ucb_c = ucb_c
        self.ucb_bonus = ucb_bonus
        self.arm_score = arm_score
        self.temperature = temperature
        self.filtering = filtering
        self.allocation = allocation
        self.inner = inner
        self.n_startup = n_startup
        self.random_state = random_state

    # -- arm scores ------------------------------------------------------------------------------
    def _rewards(self, arm: str) -> list[float]:
        return [r["score"] for r in self.records_ if r["arm"] == arm and r["status"] == "ok"]

    def arm_scores(self, arms: list[str]) -> dict[str, float]:
        """UCB per arm; an arm with no reward scores just below the weakest rewarded arm (the
        authors' 0 would rank it first for negative metrics such as log loss)."""
        scores = {a: ucb(self._rewards(a), self.ucb_c, self.ucb_bonus, self.arm_score) for a in arms}
        rewarded = [scores[a] for a in arms if self._rewards(a)]
        if rewarded:
            floor = min(rewarded) - 1e-6
            scores = {a: (scores[a] if self._rewards(a) else floor) for a in arms}
        return scores

    def _sampler(self, idx: int, n_before: int):
        import optuna

        seed = derived_seed(self.random_state, idx, n_before)
        if self.inner == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        # multivariate: one density fit per trial instead of one per parameter (about half the
        # ask cost); an arm's space is flat, so it is the plain joint TPE of its parameters
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True, n_startup_trials=self.n_startup,
                                          multivariate=True)

    # -- the search ------------------------------------------------------------------------------
    def run(self, session: Session) -> "BOASF":
        self.session_ = session
        arm_by_name = {a.name: a for a in self.arms}
        self.studies_ = {}
        self.records_: list[dict[str, Any]] = []
        for i, arm in enumerate(self.arms):
            probe = session.study(arm.name, None)
            old = session.stored_records(probe)
            self.records_ += old
            self.studies_[arm.name] = session.study(arm.name, self._sampler(i, len(probe.trials)))
        session.records[:0] = self.records_
        self.records_ = session.records  # one list: finish() appends to it

        st = session.load_state()
        if st is not None:
            session.elapsed_before = float(st.get("elapsed_s", 0.0))
        if st is None or st.get("done"):
            survivors = list(arm_by_name) if st is None else [a for a in st["survivors"] if a in arm_by_name]
            st = {"pass": 0 if st is None else st["pass"] + 1, "round": 0, "survivors": survivors or list(arm_by_name),
                  "alloc": None, "rounds": [] if st is None else st["rounds"], "pass_budget": self.budget.amount,
                  "budget_kind": self.budget.kind, "pass_start_s": session.elapsed_before, "done": False,
                  "round_elapsed": 0.0}
            session.save_state(st)
        self.state_ = st
        pass_deadline = time.perf_counter() + st["pass_budget"] - (session.clock() - st["pass_start_s"])
        deadline = pass_deadline if self.budget.seconds else None
        try:
            while st["round"] < self.rounds and not (deadline and time.perf_counter() >= deadline):
                self._run_round(session, st, arm_by_name, deadline)
        except KeyboardInterrupt:
            session.save_state(st)  # the next run resumes this round with its time counted
            raise
        st["done"] = True
        session.save_state(st)
        return self

    def _used(self, st: dict, arm: str | None = None) -> float:
        recs = [r for r in self.records_ if r.get("pass") == st["pass"] and (arm is None or r["arm"] == arm)
                and r.get("round") == st["round"]]
        return sum(r["duration_s"] for r in recs) if self.budget.seconds else float(len(recs))

    def _pass_used(self, session: Session, st: dict) -> float:
        if self.budget.seconds:
            return session.clock() - st["pass_start_s"]
        return float(sum(1 for r in self.records_ if r.get("pass") == st["pass"]))

    def _run_round(self, session: Session, st: dict, arm_by_name: dict[str, Arm], deadline: float | None) -> None:
        r, R = st["round"], self.rounds
        survivors = st["survivors"]
        if st["alloc"] is None:
            remaining = max(0.0, st["pass_budget"] - self._pass_used(session, st))
            scores = self.arm_scores(survivors)
            if self.allocation == "uniform":
                shares = {a: 1.0 / len(survivors) for a in survivors}
            else:
                shares = softmax_shares(scores, self.temperature)
            if self.budget.seconds:
                amount = remaining / (R - r)
                alloc = {a: shares[a] * amount * session.pool.n_jobs for a in survivors}
            else:
                amount = int(remaining) if r == R - 1 else int(remaining) // (R - r)
                alloc = {a: float(v) for a, v in integer_allocation(amount, shares).items()}
            st.update(alloc=alloc, round_amount=amount, round_start_s=session.clock(), round_elapsed=0.0,
                      round_scores=scores, shares=shares)
            session.save_state(st)
        alloc = st["alloc"]
        where_base = {"pass": st["pass"], "round": r}
        t_round = time.perf_counter() - st.get("round_elapsed", 0.0)
        round_deadline = t_round + st["round_amount"] if self.budget.seconds else None

        def next_job() -> Job | None:
            # The arm furthest behind its share goes next (the authors run arms one after another;
            # under a wall-clock round deadline that starves the last arms, which then score 0).
            now = time.perf_counter()
            inflight = session.pool.busy()
            best, best_frac = None, None
            for a in survivors:
                mine = [j for j in inflight if j.extra["where"]["arm"] == a]
                pending = (sum(now - j.started for j in mine) if self.budget.seconds else len(mine))
                used = self._used(st, a) + pending
                if used < alloc[a] - 1e-9 and (best_frac is None or used / alloc[a] < best_frac):
                    best, best_frac = a, used / alloc[a]
            if best is None:
                return None
            study = self.studies_[best]
            trial = study.ask()
            params = arm_by_name[best].suggest(trial)
            return Job(arm_by_name[best].family, params, tag=(study, trial),
                       extra={"where": {"arm": best, "family": arm_by_name[best].family, **where_base}})

        stop = (lambda: time.perf_counter() >= round_deadline) if self.budget.seconds else (lambda: False)
        try:
            session.drive(next_job, stop_dispatch=stop, deadline=deadline)
        finally:
            st["round_elapsed"] = time.perf_counter() - t_round
        after = self.arm_scores(survivors)
        keep_p = {a: 1.0 for a in survivors}
        kept = list(survivors)
        if r < R - 1 and self.filtering and len(survivors) > 1:
            rng = np.random.default_rng(derived_seed(self.random_state, 7919, st["pass"], r))
            kept, keep_p = filter_arms(after, rng)
        st["rounds"].append({"pass": st["pass"], "round": r, "survivors": list(survivors),
                             "budget": st["round_amount"], "ucb_before": st["round_scores"],
                             "shares": st["shares"], "allocated": alloc,
                             "used": {a: self._used(st, a) for a in survivors}, "ucb_after": after,
                             "keep_probability": keep_p, "kept": kept,
                             "dropped": [a for a in survivors if a not in kept], "t_end": session.clock()})
        st.update(round=r + 1, survivors=kept, alloc=None)
        session.save_state(st)
