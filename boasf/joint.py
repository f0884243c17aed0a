"""The same-space baselines: one optuna study over the joint conditional space (family first).

`--method tpe` uses `TPESampler` (optionally `multivariate=True, group=True`), `--method random`
uses `RandomSampler`; both score configurations with the same pipeline builder, folds and metric
as BOASF, through the same worker pool.
"""
from __future__ import annotations

import time
from typing import Any

from boasf.search import Budget, Session, derived_seed
from boasf.space import suggest_joint
from boasf.workers import Job


class JointSearch:
    """Plain optuna search over every family's space at once (hyperparameters here; `run` searches)."""

    def __init__(self, families: list[str], budget: Budget, *, sampler: str = "tpe", multivariate: bool = False,
                 n_startup: int = 10, random_state: int = 0):
        self.families = families
        self.budget = budget
        self.sampler = sampler
        self.multivariate = multivariate
        self.n_startup = n_startup
        self.random_state = random_state

    def _make_sampler(self, n_before: int):
        import optuna

        seed = derived_seed(self.random_state, 104729, n_before)
        if self.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True, n_startup_trials=self.n_startup,
                                          multivariate=self.multivariate, group=self.multivariate)

    def run(self, session: Session) -> "JointSearch":
        name = session.method
        probe = session.study(name, None)
        session.records[:0] = session.stored_records(probe)
        study = session.study(name, self._make_sampler(len(probe.trials)))
        self.study_ = study
        self.records_ = session.records
        st = session.load_state() or {"pass": -1, "rounds": []}
        session.elapsed_before = float(st.get("elapsed_s", 0.0))
        if st.get("done", True):
            st.update({"pass": st["pass"] + 1, "pass_budget": self.budget.amount, "budget_kind": self.budget.kind,
                       "pass_start_s": session.elapsed_before, "done": False})
            session.save_state(st)
        left = st["pass_budget"] - (session.clock() - st["pass_start_s"] if self.budget.seconds else
                                    sum(1 for r in self.records_ if r.get("pass") == st["pass"]))
        deadline = time.perf_counter() + left
        started = [0]

        def next_job() -> Job | None:
            if not self.budget.seconds and started[0] >= left:
                return None
            started[0] += 1
            trial = study.ask()
            family, params = suggest_joint(trial, self.families)
            return Job(family, params, tag=(study, trial),
                       extra={"where": {"arm": family, "family": family, "pass": st["pass"], "round": 0}})

        try:
            session.drive(next_job, stop_dispatch=lambda: False, deadline=deadline if self.budget.seconds else None)
        except KeyboardInterrupt:
            session.save_state(st)
            raise
        st["done"] = True
        session.save_state(st)
        return self
