"""End-to-end checks on the shared engine with SmolLM2: token identity and decode speed.

`greedy_compare` runs the same prompts through one engine twice (prefix cache reset between),
once with the default paged backend and once with a FlashForge backend, recording every step's
logits: tokens must match and logits agree to fp32 rounding. `e2e` times decode (TPOT) on 32
requests that share a ~2,000-token document made from the synthetic academic graph, and on 32
unrelated prompts as the control.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "graphqa" / "synthetic_academic"


def shared_prompts(n_shared: int = 4, shared_tokens: int = 200) -> list[str]:
    """n prompts that share a ~shared_tokens-token document, plus one unrelated prompt."""
    doc = document(shared_tokens)
    qs = ["Which topic appears most often?", "Name one title.", "What year is mentioned first?",
          "Summarise the first abstract.", "Which method is named?", "List two keywords."]
    return [f"{doc}\nQuestion: {qs[i % len(qs)]}\nAnswer:" for i in range(n_shared)] + \
        ["Write a short poem about the sea."]


def document(approx_tokens: int = 2000, path: Path = DATA / "graph.json") -> str:
    """Titles and abstracts of the graph's first papers, about `approx_tokens` tokens (4 chars each)."""
    from papersuite.errors import UserError

    if not path.exists():
        raise UserError(f"{path}: no such file (the synthetic academic graph)")
    papers = json.loads(path.read_text())["paper_nodes"]
    parts, size = [], 0
    for pid, node in papers.items():
        f = node["features"]
        text = f"[{pid}] {f['title']} ({f.get('year', '')}). {f['abstract']}"
        parts.append(text)
        size += len(text)
        if size >= approx_tokens * 4:
            break
    return "Papers:\n" + "\n".join(parts)


def questions(n: int = 32, path: Path = DATA / "questions_dev.jsonl") -> list[str]:
    from papersuite.io import iter_jsonl

    out = [rec["question"] for rec in iter_jsonl(path)]
    return out[:n]


def _run(engine, backend, prompts: list[str], max_tokens: int, warm: str | None = None) -> dict[str, Any]:
    """Generate with `backend`, recording logits and per-step times (decode-only steps timed).

    `warm`: a prompt run first (one token, untimed) so its full blocks are in the prefix cache, as
    a served system prompt or document would be; requests admitted together otherwise each
    compute their own copy (the cache registers blocks only once computed)."""
    from papersuite.llm import SamplingParams

    engine.block_manager.reset_prefix_cache()
    engine.runner.backend = backend
    if warm is not None:
        engine.generate([warm], SamplingParams(max_tokens=1, temperature=0.0))
    logits, decode_s, decode_steps, steps_with_decodes = [], 0.0, 0, 0
    orig = engine.runner.run

    def run(batch):
        t0 = time.perf_counter()
        out = orig(batch)
        dt = time.perf_counter() - t0
        nonlocal decode_s, decode_steps, steps_with_decodes
        steps_with_decodes += batch.num_decodes > 0
        if batch.num_decodes == len(batch.seqs):
            decode_s += dt
            decode_steps += 1
        logits.append(out.detach().float().cpu())
        return out

    engine.runner.run = run
    try:
        gens = engine.generate(prompts, SamplingParams(max_tokens=max_tokens, temperature=0.0))
    finally:
        engine.runner.run = orig
    return {"gens": gens, "logits": logits, "decode_s": decode_s, "decode_steps": decode_steps,
            "steps_with_decodes": steps_with_decodes}


def greedy_compare(engine, backend, prompts: list[str], max_tokens: int = 16) -> dict[str, Any]:
    """Default paged backend vs `backend` on one engine: tokens_equal, max_logit_diff."""
    from papersuite.engine.attention import PagedAttentionBackend

    a = _run(engine, PagedAttentionBackend(), prompts, max_tokens)
    b = _run(engine, backend, prompts, max_tokens)
    same = all(x.token_ids == y.token_ids for x, y in zip(a["gens"], b["gens"]))
    steps = min(len(a["logits"]), len(b["logits"]))
    diff = max(float((x - y).abs().max()) for x, y in zip(a["logits"][:steps], b["logits"][:steps]))
    return {"tokens_equal": same, "max_logit_diff": diff, "steps": steps,
            "steps_with_decodes": b["steps_with_decodes"],
            "preemptions": sum(g.num_preemptions for g in b["gens"]),
            "shared_plans": getattr(backend, "shared_plans_", None),
            "plans": getattr(backend, "plans_built_", None),
            "paths": dict(getattr(backend, "paths_", {}))}


def e2e(engine, backend_factory, max_tokens: int = 64, n: int = 32, doc_tokens: int = 2000) -> list[dict[str, Any]]:
    """TPOT of default vs FlashForge on shared-document and unrelated workloads (same engine)."""
    from papersuite.engine.attention import PagedAttentionBackend

    doc = document(doc_tokens)
    qs = questions(n)
    workloads = {
        "shared-document": [f"{doc}\n\nQuestion: {q}\nAnswer:" for q in qs],
        "unrelated": [f"Question: {q}\nAnswer:" for q in qs],
    }
    rows = []
    for name, prompts in workloads.items():
        res = {}
        for label, backend in (("default", PagedAttentionBackend()), ("flashforge", backend_factory())):
            res[label] = _run(engine, backend, prompts, max_tokens, warm=prompts[0])
            res[label]["backend"] = backend
        tpot = {k: v["decode_s"] / max(1, v["decode_steps"]) for k, v in res.items()}
        toks = {k: sum(g.completion_tokens for g in v["gens"]) - len(prompts) for k, v in res.items()}
        rows.append({
            "workload": name, "requests": len(prompts),
            "prompt_tokens": sum(g.prompt_tokens for g in res["default"]["gens"]),
            "tpot_ms": {k: v * 1e3 for k, v in tpot.items()},
            "decode_tokens_per_s": {k: toks[k] / max(1e-9, res[k]["decode_s"]) for k in res},
            "tpot_gain": tpot["default"] / tpot["flashforge"],
            "tokens_equal": all(x.token_ids == y.token_ids for x, y in
                                zip(res["default"]["gens"], res["flashforge"]["gens"])),
            "cached_tokens": sum(g.cached_tokens for g in res["flashforge"]["gens"]),
            "flashforge_paths": dict(getattr(res["flashforge"]["backend"], "paths_", {})),
        })
    return rows
