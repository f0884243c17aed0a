"""Sampling: filters, per-request seeds independent of the batch, stops, logprobs, logits processors."""
from __future__ import annotations

import pytest
import torch

from papersuite.engine.sampling import filter_logits, stream_holdback
from papersuite.llm import SamplingParams


def test_filters():
    row = torch.tensor([3.0, 2.0, 1.0, 0.0])
    assert torch.isinf(filter_logits(row, 1.0, 2, 1.0)[2:]).all()
    kept = filter_logits(row, 1.0, 0, 0.7)  # p = .64,.24,.09,.03: the first two reach 0.7
    assert torch.isfinite(kept[:2]).all() and torch.isinf(kept[2:]).all()
    assert torch.isfinite(filter_logits(row, 1.0, 0, 0.01)[:1]).all()  # keeps at least the top token
    assert torch.allclose(filter_logits(row, 2.0, 0, 1.0), row / 2)


def test_stream_holdback():
    assert stream_holdback("hello wor", ["world"]) == 3
    assert stream_holdback("hello", ["xyz"]) == 0
    assert stream_holdback("caf\ufffd", []) == 1


@pytest.fixture(scope="module")
def tiny_engine(tiny_model):
    from papersuite.engine.engine import LLMEngine

    return LLMEngine(tiny_model, num_blocks=64)


def test_seeded_sampling_does_not_depend_on_batch(tiny_engine):
    p = SamplingParams(max_tokens=8, temperature=1.0, top_p=0.9, top_k=50, seed=7, ignore_eos=True)
    alone = tiny_engine.generate(["a seeded request"], p)[0].token_ids
    other = SamplingParams(max_tokens=8, temperature=0.8, seed=1, ignore_eos=True)
    batched = tiny_engine.generate(["another one", "a seeded request", "third"], p)[1].token_ids
    mixed = [tiny_engine.add_request("x y z", other), tiny_engine.add_request("a seeded request", p)]
    while not all(s.is_finished for s in mixed):
        tiny_engine.step()
    assert alone == batched == mixed[1].output_token_ids
    unseeded = tiny_engine.generate(["a seeded request"] * 2, SamplingParams(max_tokens=8, temperature=1.0))
    assert all(len(g.token_ids) <= 8 for g in unseeded)


def test_stop_ids_strings_processor_and_logprobs(tiny_engine):
    eng = tiny_engine
    greedy = eng.generate(["count"], SamplingParams(max_tokens=6, ignore_eos=True))[0]
    stop_tok = greedy.token_ids[2]
    g = eng.generate(["count"], SamplingParams(max_tokens=6, ignore_eos=True, stop_token_ids=(stop_tok,)))[0]
    assert g.finish_reason == "stop" and g.token_ids == greedy.token_ids[:greedy.token_ids.index(stop_tok)]
    full = eng.decode(greedy.token_ids)
    needle = full[len(full) // 2:][:3]
    g = eng.generate(["count"], SamplingParams(max_tokens=6, ignore_eos=True, stop=(needle,)))[0]
    assert g.finish_reason == "stop" and g.text == full[:full.index(needle)]
    forced = eng.tokenizer("ok")["input_ids"][0]

    def force(out, row):
        row[:] = float("-inf")
        row[forced] = 0.0
        return row

    g = eng.generate(["count"], SamplingParams(max_tokens=3, ignore_eos=True, logits_processor=force, logprobs=2))[0]
    assert g.token_ids == [forced] * 3
    assert all(lp["token_id"] == forced and lp["logprob"] == 0.0 and len(lp["top"]) == 2 for lp in g.logprobs)


def test_bad_requests_raise_value_error(tiny_engine):
    eng = tiny_engine
    for bad in (lambda: eng.generate([[]]), lambda: eng.generate([""]),
                lambda: eng.generate(["x " * 600]),
                lambda: eng.generate(["hi"], SamplingParams(max_tokens=10**6)),
                lambda: SamplingParams(max_tokens=-1)):
        with pytest.raises(ValueError):
            bad()
    assert not eng.has_unfinished()
