"""Run one system over a set of prompts in batches and report SpecMoEOff's metrics.

Decode throughput excludes prefill; expert loads and bytes are counted per generated token
(prefill's loads are subtracted), as the paper notes require.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch

from specmoeoff.speculative import SpeculativeDecoder, SpecStats
from specmoeoff.system import load_offloaded
from specmoeoff.verify_attention import VerifyAttentionBackend


def draft_folder(store: str | Path) -> Path:
    """The dense model the store was upcycled from (the draft)."""
    manifest = json.loads((Path(store) / "manifest.json").read_text())
    src = Path(manifest["build"]["source"])
    if not (src / "config.json").exists():
        raise ValueError(f"{store}: the dense source {src} (the draft) is gone; rebuild the store")
    return src


def encode_prompts(store: str | Path, records: Sequence[dict]) -> list[list[int]]:
    """Chat-template token ids of `prompt` (as one user turn) or `messages`."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(store)
    out = []
    for r in records:
        msgs = r.get("messages") or [{"role": "user", "content": r["prompt"]}]
        ids = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        out.append(list(ids))
    return out


def chooser(k, target, draft, store, slots: int, batch: int):
    """A fixed k, or the optimizer over a fresh profile ("auto")."""
    if k != "auto":
        return int(k), None
    from specmoeoff.optimizer import KOptimizer
    from specmoeoff.profiler import profile

    prof = profile(target, draft, store, slots, batches=(1, max(batch, 2)))
    return KOptimizer(prof), prof


@torch.inference_mode()
def run_system(store_dir: str | Path, prompts: list[list[int]], system: str = "specmoeoff", k="auto",
               batch_size: int = 16, slots: int = 2, tier: str = "cold", dtype: torch.dtype = torch.float32,
               temperature: float = 0.0, max_tokens: int = 64, seed: int = 0, eos: Sequence[int] = (),
               draft_model=None) -> tuple[list[list[int]], dict]:
    """Generate with one system; returns token ids per prompt and the aggregated stats."""
    from papersuite.engine.model import LlamaModel

    off = load_offloaded(store_dir, system, tier, slots, dtype)
    draft = None
    if system == "specmoeoff":
        draft = draft_model or LlamaModel.from_folder(draft_folder(store_dir), dtype=dtype)
    if system != "specmoeoff":
        k = 0
    choose, prof = chooser(k, off.model, draft, off.store, slots, batch_size) if draft is not None else (0, None)
    off.store.reset_counters()
    total = SpecStats()
    outs: list[list[int]] = []
    loads = bytes_ = 0
    hits0 = (off.cache.hits, off.cache.misses + off.cache.prefetched_hits)
    longest = max(len(p) for p in prompts) + max_tokens
    blocks = batch_size * (-(-(longest + 17) // 16)) + 8
    for b0 in range(0, len(prompts), batch_size):
        batch = prompts[b0:b0 + batch_size]
        dec = SpeculativeDecoder(off.model, draft, k=choose, num_blocks=blocks, temperature=temperature,
                                 seed=seed + b0, target_backend=VerifyAttentionBackend())
        got, st = dec.generate(batch, max_tokens, eos, probe=lambda: (off.store.loads, off.store.bytes_read))
        outs.extend(got)
        loads += off.store.loads - st.prefill_io[0]
        bytes_ += off.store.bytes_read - st.prefill_io[1]
        for f in ("iterations", "tokens", "proposed", "accepted", "draft_s", "verify_s", "prefill_s", "row_iterations"):
            setattr(total, f, getattr(total, f) + getattr(st, f))
        total.ks.extend(st.ks)
    off.cache.close()
    d = total.as_dict()
    c = off.cache.counters()
    hits, lookups = c["hits"] - hits0[0], c["hits"] + c["misses"] + c["prefetched"] - sum(hits0)
    d.update(system=system, k="auto" if prof is not None else int(k), expert_loads_per_token=loads / max(total.tokens, 1),
             bytes_per_token=bytes_ / max(total.tokens, 1), hit_rate=hits / lookups if lookups else 0.0,
             io_wait_s=c["io_wait_s"], wasted_prefetches=c["wasted_prefetches"], tier=tier, cache_slots=slots,
             batch_size=batch_size)
    if prof is not None:
        d["profile"] = prof.as_dict()
    return outs, d
