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
        arm_by_name = self._open_studies(session, close_running=True)
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

    def _open_studies(self, session: Session, close_running: bool) -> dict[str, Arm]:
        self.session_ = session
        self.studies_ = {}
        old: list[dict[str, Any]] = []
        for i, arm in enumerate(self.arms):
            probe = session.study(arm.name, None)
            if close_running:
                old += session.stored_records(probe)
            self.studies_[arm.name] = session.study(arm.name, self._sampler(i, len(probe.trials)))
        session.records[:0] = old
        self.records_ = session.records  # one list: finish() appends to it
        self._foreign_at, self._foreign_cache = -1e9, []
        return {a.name: a for a in self.arms}

    def _foreign(self, st: dict, max_age: float = 2.0) -> list[dict[str, Any]]:
        """Trials of this round ended by other (`--join`) processes, re-read at most every 2 s."""
        now = time.perf_counter()
        if now - self._foreign_at < max_age:
            return self._foreign_cache
        from optuna.trial import TrialState

        own = {(r["arm"], r["trial"]) for r in self.records_}
        out = []
        for a in st["survivors"]:
            for t in self.studies_[a].get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
                log = t.user_attrs.get("log")
                if (log and (a, t.number) not in own and log.get("pass") == st["pass"]
                        and log.get("round") == st["round"]):
                    out.append(dict(log))
        self._foreign_at, self._foreign_cache = now, out
        return out

    def _merge_foreign(self, st: dict) -> None:
        """At a round's end, adopt the other processes' trials: they count in the UCBs and logs."""
        self._foreign_at = -1e9
        self.records_ += self._foreign(st)
        self._foreign_at = -1e9

    def _used(self, st: dict, arm: str | None = None) -> float:
        recs = [r for r in self.records_ + self._foreign(st) if r.get("pass") == st["pass"]
                and (arm is None or r["arm"] == arm) and r.get("round") == st["round"]]
        return sum(r["duration_s"] for r in recs) if self.budget.seconds else float(len(recs))

    def _pick(self, session: Session, st: dict, arm_by_name: dict[str, Arm]) -> Job | None:
        """Ask the arm furthest behind its share for a configuration (None: every share is used).

        The authors run arms one after another; under a wall-clock round deadline that starves
        the last arms, which then end the round without a reward and are dropped.
        """
        now = time.perf_counter()
        alloc = st["alloc"]
        inflight = session.pool.busy()
        best, best_frac = None, None
        for a in st["survivors"]:
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
                   extra={"where": {"arm": best, "family": arm_by_name[best].family, "pass": st["pass"],
                                    "round": st["round"]}})

    def join(self, session: Session, poll: float = 0.25) -> "BOASF":
        """Work for a running BOASF controller (`--join`): run trials for the current round's arms
        within their shares; the controller alone allocates, filters and ends the run."""
        from papersuite.errors import UserError

        arm_by_name = self._open_studies(session, close_running=False)
        st = session.load_state()
        if st is None or st.get("done"):
            raise UserError(f"nothing to join: no running BOASF study {session.study_name!r} in this storage")
        self.budget = Budget(st["budget_kind"], st["pass_budget"])  # the controller's units, not ours
        pool = session.pool
        try:
            while True:
                st = session.load_state()
                if st is None or st.get("done"):
                    break
                job = None
                if st.get("alloc") is not None and pool.idle() and set(st["survivors"]) <= set(arm_by_name):
                    t = time.perf_counter()
                    job = self._pick(session, st, arm_by_name)
                    if job is not None:
                        pool.submit(job)
                        job.extra["ask_s"] = time.perf_counter() - t
                if job is None:
                    if pool.busy():
                        for j, res in pool.wait(poll):
                            session.finish(j, res)
                    else:
                        time.sleep(poll)
            session.drive(lambda: None, stop_dispatch=lambda: True)  # let running trials end
        except KeyboardInterrupt:
            raise
        self.state_ = st
        return self

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
        t_round = time.perf_counter() - st.get("round_elapsed", 0.0)
        round_deadline = t_round + st["round_amount"] if self.budget.seconds else None

        def next_job() -> Job | None:
            return self._pick(session, st, arm_by_name)

        stop = (lambda: time.perf_counter() >= round_deadline) if self.budget.seconds else (lambda: False)
        try:
            session.drive(next_job, stop_dispatch=stop, deadline=deadline)
        finally:
            st["round_elapsed"] = time.perf_counter() - t_round
        self._merge_foreign(st)
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
        from papersuite.progress import info

        ok = [x["score"] for x in self.records_ if x["status"] == "ok"]
        info(f"round {r + 1}/{R}: {len(self.records_)} trials, best {max(ok) if ok else float('nan'):.4f}; "
             f"kept {', '.join(kept)}" + (f"; dropped {', '.join(a for a in survivors if a not in kept)}"
                                          if len(kept) < len(survivors) else ""))
