"""Upcycling and the engine MoE: eps 0 equals the dense model, any store equals MixtralForCausalLM."""
import json
from pathlib import Path

import torch

from papersuite.engine.model import LlamaModel
from papersuite.engine.moe import MixtralModel
from specmoeoff.store import export_hf, verify_store
from specmoeoff.target import load_target, prefill_logits


def test_store_layout_and_manifest(tiny_store):
    root = Path(tiny_store)
    manifest = verify_store(root)
    assert len([f for f in manifest["files"] if f.startswith("experts/")]) == 2 * 4
    cfg = json.loads((root / "config.json").read_text())
    assert cfg["model_type"] == "mixtral" and cfg["num_local_experts"] == 4 and cfg["num_experts_per_tok"] == 2
    assert manifest["build"]["router"] == "kmeans"


def test_same_seed_same_store(tiny_llama, tiny_store, tmp_path, store_builder):
    again = store_builder(tiny_llama, tmp_path / "again", 0.1, router="kmeans")
    a = json.loads((Path(tiny_store) / "manifest.json").read_text())["files"]
    b = json.loads((again / "manifest.json").read_text())["files"]
    assert a == b


def test_eps0_equals_dense(tiny_llama, tiny_store_eps0):
    ids = torch.tensor([1, 504, 3102, 30, 2120, 314, 253, 1789, 42, 900, 11, 7])
    dense = LlamaModel.from_folder(tiny_llama)
    moe = load_target(tiny_store_eps0)
    a = prefill_logits(dense, ids)
    b = prefill_logits(moe, ids)
    assert (a - b).abs().max().item() <= 1e-4
    assert torch.equal(a.argmax(-1), b.argmax(-1))


def test_engine_moe_equals_transformers_mixtral(tiny_store, tmp_path):
    from transformers import MixtralForCausalLM

    export = export_hf(tiny_store, tmp_path / "hf")
    ref = MixtralForCausalLM.from_pretrained(export, dtype=torch.float32).eval()
    ids = torch.tensor([1, 504, 3102, 30, 2120, 314, 253, 1789, 42, 900, 11, 7, 88, 1000])
    with torch.no_grad():
        want = ref(ids[None]).logits[0]
    ours = prefill_logits(MixtralModel.from_folder(export), ids)
    assert (want - ours).abs().max().item() <= 1e-4
    from_store = prefill_logits(load_target(tiny_store), ids)
    assert (want - from_store).abs().max().item() <= 1e-4


def test_noise_changes_experts(tiny_store):
    from specmoeoff.store import expert_file, load_expert_file

    a = load_expert_file(Path(tiny_store) / expert_file(0, 0))[0]
    b = load_expert_file(Path(tiny_store) / expert_file(0, 1))[0]
    assert not torch.equal(a, b)
