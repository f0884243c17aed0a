"""The upcycled model on disk: dense weights, one file per (layer, expert), a sha256 manifest.

Layout of a store folder:
    config.json              Mixtral format (MixtralConfig), so an export loads in transformers
    dense.safetensors        every non-expert weight (HF names), routers as `model.layers.i.mlp.gate.weight`
    experts/L{i:03d}_E{j:03d}.safetensors   `gate_up` [2I, H] (gate rows first), `down` [H, I]
    manifest.json            {"files": {relpath: sha256}, "build": {...hyperparameters}}
    tokenizer files          copied from the dense source
The expert files are the offload tier; `export_hf` writes a plain `MixtralForCausalLM` folder
(transformers 5 fused layout) for the reference-logits test.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch
from torch import Tensor

from papersuite.io import atomic_write

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "generation_config.json")
DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}


def expert_file(layer: int, expert: int) -> str:
    return f"experts/L{layer:03d}_E{expert:03d}.safetensors"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def mixtral_config(dense_folder: Path, num_experts: int, top_k: int) -> dict:
    """The dense model's config.json turned into a Mixtral one."""
    src = json.loads((dense_folder / "config.json").read_text())
    from transformers import MixtralConfig

    rope = src.get("rope_parameters") or {}
    theta = rope.get("rope_theta", src.get("rope_theta", 10000.0))
    heads = src["num_attention_heads"]
    cfg = MixtralConfig(
        vocab_size=src["vocab_size"], hidden_size=src["hidden_size"], intermediate_size=src["intermediate_size"],
        num_hidden_layers=src["num_hidden_layers"], num_attention_heads=heads,
        num_key_value_heads=src.get("num_key_value_heads") or heads,
        head_dim=src.get("head_dim") or src["hidden_size"] // heads, hidden_act="silu",
        max_position_embeddings=src.get("max_position_embeddings", 2048), rms_norm_eps=src.get("rms_norm_eps", 1e-5),
        rope_theta=theta, tie_word_embeddings=src.get("tie_word_embeddings", False), sliding_window=None,
        num_local_experts=num_experts, num_experts_per_tok=top_k, router_jitter_noise=0.0,
        bos_token_id=src.get("bos_token_id"), eos_token_id=src.get("eos_token_id"), pad_token_id=src.get("pad_token_id"))
    d = cfg.to_dict()
    d["architectures"] = ["MixtralForCausalLM"]
    d["rope_theta"] = theta
    return d


def _write_safetensors(path: Path, tensors: dict[str, Tensor]) -> None:
    from safetensors.torch import save

    data = save({k: v.contiguous() for k, v in tensors.items()})
    with atomic_write(path, "wb") as f:
        f.write(data)


def build_store(dense_folder: str | Path, out: str | Path, upcycler, store_dtype: str = "bfloat16",
                on_layer=None) -> Path:
    """Upcycle `dense_folder` into a store at `out` with a fitted `Upcycler`; returns `out`."""
    from safetensors.torch import load_file

    dense_folder, out = Path(dense_folder), Path(out)
    dt = DTYPES[store_dtype]
    (out / "experts").mkdir(parents=True, exist_ok=True)
    state: dict[str, Tensor] = {}
    for f in sorted(dense_folder.glob("*.safetensors")):
        state.update(load_file(str(f)))
    cfg = mixtral_config(dense_folder, upcycler.num_experts, upcycler.top_k)
    L = cfg["num_hidden_layers"]
    dense: dict[str, Tensor] = {}
    for key, value in state.items():
        if ".mlp." not in key:
            dense[key] = value.float()
    files: list[str] = ["dense.safetensors"]
    for i in range(L):
        p = f"model.layers.{i}.mlp."
        gate, up, down = state[p + "gate_proj.weight"], state[p + "up_proj.weight"], state[p + "down_proj.weight"]
        dense[p + "gate.weight"] = upcycler.routers_[i].float()
        for e, gu, dn in upcycler.experts(i, gate, up, down):
            _write_safetensors(out / expert_file(i, e), {"gate_up": gu.to(dt), "down": dn.to(dt)})
            files.append(expert_file(i, e))
        if on_layer is not None:
            on_layer(i)
    _write_safetensors(out / "dense.safetensors", dense)
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    for name in TOKENIZER_FILES:
        if (dense_folder / name).exists():
            shutil.copy(dense_folder / name, out / name)
    manifest = {"files": {f: sha256(out / f) for f in files},
                "build": {"source": str(dense_folder), "experts": upcycler.num_experts, "top_k": upcycler.top_k,
                          "noise": upcycler.noise, "router": upcycler.router, "seed": upcycler.random_state,
                          "store_dtype": store_dtype}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out


def read_manifest(store: str | Path) -> dict:
    """The manifest, or ValueError naming what is missing (the CLI turns it into one line)."""
    store = Path(store)
    for name in ("config.json", "dense.safetensors", "manifest.json"):
        if not (store / name).exists():
            raise ValueError(f"{store}: not a specmoeoff store (no {name}); build one with `serve specmoeoff build -o DIR`")
    try:
        return json.loads((store / "manifest.json").read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{store / 'manifest.json'}:{e.lineno}: malformed JSON ({e.msg})") from None


def verify_store(store: str | Path) -> dict:
    """Check every file's sha256 against the manifest; returns the manifest or raises ValueError."""
    store = Path(store)
    manifest = read_manifest(store)
    for rel, digest in manifest["files"].items():
        path = store / rel
        if not path.exists():
            raise ValueError(f"{path}: listed in the manifest but missing")
        if sha256(path) != digest:
            raise ValueError(f"{path}: sha256 differs from manifest.json (corrupt or edited expert file)")
    return manifest


def load_expert_file(path: Path) -> tuple[Tensor, Tensor]:
    from safetensors.torch import load_file

    t = load_file(str(path))
    return t["gate_up"], t["down"]


def export_hf(store: str | Path, out: str | Path, num_layers: int | None = None) -> Path:
    """A `MixtralForCausalLM` folder (fused transformers-5 layout) holding every expert in fp32.

    `num_layers` keeps only the first layers (a cheaper reference for a large store)."""
    from safetensors.torch import load_file

    store, out = Path(store), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = json.loads((store / "config.json").read_text())
    if num_layers is not None:
        cfg["num_hidden_layers"] = min(num_layers, cfg["num_hidden_layers"])
    state = {k: v for k, v in load_file(str(store / "dense.safetensors")).items()
             if not k.startswith("model.layers.") or int(k.split(".")[2]) < cfg["num_hidden_layers"]}
    for i in range(cfg["num_hidden_layers"]):
        pairs = [load_expert_file(store / expert_file(i, e)) for e in range(cfg["num_local_experts"])]
        state[f"model.layers.{i}.mlp.experts.gate_up_proj"] = torch.stack([p[0].float() for p in pairs])
        state[f"model.layers.{i}.mlp.experts.down_proj"] = torch.stack([p[1].float() for p in pairs])
    if cfg.get("tie_word_embeddings"):
        state.pop("lm_head.weight", None)
    _write_safetensors(out / "model.safetensors", state)
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    for name in TOKENIZER_FILES:
        if (store / name).exists():
            shutil.copy(store / name, out / name)
    return out
