"""paged_decode / paged_prefill against a naive per-sequence reference; the backend protocol."""
from __future__ import annotations

import pytest
import torch

from papersuite.engine.attention import (ATTENTION_BACKENDS, AttentionBackend, PagedAttentionBackend, paged_decode,
                                         paged_prefill)

BS, HKV, H, D = 4, 2, 6, 8


def setup(lens, seed=0):
    g = torch.Generator().manual_seed(seed)
    nblocks = [-(-n // BS) for n in lens]
    total = sum(nblocks) + 3
    kc, vc = torch.randn(total, BS, HKV, D, generator=g), torch.randn(total, BS, HKV, D, generator=g)
    perm = torch.randperm(total, generator=g).tolist()
    width = max(nblocks)
    tables, i = [], 0
    for nb in nblocks:
        tables.append(perm[i:i + nb] + [-1] * (width - nb))
        i += nb
    return kc, vc, torch.tensor(tables), torch.tensor(lens), g


def reference(q, kc, vc, table, L, scale, n_new=1):
    ids = [b for b in table.tolist() if b >= 0]
    k = kc[ids].reshape(-1, HKV, D)[:L].repeat_interleave(H // HKV, 1)
    v = vc[ids].reshape(-1, HKV, D)[:L].repeat_interleave(H // HKV, 1)
    s = torch.einsum("nhd,lhd->hnl", q, k) * scale
    mask = torch.arange(L)[None, :] <= torch.arange(L - n_new, L)[:, None]
    s = s.masked_fill(~mask, float("-inf"))
    return torch.einsum("hnl,lhd->nhd", s.softmax(-1), v), s.logsumexp(-1).T


@pytest.mark.parametrize("chunk_blocks", [1, 2, 128])
def test_paged_decode_matches_reference(chunk_blocks):
    lens = [1, 5, 17, 9, 4]
    kc, vc, bt, sl, g = setup(lens)
    q = torch.randn(len(lens), H, D, generator=g)
    out, lse = paged_decode(q, kc, vc, bt, sl, 0.3, return_lse=True, chunk_blocks=chunk_blocks)
    fused = paged_decode(q, kc, vc, bt, sl, 0.3, chunk_blocks=chunk_blocks)
    for b, L in enumerate(lens):
        ref, ref_lse = reference(q[b:b + 1], kc, vc, bt[b], L, 0.3)
        assert torch.allclose(out[b], ref[0], atol=1e-5) and torch.allclose(fused[b], ref[0], atol=1e-5)
        assert torch.allclose(lse[b], ref_lse[0], atol=1e-5)
    assert paged_decode(q[:0], kc, vc, bt[:0], sl[:0], 0.3).shape == (0, H, D)


def test_paged_prefill_is_causal_bottom_right():
    lens, new = [7, 12, 3], [7, 5, 1]  # a fresh prompt, an extend over a cached prefix, one token
    kc, vc, bt, _, g = setup(lens)
    q = torch.randn(sum(new), H, D, generator=g)
    out = paged_prefill(q, kc, vc, bt, new, lens, 0.25)
    start = 0
    for b, (L, n) in enumerate(zip(lens, new)):
        ref, _ = reference(q[start:start + n], kc, vc, bt[b], L, 0.25, n_new=n)
        assert torch.allclose(out[start:start + n], ref, atol=1e-5)
        start += n


def test_backend_registry_and_protocol():
    assert isinstance(PagedAttentionBackend(), AttentionBackend)
    assert ATTENTION_BACKENDS["paged"] is PagedAttentionBackend
