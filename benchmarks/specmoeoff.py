"""SpecMoEOff benchmark: peers on one offloaded store, a k sweep (optimizer regret, estimator error),
and the chunked verification attention kernel.

    python benchmarks/specmoeoff.py            # quick: b = 8 and 1, throttled 1 GB/s, 20 tokens (~8 min on this loaded 2-core box)
    python benchmarks/specmoeoff.py --full     # adds b = 16 and 4, k = 0..6, 32 tokens

Every ratio is measured in the same run on the same store (SmolLM2-135M upcycled to 8 experts,
eps 0.1, k-means router), slot budget, batch and prompts; one torch thread; load average recorded.
Deviations: synthetic upcycled MoE (acceptance set by eps, routing not Mixtral's), dense draft
instead of EAGLE, CPU tiers emulate GPU/host memory. Never compare with the paper's Mixtral figures.
Writes benchmarks/results/specmoeoff/{summary,peers,sweep,verify}.json (+ .md).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def verify_kernel(l: int = 1024, n: int = 5, repeats: int = 30) -> dict:
    """Chunked verify vs n one-query decode calls vs full-mask SDPA (GQA 9/3, head dim 64)."""
    import torch
    import torch.nn.functional as F

    from papersuite.bench import interleaved, ratio
    from papersuite.engine.attention import paged_decode
    from specmoeoff.verify_attention import verify_attend

    H, Hkv, D, bs = 9, 3, 64, 16
    L = l + n
    g = torch.Generator().manual_seed(0)
    q = torch.randn(n, H, D, generator=g)
    k = torch.randn(L, Hkv, D, generator=g)
    v = torch.randn(L, Hkv, D, generator=g)
    nb = -(-L // bs)
    kc = torch.zeros(nb, bs, Hkv, D)
    vc = torch.zeros(nb, bs, Hkv, D)
    kc.view(-1, Hkv, D)[:L] = k
    vc.view(-1, Hkv, D)[:L] = v
    bt = torch.arange(nb)[None]
    mask = torch.arange(L)[None, :] <= torch.arange(L - n, L)[:, None]
    scale = D ** -0.5

    def decode_calls():
        for i in range(n):
            paged_decode(q[i:i + 1], kc, vc, bt, torch.tensor([L - n + i + 1]), scale)

    def sdpa():
        F.scaled_dot_product_attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), attn_mask=mask,
                                       scale=scale, enable_gqa=True)

    t = interleaved({"verify": lambda: verify_attend(q, k, v, scale), "decode_calls": decode_calls, "sdpa": sdpa},
                    repeats=repeats, warmup=3)
    return {"l": l, "n": n, "ms": {name: x.median * 1e3 for name, x in t.items()},
            "speedup": {"decode_calls": ratio(t["decode_calls"], t["verify"]), "sdpa": ratio(t["sdpa"], t["verify"])}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--model", default=None, help="Store folder (default: the default store, built on first use).")
    ap.add_argument("--tier", default="throttled:1")
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="Interleaved repeats of the peer comparison (median).")
    args = ap.parse_args()

    from papersuite.bench import environment, markdown_table, pin_threads, write_results
    from papersuite.progress import info
    from specmoeoff.commands import DEFAULT_PROMPTS, _store
    from specmoeoff.serving import encode_prompts
    from specmoeoff.tuning import compare, sweep_k

    pin_threads(1)
    store = _store(Path(args.model) if args.model else None)
    tokens = 32 if args.full else 20
    batches = (16, 8, 4, 1) if args.full else (8, 1)
    ver = verify_kernel()
    info(f"verify attention: {ver}")
    write_results("specmoeoff", "verify", ver)

    peers, rows = {}, []
    for b in batches:
        prompts = encode_prompts(store, [{"prompt": DEFAULT_PROMPTS[i % len(DEFAULT_PROMPTS)] + ("" if i < 8 else f" ({i})")}
                                         for i in range(b)])
        systems = ["plain", "prefetch", "lightning", "specmoeoff"] if b > 1 else ["plain", "specmoeoff"]
        res = compare(store, prompts, systems, repeats=args.repeats, k="auto", batch_size=b, slots=args.slots, tier=args.tier,
                      max_tokens=tokens)
        peers[f"b{b}"] = res
        for s, d in res["systems"].items():
            rows.append({"batch": b, "system": s, "tokens_per_s": d["tokens_per_s"],
                         "loads_per_token": d["expert_loads_per_token"], "hit_rate": d["hit_rate"],
                         "tokens_per_iter": d["tokens_per_iteration"], "k_mean": d["k_mean"],
                         "io_wait_s": d["io_wait_s"], "draft_s": d["draft_s"], "verify_s": d["verify_s"]})
        info(f"b={b}: {res['ratios']}")
    write_results("specmoeoff", "peers", {"tier": args.tier, "slots": args.slots, "max_tokens": tokens,
                                          "repeats": args.repeats, "peers": peers},
                  markdown_table(rows))

    sb = 8
    prompts = encode_prompts(store, [{"prompt": p} for p in DEFAULT_PROMPTS[:sb]])
    sweep = sweep_k(store, prompts, ks=(0, 1, 2, 3, 4, 6) if args.full else (0, 2, 4), batch_size=sb,
                    slots=args.slots, tier=args.tier, max_tokens=tokens)
    write_results("specmoeoff", "sweep", {"batch": sb, "tier": args.tier, **sweep},
                  markdown_table([{"k": k, "tokens_per_s": sweep["tokens_per_s_by_k"][k],
                                   "tokens_per_iter": sweep["tokens_per_iteration_by_k"][k],
                                   "tau_model": sweep["tau_model_by_k"][k],
                                   "estimator_error": sweep["estimator_error_by_k"][k]} for k in sweep["tokens_per_s_by_k"]]))

    summary = {"tokens_per_s": {key: {s: d["tokens_per_s"] for s, d in r["systems"].items()} for key, r in peers.items()},
               "ratios": {key: r["ratios"] for key, r in peers.items()},
               "optimizer_regret": sweep["optimizer_regret"], "estimator_error": sweep["estimator_error"],
               "verify_speedup": ver["speedup"], "tier": args.tier, "slots": args.slots, "max_tokens": tokens,
               "repeats": args.repeats, "environment": environment()}
    path = write_results("specmoeoff", "summary", summary)
    info(f"wrote {path}")
    print(path)


if __name__ == "__main__":
    main()
