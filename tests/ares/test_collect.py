"""Collection through the real engine (tiny model): labels, hidden states, resume."""
import json

import numpy as np
import pytest
import torch

from ares.collect import collect, load_records
from papersuite.errors import UserError

PROMPTS = ["Say hi.", "List 3 facts about bees.", "What is DNA?", "Write a haiku about tides.", "Yes or no?"]


@pytest.fixture(scope="module")
def data(tiny_llama, tmp_path_factory):
    out = tmp_path_factory.mktemp("ares-data")
    collect(out, PROMPTS, model=tiny_llama, max_tokens=24, every=4, batch_size=3, temperature=0.7)
    return out


def test_labels_and_layout(data):
    rec = load_records(data)
    assert len(rec.requests) == len(PROMPTS)
    lengths = np.array([rec.requests[q]["output_tokens"] for q in rec.req])
    assert np.all(rec.t + rec.r == lengths) and np.all(rec.r >= 1)
    assert np.all(rec.t % 4 == 0)
    for q, req in enumerate(rec.requests):  # every request has its prompt-end record and one per 4 tokens
        ts = sorted(rec.t[rec.req == q].tolist())
        assert ts == list(range(0, req["output_tokens"], 4))
    assert json.loads((data / "meta.json").read_text())["every"] == 4


def test_hidden_state_is_final_norm_state_of_newest_token(data, tiny_llama):
    from transformers import AutoModelForCausalLM

    rec = load_records(data)
    hf = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32).eval()
    for q in (0, 3):
        req = rec.requests[q]
        ids = req["token_ids"]
        prompt_len = req["prompt_tokens"]
        with torch.no_grad():
            states = hf.model(torch.tensor([ids])).last_hidden_state[0]  # final norm applied
        for i in np.flatnonzero(rec.req == q):
            t = int(rec.t[i])
            # the newest token at progress t sits at position prompt_len + t - 1
            np.testing.assert_allclose(rec.h[i], states[prompt_len + t - 1].numpy(), atol=1e-5)
            if t > 0:  # running mean over h_1..h_t (states after each generated token)
                ref = states[prompt_len:prompt_len + t].mean(0).numpy()
                np.testing.assert_allclose(rec.hmean[i], ref, atol=1e-5)


def test_resume_skips_done_and_rejects_other_settings(data, tiny_llama):
    before = (data / "requests.jsonl").read_text()
    collect(data, PROMPTS, model=tiny_llama, max_tokens=24, every=4, batch_size=3, temperature=0.7)
    assert (data / "requests.jsonl").read_text() == before  # nothing redone
    with pytest.raises(UserError, match="other settings"):
        collect(data, PROMPTS, model=tiny_llama, max_tokens=24, every=8, batch_size=3)


def test_load_errors(tmp_path):
    with pytest.raises(UserError, match="no such data folder"):
        load_records(tmp_path / "nope")
    with pytest.raises(UserError, match="not an ARES data folder"):
        load_records(tmp_path)
