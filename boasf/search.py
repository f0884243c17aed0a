"""What every search method shares: budgets, optuna storage, the trial loop and the trial log.

A method (BOASF in `bandit.py`, the joint-space baselines in `joint.py`) only decides which
configuration to try next; `Session.drive` feeds those to the worker pool, and `Session.finish`
records each ended trial in its optuna study (user attribute `log`), in `trials.jsonl` and in
memory. Studies live in optuna RDB / journal storage, so the same command resumes them.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from papersuite.errors import UserError

from boasf.workers import Job, WorkerPool

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True)
class Budget:
    """Resource of a run: wall-clock seconds (the paper) or a trial count (reproducible)."""

    kind: str  # "seconds" | "trials"
    amount: float

    @property
    def seconds(self) -> bool:
        return self.kind == "seconds"


def parse_budget(text: str) -> float:
    """`90`, `90s`, `2m`, `1h`, `1.5m` -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([smh]?)\s*", str(text).lower())
    if not m:
        raise UserError(f"cannot read --budget {text!r}; write e.g. 90, 90s, 2m or 1h")
    return float(m.group(1)) * _UNITS[m.group(2)]


def open_storage(url: str):
    """optuna storage from a URL: sqlite:///..., postgresql://..., or journal:PATH."""
    import optuna

    try:
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            path = Path(url[len("journal:"):])
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        storage = optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
        if url.startswith("sqlite"):
            _fast_sqlite(storage)
        storage.get_all_studies()  # touch it: an unreachable server fails here, not mid-run
        return storage
    except Exception as e:  # optuna/sqlalchemy raise many types for a bad URL
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot open --storage {url!r}: {msg[:200]}") from None


def _fast_sqlite(storage) -> None:
    """WAL journal, fsync at checkpoints only: a commit costs ~0.1 ms instead of ~9 ms, which is most
    of the optimiser's per-trial overhead (a crash can lose the last trials, never corrupt the file)."""
    from sqlalchemy import event

    engine = storage.engine

    @event.listens_for(engine, "connect")
    def _pragmas(conn, _record):  # noqa: ANN001
        cur = conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    engine.dispose()


def derived_seed(*parts: int) -> int:
    import numpy as np

    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def quiet_optuna() -> None:
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


@dataclass
class Session:
    """One invocation's shared machinery: pool, storage, clock, log and progress callback."""

    pool: WorkerPool
    storage: Any
    study_name: str
    method: str
    fingerprint: dict[str, Any]
    log_path: Path | None = None
    on_trial: Callable[[dict[str, Any]], None] | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    elapsed_before: float = 0.0
    overhead_s: list[float] = field(default_factory=list)
    search_end_s: float = 0.0

    def __post_init__(self) -> None:
        import optuna

        quiet_optuna()
        self._t0 = time.perf_counter()
        self.controller = optuna.create_study(study_name=f"{self.study_name}/controller", storage=self.storage,
                                              load_if_exists=True, direction="maximize")
        old = self.controller.user_attrs.get("fingerprint")
        if old is None:
            self.controller.set_user_attr("fingerprint", self.fingerprint)
        elif old != self.fingerprint:
            diff = [k for k in self.fingerprint if old.get(k) != self.fingerprint[k]]
            what = "other data" if "data_sha256" in diff else "other settings (" + ", ".join(diff) + ")"
            raise UserError(f"study {self.study_name!r} in this storage was made with {what}; "
                            f"use another --out-dir or --study-name")

    # -- controller state, persisted in the controller study's user attributes ------------------
    def load_state(self) -> dict[str, Any] | None:
        st = self.controller.user_attrs.get(self.method)
        return json.loads(json.dumps(st)) if st is not None else None

    def save_state(self, state: dict[str, Any]) -> None:
        state["elapsed_s"] = self.clock()
        self.controller.set_user_attr(self.method, state)

    def clock(self) -> float:
        """Seconds spent on this study over every session (resumes count earlier time)."""
        return self.elapsed_before + time.perf_counter() - self._t0

    def session_seconds(self) -> float:
        return time.perf_counter() - self._t0

    def study(self, suffix: str, sampler):
        import optuna

        return optuna.create_study(study_name=f"{self.study_name}/{suffix}", storage=self.storage,
                                   sampler=sampler, direction="maximize", load_if_exists=True)

    def stored_records(self, study) -> list[dict[str, Any]]:
        """Trial logs already in a study (earlier sessions); RUNNING leftovers are closed as failed."""
        from optuna.trial import TrialState

        out = []
        for t in study.get_trials(deepcopy=False):
            if t.state == TrialState.RUNNING:
                try:
                    study.tell(t.number, state=TrialState.FAIL)
                except Exception:  # another process may own it (join); leave it
                    pass
                continue
            if "log" in t.user_attrs:
                out.append(dict(t.user_attrs["log"]))
        return out

    # -- the trial loop --------------------------------------------------------------------------
    def drive(self, next_job: Callable[[], Job | None], *, stop_dispatch: Callable[[], bool],
              deadline: float | None = None) -> None:
        """Keep workers busy with `next_job()` until it has nothing left and nothing is running;
        at `deadline` (perf_counter seconds) running trials are stopped and logged `timeout`."""
        pool = self.pool

        def hard_stop() -> bool:
            return deadline is not None and time.perf_counter() >= deadline

        while True:
            while pool.idle() and not stop_dispatch() and not hard_stop():
                t = time.perf_counter()
                job = next_job()
                if job is None:
                    break
                pool.submit(job)
                job.extra["ask_s"] = time.perf_counter() - t
            if not pool.busy():
                return
            if hard_stop():
                for job, res in pool.cancel("stopped at the end of the budget"):
                    self.finish(job, res)
                return
            left = 0.25 if deadline is None else min(0.25, max(0.0, deadline - time.perf_counter()))
            for job, res in pool.wait(left):
                self.finish(job, res)

    def finish(self, job: Job, res: dict[str, Any]) -> dict[str, Any]:
        """Record an ended trial everywhere: optuna study, trials.jsonl, memory, progress."""
        from optuna.trial import TrialState

        t = time.perf_counter()
        study, trial = job.tag
        end = self.clock()
        rec = {"method": self.method, **job.extra.get("where", {}), "trial": trial.number,
               "params": job.params, "status": res["status"], "score": res.get("score"),
               "fold_scores": res.get("fold_scores", []), "error": res.get("error"),
               "t_start": round(end - res["duration_s"], 4), "t_end": round(end, 4),
               "duration_s": round(res["duration_s"], 4), "fit_s": round(res.get("fit_s", res["duration_s"]), 4),
               "worker": job.worker}
        trial.set_user_attr("log", rec)
        if rec["status"] == "ok":
            study.tell(trial, rec["score"])
        else:
            study.tell(trial, state=TrialState.FAIL)
        self.records.append(rec)
        if self.log_path is not None:
            with open(self.log_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec) + "\n")
        self.overhead_s.append(job.extra.get("ask_s", 0.0) + time.perf_counter() - t)
        if self.on_trial:
            self.on_trial(rec)
        return rec
