"""Verification attention equals SDPA with an explicit bottom-right causal mask."""
import torch
import torch.nn.functional as F

from papersuite.engine.attention import AttentionMetadata
from specmoeoff.verify_attention import VerifyAttentionBackend, verify_attend


def reference(q, k, v, scale):
    n, L = q.shape[0], k.shape[0]
    qpos = torch.arange(L - n, L)
    mask = torch.arange(L)[None, :] <= qpos[:, None]
    o = F.scaled_dot_product_attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), attn_mask=mask,
                                       scale=scale, enable_gqa=True)
    return o.transpose(0, 1)


def test_verify_attend_matches_sdpa():
    g = torch.Generator().manual_seed(0)
    H, Hkv, D = 9, 3, 16
    for n in range(1, 10):
        for prefix in (0, 1, 15, 16, 17, 255, 600):
            L = prefix + n
            q = torch.randn(n, H, D, generator=g)
            k = torch.randn(L, Hkv, D, generator=g)
            v = torch.randn(L, Hkv, D, generator=g)
            diff = (verify_attend(q, k, v, D ** -0.5) - reference(q, k, v, D ** -0.5)).abs().max().item()
            assert diff <= 1e-5, (n, prefix, diff)


def test_backend_over_paged_blocks():
    """Two rows with shuffled block tables; prefixes cross block boundaries."""
    g = torch.Generator().manual_seed(1)
    H, Hkv, D, bs, nblocks = 4, 2, 8, 16, 80
    kc = torch.randn(nblocks, bs, Hkv, D, generator=g)
    vc = torch.randn(nblocks, bs, Hkv, D, generator=g)
    perm = torch.randperm(nblocks, generator=g)
    lens, ns = [37, 600], [5, 9]
    tables = [perm[:3], perm[3:3 + 38]]
    bt = torch.full((2, 38), -1, dtype=torch.int64)
    for i, t in enumerate(tables):
        bt[i, :len(t)] = t
    q = torch.randn(sum(ns), H, D, generator=g)
    meta = AttentionMetadata(positions=torch.zeros(0), slot_mapping=torch.zeros(0), query_start_loc=torch.tensor([0, 5, 14]),
                             seq_lens=torch.tensor(lens), block_tables=bt, num_decodes=0, query_lens_list=ns,
                             seq_lens_list=lens)
    out = VerifyAttentionBackend().prefill(q, kc, vc, meta, D ** -0.5)
    start = 0
    for i in range(2):
        k = kc[bt[i, :len(tables[i])]].reshape(-1, Hkv, D)[:lens[i]]
        v = vc[bt[i, :len(tables[i])]].reshape(-1, Hkv, D)[:lens[i]]
        want = reference(q[start:start + ns[i]], k, v, D ** -0.5)
        assert (out[start:start + ns[i]] - want).abs().max().item() <= 1e-5
        start += ns[i]
