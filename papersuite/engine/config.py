"""Engine configuration: the model's architecture facts (read from config.json) and engine knobs.

One frozen `EngineConfig` instead of option sprawl (nano-vllm). Plug-ins (attention backend, KV
eviction policy, scheduling policy) are named from their registries or passed as instances.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ModelConfig:
    """A Llama-architecture decoder (Llama 2/3, SmolLM2, Mistral, Qwen2): values from config.json."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    eos_token_id: tuple[int, ...] = ()
    model_type: str = "llama"
    num_experts: int = 0  # > 0: a Mixtral-style sparse MoE replaces every MLP (engine/moe.py)
    num_experts_per_tok: int = 2

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        heads = int(d["num_attention_heads"])
        rope = d.get("rope_parameters") or d.get("rope_scaling") or {}
        theta = rope.get("rope_theta", d.get("rope_theta", 10000.0))
        scaling = None if rope.get("rope_type", rope.get("type", "default")) == "default" else dict(rope)
        eos = d.get("eos_token_id")
        eos = tuple(eos) if isinstance(eos, (list, tuple)) else (() if eos is None else (int(eos),))
        model_type = d.get("model_type", "llama")
        attention_bias = bool(d.get("attention_bias", False))
        return cls(
            vocab_size=int(d["vocab_size"]), hidden_size=int(d["hidden_size"]),
            intermediate_size=int(d["intermediate_size"]), num_hidden_layers=int(d["num_hidden_layers"]),
            num_attention_heads=heads, num_key_value_heads=int(d.get("num_key_value_heads") or heads),
            head_dim=int(d.get("head_dim") or d["hidden_size"] // heads),
            rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)), rope_theta=float(theta), rope_scaling=scaling,
            max_position_embeddings=int(d.get("max_position_embeddings", 2048)),
            tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
            qkv_bias=attention_bias or model_type == "qwen2", o_bias=attention_bias,
            mlp_bias=bool(d.get("mlp_bias", False)), eos_token_id=eos, model_type=model_type,
            num_experts=int(d.get("num_local_experts") or 0),
            num_experts_per_tok=int(d.get("num_experts_per_tok") or 2))

    @classmethod
    def from_folder(cls, folder: str | Path) -> "ModelConfig":
        return cls.from_dict(json.loads((Path(folder) / "config.json").read_text()))

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        return 2 * self.num_hidden_layers * self.num_key_value_heads * self.head_dim * dtype_bytes


@dataclass(frozen=True)
class EngineConfig:
    """Engine knobs. KV budget: `num_blocks`, else `kv_cache_bytes`, else 256 MiB."""

    model: str = "smollm2-135m-instruct"
    device: str = "cpu"
    dtype: str | None = None  # float32 on CPU, bfloat16 on CUDA
    attention: Any = "paged"
    kv_policy: Any = "lru"
    scheduler: Any = "fcfs"
    block_size: int = 16
    num_blocks: int | None = None
    kv_cache_bytes: int | None = None
    max_num_batched_tokens: int = 512
    max_num_seqs: int = 64
    max_model_len: int | None = None  # default: the model's max_position_embeddings
    enable_prefix_caching: bool = True
    seed: int = 0

    DEFAULT_KV_BYTES = 256 * 2**20

    def __post_init__(self) -> None:
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {self.block_size}")
        if self.num_blocks is not None and self.num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {self.num_blocks}")
        if self.kv_cache_bytes is not None and self.kv_cache_bytes < 1:
            raise ValueError(f"kv_cache_bytes must be >= 1, got {self.kv_cache_bytes}")
        if self.max_num_batched_tokens < 1 or self.max_num_seqs < 1:
            raise ValueError("max_num_batched_tokens and max_num_seqs must be >= 1")
        if self.dtype not in (None, "float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be float32, bfloat16 or float16, got {self.dtype!r}")

    def resolve_num_blocks(self, model: ModelConfig, dtype_bytes: int) -> int:
        if self.num_blocks is not None:
            return self.num_blocks
        budget = self.kv_cache_bytes or self.DEFAULT_KV_BYTES
        n = budget // (model.kv_bytes_per_token(dtype_bytes) * self.block_size)
        if n < 1:
            raise ValueError(f"kv_cache_bytes={budget} holds not even one block of {self.block_size} tokens")
        return int(n)
