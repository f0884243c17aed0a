"""The baselines FlashForge is measured against, called like `reference_decode`.

- `default_paged`: the engine's own decode (`papersuite.engine.attention.paged_decode`), unchanged;
  it reads every request's KV once per request.
- `sdpa_dense`: PyTorch SDPA over per-request KV materialised (gathered and padded) beforehand,
  so the gather is excluded from its time: a flattering dense baseline.
- `cascade_two_level`: the Hydragen / FlashInfer-cascade decomposition with one shared level:
  each top-level shared node once for its requests (the same grouped GEMM code as FlashForge),
  each request's rest through `default_paged` with LSE, one merge. Only the tree depth differs.
  On CUDA with Triton, where FlashForge runs its Triton kernel, the cascade runs that same kernel
  on the depth-1 plan (its rests as per-request pieces), so there too only the depth differs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from flashforge.merge import merge_states
from flashforge.plan import Plan, _as_table, build_plan
from flashforge.torch_impl import plan_partials_torch


def _tensors(block_tables: Any, seq_lens: Any, block_size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(block_tables, torch.Tensor) and isinstance(seq_lens, torch.Tensor):
        return block_tables.to(device), seq_lens.to(device)
    table, lens = _as_table(block_tables, seq_lens, block_size)
    return torch.as_tensor(table, device=device), torch.as_tensor(lens, device=device)


def default_paged(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: Any,
                  seq_lens: Any, scale: float | None = None, *, return_lse: bool = False):
    """The engine's paged decode (one read of each request's KV per request)."""
    from papersuite.engine.attention import paged_decode

    scale = scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    table, lens = _tensors(block_tables, seq_lens, k_cache.shape[1], q.device)
    return paged_decode(q, k_cache, v_cache, table, lens, scale, return_lse=return_lse)


@dataclass
class DenseKV:
    """Per-request KV gathered and padded: k/v [B, Hkv, T, D], mask [B, 1, 1, T]."""

    k: torch.Tensor
    v: torch.Tensor
    mask: torch.Tensor


def materialise_dense(k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: Any, seq_lens: Any
                      ) -> DenseKV:
    """Gather each request's KV out of the paged cache (done before timing `sdpa_dense`)."""
    bs = k_cache.shape[1]
    table, lens = _as_table(block_tables, seq_lens, bs)
    idx = torch.as_tensor(np.maximum(table, 0), device=k_cache.device)
    B, W = table.shape
    k = k_cache[idx].reshape(B, W * bs, *k_cache.shape[2:]).transpose(1, 2).contiguous()
    v = v_cache[idx].reshape(B, W * bs, *v_cache.shape[2:]).transpose(1, 2).contiguous()
    mask = torch.arange(W * bs, device=k_cache.device)[None, :] < torch.as_tensor(lens, device=k_cache.device)[:, None]
    return DenseKV(k, v, mask[:, None, None, :])


def sdpa_dense(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: Any,
               seq_lens: Any, scale: float | None = None, *, dense: DenseKV | None = None) -> torch.Tensor:
    """SDPA (GQA) of each request's query over its materialised KV; pass `dense` to time it alone."""
    dense = dense or materialise_dense(k_cache, v_cache, block_tables, seq_lens)
    B, H, D = q.shape
    scale = scale if scale is not None else 1.0 / math.sqrt(D)
    o = torch.nn.functional.scaled_dot_product_attention(
        q[:, :, None, :], dense.k, dense.v, attn_mask=dense.mask, scale=scale, enable_gqa=True)
    return o[:, :, 0, :]


@dataclass
class TwoLevel:
    """The cascade's split: top-level shared pieces (a plan) and each request's rest (a table)."""

    plan: Plan
    rest_tables: torch.Tensor   # [B, W'] blocks after the request's top-level shared node
    rest_lens: torch.Tensor     # [B] tokens in them (0 when the request is all prefix)


def prepare_two_level(block_tables: Any, seq_lens: Any, block_size: int, *, kv_chunk: int = 1024,
                      min_shared_tokens: int = 256, device="cpu") -> TwoLevel:
    """Plan the two-level decomposition (outside the timed region, like FlashForge's plan)."""
    plan = build_plan(block_tables, seq_lens, block_size, kv_chunk=kv_chunk,
                      min_shared_tokens=min_shared_tokens, max_shared_depth=1)
    table, lens = plan.block_tables, plan.seq_lens
    B, W = table.shape
    skip = np.zeros(B, dtype=np.int64)       # leading blocks covered by the top-level node
    skip_tok = np.zeros(B, dtype=np.int64)
    for k in np.flatnonzero(plan.node_shared):
        reqs = plan.perm[plan.node_q0[k]:plan.node_q1[k]]
        skip[reqs] = plan.node_b1[k]
        skip_tok[reqs] = plan.node_tokens[k]
    col = np.arange(W)[None, :] + skip[:, None]
    rest = np.where(col < W, table[np.arange(B)[:, None], np.minimum(col, W - 1)], -1)
    rest_lens = lens - skip_tok
    width = max(1, int(((rest_lens + block_size - 1) // block_size).max()))
    return TwoLevel(plan, torch.as_tensor(rest[:, :width], device=device),
                    torch.as_tensor(rest_lens, device=device))


def cascade_two_level(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: Any,
                      seq_lens: Any, scale: float | None = None, *, prepared: TwoLevel | None = None
                      ) -> torch.Tensor:
    """Two-level cascade: shared top level once (grouped GEMM), the rest paged, one LSE merge."""
    from papersuite.engine.attention import paged_decode

    scale = scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    tl = prepared or prepare_two_level(block_tables, seq_lens, k_cache.shape[1], device=q.device)
    plan = tl.plan
    if q.is_cuda:
        from flashforge.attention import triton_available

        if triton_available():  # FlashForge runs the Triton kernel here: give the cascade the same
            from flashforge.triton_impl import triton_decode

            return triton_decode(q, k_cache, v_cache, plan, scale)[0]
    key = ("cascade-index", str(q.device))
    if key not in plan.scratch:
        shared_slots = np.flatnonzero(np.repeat(plan.piece_shared, plan.piece_q1 - plan.piece_q0))
        mask = np.isin(plan.req_slots, shared_slots)
        counts = np.bincount(plan.slot_req[plan.req_slots[mask]], minlength=plan.batch)
        k = int(counts.max()) if len(counts) else 0
        idx = np.full((plan.batch, k + 1), plan.num_slots, dtype=np.int64)  # last column: the rest
        rows = plan.slot_req[plan.req_slots[mask]]
        col = np.arange(mask.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        idx[rows, col] = plan.req_slots[mask]
        plan.scratch[key] = torch.as_tensor(idx, device=q.device)
    idx = plan.scratch[key]
    if plan.piece_shared.any():
        o_sh, lse_sh = _shared_only(q, k_cache, v_cache, plan, scale)
    else:
        o_sh = torch.zeros(plan.num_slots + 1, *q.shape[1:], device=q.device)
        lse_sh = torch.full((plan.num_slots + 1, q.shape[1]), float("-inf"), device=q.device)
    o_rest, lse_rest = paged_decode(q, k_cache, v_cache, tl.rest_tables, tl.rest_lens, scale, return_lse=True)
    o_parts = o_sh[idx]
    lse_parts = lse_sh[idx]
    o_parts[:, -1] = o_rest.float()
    lse_parts[:, -1] = lse_rest.float()
    o, _ = merge_states(o_parts, lse_parts)
    return o.to(q.dtype)


def _shared_only(q, k_cache, v_cache, plan: Plan, scale: float):
    """Slot states of the shared pieces only (private slots are left empty)."""
    key = "shared-only-plan"
    if key not in plan.scratch:
        plan.scratch[key] = _restrict_to_shared(plan)
    return plan_partials_torch(q, k_cache, v_cache, plan.scratch[key], scale)


def _restrict_to_shared(plan: Plan) -> Plan:
    """A view of the plan with its private pieces dropped; slot numbering is kept."""
    import dataclasses

    keep = np.flatnonzero(plan.piece_shared)
    ptr = plan.piece_block_ptr
    blocks = np.concatenate([plan.piece_blocks[ptr[p]:ptr[p + 1]] for p in keep])
    counts = ptr[keep + 1] - ptr[keep]
    return dataclasses.replace(
        plan, piece_q0=plan.piece_q0[keep], piece_q1=plan.piece_q1[keep],
        piece_block_ptr=np.concatenate([[0], np.cumsum(counts)]), piece_blocks=blocks,
        piece_tokens=plan.piece_tokens[keep], piece_slot0=plan.piece_slot0[keep],
        piece_shared=plan.piece_shared[keep], piece_run=plan.piece_run[keep], scratch={})
