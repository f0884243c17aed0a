"""FlashForge kernel benchmark: one attention layer, same-run baselines, goal checks.

    python benchmarks/flashforge.py                 # full CPU suite (about 5 min on 2 loaded cores)
    python benchmarks/flashforge.py --quick         # the four quick scenarios
    python benchmarks/flashforge.py --device cuda   # the same suite on a GPU (adds the Triton column)
    python benchmarks/flashforge.py --scenario none --e2e --threads 2 --name e2e_cpu   # SmolLM2 only

Per scenario: default paged decode (the engine's), dense SDPA (KV materialised before timing), the
two-level cascade and FlashForge (`impl="auto"`; `shared` = the torch shared path forced), timed
interleaved with medians; the ideal byte ratio and the roofline cap of this machine beside them.
Writes benchmarks/results/flashforge/<name>.json and .md (name: kernels_<device>[_quick]).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TWO_LEVEL = [f"2level-b{b}-p{p}" for p in (1024, 4096, 8192) for b in (4, 16, 32, 64)]
SUITE = TWO_LEVEL + ["2level-b32-p4096-s512", "2level-b16-p8192-s2048"] + \
    [f"binary-d{d}" for d in range(2, 7)] + [f"kary-k{k}-d3" for k in range(2, 6)] + \
    [f"fraction-{f}" for f in (0.05, 0.2, 0.5, 0.8)] + ["no-sharing", "2level-b4-p64", "mooncake"]
QUICK = ["2level-b64-p4096", "2level-b16-p1024", "binary-d5", "no-sharing"]


def goals(rows: list[dict]) -> list[dict]:
    """The issue's targets, each with the measured figure."""
    by = {r["scenario"]: r for r in rows}
    out = []

    def goal(name, scenario, key, target, higher=True):
        if scenario not in by or by[scenario].get(key) is None:
            return
        v = by[scenario][key]
        out.append({"goal": name, "scenario": scenario, "metric": key, "target": target, "measured": v,
                    "met": bool(v >= target if higher else v <= target)})

    goal(">= 5x vs default_paged", "2level-b64-p4096", "vs_default", 5.0)
    goal(">= 2.5x vs sdpa_dense", "2level-b64-p4096", "vs_sdpa", 2.5)
    goal(">= 0.95x vs cascade2", "2level-b64-p4096", "vs_cascade2", 0.95)
    for s in TWO_LEVEL:
        b, p = (int(x[1:]) for x in s.split("-")[1:3])
        if b >= 16 and p >= 4096:
            goal(">= 2x vs sdpa_dense (B >= 16, P >= 4096)", s, "vs_sdpa", 2.0)
    for s in ("binary-d5", "binary-d6", "kary-k4-d3"):
        goal(">= 1.5x vs cascade2 (deep trees)", s, "vs_cascade2", 1.5)
    for s in ["no-sharing", "2level-b4-p64"] + [k for k in by if k.startswith("mooncake")]:
        goal("auto >= 0.95x vs default_paged (controls)", s, "vs_default", 0.95)
    goal("plan <= 5% of a 30-layer step", "2level-b64-p4096", "plan_share_30_layers", 0.05, higher=False)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--scenario", action="append", default=[],
                    help="run only these (repeatable); 'none' runs no kernel scenario")
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--dtype", default=None, help="fp32 (CPU default) | fp16 | bf16 (CUDA default)")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--heads", type=int, default=9)
    ap.add_argument("--kv-heads", type=int, default=3)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--e2e", action="store_true", help="also the SmolLM2 engine end to end")
    ap.add_argument("--name", default=None, help="results file name (default kernels_<device>[_quick])")
    args = ap.parse_args(argv)

    from flashforge.benchmark import SUMMARY_COLUMNS, flat, run_workload
    from flashforge.cost import constants, cpu_flags, cpu_model
    from flashforge.workloads import mooncake_windows, scenario
    from papersuite.bench import environment, markdown_table, pin_threads, write_results
    from papersuite.errors import UserError

    import torch

    pin_threads(args.threads)
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("--device cuda: no CUDA device visible", file=sys.stderr)
        return 2
    dtype = args.dtype or ("bf16" if device.startswith("cuda") else "fp32")
    names = args.scenario or (QUICK if args.quick else SUITE)
    names = [n for n in names if n != "none"]            # `--scenario none --e2e`: end to end only
    c = constants("cuda" if device.startswith("cuda") else "cpu")
    flags = " ".join(f for f in cpu_flags().split() if f.startswith(("avx", "amx", "fma", "f16c")))
    print(f"# {cpu_model()} | flags: {flags} | threads {args.threads} | device {device} | dtype {dtype}",
          file=sys.stderr)
    print(f"# measured: {c.bandwidth / 1e9:.1f} GB/s, square GEMM {c.peak_rate / 1e9:.1f} GFLOP/s "
          f"(ridge {c.peak_rate / c.bandwidth:.2f} flop/byte), overhead {c.overhead * 1e6:.1f} us/op",
          file=sys.stderr)
    rows = []
    t0 = time.perf_counter()
    for name in names:
        if name == "mooncake":
            try:
                loads = mooncake_windows(32, 3)
            except UserError as e:                  # the trace lives in ../shared, not in the repo
                print(f"# mooncake skipped: {e}", file=sys.stderr)
                continue
        else:
            loads = [scenario(name)]
        for w in loads:
            row = run_workload(w, dtype=dtype, heads=args.heads, kv_heads=args.kv_heads, head_dim=args.head_dim,
                               repeats=args.repeats, warmup=args.warmup, device=device)
            row["threads"] = args.threads
            row["loadavg_1m"] = round(os.getloadavg()[0], 2)
            rows.append(row)
            f = flat(row)
            print(" ".join(f"{k}={f[k]:.3g}" if isinstance(f[k], float) else f"{k}={f[k]}"
                           for k in SUMMARY_COLUMNS if k in f), file=sys.stderr, flush=True)
    e2e_rows = []
    if args.e2e:
        from flashforge.backend import FlashForgeBackend
        from flashforge.engine_check import e2e
        from papersuite.engine.engine import LLMEngine

        eng = LLMEngine("smollm2-135m-instruct", device=device, max_num_seqs=64, max_num_batched_tokens=2048)
        e2e_rows = e2e(eng, FlashForgeBackend)
    g = goals(rows)
    meta = {"device": device, "dtype": dtype, "threads": args.threads, "cpu_model": cpu_model(),
            "cpu_flags": flags, "heads": args.heads, "kv_heads": args.kv_heads, "head_dim": args.head_dim,
            "block_size": 16, "repeats": args.repeats, "warmup": args.warmup,
            "constants": {"bandwidth_Bps": c.bandwidth, "peak_flops": c.peak_rate, "gemm_flops": c.gemm_rate,
                          "gemv_flops": c.gemv_rate, "overhead_s": c.overhead},
            "wall_s": time.perf_counter() - t0, "command": "python benchmarks/flashforge.py " + " ".join(
                argv if argv is not None else sys.argv[1:])}
    md = [f"# FlashForge kernels ({device}, {dtype}, H={args.heads} Hkv={args.kv_heads} D={args.head_dim}, "
          f"{args.threads} thread(s))", "", f"`{meta['command']}`; environment: {environment()}", "",
          f"Measured: {c.bandwidth / 1e9:.1f} GB/s, square GEMM {c.peak_rate / 1e9:.1f} GFLOP/s; CPU flags {flags}",
          "", "ms per layer (median of %d, interleaved):" % args.repeats, "",
          markdown_table([flat(r) for r in rows], SUMMARY_COLUMNS + (["triton"] if device != "cpu" else [])),
          "", "## Goals", "", markdown_table(g) if g else "(none in this selection)"]
    if e2e_rows:
        md += ["", "## End to end (SmolLM2)", "", markdown_table([
            {"workload": r["workload"], "tpot_default_ms": r["tpot_ms"]["default"],
             "tpot_flashforge_ms": r["tpot_ms"]["flashforge"], "gain": r["tpot_gain"],
             "tokens_equal": r["tokens_equal"]} for r in e2e_rows])]
    name = args.name or f"kernels_{device.split(':')[0]}" + ("_quick" if args.quick else "")
    path = write_results("flashforge", name, {"meta": meta, "rows": rows, "goals": g, "e2e": e2e_rows},
                         "\n".join(md))
    print("\n".join(md[-3 - (4 if e2e_rows else 0):]), file=sys.stderr)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
