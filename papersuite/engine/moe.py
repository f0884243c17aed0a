"""Mixtral-style sparse MoE for the engine: top-k router, experts behind an `ExpertProvider`.

The decoder is `LlamaModel` with every MLP replaced by `SparseMoeBlock`. Routing mirrors
transformers' `MixtralSparseMoeBlock` (softmax over all router logits in fp32, top-k, renormalise:
the same as a softmax over the selected logits), so logits match `MixtralForCausalLM` within 1e-4
in fp32. Expert weights do not live in the module: each layer asks its provider for the experts
its tokens need, once per layer per forward pass, as one call. That is where offloading plugs in:
an in-memory provider (`StackedExperts`) for checkpoints that hold every expert, a cached and
tiered store (SpecMoEOff) for experts read from slow memory.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from papersuite.engine.config import ModelConfig
from papersuite.engine.model import LlamaModel


@runtime_checkable
class ExpertProvider(Protocol):
    """Hands out expert weights: `gate_up` `[2I, H]` (gate rows first) and `down` `[H, I]`.

    `begin_layer` is called with the layer's MoE input before routing, so a provider can prefetch
    (the next layer's experts, say); `fetch` returns every requested expert, in the compute dtype.
    """

    def begin_layer(self, layer: int, hidden: Tensor) -> None: ...

    def fetch(self, layer: int, experts: Sequence[int]) -> dict[int, tuple[Tensor, Tensor]]: ...


class StackedExperts:
    """Every expert resident in memory as stacked tensors `[L][E, 2I, H]`, `[L][E, H, I]`."""

    def __init__(self, gate_up: list[Tensor], down: list[Tensor]) -> None:
        self.gate_up, self.down = gate_up, down

    def begin_layer(self, layer: int, hidden: Tensor) -> None:
        pass  # everything is resident

    def fetch(self, layer: int, experts: Sequence[int]) -> dict[int, tuple[Tensor, Tensor]]:
        return {e: (self.gate_up[layer][e], self.down[layer][e]) for e in experts}

    def to(self, dtype: torch.dtype) -> "StackedExperts":
        return StackedExperts([t.to(dtype) for t in self.gate_up], [t.to(dtype) for t in self.down])


def route(router_logits: Tensor, top_k: int) -> tuple[Tensor, Tensor]:
    """Top-k experts per token and their weights (fp32, renormalised to sum to 1)."""
    probs = torch.softmax(router_logits.float(), dim=-1)
    weights, idx = torch.topk(probs, top_k, dim=-1)
    return weights / weights.sum(dim=-1, keepdim=True), idx


def expert_ffn(x: Tensor, gate_up: Tensor, down: Tensor) -> Tensor:
    """SiLU(gate) * up, then down: one expert over the tokens routed to it."""
    gate, up = F.linear(x, gate_up).chunk(2, dim=-1)
    return F.linear(F.silu(gate) * up, down)


class SparseMoeBlock(nn.Module):
    """Router plus provider-backed experts; tokens are grouped by expert (one GEMM each)."""

    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.layer, self.num_experts, self.top_k = layer, cfg.num_experts, cfg.num_experts_per_tok
        self.gate = nn.Linear(cfg.hidden_size, cfg.num_experts, bias=False)
        self.provider: ExpertProvider | None = None
        self.last_experts: list[int] = []  # experts used by the last forward (for traces)

    def forward(self, x: Tensor) -> Tensor:
        assert self.provider is not None, "SparseMoeBlock needs an ExpertProvider"
        self.provider.begin_layer(self.layer, x)
        weights, idx = route(self.gate(x), self.top_k)
        flat = idx.reshape(-1)
        needed = torch.unique(flat).tolist()
        self.last_experts = needed
        experts = self.provider.fetch(self.layer, needed)
        # the weighted sum is accumulated one precision up: with equal experts (upcycling at eps 0)
        # it then rounds back to exactly the dense MLP's output (weights sum to 1)
        acc = torch.float64 if x.dtype == torch.float32 else torch.float32
        out = torch.zeros(x.shape, dtype=acc, device=x.device)
        order = torch.argsort(flat, stable=True)
        counts = torch.bincount(flat, minlength=self.num_experts).tolist()
        start = 0
        for e in range(self.num_experts):
            n = counts[e]
            if n == 0:
                continue
            sel = order[start:start + n]
            start += n
            tok, slot = sel // self.top_k, sel % self.top_k
            gate_up, down = experts[e]
            y = expert_ffn(x[tok], gate_up, down).to(acc) * weights[tok, slot, None].to(acc)
            out.index_add_(0, tok, y)
        return out.to(x.dtype)


class MixtralModel(LlamaModel):
    """`LlamaModel` whose layers use `SparseMoeBlock`; experts come from `set_provider`."""

    def __init__(self, cfg: ModelConfig) -> None:
        if cfg.num_experts < 1:
            raise ValueError("MixtralModel needs num_experts >= 1 (config.json: num_local_experts)")
        super().__init__(cfg)
        for i, layer in enumerate(self.layers):
            layer.mlp = SparseMoeBlock(cfg, i)

    def set_provider(self, provider: ExpertProvider) -> None:
        for layer in self.layers:
            layer.mlp.provider = provider

    @property
    def moe_blocks(self) -> list[SparseMoeBlock]:
        return [layer.mlp for layer in self.layers]

    @staticmethod
    def split_state(state: dict[str, Tensor], cfg: ModelConfig) -> tuple[dict[str, Tensor], StackedExperts | None]:
        """Separate dense weights from expert weights (transformers 5 fused or 4.x `w1/w2/w3`)."""
        L, E = cfg.num_hidden_layers, cfg.num_experts
        gate_up: list[list[Tensor | None]] = [[None] * E for _ in range(L)]
        down: list[list[Tensor | None]] = [[None] * E for _ in range(L)]
        dense: dict[str, Tensor] = {}
        found = False
        for key, value in state.items():
            name = key[len("model."):] if key.startswith("model.") else key
            parts = name.split(".")
            if len(parts) >= 4 and parts[0] == "layers" and parts[2] == "block_sparse_moe":
                name = ".".join(parts[:2] + ["mlp"] + parts[3:])  # 4.x module name
                parts = name.split(".")
            if len(parts) >= 5 and parts[0] == "layers" and parts[3] == "experts":
                found = True
                i = int(parts[1])
                if parts[4] in ("gate_up_proj", "down_proj"):
                    for e in range(E):
                        (gate_up if parts[4] == "gate_up_proj" else down)[i][e] = value[e]
                else:  # experts.{e}.w1 (gate) / w3 (up) / w2 (down)
                    e, w = int(parts[4]), parts[5]
                    if w == "w2":
                        down[i][e] = value
                    else:
                        cur = gate_up[i][e]
                        half = {"w1": 0, "w3": 1}[w]
                        pair = list(cur) if isinstance(cur, tuple) else [None, None]
                        pair[half] = value
                        gate_up[i][e] = tuple(pair)  # type: ignore[assignment]
                continue
            dense["model." + name if key.startswith("model.") else name] = value
        if not found:
            return dense, None
        gu = [torch.stack([torch.cat(g) if isinstance(g, tuple) else g for g in row]) for row in gate_up]
        dn = [torch.stack(row) for row in down]  # type: ignore[arg-type]
        return dense, StackedExperts(gu, dn)

    @classmethod
    def from_folder(cls, folder: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu",
                    provider: ExpertProvider | None = None, weights: str = "*.safetensors") -> "MixtralModel":
        """Build from a Mixtral-format folder; experts from the checkpoint unless `provider` is given."""
        from papersuite.engine.model import skeleton_and_weights

        model, state = skeleton_and_weights(cls, folder, weights)
        cfg = model.config
        dense, stacked = cls.split_state(state, cfg)
        model.load_hf_state_dict(dense)
        model = model.to(device=device, dtype=dtype).eval()
        if provider is None:
            if stacked is None:
                raise ValueError(f"{folder}: no expert weights in the checkpoint and no ExpertProvider given")
            provider = stacked.to(dtype)
        model.set_provider(provider)
        return model
