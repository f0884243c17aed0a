"""Chameleon benchmark: memory methods on one job, measured in the same run, ratios vs `none`.

    python benchmarks/chameleon.py                 # CPU, default scale (< 5 min on 2 cores)
    python benchmarks/chameleon.py --full          # the issue's GPT d=512 x 6, capacity at 512 MiB, SmolLM2
    python benchmarks/chameleon.py --device cuda   # GPU scale: vs checkpointing and save_on_cpu(pin_memory)

Sections (each writes benchmarks/results/chameleon/<section>.json + .md):
  main      peak step memory and step time of none / checkpoint / offload-all / chameleon (at 0.45 x the
            first step's peak, and at checkpointing's measured peak). Every method runs in a fresh
            process, same batches and seed; the final parameters' sha256 must equal `none`'s.
  dynamic   MoE + LayerDrop 0.2 + sequence length 128 -> 256 at step 10, fixed budget and capacity:
            chameleon vs the static (plan-once) policy.
  profiler  CPU overhead of full profiling on every step vs chameleon's phased profiling, vs none.
  capacity  largest batch that trains 3 steps under a real memory capacity, per method.
  smollm    SmolLM2-135M fine-tune (--full or --smollm): none / checkpoint / chameleon.
On CPU every copy is CPU work: these runs show memory control, adaptation and their cost, never
copies hidden behind compute (only the GPU section can show that).
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from papersuite.bench import environment, markdown_table, pin_threads, write_results  # noqa: E402

MIB = 1 << 20


def spawn(wcfg, rcfg, threads: int) -> dict:
    from chameleon.commands import _spawn

    code, doc = _spawn(wcfg, rcfg, threads)
    if code not in (0, 1, 2):
        raise SystemExit(f"benchmark run failed ({rcfg.method}): {doc.get('message')}")
    if "error" in doc:
        print(f"  {rcfg.method}: {doc['error']}: {doc.get('message', '')[:200]}", flush=True)
    return doc


def metric(device: str) -> str:
    return "step_wall_s" if device.startswith("cuda") else "step_cpu_s"


def row(label: str, doc: dict, base: dict, key: str, extra: dict | None = None) -> dict:
    if "error" in doc:
        return {"method": label, "peak_MiB": "-", key: doc["error"], **(extra or {})}
    s, b = doc["summary"], base["summary"]
    return {"method": label, "peak_MiB": round(s["peak_bytes"] / MIB, 1),
            "peak_x_none": round(s["peak_bytes"] / b["peak_bytes"], 3),
            key: round(s[key], 4), "time_x_none": round(s[key] / b[key], 3),
            "mean_cpu_s": round(s["mean_cpu_s"], 4),
            "budget_MiB": round(doc["budget_bytes"] / MIB, 1) if doc.get("budget_bytes") else "-",
            "violations": s["budget_violations"], "same_params": doc["params_sha256"] == base["params_sha256"],
            **(extra or {})}


def median_docs(docs: list[dict], key: str) -> dict:
    """Of repeated runs of one method, keep the one with the median step time."""
    ok = [d for d in docs if "error" not in d]
    if not ok:
        return docs[0]
    ok.sort(key=lambda d: d["summary"][key])
    return ok[len(ok) // 2]


def section_main(args, W, R) -> dict:
    key = metric(args.device)
    wcfg = W(**args.main)
    plan = [("none", {}), ("checkpoint", {}), ("offload-all", {}),
            ("chameleon@0.45", {"method": "chameleon", "budget_frac": 0.45})]
    if args.device.startswith("cuda"):
        plan.insert(2, ("save-on-cpu", {}))
    runs: dict[str, list[dict]] = {}
    for rep in range(args.repeats):  # interleaved: every method once per round
        for label, kw in plan:
            rc = R(method=kw.get("method", label), steps=args.steps, device=args.device,
                   **{k: v for k, v in kw.items() if k != "method"})
            runs.setdefault(label, []).append(spawn(wcfg, rc, args.threads))
        ck = median_docs(runs["checkpoint"], key)
        rc = R(method="chameleon", steps=args.steps, device=args.device,
               budget_mib=ck["summary"]["peak_bytes"] / MIB)
        runs.setdefault("chameleon@checkpoint-peak", []).append(spawn(wcfg, rc, args.threads))
    docs = {k: median_docs(v, key) for k, v in runs.items()}
    base = docs["none"]
    rows = [row(k, d, base, key) for k, d in docs.items()]
    if any("error" in d for d in docs.values()):
        derived = {}
    else:
        derived = _derived(docs, base, key)
    md = (f"### main ({args.device}, {fmt_cfg(wcfg)}, {args.steps} steps, {args.threads} threads, "
          f"metric {key})\n\n" + markdown_table(rows) + "\n\n" +
          "\n".join(f"- {k}: {v:.3f}" for k, v in derived.items()))
    write_results("chameleon", f"main_{args.device_tag}", {"config": wcfg.as_dict(), "rows": rows,
                                                           "derived": derived, "runs": docs}, md)
    return {"md": md, "derived": derived}


def _derived(docs: dict, base: dict, key: str) -> dict:
    ck, cp = docs["checkpoint"]["summary"], docs["chameleon@checkpoint-peak"]["summary"]
    oa = docs["offload-all"]["summary"]
    return {"chameleon_vs_checkpoint_time_at_its_peak": cp[key] / ck[key],
               "chameleon_peak_vs_checkpoint_peak": cp["peak_bytes"] / ck["peak_bytes"],
               "offload_all_time_x_none": oa[key] / base["summary"][key],
               "chameleon045_time_vs_offload_all": docs["chameleon@0.45"]["summary"][key] / oa[key],
               "chameleon045_peak_vs_offload_all": docs["chameleon@0.45"]["summary"]["peak_bytes"] / oa["peak_bytes"]}


def section_dynamic(args, W, R) -> dict:
    key = metric(args.device)
    wcfg = W(**args.dynamic)
    ref = spawn(wcfg, R(method="none", steps=args.dyn_steps, device=args.device), args.threads)
    budget = 0.5 * ref["summary"]["peak_bytes"] / MIB
    from chameleon.workloads import build

    params = sum(p.numel() * p.element_size() for p in build(wcfg, "cpu").model.parameters()) / MIB
    capacity = math.ceil(ref["summary"]["peak_bytes"] / MIB + 2.5 * params)
    docs = {"none (no cap)": ref}
    for m in ("static", "chameleon"):
        docs[m] = spawn(wcfg, R(method=m, steps=args.dyn_steps, device=args.device, budget_mib=budget,
                                device_memory_mib=capacity), args.threads)
    rows = []
    for k, d in docs.items():
        extra = {}
        if "error" not in d:
            s = d["summary"]
            extra = {"ooms": s["ooms"], "stable_violations": s["stable_violations"],
                     "changes": s["sequence_changes"], "regens": s["policy_regenerations"],
                     "match_rate": round(s["match_rate"], 3) if s["match_rate"] is not None else "-"}
        rows.append(row(k, d, ref, key, extra))
    md = (f"### dynamic ({fmt_cfg(wcfg)}, {args.dyn_steps} steps, budget {budget:.1f} MiB = 0.5 x none's "
          f"peak, capacity {capacity} MiB)\n\n" + markdown_table(rows))
    write_results("chameleon", f"dynamic_{args.device_tag}", {"config": wcfg.as_dict(), "budget_mib": budget,
                                                              "capacity_mib": capacity, "rows": rows,
                                                              "runs": docs}, md)
    return {"md": md}


def section_profiler(args, W, R) -> dict:
    """In one process, interleaved per step: none, full profiling every step, phased profiling."""
    import torch

    from chameleon.manager import Chameleon
    from chameleon.workloads import build

    wcfg = W(**args.profiler)
    big = 1 << 40  # a budget nothing exceeds: the cost measured is profiling, not swapping
    arms = {}
    for name in ("none", "full", "phased"):
        wl = build(wcfg, args.device)
        cham = None
        if name != "none":
            cham = Chameleon(wl.model, wl.optimizer, layers=wl.layers, device=args.device,
                             warmup_steps=10**9 if name == "full" else 2)
            cham.set_budget(big)
        arms[name] = {"wl": wl, "cham": cham, "cpu": [], "step": 0}

    def one(arm):
        wl, cham, i = arm["wl"], arm["cham"], arm["step"]
        x, y = wl.batch(i)
        c0 = time.process_time() if not args.device.startswith("cuda") else time.perf_counter()
        ctx = cham.step() if cham else _null()
        with ctx:
            wl.loss(x, y).backward()
        wl.optimizer.step()
        wl.optimizer.zero_grad(set_to_none=True)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t = (time.process_time() if not args.device.startswith("cuda") else time.perf_counter()) - c0
        arm["cpu"].append(t)
        arm["step"] += 1

    for _ in range(args.prof_steps):
        for arm in arms.values():
            one(arm)
    mean = {k: trimmed_mean(a["cpu"][1:]) for k, a in arms.items()}
    over_full = mean["full"] - mean["none"]
    over_phased = mean["phased"] - mean["none"]
    reduction = 1 - over_phased / over_full if over_full > 0 else float("nan")
    phases = [r.phase for r in arms["phased"]["cham"].reports_]
    rows = [{"arm": k, "mean_s": round(v, 4), "overhead_x": round(v / mean["none"] - 1, 4)}
            for k, v in mean.items()]
    md = (f"### profiler cost ({fmt_cfg(wcfg)}, {args.prof_steps} steps each, interleaved, 10%-trimmed "
          f"mean over steps >= 1)\n\n" + markdown_table(rows) +
          f"\n\n- phased profiling overhead is {reduction:.1%} lower than full profiling every step "
          f"(paper: -84.25%); phased ran {phases.count('WARMUP') + phases.count('SEARCH')} full-profiled "
          f"steps of {len(phases)}")
    for a in arms.values():
        if a["cham"]:
            a["cham"].close()
    write_results("chameleon", f"profiler_{args.device_tag}", {"config": wcfg.as_dict(), "rows": rows,
                                                               "reduction": reduction}, md)
    return {"md": md, "reduction": reduction}


def trimmed_mean(xs: list[float], cut: float = 0.1) -> float:
    """Mean without the slowest and fastest 10%: a loaded shared box adds one-sided spikes."""
    xs = sorted(xs)
    k = int(len(xs) * cut)
    return statistics.fmean(xs[k: len(xs) - k] or xs)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def section_capacity(args, W, R) -> dict:
    from chameleon.commands import largest

    wcfg = W(**args.capacity)
    out = {}
    for m in ("none", "checkpoint", "chameleon"):
        rc = R(method=m, steps=3, device=args.device, device_memory_mib=args.cap_mib)

        def trains(n, rc=rc):
            d = spawn(replace(wcfg, batch=n), rc, args.threads)
            return "error" not in d

        size, tried = largest(trains, args.cap_start, args.cap_max, tol=0.125)
        out[m] = {"largest_batch": size, "tried": tried}
    base = out["none"]["largest_batch"] or float("nan")
    ck = out["checkpoint"]["largest_batch"] or float("nan")
    rows = [{"method": m, "largest_batch": r["largest_batch"],
             "x_none": round(r["largest_batch"] / base, 2), "x_checkpoint": round(r["largest_batch"] / ck, 2)}
            for m, r in out.items()]
    md = (f"### capacity ({fmt_cfg(wcfg)} growing batch, --device-memory-mib {args.cap_mib}, 3 steps, "
          f"bisection to 12.5%)\n\n" + markdown_table(rows))
    write_results("chameleon", f"capacity_{args.device_tag}", {"config": wcfg.as_dict(), "rows": rows,
                                                               "methods": out}, md)
    return {"md": md}


def section_smollm(args, W, R) -> dict:
    key = metric(args.device)
    wcfg = W(model="smollm", seq_len=256, batch=4, lr=1e-5)
    docs = {}
    for m, kw in (("none", {}), ("checkpoint", {}), ("chameleon", {"budget_frac": 0.5})):
        docs[m] = spawn(wcfg, R(method=m, steps=6, device=args.device, **kw), args.threads)
    rows = [row(k, d, docs["none"], key) for k, d in docs.items()]
    md = f"### SmolLM2-135M fine-tune (batch 4, seq 256, 6 steps)\n\n" + markdown_table(rows)
    write_results("chameleon", f"smollm_{args.device_tag}", {"rows": rows, "runs": docs}, md)
    return {"md": md}


def fmt_cfg(w) -> str:
    if w.model == "smollm":
        return f"smollm seq {w.seq_len} batch {w.batch}"
    extra = f", layerdrop {w.layerdrop}" if w.layerdrop else ""
    extra += f", seq->{w.seq_len_at[1]}@{w.seq_len_at[0]}" if w.seq_len_at else ""
    return f"{w.model} d={w.d_model} x{w.layers}, seq {w.seq_len}, batch {w.batch}{extra}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--full", action="store_true", help="the issue's scale (slow on CPU)")
    ap.add_argument("--smollm", action="store_true", help="add the SmolLM2-135M section")
    ap.add_argument("--sections", default=None, help="comma list: main,dynamic,profiler,capacity,smollm")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1, help="interleaved rounds of the main section")
    args = ap.parse_args()
    pin_threads(args.threads)
    from chameleon.trainer import RunConfig as R
    from chameleon.workloads import WorkloadConfig as W

    cuda = args.device.startswith("cuda")
    args.device_tag = "cuda" if cuda else "cpu"
    if cuda:
        args.main = dict(d_model=1024, layers=8, heads=16, seq_len=1024, batch=8)
        args.steps = 12
    elif args.full:
        args.main = dict(d_model=512, layers=6, heads=8, seq_len=256, batch=8)
        args.steps = 12
    else:
        args.main = dict(d_model=256, layers=4, heads=4, seq_len=128, batch=8)
        args.steps = 10
    big = args.full or cuda
    args.dynamic = dict(model="moe", d_model=256 if big else 128, layers=4, heads=4, seq_len=128, batch=8,
                        layerdrop=0.2, seq_len_at=(10, 256))
    args.dyn_steps = 30 if big else 20
    args.profiler = dict(d_model=128, layers=4, heads=4, seq_len=128, batch=8)
    args.prof_steps = 40
    args.capacity = dict(d_model=512, layers=6, heads=8, seq_len=256, batch=8) if args.full else \
        dict(d_model=256, layers=4, heads=4, seq_len=128, batch=8)
    args.cap_mib = 512 if args.full else 160
    args.cap_start, args.cap_max = 4, 256
    sections = args.sections.split(",") if args.sections else \
        ["main", "dynamic", "profiler"] + ([] if cuda else ["capacity"]) + \
        (["smollm"] if args.full or args.smollm else [])
    fns = {"main": section_main, "dynamic": section_dynamic, "profiler": section_profiler,
           "capacity": section_capacity, "smollm": section_smollm}
    t0 = time.time()
    parts = []
    for name in sections:
        t = time.time()
        res = fns[name](args, W, R)
        print(res["md"] + f"\n\n({name}: {time.time() - t:.0f} s)\n", flush=True)
        parts.append(res["md"])
    env = environment()
    summary = (f"## Chameleon benchmark ({args.device_tag}{', full' if args.full else ''})\n\n"
               f"`python benchmarks/chameleon.py{' --device ' + args.device if cuda else ''}"
               f"{' --full' if args.full else ''}` — {time.strftime('%Y-%m-%d %H:%M')}, torch {env.get('torch')}, "
               f"{env.get('cpus')} cpus, load avg {env.get('loadavg_1m')}"
               f"{', ' + env['gpu'] if 'gpu' in env else ''}, total {time.time() - t0:.0f} s.\n"
               "CPU: 'device' = process private memory (VmHWM - RSS at step start), 'host' = a file "
               "tier in the page cache; copies are CPU work, no overlap is claimed.\n\n" + "\n\n".join(parts))
    tag = "" if not args.sections else "_" + "_".join(sections)
    write_results("chameleon", f"summary_{args.device_tag}{'_full' if args.full else ''}{tag}",
                  {"sections": sections}, summary)
    print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
