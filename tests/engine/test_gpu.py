"""The CUDA path: same logits as transformers on the GPU (fp32), bf16 serving, sampling on CUDA."""
from __future__ import annotations

import pytest
import torch

from papersuite.llm import SamplingParams


@pytest.mark.gpu
def test_cuda_fp32_parity_and_bf16_generation(tiny_model):
    from transformers import AutoModelForCausalLM

    from papersuite.engine.engine import LLMEngine

    hf = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).to("cuda").eval()
    eng = LLMEngine(tiny_model, "cuda", dtype="float32", num_blocks=64, max_num_batched_tokens=7)
    rows: list[torch.Tensor] = []
    ids = list(range(100, 140))
    seq = eng.add_request(None, SamplingParams(max_tokens=12, ignore_eos=True,
                                               logits_processor=lambda out, r: rows.append(r.clone()) or r),
                          prompt_token_ids=ids)
    while not seq.is_finished:
        eng.step()
    with torch.inference_mode():
        ref = hf(torch.tensor([seq.token_ids[:-1]], device="cuda")).logits[0].float()
    diff = max((ref[len(ids) - 1 + i] - r).abs().max().item() for i, r in enumerate(rows))
    assert diff <= 1e-3  # cuBLAS reduction order differs from CPU's; still fp32
    bf = LLMEngine(tiny_model, "cuda", num_blocks=64)
    assert bf.runner.kv_caches[0][0].dtype == torch.bfloat16
    outs = bf.generate(["hello there", "a longer prompt for the gpu"],
                       SamplingParams(max_tokens=8, ignore_eos=True, temperature=0.7, seed=3))
    assert [g.completion_tokens for g in outs] == [8, 8]
    again = bf.generate(["hello there"], SamplingParams(max_tokens=8, ignore_eos=True, temperature=0.7, seed=3))
    assert again[0].token_ids == outs[0].token_ids
