"""GLM vs Graph-CoT, both in one run: billed tokens, calls, decoded tokens, latency, throughput.

Oracle driver (per-template shortest trajectories, answers only from what the loop observed):
1. structural: all dev questions through both loops with the count-only backend (the embedded
   model's tokenizer and chat template): tokens, calls and decoded tokens per question, halts,
   oracle accuracy. Deterministic, so no repeats are needed.
2. engine: a sample of questions teacher-forced through papersuite's LLMEngine (prefix caching
   on for both systems), interleaved GLM / Graph-CoT per question after a warm-up: per-question
   latency at concurrency 1 (medians, p95), prefill computed vs cached; with --throughput, the
   wall time of N questions per system at --concurrency.
3. pipelining: GLM with --retrieval-delay-ms per RetrieveNode search (default 200), searches
   started while the snippet decodes vs after it; the share of search time hidden.

    python benchmarks/glmcot.py --quick        # structural on 200 + engine latency on 2 questions
    python benchmarks/glmcot.py --sample 20 --throughput 8 --concurrency 8   # longer
Writes benchmarks/results/glmcot/glmcot.json and .md.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from papersuite.bench import environment, markdown_table, pin_threads, write_results  # noqa: E402

PAPER = {"tokens_per_question": "22,613-45,490 -> 1,538-2,974 (about 15x)", "calls": "9-14 -> 2-3",
         "latency": "11.3-38.6 s -> 2.8-5.9 s (-74.7% to -90.3%)", "throughput": "up to 15.1x"}


def _mean(xs):
    xs = list(xs)
    return sum(xs) / len(xs) if xs else 0.0


def _p95(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]


def run(records, cfg_kwargs, concurrency=1):
    from glmcot.runner import RunConfig, Runner, full_record

    runner = Runner(RunConfig(driver="oracle", embeddings=False, concurrency=concurrency, **cfg_kwargs))
    t0 = time.perf_counter()
    try:
        rows = [full_record(rec, res) for rec, res in runner.run(records)]
    finally:
        runner.close()
    return rows, time.perf_counter() - t0


def per_system(rows, system):
    rs = [r for r in rows if r["system"] == system]
    return {
        "n": len(rs),
        "tokens_per_q": _mean(r["tokens_prompt"] + r["tokens_completion"] for r in rs),
        "calls_per_q": _mean(r["calls"] for r in rs),
        "decoded_per_q": _mean(r["tokens_completion"] for r in rs),
        "em": _mean(r.get("em", 0.0) for r in rs),
        "halts": sum(1 for r in rs if r["halt"]),
        "latency_p50_s": statistics.median(r["latency_s"] for r in rs) if rs else 0.0,
        "latency_p95_s": _p95([r["latency_s"] for r in rs]) if rs else 0.0,
        "prefill_computed_per_q": _mean(r["prefill_computed"] for r in rs),
        "prefill_cached_per_q": _mean(r["prefill_cached"] for r in rs),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="engine part on 2 questions (about 5 minutes on 2 cores)")
    ap.add_argument("--sample", type=int, default=4, help="questions for the engine latency part")
    ap.add_argument("--throughput", type=int, default=0, help="questions per system for the throughput part (0: skip)")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--retrieval-delay-ms", type=float, default=200.0, help="pipelining ablation (0: skip)")
    ap.add_argument("--name", default="glmcot", help="results file name under benchmarks/results/glmcot/")
    args = ap.parse_args(argv)
    pin_threads(args.threads)

    from glmcot.graph import DEFAULT_QUESTIONS
    from glmcot.questions import load_questions

    dev = load_questions(DEFAULT_QUESTIONS)
    out: dict = {"paper": PAPER, "args": vars(args)}

    # 1. structural, all dev questions
    rows, wall = run(dev, {"backend": "count"})
    s = {sys_: per_system(rows, sys_) for sys_ in ("graphcot", "glm")}
    by_level = {}
    for level in ("easy", "medium", "hard"):
        lr = [r for r in rows if r.get("level") == level]
        by_level[level] = {f"{k}_{sys_}": per_system(lr, sys_)[k] for sys_ in ("graphcot", "glm")
                           for k in ("tokens_per_q", "calls_per_q", "decoded_per_q")}
    out["structural"] = {"questions": len(dev), "per_system": s, "by_level": by_level, "wall_s": wall,
                         "ratios": {"tokens": s["graphcot"]["tokens_per_q"] / s["glm"]["tokens_per_q"],
                                    "calls": s["graphcot"]["calls_per_q"] / s["glm"]["calls_per_q"],
                                    "decoded": s["graphcot"]["decoded_per_q"] / s["glm"]["decoded_per_q"]}}
    print(f"structural ({len(dev)} questions): tokens {out['structural']['ratios']['tokens']:.1f}x, "
          f"calls {out['structural']['ratios']['calls']:.2f}x, decoded {out['structural']['ratios']['decoded']:.2f}x "
          f"fewer with GLM; Graph-CoT halts {s['graphcot']['halts']}, oracle EM graphcot {s['graphcot']['em']:.3f} "
          f"glm {s['glm']['em']:.3f}", file=sys.stderr)

    # 2. engine latency (concurrency 1), interleaved per question, after a warm-up
    n = 2 if args.quick else args.sample
    if n < 1:
        raise SystemExit("--sample must be >= 1")
    picks = [dev[i] for i in (10, 110, 30, 150, 60, 90, 0, 170)][:n] if n <= 8 else dev[5::10][:n]
    run([dev[40]], {"backend": "engine", "system": "glm"})  # warm-up (untimed)
    rows, wall = run(picks, {"backend": "engine"})
    e = {sys_: per_system(rows, sys_) for sys_ in ("graphcot", "glm")}
    out["engine_latency"] = {"questions": [p["qid"] for p in picks], "per_system": e, "rows": rows,
                             "ratio_p50_latency": e["graphcot"]["latency_p50_s"] / e["glm"]["latency_p50_s"],
                             "ratio_total_latency": sum(r["latency_s"] for r in rows if r["system"] == "graphcot")
                             / sum(r["latency_s"] for r in rows if r["system"] == "glm")}
    print(f"engine, concurrency 1 ({len(picks)} questions): p50 latency graphcot {e['graphcot']['latency_p50_s']:.1f}s "
          f"glm {e['glm']['latency_p50_s']:.1f}s ({out['engine_latency']['ratio_p50_latency']:.2f}x)", file=sys.stderr)

    # 3. pipelining ablation: GLM with a labelled retrieval delay, searches during vs after decoding
    if args.retrieval_delay_ms:
        pq = [dev[80], dev[180]]  # wrote_both (2 searches), recommend_by_coupling (11 searches)
        pipe = {}
        for on in (False, True):
            rows_p, wall_p = run(pq, {"backend": "engine", "system": "glm", "pipeline": on,
                                      "retrieval_delay_ms": args.retrieval_delay_ms})
            search = sum(r["retrieval_s"] for r in rows_p)
            wait = sum(r["retrieval_wait_s"] for r in rows_p)
            pipe["on" if on else "off"] = {"latency_s": sum(r["latency_s"] for r in rows_p), "search_s": search,
                                           "wait_s": wait, "answers": [r["answer"] for r in rows_p]}
        pipe["hidden_share"] = 1 - pipe["on"]["wait_s"] / pipe["on"]["search_s"] if pipe["on"]["search_s"] else 0.0
        pipe["latency_ratio"] = pipe["off"]["latency_s"] / pipe["on"]["latency_s"]
        pipe["same_answers"] = pipe["on"]["answers"] == pipe["off"]["answers"]
        out["pipelining"] = {"retrieval_delay_ms": args.retrieval_delay_ms, "questions": [q["qid"] for q in pq],
                             **pipe}
        print(f"pipelining at {args.retrieval_delay_ms:g} ms per search: {pipe['hidden_share']:.0%} of search time "
              f"hidden, latency {pipe['latency_ratio']:.2f}x, same answers {pipe['same_answers']}", file=sys.stderr)

    # 4. throughput at concurrency (optional)
    if args.throughput:
        qs = dev[7::10][:args.throughput]
        walls = {}
        for sys_ in ("graphcot", "glm"):
            _, walls[sys_] = run(qs, {"backend": "engine", "system": sys_}, concurrency=args.concurrency)
        out["throughput"] = {"questions": len(qs), "concurrency": args.concurrency,
                             "qps": {k: len(qs) / v for k, v in walls.items()},
                             "ratio": walls["graphcot"] / walls["glm"]}
        print(f"throughput at concurrency {args.concurrency}: {out['throughput']['ratio']:.2f}x", file=sys.stderr)

    table = [{"metric": "tokens / question", "graphcot": s["graphcot"]["tokens_per_q"], "glm": s["glm"]["tokens_per_q"],
              "ratio": out["structural"]["ratios"]["tokens"], "paper": PAPER["tokens_per_question"]},
             {"metric": "LLM calls / question", "graphcot": s["graphcot"]["calls_per_q"], "glm": s["glm"]["calls_per_q"],
              "ratio": out["structural"]["ratios"]["calls"], "paper": PAPER["calls"]},
             {"metric": "decoded tokens / question", "graphcot": s["graphcot"]["decoded_per_q"],
              "glm": s["glm"]["decoded_per_q"], "ratio": out["structural"]["ratios"]["decoded"], "paper": ""},
             {"metric": "oracle EM (200 dev)", "graphcot": s["graphcot"]["em"], "glm": s["glm"]["em"], "ratio": "",
              "paper": ""},
             {"metric": f"p50 latency, engine, conc. 1 ({len(picks)} q)", "graphcot": e["graphcot"]["latency_p50_s"],
              "glm": e["glm"]["latency_p50_s"], "ratio": out["engine_latency"]["ratio_p50_latency"],
              "paper": PAPER["latency"]},
             {"metric": "prefill computed / question (engine)", "graphcot": e["graphcot"]["prefill_computed_per_q"],
              "glm": e["glm"]["prefill_computed_per_q"], "ratio": "", "paper": ""},
             {"metric": "prefill cached / question (engine)", "graphcot": e["graphcot"]["prefill_cached_per_q"],
              "glm": e["glm"]["prefill_cached_per_q"], "ratio": "", "paper": ""}]
    if "throughput" in out:
        t = out["throughput"]
        table.append({"metric": f"throughput q/s, conc. {t['concurrency']}", "graphcot": t["qps"]["graphcot"],
                      "glm": t["qps"]["glm"], "ratio": t["ratio"], "paper": PAPER["throughput"]})
    pipe_md = ""
    if "pipelining" in out:
        p = out["pipelining"]
        pipe_md = ("\n\nPipelining (GLM, engine, %g ms per RetrieveNode search, 2 questions):\n\n" % p["retrieval_delay_ms"]
                   + markdown_table([{"searches": "after decoding", "latency_s": p["off"]["latency_s"],
                                      "search_s": p["off"]["search_s"], "waited_s": p["off"]["wait_s"]},
                                     {"searches": "while decoding", "latency_s": p["on"]["latency_s"],
                                      "search_s": p["on"]["search_s"], "waited_s": p["on"]["wait_s"]}])
                   + f"\n\nHidden share of search time: {p['hidden_share']:.1%}; latency ratio "
                     f"{p['latency_ratio']:.2f}x (paper: up to -47.8% latency); same answers: {p['same_answers']}.")
    lv = [{"level": k, **{kk: round(vv, 1) for kk, vv in v.items()}} for k, v in by_level.items()]
    env = environment()
    md = ("# GLM vs Graph-CoT (oracle driver, SmolLM2-135M tokenizer / engine on CPU)\n\n"
          + markdown_table(table, ["metric", "graphcot", "glm", "ratio", "paper"]) + "\n\nPer level (structural):\n\n"
          + markdown_table(lv) + pipe_md + f"\n\nEnvironment: {env}\n\nCommand: `python benchmarks/glmcot.py "
          + " ".join(sys.argv[1:] if argv is None else argv) + "`\n")
    path = write_results("glmcot", args.name, out, md)
    print(md)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
