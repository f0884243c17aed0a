"""`plan SCENARIO.json`: the performance model alone on a described failure.

Scenario fields: dp, pp, layers, micro_batches (global), global_batch, t_f, t_b (s per layer per
micro-batch), param_bytes, optim_bytes, act_bytes (per layer), memory_bytes (per worker), failed
[[pipeline, stage], ...], window_s, spares, restart_s, steps_since_ckpt, optional link_GBps and
rebuild_s (0). Without a link there are no communication terms.
"""
from __future__ import annotations

from typing import Any

from papersuite.errors import UserError

from .estimator import Estimator, Profile, eq9_symmetric, eq13_reroute
from .layout import symmetric
from .planner import candidates
from .selector import choose, score_all

REQUIRED = {"dp": int, "pp": int, "layers": int, "micro_batches": int, "global_batch": int, "t_f": float,
            "t_b": float, "param_bytes": float, "optim_bytes": float, "act_bytes": float, "memory_bytes": float,
            "failed": list, "window_s": float, "spares": int, "restart_s": float, "steps_since_ckpt": int}


def validate(sc: Any, where: str) -> dict:
    if not isinstance(sc, dict):
        raise UserError(f"{where}: scenario must be a JSON object")
    for k, typ in REQUIRED.items():
        if k not in sc:
            raise UserError(f"{where}: missing field {k!r}")
        v = sc[k]
        ok = isinstance(v, list) if typ is list else (isinstance(v, (int, float)) and not isinstance(v, bool))
        if not ok or (typ is int and float(v) != int(v)):
            raise UserError(f"{where}: field {k!r} must be {'a list' if typ is list else typ.__name__}, got {v!r}")
    if sc["dp"] < 1 or sc["pp"] < 1 or sc["pp"] > sc["layers"]:
        raise UserError(f"{where}: need dp >= 1 and 1 <= pp <= layers")
    if sc["micro_batches"] % sc["dp"] or sc["micro_batches"] < sc["dp"]:
        raise UserError(f"{where}: micro_batches must be a positive multiple of dp")
    if min(sc["t_f"], sc["t_b"]) < 0 or sc["window_s"] <= 0 or sc["spares"] < 0:
        raise UserError(f"{where}: times and window must be positive, spares >= 0")
    seen = set()
    for f in sc["failed"]:
        if not (isinstance(f, list) and len(f) == 2 and all(isinstance(x, int) for x in f)
                and 0 <= f[0] < sc["dp"] and 0 <= f[1] < sc["pp"]):
            raise UserError(f"{where}: failed entry {f!r} is not [pipeline, stage] inside {sc['dp']}x{sc['pp']}")
        seen.add(tuple(f))
    if not seen:
        raise UserError(f"{where}: 'failed' is empty: nothing to recover from")
    return sc


def profile_of(sc: dict) -> Profile:
    L = sc["layers"]
    n = L + 2  # embedding and head modules cost nothing in a scenario
    link = sc.get("link_GBps")
    mb_size = sc["global_batch"] / sc["micro_batches"]
    return Profile(t_f=[0.0] + [sc["t_f"] / mb_size] * L + [0.0], t_b=[0.0] + [sc["t_b"] / mb_size] * L + [0.0],
                   param_bytes=[0.0] + [float(sc["param_bytes"])] * L + [0.0],
                   optim_bytes=[0.0] + [float(sc["optim_bytes"])] * L + [0.0],
                   act_bytes=[0.0] + [float(sc["act_bytes"]) / mb_size] * L + [0.0], boundary_bytes=0.0,
                   micro_size=1.0, alpha=0.0, beta=(1 / (link * 1e9)) if link else 0.0,
                   memory_bytes=float(sc["memory_bytes"]), rebuild_s=float(sc.get("rebuild_s", 0.0)))


def evaluate(sc: dict) -> dict:
    dp, pp, L, M = sc["dp"], sc["pp"], sc["layers"], sc["micro_batches"]
    est = Estimator(profile_of(sc), sc["global_batch"], M)
    plan = symmetric(dp, pp, L, M)
    stage_layers = L / pp
    t_ff = eq9_symmetric(pp, M // dp, stage_layers * sc["t_f"], stage_layers * sc["t_b"])
    dead = sorted({p * pp + s for p, s in sc["failed"]})
    spares = list(range(dp * pp, dp * pp + sc["spares"]))
    cands = candidates(plan, dead, spares, est, L, M, t_ff, float(sc["restart_s"]), int(sc["steps_since_ckpt"]))
    per_stage = [sum(1 for p, s in {tuple(f) for f in sc["failed"]} if s == i) for i in range(pp)]
    for c in cands:
        if c.strategy == "reroute" and c.feasible and L % pp == 0:
            c.t_step_s = eq13_reroute(pp, M // dp, dp, per_stage, stage_layers * sc["t_f"], stage_layers * sc["t_b"])
        if c.strategy == "spare" and c.feasible:
            c.t_step_s = t_ff
            link = sc.get("link_GBps")
            c.t_transition_s = float(sc.get("rebuild_s", 0.0)) + (
                stage_layers * (sc["param_bytes"] + sc["optim_bytes"]) / (link * 1e9) if link else 0.0)
        if c.strategy == "restart" and c.feasible and len(spares) >= len(dead):
            c.t_step_s = t_ff
        if c.strategy == "replan" and c.feasible and not sc.get("link_GBps"):
            c.t_transition_s = float(sc.get("rebuild_s", 0.0))
    score_all(cands, sc["global_batch"], float(sc["window_s"]))
    pick = choose(cands)
    return {"failure_free_t_step_s": t_ff, "window_s": sc["window_s"],
            "candidates": [dict(c.as_dict(), plan=c.plan.to_dict() if c.plan is not None else None) for c in cands],
            "chosen": pick.strategy if pick else None}
