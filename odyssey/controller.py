"""The local controller (`--launcher local`): holds the TCPStore, watches workers, recovers.

Failure detection never waits on a collective: deaths come from waitpid (`Popen.poll`), hangs
from heartbeats older than `heartbeat_timeout` (the hung worker is SIGKILLed first). At a failure
the controller builds the four candidates from the live profile, scores them with Eq. 8 (or takes
the forced strategy), and publishes a new generation; workers drop stuck work and rebuild groups.
A step commits when every member applied it; every child is killed by pid on exit.
"""
from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from papersuite.errors import UserError

from .estimator import Estimator, Profile
from .faults import Fault
from .layout import Plan, symmetric
from .model import GPTConfig, build_module
from .planner import PlanCache, candidates
from .selector import choose, score_all


class RecoveryImpossible(RuntimeError):
    """No surviving copy and no checkpoint: the run cannot go on (CLI exit 1)."""


@dataclass
class RunConfig:
    dp: int = 2
    pp: int = 2
    layers: int = 8
    d_model: int = 128
    heads: int = 4
    seq_len: int = 64
    micro_batches: int = 8
    global_batch: int = 32
    steps: int = 20
    lr: float = 1e-3
    dtype: str = "float32"
    seed: int = 0
    data: str | None = None
    spares: int = 0
    faults: list[Fault] = field(default_factory=list)
    strategy: str = "adaptive"
    window_s: float | None = None
    mtbf_s: float = 3600.0
    heartbeat_timeout: float = 2.0
    heartbeat_s: float = 0.2
    ckpt_every: int = 0
    ckpt_dir: str | None = None
    ckpt_mode: str = "async"
    resume: bool = False
    threads: int = 1
    run_dir: str | None = None
    memory_bytes: float = float("inf")
    deadline_s: float | None = None  # hard bound on the whole run (tests): then kill every worker

    def gpt(self) -> GPTConfig:
        return GPTConfig(self.layers, self.d_model, self.heads, self.seq_len, 256, self.dtype)

    def validate(self) -> None:
        if self.dp < 1 or self.pp < 1:
            raise UserError(f"--dp and --pp must be >= 1 (got dp={self.dp}, pp={self.pp})")
        if self.pp > self.layers:
            raise UserError(f"--pp {self.pp} exceeds --layers {self.layers}")
        if self.micro_batches < self.dp or self.global_batch < self.micro_batches:
            raise UserError("need dp <= --micro-batches <= --global-batch")
        if self.d_model % self.heads:
            raise UserError(f"--d-model {self.d_model} is not divisible by {self.heads} heads")
        if self.steps < 1:
            raise UserError("--steps must be >= 1")
        if self.strategy not in ("adaptive", "reroute", "replan", "spare", "restart"):
            raise UserError(f"unknown --strategy {self.strategy!r}")
        n = self.dp * self.pp + self.spares
        for f in self.faults:
            if f.rank >= self.dp * self.pp:
                raise UserError(f"--inject {f.spec()}: rank {f.rank} outside the {self.dp}x{self.pp} layout")
            if f.step >= self.steps:
                raise UserError(f"--inject {f.spec()}: step {f.step} >= --steps {self.steps}")
        del n


def initial_profile(cfg: RunConfig) -> Profile:
    """Bytes from the model itself; times a uniform guess until workers report measurements."""
    gpt = cfg.gpt()
    elt = 8 if cfg.dtype == "float64" else 4
    pbytes = [sum(p.numel() for p in build_module(gpt, i, 0).parameters()) * elt for i in range(gpt.n_modules)]
    act = [gpt.seq_len * gpt.d_model * elt * (12 if 0 < i < gpt.n_modules - 1 else 2) for i in range(gpt.n_modules)]
    tf = [1e-3 if 0 < i < gpt.n_modules - 1 else 2e-4 for i in range(gpt.n_modules)]
    return Profile(t_f=tf, t_b=[2 * t for t in tf], param_bytes=pbytes, optim_bytes=[2 * b for b in pbytes],
                   act_bytes=act, boundary_bytes=gpt.seq_len * gpt.d_model * elt, micro_size=1.0,
                   alpha=5e-4, beta=1e-9, memory_bytes=cfg.memory_bytes, rebuild_s=0.05)


class LocalController:
    """Runs one training job on local processes and returns the result record."""

    def __init__(self, cfg: RunConfig, on_step=None) -> None:
        cfg.validate()
        self.cfg = cfg
        self.on_step = on_step
        self.procs: dict[int, subprocess.Popen] = {}

    # -- lifecycle -----------------------------------------------------------------------------
    def run(self) -> dict:
        import torch.distributed as dist

        cfg = self.cfg
        tmp = tempfile.TemporaryDirectory(prefix="odyssey-") if cfg.run_dir is None else None
        self.run_dir = cfg.run_dir or tmp.name
        self.ckpt_dir = cfg.ckpt_dir or os.path.join(self.run_dir, "ckpt")
        self.store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
        try:
            return self._run()
        finally:
            self._kill_all()
            if tmp is not None:
                tmp.cleanup()

    def _kill_all(self) -> None:
        try:
            self.store.set("stop", "1")
        except Exception:  # noqa: BLE001
            pass
        deadline = time.time() + 3.0
        for p in self.procs.values():
            while p.poll() is None and time.time() < deadline:
                time.sleep(0.01)
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()

    def _spawn(self, rank: int, cfg_path: str) -> None:
        env = dict(os.environ, OMP_NUM_THREADS=str(self.cfg.threads), OMP_WAIT_POLICY="PASSIVE")
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        self.procs[rank] = subprocess.Popen(
            [sys.executable, "-m", "odyssey.worker", cfg_path, str(rank), str(self.store.port)],
            env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.run_dir, f"worker-{rank}.log"), "w"))

    # -- main loop -----------------------------------------------------------------------------
    def _run(self) -> dict:
        cfg = self.cfg
        n = cfg.dp * cfg.pp
        wcfg = {"model": cfg.gpt().to_dict(), "global_batch": cfg.global_batch, "micro_batches": cfg.micro_batches,
                "steps": cfg.steps, "lr": cfg.lr, "seed": cfg.seed, "data": cfg.data, "run_dir": self.run_dir,
                "faults": [f.__dict__ for f in cfg.faults], "heartbeat_s": cfg.heartbeat_s, "threads": cfg.threads,
                "ckpt_every": cfg.ckpt_every, "ckpt_dir": self.ckpt_dir, "ckpt_mode": cfg.ckpt_mode}
        cfg_path = os.path.join(self.run_dir, "worker.json")
        Path(cfg_path).write_text(json.dumps(wcfg))
        t_launch = time.perf_counter()
        for r in range(n + cfg.spares):
            self._spawn(r, cfg_path)
        self.spares = list(range(n, n + cfg.spares))
        self.alive = set(range(n + cfg.spares))
        self.profile = initial_profile(cfg)
        self.est = Estimator(self.profile, cfg.global_batch, cfg.micro_batches)
        self.cache = PlanCache()
        self.ckpts: list[dict] = []
        self.ckpt_done: dict[int, dict] = {}
        self.losses: dict[int, float] = {}
        self.commit_t: dict[int, float] = {}
        self.commits: list[tuple[int, float]] = []
        self.failures: list[dict] = []
        self.gen = -1
        plan = symmetric(cfg.dp, cfg.pp, cfg.layers, cfg.micro_batches)
        start = 0
        restore = None
        if cfg.resume:
            restore = self._latest_checkpoint()
            if restore is None:
                raise UserError(f"--resume: no complete checkpoint in {self.ckpt_dir}")
            start = restore["step"]
        self._publish(plan, start, [], restore, calibrate=True)
        t_first_join = None
        step = start
        pending_fail: list[tuple[int, str]] = []
        last_fail_t = None
        while step < cfg.steps:
            if cfg.deadline_s is not None and time.perf_counter() - t_launch > cfg.deadline_s:
                raise TimeoutError(f"run exceeded its {cfg.deadline_s:.0f}s deadline at step {step}")
            dead = self._detect()
            if dead:
                pending_fail = dead
            if pending_fail:
                step, last_fail_t = self._recover(pending_fail, step, last_fail_t)
                pending_fail = []
                continue
            if t_first_join is None and self._all_keys("joined", self.gen):
                t_first_join = time.perf_counter() - t_launch
                self._read_calibration()
            if self._commit_ready(step):
                step += 1
            self._collect_checkpoints()
            time.sleep(0.001)
        self.hashes = self._collect_hashes()
        self._wait_checkpoints()
        return self._result(t_first_join)

    def _publish(self, plan: Plan, start: int, transfers: list, restore: dict | None, calibrate=False) -> None:
        self.gen += 1
        self.plan = plan
        self.members = sorted(set(plan.ranks))
        est = self.est.step_time(plan, with_order=True)
        orders = {str(r): [list(op) for op in ops] for r, ops in est.order.items()}
        msg = {"plan": plan.to_dict(), "members": self.members, "start_step": start, "orders": orders,
               "transfers": transfers, "restore": restore, "calibrate": calibrate}
        self.store.set(f"plan/{self.gen}", json.dumps(msg))
        self.store.set("gen", str(self.gen))
        self.t_publish = time.perf_counter()
        self.predicted_t_step = est.t_step

    def _all_keys(self, prefix: str, gen: int, step: int | None = None) -> bool:
        keys = [f"{prefix}/{gen}/{r}" if step is None else f"{prefix}/{gen}/{step}/{r}" for r in self.members]
        return self.store.check(keys)

    # -- detection -----------------------------------------------------------------------------
    def _detect(self) -> list[tuple[int, str]]:
        out = []
        now = time.time()
        for r in sorted(self.alive):
            p = self.procs[r]
            if p.poll() is not None:
                out.append((r, "kill"))
                continue
            key = f"hb/{r}"
            if self.store.check([key]):
                last = float(self.store.get(key))
                if now - last > self.cfg.heartbeat_timeout:
                    os.kill(p.pid, signal.SIGKILL)  # a hung worker is killed before recovery
                    p.wait()
                    out.append((r, "hang"))
        for r, _ in out:
            self.alive.discard(r)
        return out

    def _commit_ready(self, step: int) -> bool:
        """Two-phase step: all `ready` -> publish commit; all `applied` -> committed."""
        key = f"commit/{step}"
        committed_gen = self.store.get(key).decode() if self.store.check([key]) else None
        if committed_gen != str(self.gen):
            if not self._all_keys("ready", self.gen, step):
                return False
            loss = 0.0
            for r in self.members:
                rep = json.loads(self.store.get(f"ready/{self.gen}/{step}/{r}"))
                loss += rep["loss_sum"]
                self._merge_profile(rep["prof"])
            self.pending_loss = loss / self.cfg.global_batch
            self.store.set(key, str(self.gen))
        if not self._all_keys("applied", self.gen, step):
            return False
        t = time.perf_counter()
        if step in self.losses:
            self.lost_total += 1
        self.losses[step] = self.pending_loss
        self.commit_t[step] = t
        self.commits.append((step, t))
        if self.on_step:
            self.on_step(step, self.pending_loss)
        return True

    lost_total = 0

    def _merge_profile(self, prof: dict) -> None:
        for key, arr in (("f", self.profile.t_f), ("b", self.profile.t_b)):
            for i, v in prof[key].items():
                arr[int(i)] = float(v)

    def _read_calibration(self) -> None:
        if self.store.check(["calib"]):
            c = json.loads(self.store.get("calib"))
            self.profile.alpha, self.profile.beta = c["alpha"], c["beta"]
        keys = [f"rebuild/{r}" for r in self.members]
        if self.store.check(keys):
            self.profile.rebuild_s = max(float(self.store.get(k)) for k in keys)

    # -- checkpoints ---------------------------------------------------------------------------
    def _collect_checkpoints(self) -> None:
        every = self.cfg.ckpt_every
        if not every:
            return
        for s in range(every, self.cfg.steps + 1, every):
            if s in self.ckpt_done:
                continue
            keys = [f"ckpt/{s}/{r}" for r in self.members]
            if not self.store.check(keys):
                continue
            reps = {r: json.loads(self.store.get(f"ckpt/{s}/{r}")) for r in self.members}
            modules = {str(i): rep["path"] for rep in reps.values() for i in rep["modules"]}
            if len(modules) < self.cfg.gpt().n_modules:
                continue
            marker = {"step": s, "modules": modules}
            Path(self.ckpt_dir, f"step-{s}").mkdir(parents=True, exist_ok=True)
            Path(self.ckpt_dir, f"step-{s}", "COMPLETE.json").write_text(json.dumps(marker))
            self.ckpt_done[s] = marker
            self.ckpts.append({"step": s, "blocking_s": max(r["blocking_s"] for r in reps.values()),
                               "total_s": max(r["total_s"] for r in reps.values())})

    def _wait_checkpoints(self) -> None:
        if not self.cfg.ckpt_every:
            return
        self.store.set("stop", "1")  # workers drain pending saves, then report and exit
        deadline = time.time() + 30
        while time.time() < deadline and any(p.poll() is None for r, p in self.procs.items() if r in self.alive):
            self._collect_checkpoints()
            time.sleep(0.01)
        self._collect_checkpoints()

    def _latest_checkpoint(self) -> dict | None:
        best = None
        for m in Path(self.ckpt_dir).glob("step-*/COMPLETE.json") if Path(self.ckpt_dir).is_dir() else []:
            d = json.loads(m.read_text())
            if best is None or d["step"] > best["step"]:
                best = d
        return best

    # -- recovery ------------------------------------------------------------------------------
    def _recover(self, dead: list[tuple[int, str]], step: int, last_fail_t: float | None) -> tuple[int, float]:
        t_detect = time.perf_counter()
        cfg = self.cfg
        time.sleep(0.02)  # let a commit vote in flight land, then re-check more deaths
        more = self._detect()
        dead = dead + more
        # a step whose commit was published is committed: survivors apply it before moving on
        key = f"commit/{step}"
        if self.store.check([key]) and self.store.get(key).decode() == str(self.gen):
            survivors = [r for r in self.members if r in self.alive]
            deadline = time.time() + 5
            while time.time() < deadline and not self.store.check([f"applied/{self.gen}/{step}/{r}" for r in survivors]):
                time.sleep(0.001)
            self.losses[step] = self.pending_loss
            self.commit_t[step] = time.perf_counter()
            self.commits.append((step, self.commit_t[step]))
            step += 1
        dead_ranks = [r for r, _ in dead]
        spares = [r for r in self.spares if r in self.alive]
        self._collect_checkpoints()
        ckpt = self._latest_checkpoint()
        step_times = self._step_times()
        t_ff = statistics.median(step_times) if step_times else self.predicted_t_step
        ckpt_bytes = sum(a + b for a, b in zip(self.profile.param_bytes, self.profile.optim_bytes))
        save_rate = (ckpt_bytes / max(c["total_s"] for c in self.ckpts)) if self.ckpts else 1e8
        restart_s = self.profile.rebuild_s + ckpt_bytes / save_rate
        since = None if ckpt is None else step - ckpt["step"]
        window, source = self._window(last_fail_t)
        cands = candidates(self.plan, dead_ranks, spares, self.est, cfg.layers, cfg.micro_batches, t_ff, restart_s,
                           since, self.cache)
        score_all(cands, cfg.global_batch, window)
        forced = None if cfg.strategy == "adaptive" else cfg.strategy
        pick = choose(cands, forced)
        if pick is None and forced is not None:
            pick = choose(cands)  # the forced strategy is impossible: fall back to Eq. 8
        if pick is None:
            raise RecoveryImpossible(f"failure of ranks {dead_ranks} at step {step}: no surviving copy and no checkpoint")
        fault_at = [json.loads(self.store.get(f"fault_at/{r}")) for r in dead_ranks if self.store.check([f"fault_at/{r}"])]
        detect_s = max(0.0, time.time() - (time.perf_counter() - t_detect) - min(f["t"] for f in fault_at)) \
            if fault_at else None
        restore = None
        new_start = step
        transfers: list = []
        if pick.strategy == "restart":
            restore = ckpt
            new_start = ckpt["step"]
        elif pick.strategy in ("replan", "spare"):
            transfers = sorted([dst, mod, src] for dst, lst in pick.extra.get("transfers", {}).items()
                               for mod, src in lst)
            transfers = [[int(d), m, s] for d, m, s in transfers]
        for r in pick.plan.ranks:
            if r in self.spares:
                self.spares.remove(r)
        self._publish(pick.plan, new_start, transfers, restore)
        self.failures.append({
            "kind": "+".join(k for _, k in dead), "rank": dead_ranks[0] if len(dead_ranks) == 1 else dead_ranks,
            "step": step, "detect_s": detect_s, "strategy": pick.strategy, "window_s": window,
            "window_source": source, "candidates": [c.as_dict() for c in cands], "resume_step": new_start,
            "predicted_t_step_s": pick.t_step_s, "_t": t_detect})
        return new_start, t_detect

    def _window(self, last_fail_t: float | None) -> tuple[float, str]:
        if self.cfg.window_s is not None:
            return self.cfg.window_s, "--window-s"
        if last_fail_t is not None:
            return time.perf_counter() - last_fail_t, "observed inter-failure time"
        return self.cfg.mtbf_s, "--mtbf-s"

    def _step_times(self) -> list[float]:
        out = []
        for (s0, t0), (s1, t1) in zip(self.commits, self.commits[1:]):
            if s1 == s0 + 1:
                out.append(t1 - t0)
        return out

    def _result(self, t_first_join: float | None) -> dict:
        import hashlib

        times = self._step_times()
        med = statistics.median(times) if times else 0.0
        for f in self.failures:
            s = f["step"]
            t_fault_commit = next((t for st, t in self.commits if st == s and t > f["_t"]), None)
            t_before = max((t for st, t in self.commits if t < f["_t"]), default=None)
            f["downtime_s"] = (t_fault_commit - t_before - med) if (t_fault_commit and t_before) else None
            f["lost_steps"] = max(0, s - f["resume_step"])
            f["measured_t_step_s"] = self._post_step(f["_t"])
            del f["_t"]
        cfg = self.cfg
        d = {k: v for k, v in cfg.__dict__.items() if k != "faults"}
        d["faults"] = [f.spec() for f in cfg.faults]
        return {"config": d, "launcher": "local", "completed_steps": len(self.losses),
                "losses": [self.losses[s] for s in sorted(self.losses)], "params_sha256": self._params_hash(hashlib),
                "step_times_s": times, "startup_s": t_first_join, "checkpoints": self.ckpts,
                "failures": self.failures, "final_plan": self.plan.to_dict(), "profile": self.profile.to_dict(),
                "plan_cache_hits": self.cache.hits}

    def _post_step(self, t_fail: float) -> float | None:
        after = [(s, t) for s, t in self.commits if t > t_fail]
        diffs = [t1 - t0 for (s0, t0), (s1, t1) in zip(after, after[1:]) if s1 == s0 + 1]
        return statistics.median(diffs) if diffs else None

    def _collect_hashes(self) -> dict[int, str]:
        deadline = time.time() + 10
        keys = [f"finished/{self.gen}/{r}" for r in self.members]
        while time.time() < deadline and not self.store.check(keys):
            time.sleep(0.005)
        out: dict[int, str] = {}
        for r in self.members:
            if self.store.check([f"finished/{self.gen}/{r}"]):
                for i, h in json.loads(self.store.get(f"finished/{self.gen}/{r}")).items():
                    out.setdefault(int(i), h)
        return out

    def _params_hash(self, hashlib) -> str | None:
        """sha256 over every module's parameter hash (one replica each), in module order."""
        if len(self.hashes) < self.cfg.gpt().n_modules:
            return None
        return hashlib.sha256("".join(self.hashes[i] for i in sorted(self.hashes)).encode()).hexdigest()
