"""The PyTorch executor (CPU, and CUDA without Triton): grouped GEMMs over pieces, one merge.

Shared pieces with the same padded request count form a bucket. A bucket is one gather of its KV
blocks, one batched GEMM of all its queries (request rows x G heads of one KV head as the M
dimension: the paper's query grouping) against each piece's <= kv_chunk tokens, a softmax with
fp32 statistics, and one batched GEMM with V. Private rests (each request's unshared blocks, as
one block table) go through the engine's paged decode with LSE: a chunked, masked batched matmul,
one state per request in its first private slot (its other private slots stay empty, weight 0).
No Python loop runs over requests or blocks; the loop runs over buckets (about log2 B + 4 of
them), and the index tensors are built once per plan.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from flashforge.plan import Plan


@dataclass
class _Bucket:
    rows: int                       # padded requests per piece (R)
    blocks: torch.Tensor            # [n, NB] block ids (padded with the piece's first block)
    run_start: int | None           # a single piece over consecutive ids: slice, do not gather
    token_ok: torch.Tensor | None   # [n, 1, 1, NB*bs] valid tokens, None when all are
    req: torch.Tensor               # [n, R] original request of each row (padding: request 0)
    take: torch.Tensor              # [k] flat (piece*R + row) positions of the real rows
    slots: torch.Tensor             # [k] their slots


def _padded_rows(n: int) -> int:
    return n if n <= 4 else 1 << (n - 1).bit_length()


def buckets(plan: Plan, device: torch.device | str) -> list[_Bucket]:
    """Index tensors of the plan's buckets on `device`, cached on the plan."""
    key = ("torch-buckets", str(device))
    if key in plan.scratch:
        return plan.scratch[key]
    rows = plan.piece_q1 - plan.piece_q0
    padded = np.array([_padded_rows(int(r)) for r in rows], dtype=np.int64)
    padded[~plan.piece_shared] = 0          # private rests go through paged decode instead
    nblk = np.diff(plan.piece_block_ptr)
    bs = plan.block_size
    out = []
    for R in np.unique(padded[padded > 0]):
        ps = np.flatnonzero(padded == R)
        NB = int(nblk[ps].max())
        col = np.arange(NB)
        src = plan.piece_block_ptr[ps][:, None] + np.minimum(col[None, :], nblk[ps][:, None] - 1)
        blocks = plan.piece_blocks[src]
        tok = np.arange(NB * bs)[None, :] < plan.piece_tokens[ps][:, None]
        r = np.arange(R)
        ok = r[None, :] < rows[ps][:, None]
        sorted_pos = np.where(ok, plan.piece_q0[ps][:, None] + r[None, :], 0)
        req = np.where(ok, plan.perm[sorted_pos], 0)
        slots = (plan.piece_slot0[ps][:, None] + r[None, :])[ok]
        run = len(ps) == 1 and bool(plan.piece_run[ps[0]])
        out.append(_Bucket(
            rows=int(R), blocks=torch.as_tensor(blocks, device=device),
            run_start=int(blocks[0, 0]) if run else None,
            token_ok=None if tok.all() else torch.as_tensor(tok, device=device)[:, None, None, :],
            req=torch.as_tensor(req, device=device),
            take=torch.as_tensor(np.flatnonzero(ok.reshape(-1)), device=device),
            slots=torch.as_tensor(slots, device=device)))
    plan.scratch[key] = out
    return out


@dataclass
class _Private:
    table: torch.Tensor             # [B, W'] each request's private blocks in order, -1 padded
    lens: torch.Tensor              # [B] private tokens
    has: torch.Tensor               # requests with any
    slots: torch.Tensor             # their first private slot (the others stay empty)


def private_rests(plan: Plan, device: torch.device | str) -> _Private:
    """Each request's private blocks as a block table for the engine's paged decode (cached).

    Only a sequence's last block can be partial and it is always its last private block, so the
    table plus a token count describes the rest exactly."""
    key = ("torch-private", str(device))
    if key in plan.scratch:
        return plan.scratch[key]
    B = plan.batch
    pieces = np.flatnonzero(~plan.piece_shared)       # grouped by request, in block order
    nblk = np.diff(plan.piece_block_ptr)
    owner_piece = plan.perm[plan.piece_q0[pieces]]
    blocks = plan.piece_blocks[np.repeat(~plan.piece_shared, nblk)]
    owner = np.repeat(owner_piece, nblk[pieces])
    per_req = np.bincount(owner, minlength=B)
    starts = np.flatnonzero(np.concatenate([[True], owner[1:] != owner[:-1]])) if len(owner) else owner
    run_len = np.diff(np.concatenate([starts, [len(owner)]]))
    col = np.arange(len(owner)) - np.repeat(starts, run_len)
    table = np.full((B, max(1, int(per_req.max()) if B else 1)), -1, dtype=np.int64)
    table[owner, col] = blocks
    lens = np.bincount(owner_piece, weights=plan.piece_tokens[pieces], minlength=B).astype(np.int64)
    has, first_piece = np.unique(owner_piece, return_index=True)   # requests with a private rest
    first_slot = plan.piece_slot0[pieces][first_piece]
    out = _Private(torch.as_tensor(table, device=device), torch.as_tensor(lens, device=device),
                   torch.as_tensor(has, device=device), torch.as_tensor(first_slot, device=device))
    plan.scratch[key] = out
    return out


def _gather(cache: torch.Tensor, b: _Bucket) -> torch.Tensor:
    """[n, Hkv, NB*bs, D] fp32 KV of a bucket's pieces."""
    if b.run_start is not None:
        nb = b.blocks.shape[1]
        kv = cache[b.run_start:b.run_start + nb].unsqueeze(0)
    else:
        kv = cache[b.blocks]                                   # [n, NB, bs, Hkv, D]
    n, NB, bs, Hkv, D = kv.shape
    return kv.reshape(n, NB * bs, Hkv, D).transpose(1, 2).to(torch.float32)


def plan_partials_torch(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, plan: Plan,
                        scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Every slot's state: o [S+1, H, D] fp32, lse [S+1, H] fp32 (last row: the empty state)."""
    B, H, D = q.shape
    Hkv = k_cache.shape[2]
    G = H // Hkv
    o_slots = torch.zeros(plan.num_slots + 1, H, D, dtype=torch.float32, device=q.device)
    lse_slots = torch.full((plan.num_slots + 1, H), float("-inf"), dtype=torch.float32, device=q.device)
    qf = q.to(torch.float32)
    for b in buckets(plan, q.device):
        n, R = b.req.shape
        k = _gather(k_cache, b)                                # [n, Hkv, T, D]
        v = _gather(v_cache, b)
        qq = qf[b.req].reshape(n, R, Hkv, G, D).transpose(1, 2).reshape(n, Hkv, R * G, D)
        s = torch.matmul(qq, k.transpose(-1, -2)).mul_(scale)   # [n, Hkv, R*G, T]
        if b.token_ok is not None:
            s.masked_fill_(~b.token_ok, float("-inf"))
        m = s.amax(dim=-1, keepdim=True)
        s.sub_(m).exp_()
        lsum = s.sum(dim=-1, keepdim=True)
        o = torch.matmul(s, v).div_(lsum)                      # [n, Hkv, R*G, D]
        lse = (m + torch.log(lsum)).squeeze(-1)                # [n, Hkv, R*G]
        o = o.reshape(n, Hkv, R, G, D).transpose(1, 2).reshape(n * R, H, D)
        lse = lse.reshape(n, Hkv, R, G).transpose(1, 2).reshape(n * R, H)
        o_slots[b.slots] = o[b.take]
        lse_slots[b.slots] = lse[b.take]
    pr = private_rests(plan, q.device)
    if len(pr.has):
        from papersuite.engine.attention import paged_decode

        o, lse = paged_decode(qf, k_cache, v_cache, pr.table, pr.lens, scale, return_lse=True)
        o_slots[pr.slots] = o[pr.has].float()
        lse_slots[pr.slots] = lse[pr.has].float()
    return o_slots, lse_slots
