"""A Llama-architecture decoder (SmolLM2, Llama 2/3, Mistral, Qwen2) over the paged KV cache.

It mirrors transformers' `LlamaForCausalLM` numerically (RMSNorm in fp32 then cast, rotate-half
RoPE, SiLU(gate) * up, GQA) so logits agree within 1e-4 in fp32, but runs on a flat batch of
tokens: `forward(input_ids [T], positions [T], kv_caches, meta)` with attention through an
`AttentionBackend`. q/k/v and gate/up projections are fused at load time (fewer ops per step).
Mistral's sliding window is not applied (full attention).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from papersuite.engine.attention import AttentionBackend, AttentionMetadata, attend
from papersuite.engine.config import ModelConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rope_inv_freq(cfg: ModelConfig) -> Tensor:
    """Inverse frequencies: default, or Llama 3's smooth low/high-frequency scaling."""
    d = cfg.head_dim
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
    sc = cfg.rope_scaling
    if sc is None:
        return inv
    kind = sc.get("rope_type", sc.get("type"))
    if kind == "linear":
        return inv / float(sc["factor"])
    if kind == "llama3":
        factor, low, high = float(sc["factor"]), float(sc["low_freq_factor"]), float(sc["high_freq_factor"])
        old_len = float(sc["original_max_position_embeddings"])
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > old_len / low, inv / factor, inv)
        smooth = (old_len / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < old_len / high) & ~(wavelen > old_len / low)
        return torch.where(medium, smoothed, scaled)
    raise ValueError(f"rope scaling {kind!r} is not supported by the engine's model code")


def rotate_half(x: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.h, self.hkv, self.d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.qkv_proj = nn.Linear(cfg.hidden_size, (self.h + 2 * self.hkv) * self.d, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(self.h * self.d, cfg.hidden_size, bias=cfg.o_bias)
        self.scale = self.d ** -0.5

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, kv: tuple[Tensor, Tensor], meta: AttentionMetadata,
                backend: AttentionBackend) -> Tensor:
        T = x.shape[0]
        q, k, v = self.qkv_proj(x).split([self.h * self.d, self.hkv * self.d, self.hkv * self.d], dim=-1)
        q = q.view(T, self.h, self.d)
        k = k.view(T, self.hkv, self.d)
        v = v.view(T, self.hkv, self.d)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        o = attend(backend, q, k, v, kv[0], kv[1], meta, self.scale)
        return self.o_proj(o.reshape(T, self.h * self.d))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.inter = cfg.intermediate_size
        self.gate_up_proj = nn.Linear(cfg.hidden_size, 2 * cfg.intermediate_size, bias=cfg.mlp_bias)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=cfg.mlp_bias)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up_proj(x).split(self.inter, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.self_attn = Attention(cfg)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, kv, meta, backend):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, kv, meta, backend)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    """Embeddings, decoder layers, final norm and LM head; `forward` returns final-norm hidden states."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        self.register_buffer("inv_freq", rope_inv_freq(cfg), persistent=False)

    def rope(self, positions: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """cos/sin `[T, 1, D]` computed in fp32 exactly as transformers does, then cast."""
        freqs = positions.float()[:, None] * self.inv_freq.float()[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype)[:, None, :], emb.sin().to(dtype)[:, None, :]

    def forward(self, input_ids: Tensor, positions: Tensor, kv_caches: list[tuple[Tensor, Tensor]],
                meta: AttentionMetadata, backend: AttentionBackend) -> Tensor:
        x = self.embed_tokens(input_ids)
        cos, sin = self.rope(positions, x.dtype)
        for layer, kv in zip(self.layers, kv_caches):
            x = layer(x, cos, sin, kv, meta, backend)
        return self.norm(x)

    def compute_logits(self, hidden: Tensor) -> Tensor:
        return self.lm_head(hidden).float()

    # -- weights ------------------------------------------------------------------------------
    def load_hf_state_dict(self, state: dict[str, Tensor]) -> None:
        """Load transformers-named weights (q/k/v and gate/up separate) into the fused layout."""
        own = dict(self.named_parameters())
        loaded = set()

        def put(name: str, value: Tensor, rows: slice | None = None) -> None:
            param = own[name]
            with torch.no_grad():
                (param if rows is None else param[rows]).copy_(value.to(param.dtype))
            loaded.add(name)

        h, hkv, d, inter = (self.config.num_attention_heads, self.config.num_key_value_heads,
                            self.config.head_dim, self.config.intermediate_size)
        qkv_rows = {"q_proj": slice(0, h * d), "k_proj": slice(h * d, (h + hkv) * d),
                    "v_proj": slice((h + hkv) * d, (h + 2 * hkv) * d)}
        for key, value in state.items():
            name = key[len("model."):] if key.startswith("model.") else key
            if "rotary_emb" in name:
                continue
            if name == "lm_head.weight" and self.config.tie_word_embeddings:
                continue
            parts = name.split(".")
            if len(parts) >= 4 and parts[0] == "layers" and parts[3] in qkv_rows:
                put(f"layers.{parts[1]}.self_attn.qkv_proj.{parts[4]}", value, qkv_rows[parts[3]])
            elif len(parts) >= 4 and parts[0] == "layers" and parts[3] in ("gate_proj", "up_proj"):
                rows = slice(0, inter) if parts[3] == "gate_proj" else slice(inter, 2 * inter)
                put(f"layers.{parts[1]}.mlp.gate_up_proj.{parts[4]}", value, rows)
            elif name in own:
                put(name, value)
            else:
                raise ValueError(f"unexpected weight {key!r} for a {self.config.model_type} model")
        missing = [n for n in own if n not in loaded and not (n == "lm_head.weight" and self.config.tie_word_embeddings)]
        if missing:
            raise ValueError(f"weights missing from the checkpoint: {', '.join(missing[:5])}")

    @classmethod
    def from_folder(cls, folder: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu") -> "LlamaModel":
        """Build from a Hugging Face folder (config.json + *.safetensors)."""
        model, state = skeleton_and_weights(cls, folder)
        model.load_hf_state_dict(state)
        return model.to(device=device, dtype=dtype).eval()


def skeleton_and_weights(cls, folder: str | Path, weights: str = "*.safetensors") -> tuple[nn.Module, dict[str, Tensor]]:
    """An unfilled `cls(config)` on the CPU (RoPE and tied embeddings set) plus the folder's tensors.

    Shared by the dense and the MoE model, which differ only in how they take the state dict.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg = ModelConfig.from_folder(folder)
    files = sorted(folder.glob(weights))
    if not files:
        raise ValueError(f"{folder}: no {weights} weights")
    with torch.device("meta"):
        model = cls(cfg)
    model = model.to_empty(device="cpu")
    model.inv_freq = rope_inv_freq(cfg)
    if cfg.tie_word_embeddings:
        model.lm_head.weight = model.embed_tokens.weight
    state: dict[str, Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    return model, state
