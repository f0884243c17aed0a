"""Discrete-event simulation of recovery strategies on thousands of GPUs (labelled a simulation).

Failures are Poisson per GPU (default: Llama 3, 419 interruptions in 54 days on 16,384 GPUs) or
come from a trace; a failed unit (one TP group) returns after `repair_s`. Step times come from a
FLOP model (6 * params * tokens at a device speed and MFU) fed into Eq. 9 / 11 / 13; transitions
from link bandwidth and stated restart costs. Strategies: reroute (~ReCycle), replan (~Oobleck),
redundant (~Bamboo), restart (checkpoint-restart), and adaptive (Eq. 8 at every event).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .estimator import eq13_reroute
from .selector import eq8_score

LLAMA3_RATE = 419 / (54 * 86400 * 16384)  # failures per GPU-second


@dataclass
class SimConfig:
    params: float = 70e9
    layers: int = 80
    seq_len: int = 4096
    tp: int = 8
    peak_flops: float = 989e12  # H100 dense BF16
    mfu: float = 0.4
    link_GBps: float = 50.0
    rebuild_s: float = 10.0
    restart_s: float = 600.0  # relaunch + rendezvous + checkpoint load
    ckpt_interval_s: float = 1800.0
    repair_s: float = 4 * 3600.0
    redundant_overhead: float = 0.3  # Bamboo: redundant work in bubbles, paid always
    rate_per_gpu_s: float = LLAMA3_RATE
    min_pipeline_frac: float = 0.5  # a re-planned pipeline needs >= this share of stages (memory)


class Job:
    """Layout and step-time model of one scale."""

    def __init__(self, gpus: int, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.tp = max(1, min(cfg.tp, gpus // 8))  # small clusters keep >= 8 failure units
        self.units = max(2, gpus // self.tp)
        self.pp = int(min(8, max(2, self.units // 4)))
        self.dp = self.units // self.pp
        self.m = 2 * self.pp  # micro-batches per pipeline
        self.batch = self.dp * self.m  # one sequence per micro-batch
        flops_mb_stage = 6 * cfg.params * cfg.seq_len / self.pp
        self.t_stage = flops_mb_stage / (self.tp * cfg.peak_flops * cfg.mfu)  # t_f + t_b per micro-batch
        self.t_ff = (self.pp + self.m - 1) * self.t_stage
        self.stage_bytes = cfg.params * 16 / self.pp / self.tp  # bf16 params + grads + fp32 Adam, per GPU

    def slot(self, unit: int) -> tuple[int, int]:
        return divmod(unit, self.pp)  # (pipeline, stage)

    def thr_ff(self) -> float:
        return self.batch / self.t_ff

    def t_reroute(self, failed: set[int]) -> float | None:
        per_stage = [0] * self.pp
        for u in failed:
            if u < self.dp * self.pp:
                per_stage[self.slot(u)[1]] += 1
        t = eq13_reroute(self.pp, self.m, self.dp, per_stage, self.t_stage / 3, 2 * self.t_stage / 3)
        return t

    def t_replan(self, failed: set[int]) -> float | None:
        """Eq. 11 over shortened pipelines: layers re-spread, micro-batches proportional to length."""
        lengths = [self.pp] * self.dp
        for u in failed:
            if u < self.dp * self.pp:
                lengths[self.slot(u)[0]] -= 1
        keep = [k for k in lengths if k >= max(1, math.ceil(self.cfg.min_pipeline_frac * self.pp))]
        if not keep:
            return None
        total = self.batch
        n = sum(keep)
        worst = 0.0
        for k in keep:
            m_p = max(1.0, total * k / n)  # fractional shares: the long-run average of remainders
            worst = max(worst, (k + m_p - 1) * self.t_stage * self.pp / k)
        return worst

    def t_redundant(self, failed: set[int]) -> float | None:
        """Bamboo: neighbour runs the dead stage too; two adjacent failures in a pipeline are fatal."""
        base = self.t_ff * (1 + self.cfg.redundant_overhead)
        worst = 0.0
        slots = {self.slot(u) for u in failed if u < self.dp * self.pp}
        for p, s in slots:
            if (p, (s + 1) % self.pp) in slots:
                return None
            worst = max(worst, self.m * self.t_stage)
        return base + worst


def _transition(job: Job, kind: str, lost_work: float) -> float:
    cfg = job.cfg
    xfer = job.stage_bytes / (cfg.link_GBps * 1e9)
    return {"reroute": cfg.rebuild_s, "redundant": cfg.rebuild_s, "replan": cfg.rebuild_s + xfer,
            "restart": cfg.restart_s + lost_work}[kind]


def _events(job: Job, horizon: float, rng: np.random.Generator, trace: list[float] | None):
    """(time, 'fail'|'repair', unit) sorted; failures pick a random healthy unit."""
    rate = job.cfg.rate_per_gpu_s * job.tp * job.units
    times = list(trace) if trace is not None else []
    if trace is None:
        t = 0.0
        while True:
            t += rng.exponential(1 / rate)
            if t >= horizon:
                break
            times.append(t)
    return sorted(times), rate


def run_strategy(job: Job, strategy: str, fail_times: list[float], horizon: float, rng_seed: int,
                 window: str = "mtbf") -> dict:
    """Replay one failure trace under one strategy; returns samples/s and the degraded-time gap."""
    cfg = job.cfg
    rng = np.random.default_rng(rng_seed)
    failed: set[int] = set()
    repairs: list[tuple[float, int]] = []
    mode = "redundant" if strategy == "redundant" else "replan" if strategy == "restart" else "reroute"
    t_now, busy_until, samples, last_ckpt = 0.0, 0.0, 0.0, 0.0
    degraded_time, degraded_gap = 0.0, 0.0
    events = [(t, "fail") for t in fail_times]
    choices: dict[str, int] = {}

    def step_time(m: str, f: set[int]) -> float | None:
        if not f:
            return job.t_ff * (1 + cfg.redundant_overhead) if m == "redundant" else job.t_ff
        return {"reroute": job.t_reroute, "replan": job.t_replan, "redundant": job.t_redundant}[m](f)

    def advance(t_to: float) -> None:
        nonlocal t_now, samples, degraded_time, degraded_gap, last_ckpt
        run_from = max(t_now, busy_until)
        if t_to > run_from:
            ts = step_time(mode, failed)
            thr = job.batch / ts if ts else 0.0
            samples += thr * (t_to - run_from)
            if failed:
                degraded_time += t_to - run_from
                degraded_gap += (1 - thr / job.thr_ff()) * (t_to - run_from)
            # checkpoints are taken every ckpt_interval of running time
            last_ckpt = max(last_ckpt, run_from + math.floor((t_to - run_from) / cfg.ckpt_interval_s)
                            * cfg.ckpt_interval_s)
        t_now = t_to

    def recover(t: float, f_new: set[int], grow: bool) -> None:
        nonlocal mode, busy_until
        lost = 0.0 if grow else max(0.0, t - max(last_ckpt, busy_until))
        options = {}
        allowed = {"reroute": ["reroute", "restart"], "replan": ["replan", "restart"],
                   "redundant": ["redundant", "restart"], "restart": ["restart"],
                   "adaptive": ["reroute", "replan", "restart"]}[strategy]
        for kind in allowed:
            layout = "replan" if kind == "restart" else kind
            ts = step_time(layout, f_new)
            if ts is None:
                continue
            trans = _transition(job, kind, lost)
            options[kind] = (ts, trans, layout)
        if not options:
            options["restart"] = (job.t_ff, _transition(job, "restart", lost), "replan")
        if strategy == "adaptive":
            alive = job.units - len(f_new)
            d = 1 / (cfg.rate_per_gpu_s * job.tp * max(alive, 1))  # expected time to the next failure
            scored = {k: eq8_score(job.batch, v[0], v[1], d) or 0.0 for k, v in options.items()}
            kind = max(scored, key=lambda k: (scored[k], -options[k][1]))
        else:
            kind = next(k for k in allowed if k in options)
        ts, trans, layout = options[kind]
        choices[kind] = choices.get(kind, 0) + 1
        mode = layout
        busy_until = max(busy_until, t) + trans

    queue = sorted(events)
    i = 0
    while i < len(queue) or repairs:
        nxt_fail = queue[i][0] if i < len(queue) else math.inf
        nxt_rep = repairs[0][0] if repairs else math.inf
        t = min(nxt_fail, nxt_rep)
        if t >= horizon:
            break
        advance(t)
        if nxt_rep <= nxt_fail:
            _, unit = repairs.pop(0)
            failed.discard(unit)
            recover(t, set(failed), grow=True)
        else:
            i += 1
            healthy = [u for u in range(job.dp * job.pp) if u not in failed]
            if not healthy:
                continue
            unit = int(rng.choice(healthy))
            failed.add(unit)
            repairs.append((t + cfg.repair_s, unit))
            repairs.sort()
            recover(t, set(failed), grow=False)
    advance(horizon)
    return {"throughput": samples / horizon, "degraded_s": degraded_time,
            "post_recovery_gap": degraded_gap / degraded_time if degraded_time else 0.0, "choices": choices}


def single_failure_gap(job: Job) -> dict[str, float | None]:
    """Post-recovery throughput gap to failure-free after one failed unit, per layout kind."""
    out: dict[str, float | None] = {}
    for kind, fn in (("reroute", job.t_reroute), ("replan", job.t_replan), ("redundant", job.t_redundant)):
        t = fn({0})
        out[kind] = None if t is None else 1 - job.t_ff / t
    feasible = [v for v in out.values() if v is not None]
    out["adaptive"] = min(feasible) if feasible else None
    return out


STRATEGIES = ("reroute", "replan", "redundant", "restart", "adaptive")


def simulate(gpus: list[int], days: float, traces: int, seed: int, cfg: SimConfig,
             trace_times: list[float] | None = None) -> dict:
    horizon = days * 86400
    scales = []
    for n in gpus:
        job = Job(n, cfg)
        acc: dict[str, list[dict]] = {s: [] for s in STRATEGIES}
        n_fail = []
        for k in range(traces if trace_times is None else 1):
            rng = np.random.default_rng(seed * 7919 + k)
            times, _ = _events(job, horizon, rng, trace_times)
            n_fail.append(len(times))
            for s in STRATEGIES:
                acc[s].append(run_strategy(job, s, times, horizon, seed * 104729 + k))
        thr = {s: float(np.mean([r["throughput"] for r in acc[s]])) for s in STRATEGIES}
        gap = {s: float(np.mean([r["post_recovery_gap"] for r in acc[s] if r["degraded_s"] > 0] or [0.0]))
               for s in STRATEGIES}
        choices: dict[str, int] = {}
        for r in acc["adaptive"]:
            for kk, v in r["choices"].items():
                choices[kk] = choices.get(kk, 0) + v
        best_fixed = max((s for s in STRATEGIES if s != "adaptive"), key=lambda s: thr[s])
        scales.append({
            "gpus": n, "layout": {"tp": job.tp, "pp": job.pp, "dp": job.dp, "micro_batches": job.m},
            "failures_mean": float(np.mean(n_fail)), "failure_free_throughput": job.thr_ff(),
            "throughput": thr, "post_recovery_gap": gap,
            "adaptive_vs": {s: thr["adaptive"] / thr[s] for s in STRATEGIES if s != "adaptive" and thr[s] > 0},
            "best_fixed": best_fixed,
            "single_failure_gap": single_failure_gap(job), "adaptive_choices": choices})
    return {"simulation": True, "days": days, "traces": traces, "config": asdict(cfg),
            "paper": {"post_recovery_gap_32": 0.11, "vs_oobleck": 1.229, "vs_recycle": 1.355}, "scales": scales}
