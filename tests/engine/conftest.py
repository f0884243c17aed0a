"""Fixtures for the engine tests: a tiny random-weight Llama folder (SmolLM2's tokenizer) and,
shared across the session, the real SmolLM2 engine and its transformers twin."""
from __future__ import annotations

import os
import shutil

import pytest


def make_tiny_folder(path, arch: str = "llama", **overrides):
    """Save a random tiny HF model + SmolLM2's tokenizer files into `path`; returns the folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from papersuite.models import hf_folder, resolve

    src = hf_folder(resolve("smollm2-135m-instruct"))
    kw = dict(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
              tie_word_embeddings=True, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    kw.update(overrides)
    torch.manual_seed(0)
    if arch == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**kw))
    else:
        model = LlamaForCausalLM(LlamaConfig(**kw))
    with torch.no_grad():  # larger random weights: sharper distributions, fewer argmax ties
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.08)
    model.save_pretrained(path)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (src / name).exists():
            shutil.copy(src / name, path / name)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A tiny random Llama folder; PAPERSUITE_TEST_TINY_MODEL names a prepared one (GPU box)."""
    prepared = os.environ.get("PAPERSUITE_TEST_TINY_MODEL")
    if prepared:
        return prepared
    return str(make_tiny_folder(tmp_path_factory.mktemp("tiny-llama")))


@pytest.fixture(scope="session")
def smol_engine():
    from papersuite.engine.engine import LLMEngine

    return LLMEngine("smollm2-135m-instruct", num_blocks=256, max_num_batched_tokens=256)


@pytest.fixture(scope="session")
def smol_hf():
    from papersuite.llm import TransformersGenerator

    return TransformersGenerator("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tiny_factory():
    """`make_tiny_folder` as a fixture (test modules cannot import conftest by name)."""
    return make_tiny_folder
