"""The training loop shared by every method: same batches, same seed, per-step measurements.

A step that runs out of memory is retried from unchanged state (gradients dropped, the RNG state
taken at step start restored) when the method can adapt (chameleon); otherwise the run stops.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from chameleon import memory as memory_mod
from chameleon.manager import MIB, BudgetError
from chameleon.methods import make
from chameleon.workloads import WorkloadConfig, build

MAX_RETRIES = 4
HEADROOM_USE = 0.8  # budget under a capacity: this share of what is left after step 0


class TrainingOOM(RuntimeError):
    """The emulated device ran out of memory and the method cannot adapt."""


@dataclass(frozen=True)
class RunConfig:
    method: str = "chameleon"
    steps: int = 20
    budget_mib: float | None = None
    budget_frac: float | None = None
    device_memory_mib: float | None = None
    host_dir: str | None = None
    device: str = "cpu"
    warmup_steps: int = 2
    stable_steps: int = 3
    change_threshold: float = 0.05
    min_bytes_mib: float = 1.0

    def as_dict(self) -> dict:
        return asdict(self)


def _rng_state(device: str):
    cuda = torch.cuda.get_rng_state_all() if device.startswith("cuda") else None
    return torch.get_rng_state(), cuda


def _restore(state) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])


def train(wcfg: WorkloadConfig, rcfg: RunConfig, on_step: Callable[[dict], None] | None = None) -> dict:
    """Run `rcfg.steps` steps; returns the `run` JSON document (method, config, steps, summary)."""
    mem = memory_mod.for_device(rcfg.device)
    wl = build(wcfg, rcfg.device)
    if rcfg.device_memory_mib:
        mem.set_capacity(rcfg.device_memory_mib)
    budget = int(rcfg.budget_mib * MIB) if rcfg.budget_mib else None
    from_capacity = budget is None and rcfg.budget_frac is None and bool(rcfg.device_memory_mib)
    if from_capacity:  # until the first step shows what persists (optimizer states), 3/4 of it
        budget = int(0.75 * rcfg.device_memory_mib * MIB)
    knobs = {}
    if rcfg.method == "chameleon":
        knobs = dict(warmup_steps=rcfg.warmup_steps, stable_steps=rcfg.stable_steps,
                     change_threshold=rcfg.change_threshold, min_bytes=int(rcfg.min_bytes_mib * MIB))
    elif rcfg.method == "static":
        knobs = dict(min_bytes=int(rcfg.min_bytes_mib * MIB))
    method = make(rcfg.method, wl, mem, rcfg.host_dir, None if from_capacity else budget, **knobs)
    if from_capacity:
        method.set_budget(budget)
    steps: list[dict] = []
    try:
        for i in range(rcfg.steps):
            steps.append(_one_step(i, wl, method, mem, rcfg))
            if i == 0 and rcfg.budget_frac is not None and budget is None:
                budget = int(rcfg.budget_frac * steps[0]["peak_bytes"])
                method.set_budget(budget)
            elif i == 0 and from_capacity:
                budget = int(HEADROOM_USE * mem.headroom())
                method.set_budget(budget)
            if on_step:
                on_step(steps[-1])
    except BudgetError:
        raise
    finally:
        method.close()
    return {"method": rcfg.method, "config": {"workload": wcfg.as_dict(), "run": rcfg.as_dict()},
            "budget_bytes": budget, "notes": getattr(method, "notes", ""),
            "steps": steps, "summary": summarise(steps, budget, rcfg.method),
            "params_sha256": wl.params_sha256()}


def _one_step(i: int, wl, method, mem, rcfg: RunConfig) -> dict:
    wl.before_step(i)
    x, y = wl.batch(i)
    rng = _rng_state(rcfg.device)
    retries = 0
    while True:
        mem.reset_peak()
        c0, w0 = time.process_time(), time.perf_counter()
        oom = None
        try:
            with method.step(i):
                loss = wl.loss(x, y)
                loss.backward()
            value = loss.item()
            del loss
            wl.optimizer.step()
            wl.optimizer.zero_grad(set_to_none=True)
        except Exception as e:  # noqa: BLE001 - only allocator failures are handled
            if not memory_mod.is_oom(e):
                raise
            oom = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
        if oom is None:
            break
        loss = None
        wl.optimizer.zero_grad(set_to_none=True)
        _restore(rng)
        if not method.on_oom() or retries >= MAX_RETRIES:
            raise TrainingOOM(f"step {i}: out of memory under --device-memory-mib "
                              f"{rcfg.device_memory_mib:g} with method {method.name} ({oom})")
        retries += 1
    if rcfg.device.startswith("cuda"):
        torch.cuda.synchronize()
    rec = {"step": i, "loss": value, "cpu_s": time.process_time() - c0,
           "wall_s": time.perf_counter() - w0, "peak_bytes": mem.peak()}
    info = method.info()
    rec.update({k: info.get(k) for k in ("swap_out_bytes", "swap_in_bytes", "phase", "forced_swaps")})
    rec["oom_retries"] = retries
    for k in ("match_rate", "change", "regenerated", "unplanned_swaps"):
        if k in info:
            rec[k] = info[k]
    return rec


def summarise(steps: list[dict], budget: int | None, method: str) -> dict:
    later = steps[1:] or steps
    stable = [s for s in later if s.get("phase") == "STABLE"]
    timed = stable if method == "chameleon" and stable else later
    rates = [s["match_rate"] for s in stable if s.get("match_rate") is not None]
    return {
        "peak_bytes": max(s["peak_bytes"] for s in later),
        "step_cpu_s": statistics.median(s["cpu_s"] for s in timed),
        "step_wall_s": statistics.median(s["wall_s"] for s in timed),
        "mean_cpu_s": statistics.fmean(s["cpu_s"] for s in steps),
        "sequence_changes": sum(1 for s in steps if s.get("change")),
        "policy_regenerations": sum(1 for s in steps if s.get("regenerated")),
        "match_rate": statistics.fmean(rates) if rates else None,
        "budget_violations": sum(1 for s in later if budget and s["peak_bytes"] > 1.05 * budget),
        "stable_violations": sum(1 for s in stable if budget and s["peak_bytes"] > 1.05 * budget),
        "ooms": sum(s["oom_retries"] for s in steps),
        "forced_swaps": sum(s["forced_swaps"] or 0 for s in steps),
        "swap_out_bytes": sum(s["swap_out_bytes"] or 0 for s in steps),
    }
