"""Chunked verification attention (the paper's CPU kernel) as an engine `AttentionBackend`.

A verify row has n = k+1 queries over l + n keys. Per sequence and KV head it is ONE `Q K^T` for
all n queries of the head's whole GQA group (the group folded into the query axis), then one
`P V`. The prefix part of the mask is all "attend" and never materialised; only the n x n tail
gets the causal mask, aligned bottom-right (query i, at position l + i, sees keys <= l + i).
This replaces n decode calls (n reads of the KV) or a full-mask SDPA.
"""
from __future__ import annotations

import torch
from torch import Tensor

from papersuite.engine.attention import AttentionMetadata, gather_blocks, paged_decode


def verify_attend(q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:
    """q `[n, H, D]` (the last n positions), k/v `[L, Hkv, D]` with L >= n; returns `[n, H, D]`."""
    n, H, D = q.shape
    L, Hkv = k.shape[0], k.shape[1]
    G = H // Hkv
    qf = q.reshape(n, Hkv, G, D).permute(1, 2, 0, 3).reshape(Hkv, G * n, D)  # rows (g, i)
    s = torch.matmul(qf, k.permute(1, 2, 0)) * scale  # [Hkv, G*n, L]
    if n > 1:
        tail = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1).repeat(G, 1)  # [G*n, n] masked
        s[:, :, L - n:].masked_fill_(tail, float("-inf"))
    p = torch.softmax(s.float(), dim=-1).to(v.dtype)
    o = torch.matmul(p, v.transpose(0, 1))  # [Hkv, G*n, D]
    return o.reshape(Hkv, G, n, D).permute(2, 0, 1, 3).reshape(n, H, D)


class VerifyAttentionBackend:
    """Decode rows through the engine's `paged_decode`; extend rows through `verify_attend`."""

    name = "verify"

    def prepare(self, meta: AttentionMetadata) -> None:
        pass

    def decode(self, q, k_cache, v_cache, block_tables, seq_lens, scale):
        return paged_decode(q, k_cache, v_cache, block_tables, seq_lens, scale)

    def prefill(self, q, k_cache, v_cache, meta: AttentionMetadata, scale):
        nd, bs = meta.num_decodes, k_cache.shape[1]
        out = torch.empty_like(q)
        start = 0
        for row in range(nd, meta.num_seqs):
            n, L = meta.query_lens_list[row], meta.seq_lens_list[row]
            nb = -(-L // bs)
            bt = meta.block_tables[row, :nb]
            k = gather_blocks(k_cache, bt).view(nb * bs, *k_cache.shape[2:])[:L]
            v = gather_blocks(v_cache, bt).view(nb * bs, *v_cache.shape[2:])[:L]
            out[start:start + n] = verify_attend(q[start:start + n], k.to(q.dtype), v.to(q.dtype), scale)
            start += n
        return out
