"""`tune` and the peer comparison: measured k sweeps, estimator error, optimizer regret, peers.

Every system in one comparison uses the same store, tier, slot budget, batch and prompts; runs
are interleaved across repeats and the median tokens/s kept (papersuite.bench conventions).
"""
from __future__ import annotations

import statistics
from pathlib import Path

from specmoeoff.estimator import iteration_time
from specmoeoff.serving import run_system


def compare(store: str | Path, prompts: list[list[int]], systems: list[str], repeats: int = 1, **kw) -> dict:
    """Median stats per system (interleaved repeats) and tokens/s ratios of specmoeoff vs each peer."""
    runs: dict[str, list[dict]] = {s: [] for s in systems}
    outputs: dict[str, list] = {}
    for _ in range(repeats):
        for s in systems:
            outs, d = run_system(store, prompts, system=s, **kw)
            d.pop("profile", None)
            runs[s].append(d)
            outputs[s] = outs
    res = {}
    for s, ds in runs.items():
        med = dict(ds[0])
        for key in ("tokens_per_s", "expert_loads_per_token", "bytes_per_token", "hit_rate", "tokens_per_iteration",
                    "io_wait_s", "draft_s", "verify_s"):
            med[key] = statistics.median(d[key] for d in ds)
        med["tokens_per_s_runs"] = [d["tokens_per_s"] for d in ds]
        res[s] = med
    ratios = {}
    if "specmoeoff" in res:
        for s in systems:
            if s != "specmoeoff" and res[s]["tokens_per_s"] > 0:
                ratios[f"specmoeoff/{s}"] = res["specmoeoff"]["tokens_per_s"] / res[s]["tokens_per_s"]
        peers = [res[s]["tokens_per_s"] for s in systems if s != "specmoeoff"]
        if peers:
            ratios["specmoeoff/best_peer"] = res["specmoeoff"]["tokens_per_s"] / max(peers)
    ref = outputs.get("plain")
    identical = {s: o == ref for s, o in outputs.items()} if ref is not None else {}
    return {"systems": res, "ratios": ratios, "greedy_identical_to_plain": identical}


def sweep_k(store: str | Path, prompts: list[list[int]], ks=(0, 1, 2, 3, 4, 6), **kw) -> dict:
    """Measured tokens/s per fixed k, the optimizer's choice, its regret, the estimator's error.

    The profile and the acceptance come from an `auto` run on the same prompts; the estimate for
    each k is the DAG time T(b, k) against the measured decode time per iteration.
    """
    from specmoeoff.estimator import tau
    from specmoeoff.profiler import Profile

    _, auto = run_system(store, prompts, system="specmoeoff", k="auto", **kw)
    prof = Profile(**auto["profile"])
    alpha = auto["acceptance"] or 0.0
    b = len(prompts) if len(prompts) < kw.get("batch_size", 16) else kw.get("batch_size", 16)
    from specmoeoff.system import stream_threshold

    threshold = stream_threshold(prof.num_experts, prof.top_k, prof.slots)
    measured, est_err, table, est_s, meas_s = {}, {}, {}, {}, {}
    for k in ks:
        _, d = run_system(store, prompts, system="specmoeoff", k=k, **kw)
        measured[k] = d["tokens_per_s"]
        table[k] = d["tokens_per_iteration"]
        t_meas = (d["draft_s"] + d["verify_s"]) / max(d["iterations"], 1)
        t_est = iteration_time(prof, b, k, prefetch=True, stream_all=b * (k + 1) >= threshold)
        est_err[k] = abs(t_est - t_meas) / t_meas
        est_s[k], meas_s[k] = t_est, t_meas
    # the paper's offline acceptance table (k -> tokens per iteration, measured above) and the DAG
    rate = {k: b * table[k] / iteration_time(prof, b, k, prefetch=True, stream_all=b * (k + 1) >= threshold)
            for k in ks}
    k_star = max(rate, key=rate.get)
    best = max(measured, key=measured.get)
    return {"k_star": k_star, "k_best_measured": best, "alpha": alpha,
            "optimizer_regret": 1 - measured[k_star] / measured[best],
            "tokens_per_s_by_k": measured, "tokens_per_iteration_by_k": table,
            "tau_model_by_k": {k: tau(alpha, k) for k in ks},
            "estimator_error_by_k": est_err, "iteration_s_estimated": est_s, "iteration_s_measured": meas_s, "estimator_error": statistics.median(est_err.values()),
            "auto": {key: auto[key] for key in ("tokens_per_s", "k_mean", "acceptance")},
            "profile": auto["profile"]}
