"""ARES-style benchmark: predictors on real hidden states, and cluster goodput per policy.

    python benchmarks/ares.py collect --data DIR [--n 2000 --cap 1024 --every 32 --device cuda]
    python benchmarks/ares.py predictor --data DIR [--seeds 0,1,2]
    python benchmarks/ares.py sim [--instances 16 --n 700]
    python benchmarks/ares.py all --data DIR

`predictor` trains and evaluates every predictor on request-level splits (3 seeds), writes the
MAE-by-progress plot and the measured error model (`ares/data/error_model.json`, with provenance)
that the simulator's `ares` and `prompt-only` policies draw from. `sim` replays a trace on
simulated instances (the engine's scheduler with the fitted step-time model) for every policy and
searches each one's goodput. Results: benchmarks/results/ares/.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from papersuite import bench  # noqa: E402

OUT = "ares"


def do_collect(args) -> None:
    from ares.collect import collect
    from ares.prompts import prompt_set

    t0 = time.perf_counter()
    last = [0.0]

    def on_batch(done, total):
        if time.perf_counter() - last[0] > 20:
            last[0] = time.perf_counter()
            print(f"collect: {done}/{total} requests, {time.perf_counter() - t0:.0f}s", flush=True)

    collect(args.data, prompt_set(args.n, seed=0), max_tokens=args.cap, every=args.every, batch_size=args.batch,
            device=args.device, deadline_s=args.deadline, store_dtype=args.store, on_batch=on_batch,
            model=args.model, dtype="float32",
            **({"kv_cache_bytes": 16 * 2**30, "max_num_batched_tokens": 8192} if args.device.startswith("cuda") else {}))
    print(f"collect: done in {time.perf_counter() - t0:.0f}s", flush=True)


def do_predictor(args) -> dict:
    import numpy as np

    from ares.collect import load_records
    from ares.errormodel import measure
    from ares.evaluate import BINS, evaluate, split
    from ares.predictor import PREDICTORS, make_predictor
    from papersuite.io import write_json

    rec = load_records(args.data)
    seeds = [int(s) for s in args.seeds.split(",")]
    res = evaluate(rec, list(PREDICTORS), seeds, epochs=args.epochs,
                   on_result=lambda n, r: print(f"predictor {n}: mae {r['mae']:.1f}", flush=True))
    capped = float(np.mean([r["capped"] for r in rec.requests]))
    # the error model the simulator samples from: held-out errors of seed 0
    train, val, test = split(rec, seeds[0])
    errors = {}
    for name in ("ares", "prompt-minilm"):
        pred = make_predictor(name, epochs=args.epochs, random_state=seeds[0]).fit(train, val)
        errors[name] = measure(test.t, test.r, pred.predict(test))
    provenance = {"data": rec.meta, "requests": len(rec.requests), "records": int(len(rec.t)),
                  "test_requests": int(len(set(test.req.tolist()))), "seed": seeds[0],
                  "made_by": "python benchmarks/ares.py predictor", "when": time.strftime("%Y-%m-%d")}
    write_json(ROOT / "ares" / "data" / "error_model.json", {"predictors": errors, "provenance": provenance})
    best_other = min(v["mae"] for k, v in res.items() if k not in ("ares", "ares-literal", "prompt-minilm"))
    ratios = {"ares_vs_minilm": res["ares"]["mae"] / res["prompt-minilm"]["mae"],
              "ares_vs_best_other": res["ares"]["mae"] / best_other,
              "ares_params_share_of_minilm": res["ares"]["params"] / res["prompt-minilm"]["params"]}
    rows = [{"predictor": k, "mae": v["mae"], "mae_std": v["mae_std"], "kendall_tau": v["kendall_tau"],
             "params": v["params"], "us_per_call": v["us_per_call"], **{b: v["mae_by_bin"][b] for _, _, b in BINS}}
            for k, v in res.items()]
    md = (f"# Remaining-length predictors ({len(rec.requests)} requests, cap {rec.meta['cap']}, "
          f"{capped:.0%} capped, every {rec.meta['every']} tokens, seeds {seeds})\n\n"
          + bench.markdown_table(rows) + "\n\n" + "\n".join(f"- {k}: {v:.3f}" for k, v in ratios.items()) + "\n")
    bench.write_results(OUT, "predictor", {"predictors": res, "ratios": ratios, "capped_fraction": capped,
                                           "requests": len(rec.requests), "records": int(len(rec.t))}, md)
    _plot_bins(res, ROOT / "benchmarks" / "results" / OUT / "mae_by_bin.png")
    print(md)
    return {"mae": {k: v["mae"] for k, v in res.items()}, "ratios": ratios}


def _plot_bins(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ares.evaluate import BINS

    fig, ax = plt.subplots(figsize=(7, 4))
    names = [b for _, _, b in BINS]
    for k, v in res.items():
        ys = [v["mae_by_bin"][b] for b in names]
        ax.plot(names, [y if y is not None else float("nan") for y in ys], marker="o", label=k)
    ax.set_xlabel("generated tokens so far (t)")
    ax.set_ylabel("MAE of remaining tokens")
    ax.set_title("Remaining-length MAE by progress")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def do_sim(args) -> dict:
    from ares import cluster
    from ares.rebalancer import POLICIES
    from papersuite import traces as tr
    from papersuite.engine.costmodel import StepCostModel, fitted_cost_model
    from papersuite.replay import default_slos, goodput

    if args.cost_model:
        cm = StepCostModel.from_dict(json.loads(Path(args.cost_model).read_text()))
    else:
        from papersuite.engine.engine import LLMEngine

        cm = fitted_cost_model(LLMEngine("smollm2-135m-instruct"), budget_s=60)
    errors = cluster.load_error_models(list(POLICIES))
    ttft, tpot = default_slos(cm, chunk=512)
    out = {}
    for trace in args.traces.split(","):
        reqs = cluster.fit_to_instances(cluster.load_trace(trace, args.n, args.skip, 0), args.kv_tokens, 8, 4, 1024)
        base = tr.rate(reqs)
        per = {}
        for policy in POLICIES:
            t0 = time.perf_counter()
            run = lambda rs: cluster.simulate_policy(policy, rs, instances=args.instances,  # noqa: E731
                                                     kv_tokens=args.kv_tokens, cost_model=cm, error_models=errors)
            att = lambda r: run(tr.retime(reqs, r)).metrics(ttft, tpot)["slo_attainment"]  # noqa: E731
            g = goodput(att, base / 16, base * 16, iters=7)
            at_g = run(tr.retime(reqs, max(g, base / 16))).metrics(ttft, tpot)
            per[policy] = {"goodput": g, "p99_tpot_at_goodput": at_g["tpot_p99_s"],
                           "migrations": at_g["migrations"], "preemptions": at_g["preemptions"],
                           "seconds": time.perf_counter() - t0}
            print(f"sim {trace} {policy}: goodput {g:.3f} req/s", flush=True)
        out[trace] = per
    rows = [{"trace": t, "policy": p, **v} for t, d in out.items() for p, v in d.items()]
    ratios = {t: {"ares_vs_rr": d["ares"]["goodput"] / max(d["rr"]["goodput"], 1e-9),
                  "ares_vs_llumnix": d["ares"]["goodput"] / max(d["llumnix"]["goodput"], 1e-9),
                  "ares_vs_oracle": d["ares"]["goodput"] / max(d["oracle"]["goodput"], 1e-9)} for t, d in out.items()}
    md = (f"# Simulated cluster goodput ({args.instances} instances, {args.kv_tokens} KV tokens each, "
          f"{args.n} requests, lengths /8 prompts /4 outputs)\n\n" + bench.markdown_table(rows) + "\n\n"
          + json.dumps(ratios, indent=2) + "\n")
    bench.write_results(OUT, "sim", {"results": out, "ratios": ratios, "cost_model": cm.to_dict()}, md)
    print(md)
    return {"goodput": {t: {p: v["goodput"] for p, v in d.items()} for t, d in out.items()}, "ratios": ratios}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("phase", choices=["collect", "predictor", "sim", "all"])
    ap.add_argument("--data", default=str(Path.home() / ".cache" / "papersuite" / "ares" / "bench-data"))
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--cap", type=int, default=1024)
    ap.add_argument("--every", type=int, default=32)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="smollm2-135m-instruct", help="collect: model name, folder or .gguf")
    ap.add_argument("--deadline", type=float, default=None)
    ap.add_argument("--store", default="float16")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--traces", default="heavy-tail,azure-conv")
    ap.add_argument("--instances", type=int, default=16)
    ap.add_argument("--kv-tokens", type=int, default=6000)
    ap.add_argument("--skip", type=int, default=1000, help="sim: skip the first requests (held out)")
    ap.add_argument("--cost-model", default=None)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.phase == "sim" and args.n == 2000:
        args.n = 700
    bench.pin_threads(args.threads)
    summary_path = ROOT / "benchmarks" / "results" / OUT / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    if args.phase == "collect":
        do_collect(args)
        return
    if args.phase in ("predictor", "all"):
        summary["predictor"] = do_predictor(args)
    if args.phase in ("sim", "all"):
        if args.phase == "all":
            args.n = 700
        summary["sim"] = do_sim(args)
    bench.write_results(OUT, "summary", summary)


if __name__ == "__main__":
    main()
