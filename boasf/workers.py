"""A pool of forked worker processes with a hard per-trial timeout.

Each worker evaluates one configuration at a time with one BLAS/OpenMP thread. A trial that runs
past its cap is killed with its process (SIGTERM, then SIGKILL) and logged `timeout`; a replacement
worker is forked on demand. Workers ignore SIGINT so Ctrl-C reaches only the parent, which then
closes the pool: no orphan processes.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait as mp_wait
from typing import Any


def _worker_main(conn, evaluator) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["OMP_NUM_THREADS"] = "1"
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        family, params = job
        conn.send(evaluator.evaluate(family, params))


@dataclass
class Job:
    """A configuration to score plus whatever the caller needs back when it ends."""

    family: str
    params: dict[str, Any]
    tag: Any = None
    started: float = 0.0
    worker: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class _Slot:
    def __init__(self, ctx, evaluator):
        parent, child = ctx.Pipe()
        self.conn = parent
        self.proc = ctx.Process(target=_worker_main, args=(child, evaluator), daemon=True)
        self.proc.start()
        child.close()
        self.job: Job | None = None

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(1.0)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join(1.0)
        self.conn.close()


class WorkerPool:
    """`submit` jobs while `idle()`, then `wait()` for finished ones (results include timeouts)."""

    def __init__(self, evaluator, n_jobs: int = 1, trial_timeout: float = 60.0):
        self.evaluator = evaluator
        self.n_jobs = max(1, int(n_jobs))
        self.trial_timeout = float(trial_timeout)
        self._ctx = mp.get_context("fork")
        self._slots: list[_Slot | None] = [None] * self.n_jobs
        self._host = socket.gethostname()

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def idle(self) -> int:
        return sum(1 for s in self._slots if s is None or s.job is None)

    def busy(self) -> list[Job]:
        return [s.job for s in self._slots if s is not None and s.job is not None]

    def submit(self, job: Job) -> None:
        for i, s in enumerate(self._slots):
            if s is None or (s.job is None and not s.proc.is_alive()):
                if s is not None:
                    s.kill()
                s = self._slots[i] = _Slot(self._ctx, self.evaluator)
            if s.job is None:
                job.started = time.perf_counter()
                job.worker = f"{self._host}:{s.proc.pid}"
                s.conn.send((job.family, job.params))
                s.job = job
                return
        raise RuntimeError("submit() called with no idle worker")

    def wait(self, timeout: float = 1.0) -> list[tuple[Job, dict[str, Any]]]:
        """Block up to `timeout` s (less if a trial's cap falls earlier); return ended jobs."""
        busy = [s for s in self._slots if s is not None and s.job is not None]
        if not busy:
            return []
        now = time.perf_counter()
        next_cap = min(s.job.started + self.trial_timeout for s in busy) - now
        ready = mp_wait([s.conn for s in busy], timeout=max(0.0, min(timeout, next_cap)))
        done: list[tuple[Job, dict[str, Any]]] = []
        now = time.perf_counter()
        for s in busy:
            job = s.job
            assert job is not None
            if s.conn in ready:
                try:
                    res = s.conn.recv()
                except (EOFError, OSError):
                    res = {"status": "failed", "score": None, "fold_scores": [],
                           "error": f"worker died (exit code {s.proc.exitcode})"}
                    s.kill()
                    self._slots[self._slots.index(s)] = None
                s.job = None
                done.append((job, dict(res, duration_s=now - job.started)))
            elif now - job.started >= self.trial_timeout:
                s.kill()
                self._slots[self._slots.index(s)] = None
                done.append((job, {"status": "timeout", "score": None, "fold_scores": [],
                                   "error": f"killed at the {self.trial_timeout:g} s trial cap",
                                   "duration_s": now - job.started}))
        return done

    def cancel(self, reason: str) -> list[tuple[Job, dict[str, Any]]]:
        """Kill every running trial now (the budget is over); they are reported as `timeout`."""
        done = []
        now = time.perf_counter()
        for i, s in enumerate(self._slots):
            if s is not None and s.job is not None:
                job = s.job
                s.kill()
                self._slots[i] = None
                done.append((job, {"status": "timeout", "score": None, "fold_scores": [], "error": reason,
                                   "duration_s": now - job.started}))
        return done

    def close(self) -> None:
        """Stop every worker: idle ones are asked to exit, busy ones are killed."""
        for i, s in enumerate(self._slots):
            if s is None:
                continue
            if s.job is None and s.proc.is_alive():
                try:
                    s.conn.send(None)
                except (BrokenPipeError, OSError):
                    pass
                s.proc.join(1.0)
            s.kill()
            self._slots[i] = None
