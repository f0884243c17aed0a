"""Model registry and the GGUF -> safetensors cache."""
import json
import shutil

import numpy as np
import pytest
import torch

from papersuite import models
from papersuite.errors import UserError


def test_unknown_model_is_user_error():
    with pytest.raises(UserError, match="unknown model 'no-such-model'"):
        models.resolve("no-such-model")


def test_bad_gguf_is_user_error(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf at all")
    with pytest.raises(UserError, match="not a GGUF file"):
        models.load_causal_lm(str(bad))


def test_registry_models_resolve():
    llm = models.resolve("smollm2-135m-instruct")
    assert llm.is_gguf and llm.kind == "causal-lm" and llm.path.exists()
    emb = models.resolve("minilm-l6-v2")
    assert emb.kind == "embedding" and (emb.path / "config.json").exists()


def test_local_hf_folder_resolves():
    folder = models.hf_folder(models.resolve("smollm2-135m-instruct"))
    src = models.resolve(str(folder))
    assert src.kind == "causal-lm" and not src.is_gguf and src.is_cached


@pytest.mark.slow
def test_cached_model_matches_gguf_greedy(tmp_path, monkeypatch):
    """Converting into a fresh cache gives the same greedy tokens as loading the GGUF directly."""
    monkeypatch.setenv("PAPERSUITE_CACHE", str(tmp_path))
    src = models.resolve("smollm2-135m-instruct")
    direct, tok = models.load_gguf_direct(src.path)
    cached, tok2 = models.load_causal_lm("smollm2-135m-instruct")
    assert (src.cache_dir / "model.safetensors").exists()
    assert json.loads((src.cache_dir / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.inference_mode():
        a = direct.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=tok.eos_token_id)
        b = cached.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=tok2.eos_token_id)
        la = direct(ids).logits
        lb = cached(ids).logits
    assert a.tolist() == b.tolist()
    assert torch.allclose(la, lb, atol=1e-5)


def test_sentence_embedder_unit_vectors():
    emb = models.SentenceEmbedder("minilm-l6-v2")
    v = emb.encode(["a graph of papers", "a graph of papers", "bananas are yellow"])
    assert v.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > 0.999 > v[0] @ v[2]
