"""LLMEngine.generate equals TransformersGenerator greedy on 8 prompts, and is a TextGenerator."""
from __future__ import annotations

import pytest

from papersuite.llm import Generation, SamplingParams, TextGenerator

PROMPTS = [
    "The capital of France is",
    [{"role": "user", "content": "What is 2+2?"}],
    "def fibonacci(n):",
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a colour."}],
    "Once upon a time, in a small village,",
    [{"role": "user", "content": "Translate 'good morning' into French."}],
    "The three primary colours are",
    [{"role": "user", "content": "Write a haiku about the sea."}],
]


@pytest.mark.slow
def test_greedy_equals_transformers_on_8_prompts(smol_engine, smol_hf):
    params = SamplingParams(max_tokens=8)
    ours = smol_engine.generate(PROMPTS, params)
    ref = smol_hf.generate(PROMPTS, params)
    assert isinstance(smol_engine, TextGenerator)
    for a, b in zip(ours, ref):
        assert isinstance(a, Generation)
        assert a.token_ids == b.token_ids and a.text == b.text and a.finish_reason == b.finish_reason
        assert a.prompt_tokens == b.prompt_tokens and a.completion_tokens == b.completion_tokens
        assert a.ttft_s is not None and 0 < a.ttft_s <= a.latency_s
    again = smol_engine.generate(PROMPTS[:2], params)  # the second time the prompts hit the cache
    assert [g.token_ids for g in again] == [g.token_ids for g in ours[:2]]
    assert all(g.cached_tokens > 0 for g in again if g.prompt_tokens > 16)
