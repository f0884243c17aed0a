"""merge_states: random splits of one softmax merge back exactly; empty parts and huge logits."""
import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flashforge.merge import merge_states


def _state(q, k, v):
    s = (k @ q) / math.sqrt(q.shape[0])
    if len(s) == 0:
        return torch.zeros(v.shape[1], dtype=v.dtype), torch.tensor(float("-inf"), dtype=v.dtype)
    lse = torch.logsumexp(s, 0)
    return torch.exp(s - lse) @ v, lse


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), parts=st.integers(1, 6), seed=st.integers(0, 10_000), scale=st.sampled_from([1.0, 30.0]))
def test_random_splits_merge_back(n, parts, seed, scale):
    g = torch.Generator().manual_seed(seed)
    D = 8
    q = torch.randn(D, generator=g, dtype=torch.float64) * scale
    k = torch.randn(n, D, generator=g, dtype=torch.float64)
    v = torch.randn(n, D, generator=g, dtype=torch.float64)
    cuts = sorted(torch.randint(0, n + 1, (parts - 1,), generator=g).tolist())  # empty parts possible
    bounds = [0, *cuts, n]
    states = [_state(q, k[a:b], v[a:b]) for a, b in zip(bounds, bounds[1:])]
    o = torch.stack([s[0] for s in states])[None, :, None, :]          # [1, k, 1, D]
    lse = torch.stack([s[1] for s in states])[None, :, None]
    mo, ml = merge_states(o, lse)
    want_o, want_lse = _state(q, k, v)
    assert torch.allclose(mo[0, 0], want_o, atol=1e-12, rtol=0)
    assert abs(ml[0, 0].item() - want_lse.item()) < 1e-12


def test_huge_logits_and_all_empty_rows_give_no_nan():
    o = torch.randn(3, 4, 2, 5, dtype=torch.float32)
    lse = torch.tensor([[1e4, 1e4 - 1, float("-inf"), 9990.0]] * 3).unsqueeze(-1).expand(3, 4, 2).clone()
    lse[2] = float("-inf")                                  # a row with nothing at all
    o[:, 2] = float("nan")                                  # garbage in an empty part
    mo, ml = merge_states(o, lse)
    assert not torch.isnan(mo).any() and not torch.isnan(ml).any()
    assert torch.isfinite(ml[:2]).all() and torch.isinf(ml[2]).all() and (mo[2] == 0).all()
    w = torch.softmax(lse[0, [0, 1, 3], 0].double(), 0)
    want = (w[:, None] * o[0, [0, 1, 3], 0].double()).sum(0)
    assert torch.allclose(mo[0, 0].double(), want, atol=1e-6)
