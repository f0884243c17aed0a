"""Engine benchmarks: the paged-KV continuous-batching engine vs transformers, same model and prompts.

1. mixed: N requests, prompt lengths 20-400 tokens, max_tokens drawn per request, greedy, EOS
   ignored so both sides produce exactly the asked tokens. Engine: all submitted at once
   (continuous batching). Baseline: `TransformersGenerator` in static batches of 16 (a batch runs
   until its longest request is done). Metric: useful output tokens/s (sum of max_tokens / wall).
2. single: one request, decode tokens/s, engine vs transformers `generate` at batch 1 (interleaved,
   medians).
3. prefix: a shared ~1,000-token system prompt, requests arriving one after another: mean TTFT
   with prefix caching on vs off (same engine, cache reset between modes).
Also the process's peak RSS after the engine's mixed run (before the baseline model is loaded).

Default sizes keep a run under ~5 minutes on a loaded 2-core box; `--full` uses the issue's sizes
(64 mixed requests with max_tokens 16-256, 32 prefix requests).

    .venv/bin/python benchmarks/engine.py            # quick
    .venv/bin/python benchmarks/engine.py --full     # the issue's sizes
"""
from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from papersuite.bench import environment, interleaved, markdown_table, pin_threads, ratio, write_results  # noqa: E402

WORDS = ("system memory paged attention kernel batch token cache request prefix scheduler decode prefill "
         "latency throughput model layer head block table hash evict policy queue stream server client "
         "river mountain city garden music letter window morning history science ocean forest").split()


def make_prompts(tokenizer, n: int, lo: int, hi: int, rng: random.Random) -> list[str]:
    """Texts of about `lo`-`hi` tokens each (word salad, trimmed by the tokenizer)."""
    out = []
    for _ in range(n):
        target = rng.randint(lo, hi)
        ids = tokenizer(" ".join(rng.choice(WORDS) for _ in range(target * 2)))["input_ids"][:target]
        out.append(tokenizer.decode(ids))
    return out


def run_engine_batch(engine, prompts, max_tokens) -> float:
    from papersuite.llm import SamplingParams

    t0 = time.perf_counter()
    seqs = [engine.add_request(p, SamplingParams(max_tokens=m, ignore_eos=True)) for p, m in zip(prompts, max_tokens)]
    while engine.has_unfinished():
        engine.step()
    assert all(s.num_output_tokens == m for s, m in zip(seqs, max_tokens))
    return time.perf_counter() - t0


def run_hf_static(hf, prompts, max_tokens, batch: int = 16) -> float:
    from papersuite.llm import SamplingParams

    t0 = time.perf_counter()
    for i in range(0, len(prompts), batch):
        hf.generate(prompts[i:i + batch], SamplingParams(max_tokens=max(max_tokens[i:i + batch]), ignore_eos=True))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="the issue's sizes (slow on CPU)")
    ap.add_argument("--requests", type=int, default=None, help="mixed-workload requests (default 16, full 64)")
    ap.add_argument("--prefix-requests", type=int, default=None, help="shared-prefix requests (default 8, full 32)")
    ap.add_argument("--single-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kv-cache-mb", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n_mixed = args.requests or (64 if args.full else 16)
    n_prefix = args.prefix_requests or (32 if args.full else 8)
    max_hi = 256 if args.full else 64
    pin_threads(args.threads)

    from papersuite.engine.engine import LLMEngine
    from papersuite.llm import SamplingParams

    rng = random.Random(args.seed)
    engine = LLMEngine("smollm2-135m-instruct", kv_cache_bytes=args.kv_cache_mb * 2**20, max_num_seqs=64,
                       max_num_batched_tokens=512)
    tok = engine.tokenizer
    prompts = make_prompts(tok, n_mixed, 20, 400, rng)
    max_tokens = [rng.randint(16, max_hi) for _ in prompts]
    useful = sum(max_tokens)
    engine.generate(["warm up"], SamplingParams(max_tokens=2))
    results: dict = {"config": vars(args) | {"mixed_requests": n_mixed, "max_tokens_range": [16, max_hi],
                                             "prefix_requests": n_prefix}}

    # 1. mixed workload (engine first, so the RSS peak below is the engine's alone)
    load_e = environment()["loadavg_1m"]
    t_engine = run_engine_batch(engine, prompts, max_tokens)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"mixed: engine {useful / t_engine:.1f} tok/s ({t_engine:.1f} s), peak RSS {rss_mb:.0f} MiB", file=sys.stderr)

    # 3. shared-prefix TTFT, caching on vs off (before the baseline model takes memory and cores)
    system = make_prompts(tok, 1, 1000, 1000, rng)[0]
    questions = [f"Question {i}: what is the {rng.choice(WORDS)} of the {rng.choice(WORDS)}?" for i in range(n_prefix)]
    ttft = {}
    for mode in ("off", "on", "off", "on"):  # interleaved, each mode twice; keep the second pass
        engine.block_manager.reset_prefix_cache()
        engine.block_manager.enable_prefix_caching = mode == "on"
        vals = []
        for q in questions:
            g = engine.generate([[{"role": "system", "content": system}, {"role": "user", "content": q}]],
                                SamplingParams(max_tokens=2, ignore_eos=True))[0]
            vals.append(g.ttft_s)
        ttft[mode] = vals
    engine.block_manager.enable_prefix_caching = True
    prefix_tokens = len(engine.encode([{"role": "system", "content": system}]))
    print(f"prefix: TTFT off {statistics.mean(ttft['off']) * 1e3:.0f} ms, on {statistics.mean(ttft['on']) * 1e3:.0f} ms",
          file=sys.stderr)

    # baseline model
    from papersuite.llm import TransformersGenerator

    hf = TransformersGenerator("smollm2-135m-instruct")
    hf.generate(["warm up"], SamplingParams(max_tokens=2))
    load_h = environment()["loadavg_1m"]
    t_hf = run_hf_static(hf, prompts, max_tokens)
    print(f"mixed: transformers static-16 {useful / t_hf:.1f} tok/s ({t_hf:.1f} s)", file=sys.stderr)

    # 2. single request decode, interleaved
    single_prompt = prompts[0]
    sp = SamplingParams(max_tokens=args.single_tokens, ignore_eos=True)
    timings = interleaved({"transformers": lambda: hf.generate([single_prompt], sp),
                           "engine": lambda: engine.generate([single_prompt], sp)}, repeats=3, warmup=1)
    single = {k: args.single_tokens / v.median for k, v in timings.items()}

    rows = [
        {"benchmark": f"mixed {n_mixed} req, out tok/s", "baseline": useful / t_hf, "engine": useful / t_engine,
         "ratio": t_hf / t_engine, "goal": ">= 2x"},
        {"benchmark": f"single request decode tok/s ({args.single_tokens} tok)", "baseline": single["transformers"],
         "engine": single["engine"], "ratio": ratio(timings["transformers"], timings["engine"]), "goal": ">= 1.0x"},
        {"benchmark": f"shared {prefix_tokens}-tok prefix, mean TTFT ms ({n_prefix} req)",
         "baseline": statistics.mean(ttft["off"]) * 1e3, "engine": statistics.mean(ttft["on"]) * 1e3,
         "ratio": statistics.mean(ttft["off"]) / statistics.mean(ttft["on"]), "goal": ">= 3x lower"},
    ]
    results.update({
        "mixed": {"useful_output_tokens": useful, "engine_s": t_engine, "transformers_static16_s": t_hf,
                  "engine_tok_s": useful / t_engine, "transformers_tok_s": useful / t_hf, "ratio": t_hf / t_engine,
                  "loadavg_engine": load_e, "loadavg_transformers": load_h,
                  "engine_preemptions": engine.scheduler.num_preemptions,
                  "kv_blocks": engine.block_manager.num_blocks},
        "single": {"tokens": args.single_tokens, **{k: v.as_dict() for k, v in timings.items()},
                   "engine_tok_s": single["engine"], "transformers_tok_s": single["transformers"],
                   "ratio": rows[1]["ratio"]},
        "prefix": {"prefix_tokens": prefix_tokens, "ttft_off_s": ttft["off"], "ttft_on_s": ttft["on"],
                   "mean_off_s": statistics.mean(ttft["off"]), "mean_on_s": statistics.mean(ttft["on"]),
                   "ratio": rows[2]["ratio"]},
        "peak_rss_mib_engine_mixed": rss_mb,
        "llama_cpp": "not installed: column skipped",
    })
    md = ["# Engine benchmark", "", "Command: `.venv/bin/python benchmarks/engine.py" + (" --full" if args.full else "") + "`",
          "", markdown_table(rows, ["benchmark", "baseline", "engine", "ratio", "goal"]), "",
          f"Baseline: transformers (static batches of 16 / `generate` at batch 1 / same engine with prefix caching off). "
          f"Peak RSS of the engine process after the mixed run: {rss_mb:.0f} MiB. "
          f"Threads {args.threads}, load average {load_e} (engine) / {load_h} (transformers)."]
    name = "engine_full" if args.full else "engine"
    path = write_results("engine", name, results, "\n".join(md))
    print("\n".join(md))
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
