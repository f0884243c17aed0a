"""Float64 references: direct attention per request, and the plan executed piece by piece.

`reference_decode` is the ground truth every executor is checked against: a plain softmax per
request over its own KV, gathered through its block table. `plan_reference` runs the planner's
decomposition (pieces, slots, one LSE merge) in float64 without any tiling or batching, so an
error in a fast executor can be told apart from an error in the plan itself.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from flashforge.merge import merge_states
from flashforge.plan import Plan, _as_table


def _kv_of(cache: torch.Tensor, blocks: np.ndarray, tokens: int) -> torch.Tensor:
    """[tokens, Hkv, D] of a block list (token order), float64."""
    idx = torch.as_tensor(blocks, dtype=torch.long, device=cache.device)
    return cache[idx].reshape(-1, cache.shape[2], cache.shape[3])[:tokens].to(torch.float64)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """q [H, D], k/v [T, Hkv, D] float64 -> (o [H, D], lse [H]); GQA by repeating KV heads."""
    H, Hkv = q.shape[0], k.shape[1]
    g = H // Hkv
    kk = k.repeat_interleave(g, dim=1)                      # [T, H, D]
    vv = v.repeat_interleave(g, dim=1)
    s = torch.einsum("hd,thd->ht", q, kk) * scale           # [H, T]
    lse = torch.logsumexp(s, dim=-1)
    p = torch.exp(s - lse[:, None])
    return torch.einsum("ht,thd->hd", p, vv), lse


def reference_decode(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: Any,
                     seq_lens: Any, scale: float | None = None, *, block_size: int | None = None,
                     return_lse: bool = False):
    """Float64 attention of each request's query over its own paged KV (a loop over requests).

    q [B, H, D]; caches [num_blocks, block_size, Hkv, D]; block_tables [B, max_blocks] padded
    with -1; seq_lens include the new token. Returns o [B, H, D] float64 (and lse [B, H]).
    """
    bs = block_size or k_cache.shape[1]
    table, lens = _as_table(block_tables, seq_lens, bs)
    scale = scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    outs, lses = [], []
    for i in range(q.shape[0]):
        n = int(lens[i])
        blocks = table[i, : -(-n // bs)]
        o, lse = _attend(q[i].to(torch.float64), _kv_of(k_cache, blocks, n), _kv_of(v_cache, blocks, n),
                         scale)
        outs.append(o)
        lses.append(lse)
    o, lse = torch.stack(outs), torch.stack(lses)
    return (o, lse) if return_lse else o


def plan_partials_reference(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, plan: Plan,
                            scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Every slot's partial state in float64: o [S+1, H, D], lse [S+1, H] (last row empty)."""
    H, D = q.shape[1], q.shape[2]
    o = torch.zeros(plan.num_slots + 1, H, D, dtype=torch.float64, device=q.device)
    lse = torch.full((plan.num_slots + 1, H), float("-inf"), dtype=torch.float64, device=q.device)
    for p in range(len(plan.piece_q0)):
        blocks, n = plan.piece_blocks_of(p), int(plan.piece_tokens[p])
        k, v = _kv_of(k_cache, blocks, n), _kv_of(v_cache, blocks, n)
        for r in range(int(plan.piece_q0[p]), int(plan.piece_q1[p])):
            slot = int(plan.piece_slot0[p] + r - plan.piece_q0[p])
            o[slot], lse[slot] = _attend(q[int(plan.perm[r])].to(torch.float64), k, v, scale)
    return o, lse


def merge_plan(o_slots: torch.Tensor, lse_slots: torch.Tensor, plan: Plan
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """One merge pass: each request reduces all the slots on its path (padded CSR gather)."""
    idx = torch.as_tensor(plan.padded_req_slots(), dtype=torch.long, device=o_slots.device)
    return merge_states(o_slots[idx], lse_slots[idx])


def plan_reference(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, plan: Plan,
                   scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The plan run in float64 (decomposition and merge, no tiling): o [B, H, D], lse [B, H]."""
    scale = scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    o, lse = plan_partials_reference(q, k_cache, v_cache, plan, scale)
    return merge_plan(o, lse, plan)
