"""Test helpers shared by every package's tests: a tiny random-weight Llama folder.

A 2-layer, 64-wide model with SmolLM2's tokenizer runs the whole engine in milliseconds, so
tests exercise real code paths (prefill, decode, hooks, preemption) without the 135M model.
"""
from __future__ import annotations

import shutil
from pathlib import Path


def make_tiny_folder(path: str | Path, arch: str = "llama", **overrides) -> Path:
    """Save a random tiny HF model + SmolLM2's tokenizer files into `path`; returns the folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from papersuite.models import hf_folder, resolve

    path = Path(path)
    src = hf_folder(resolve("smollm2-135m-instruct"))
    kw = dict(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
              tie_word_embeddings=True, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    kw.update(overrides)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(**kw)) if arch == "qwen2" else LlamaForCausalLM(LlamaConfig(**kw))
    with torch.no_grad():  # larger random weights: sharper distributions, fewer argmax ties
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.08)
    model.save_pretrained(path)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (src / name).exists():
            shutil.copy(src / name, path / name)
    return path
