"""One offloaded system: store -> slow tier -> fast-tier cache (+ prefetch policy) -> target, draft.

The peers differ only in the prefetch policy and the draft length, so they share one store,
slot budget, batch and prompts:
    plain      k = 0, experts loaded on demand into C LRU slots per layer (mixtral-offloading's cache)
    prefetch   plain + the next layer's router applied to the current hidden state (mixtral-offloading)
    lightning  k = 0, every expert of layer i+1 streamed during layer i (MoE-Lightning; "SD off")
    specmoeoff k from the optimizer (or fixed), drafts verified in one pass; streams every expert
               when a pass has enough tokens (the paper's rule), else next-gate prefetch
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from specmoeoff.expert_cache import ExpertCache
from specmoeoff.expert_store import ExpertStore

SYSTEMS = ("plain", "prefetch", "lightning", "specmoeoff")


def next_gate_policy(gates):
    """mixtral-offloading's speculative prefetch: layer i+1's router on layer i's MoE input."""
    def policy(cache: ExpertCache, layer: int, hidden: torch.Tensor):
        if layer + 1 >= len(gates):
            return []
        with torch.no_grad():
            idx = torch.topk(gates[layer + 1](hidden), cache.top_k, dim=-1).indices
        return [(layer + 1, int(e)) for e in torch.unique(idx).tolist()]
    return policy


def stream_all_policy(cache: ExpertCache, layer: int, hidden: torch.Tensor):
    """MoE-Lightning at large batch: load every expert of the next layer while this one computes."""
    nxt = layer + 1 if layer + 1 < cache.num_layers else 0
    return [(nxt, e) for e in range(cache.num_experts)]


def stream_threshold(num_experts: int, top_k: int, slots: int) -> float:
    """The paper's rule: stream every expert once tokens >= E / (top_k * r_miss), r_miss = 1 - C/E."""
    return num_experts / (top_k * max(1.0 - slots / num_experts, 1e-9))


def adaptive_policy(gates, threshold: float):
    """SpecMoEOff's placement rule per layer call: stream all experts when the pass carries enough
    tokens to touch nearly all of them (a verify pass at large b*(k+1)), else next-gate prefetch
    (so batch 1 with speculation off costs what `prefetch` costs)."""
    gate_prefetch = next_gate_policy(gates)

    def policy(cache: ExpertCache, layer: int, hidden: torch.Tensor):
        if hidden.shape[0] >= threshold:
            return stream_all_policy(cache, layer, hidden)
        return gate_prefetch(cache, layer, hidden)
    return policy


@dataclass
class OffloadedTarget:
    model: object
    cache: ExpertCache
    store: ExpertStore


def load_offloaded(store_dir: str | Path, system: str, tier: str, slots: int,
                   dtype: torch.dtype = torch.float32) -> OffloadedTarget:
    """The target with experts behind a fresh cache and store (cold caches, zeroed counters)."""
    from specmoeoff.target import load_target

    cfg = json.loads((Path(store_dir) / "config.json").read_text())
    L, E = cfg["num_hidden_layers"], cfg["num_local_experts"]
    store = ExpertStore(store_dir, tier, dtype)
    store.preload(L, E)
    cache = ExpertCache(store, L, E, slots, top_k=cfg["num_experts_per_tok"])
    model = load_target(store_dir, provider=cache, dtype=dtype)
    if system == "prefetch":
        cache.set_prefetch(next_gate_policy([b.gate for b in model.moe_blocks]))
    elif system == "lightning":
        cache.set_prefetch(stream_all_policy)
    elif system == "specmoeoff":
        gates = [b.gate for b in model.moe_blocks]
        cache.set_prefetch(adaptive_policy(gates, stream_threshold(E, cfg["num_experts_per_tok"], slots)))
    store.reset_counters()
    return OffloadedTarget(model, cache, store)
