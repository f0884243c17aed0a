"""Logits of the engine's model equal transformers' LlamaForCausalLM (fp32, max abs diff <= 1e-4)
through prefill, chunked prefill, prefix-cache hits and 20 decode steps, in mixed batches."""
from __future__ import annotations

import pytest
import torch

from papersuite.llm import SamplingParams

TOL = 1e-4


def run_capturing(engine, prompts: list[list[int]], max_tokens: int = 20):
    """Submit all prompts at once, greedy; return each one's output ids and per-step logits."""
    seqs, captured = [], []
    for ids in prompts:
        rows: list[torch.Tensor] = []
        captured.append(rows)
        cap = (lambda rows: lambda out, row: rows.append(row.clone()) or row)(rows)
        seqs.append(engine.add_request(None, SamplingParams(max_tokens=max_tokens, ignore_eos=True,
                                                            logits_processor=cap), prompt_token_ids=ids))
    while any(not s.is_finished for s in seqs):
        engine.step()
    return seqs, captured


def max_diff_vs_hf(hf_model, seq, rows) -> float:
    full = seq.token_ids[:-1]
    with torch.inference_mode():
        ref = hf_model(torch.tensor([full])).logits[0].float()
    p = seq.num_prompt_tokens
    assert len(rows) == seq.num_output_tokens
    return max((ref[p - 1 + i] - r).abs().max().item() for i, r in enumerate(rows))


def prompts_for(vocab_rng: torch.Generator, lengths):
    return [torch.randint(3, 40000, (n,), generator=vocab_rng).tolist() for n in lengths]


@pytest.mark.parametrize("arch,overrides", [
    ("llama", {}),
    ("llama", {"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0, "original_max_position_embeddings": 64}}),
    ("qwen2", {}),
])
def test_tiny_parity_prefill_chunked_prefix_decode(tmp_path, tiny_factory, arch, overrides):
    from transformers import AutoModelForCausalLM

    from papersuite.engine.engine import LLMEngine

    folder = tiny_factory(tmp_path, arch, **overrides)
    hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(1)
    shared = prompts_for(g, [40])[0]
    prompts = [shared, shared[:35] + prompts_for(g, [9])[0], prompts_for(g, [23])[0], prompts_for(g, [5])[0]]
    # plain prefill, four requests decoding together
    eng = LLMEngine(str(folder), num_blocks=64, block_size=16, max_num_batched_tokens=512)
    seqs, rows = run_capturing(eng, prompts)
    for s, r in zip(seqs, rows):
        assert max_diff_vs_hf(hf, s, r) <= TOL
    # again: prefix-cache hits on every prompt, and prefill chunks of 7 tokens mixed with decodes
    eng.scheduler.max_num_batched_tokens = 7
    seqs, rows = run_capturing(eng, prompts)
    assert seqs[0].num_cached_tokens == 32 and seqs[1].num_cached_tokens == 32
    for s, r in zip(seqs, rows):
        assert max_diff_vs_hf(hf, s, r) <= TOL


def test_smollm2_parity_with_prefix_hit_and_chunks(smol_engine, smol_hf):
    eng, hf = smol_engine, smol_hf.model
    ids = eng.encode([{"role": "user", "content": "Name three rivers in Europe and say one fact about each."}])
    assert len(ids) > 32
    seqs, rows = run_capturing(eng, [ids])
    assert max_diff_vs_hf(hf, seqs[0], rows[0]) <= TOL
    old = eng.scheduler.max_num_batched_tokens
    eng.scheduler.max_num_batched_tokens = 7
    try:
        seqs, rows = run_capturing(eng, [ids])
    finally:
        eng.scheduler.max_num_batched_tokens = old
    assert seqs[0].num_cached_tokens >= 32
    for s, r in zip(seqs, rows):
        assert max_diff_vs_hf(hf, s, r) <= TOL
