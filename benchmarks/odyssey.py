"""Odyssey benchmark: recovery strategies on the same fault, measured in one run, plus simulation.

1. DP2 x PP2 (4 gloo workers, 1 thread each), kill of rank 3 at step 6, checkpoint every 5 steps:
   reroute, replan, spare, adaptive vs checkpoint-restart (the baseline), interleaved over repeats;
   downtime (commit of the faulted step - the commit before - median step), lost steps, loss
   deviation from the failure-free run.
2. Checkpoint cost: async_save blocking time vs sync save (per checkpoint, same run).
3. Estimator: predicted vs measured post-recovery step time (wall; 2 shared cores, oversubscribed).
4. Simulation (labelled): 32, 1,024, 16,384 GPUs, adaptive vs each fixed strategy.

Run: .venv/bin/python benchmarks/odyssey.py [--repeats 2] [--traces 10]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

# this script is named like the package: put the repository root first, not benchmarks/
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from papersuite.bench import markdown_table, pin_threads, write_results  # noqa: E402

STRATS = ["restart", "reroute", "replan", "spare", "adaptive"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--traces", type=int, default=10)
    args = ap.parse_args()
    pin_threads(1)
    from odyssey.controller import LocalController, RunConfig
    from odyssey.faults import parse_fault
    from odyssey.simulator import SimConfig, simulate

    base = dict(dp=2, pp=2, layers=4, d_model=64, heads=4, seq_len=32, micro_batches=8, global_batch=16,
                steps=args.steps, dtype="float64", ckpt_every=5, deadline_s=240.0)
    t0 = time.time()
    ff = LocalController(RunConfig(**base)).run()
    rows: dict[str, list[dict]] = {s: [] for s in STRATS}
    for _ in range(args.repeats):  # interleaved: every strategy once per round
        for s in STRATS:
            res = LocalController(RunConfig(**base, strategy=s, spares=1 if s in ("spare", "restart") else 0,
                                            faults=[parse_fault("kill:6:3")])).run()
            f = res["failures"][0]
            dev = max(abs(a - b) / abs(b) for a, b in zip(res["losses"], ff["losses"]))
            rows[s].append({"downtime_s": f["downtime_s"], "lost_steps": f["lost_steps"], "detect_s": f["detect_s"],
                            "chosen": f["strategy"], "loss_dev": dev, "pred": f["predicted_t_step_s"],
                            "meas": f["measured_t_step_s"], "ckpts": res["checkpoints"]})
    base_dt = statistics.median(r["downtime_s"] for r in rows["restart"])
    table = []
    for s in STRATS:
        dt = statistics.median(r["downtime_s"] for r in rows[s])
        errs = [abs(r["pred"] - r["meas"]) / r["meas"] for r in rows[s] if r["meas"]]
        table.append({"strategy": s, "chosen": rows[s][-1]["chosen"], "downtime_s": dt,
                      "vs_restart": dt / base_dt, "lost_steps": max(r["lost_steps"] for r in rows[s]),
                      "detect_s": statistics.median(r["detect_s"] for r in rows[s]),
                      "max_loss_dev": max(r["loss_dev"] for r in rows[s]),
                      "est_err_median": statistics.median(errs) if errs else None})
    # checkpoint cost: sync vs async in the same run
    ck = {}
    for mode in ("sync", "async", "sync", "async"):
        res = LocalController(RunConfig(**{**base, "steps": 10}, ckpt_mode=mode)).run()
        ck.setdefault(mode, []).extend(c["blocking_s"] for c in res["checkpoints"])
    ck_row = {"sync_blocking_s": statistics.median(ck["sync"]), "async_blocking_s": statistics.median(ck["async"])}
    ck_row["async_vs_sync"] = ck_row["async_blocking_s"] / ck_row["sync_blocking_s"]
    sim = simulate([32, 1024, 16384], 7, args.traces, 0, SimConfig())
    sim_rows = [{"gpus": s["gpus"], "failures": s["failures_mean"],
                 **{f"adaptive/{k}": v for k, v in s["adaptive_vs"].items()},
                 "gap_1fail_adaptive": s["single_failure_gap"]["adaptive"]} for s in sim["scales"]]
    md = ["# Odyssey benchmark", "", f"Command: `.venv/bin/python benchmarks/odyssey.py --repeats {args.repeats}`"
          f" ({time.time() - t0:.0f}s). DP2xPP2, kill rank 3 at step 6, checkpoint every 5 steps, float64;"
          " baseline = checkpoint-restart measured in the same run (medians).", "",
          markdown_table(table), "", "## Checkpoint blocking time", "", markdown_table([ck_row]), "",
          "## Simulation (7 days, Llama 3 failure rate, FLOP model; a simulation)", "", markdown_table(sim_rows)]
    path = write_results("odyssey", "odyssey", {"runs": rows, "table": table, "checkpoint": ck_row,
                                                "simulation": sim}, "\n".join(md))
    print("\n".join(md))
    print(path)


if __name__ == "__main__":
    main()
