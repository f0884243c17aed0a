"""Exact merge of partial attention states by log-sum-exp (natural log).

A state (o_j, lse_j) is softmax attention of one query over one KV segment: o_j normalised,
lse_j = m_j + ln l_j. For segments that cover a request's KV exactly once,

    M = max_j lse_j,  w_j = exp(lse_j - M),  o = sum_j w_j o_j / sum_j w_j,  lse = M + ln sum_j w_j

equals attention over the union. Empty segments carry lse = -inf and weight 0; the max is taken
over finite values only, so (-inf) - (-inf) is never formed, and an all-empty row gives o = 0,
lse = -inf rather than NaN.
"""
from __future__ import annotations

import torch


def merge_states(o: torch.Tensor, lse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge k partial states per row: o [N, k, H, D], lse [N, k, H] -> (o [N, H, D], lse [N, H]).

    Statistics are kept in at least fp32 (float64 stays float64); o is returned in that dtype.
    """
    if o.dim() != 4 or lse.dim() != 3 or o.shape[:3] != lse.shape:
        raise ValueError(f"merge_states wants o [N,k,H,D] and lse [N,k,H], got {tuple(o.shape)} "
                         f"and {tuple(lse.shape)}")
    dt = torch.float64 if lse.dtype == torch.float64 else torch.float32
    lse = lse.to(dt)
    m = lse.amax(dim=1)                                     # [N, H]
    m_safe = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    w = torch.exp(lse - m_safe[:, None, :])                 # -inf -> 0
    den = w.sum(dim=1)                                      # [N, H]
    # an empty part's o may be garbage: select instead of multiplying by zero
    part = torch.where((w > 0)[..., None], w[..., None] * o.to(dt), torch.zeros((), dtype=dt))
    num = part.sum(dim=1)
    ok = den > 0
    out = torch.where(ok[..., None], num / torch.where(ok, den, torch.ones_like(den))[..., None],
                      torch.zeros((), dtype=dt))
    out_lse = torch.where(ok, m_safe + torch.log(torch.where(ok, den, torch.ones_like(den))),
                          torch.full_like(den, float("-inf")))
    return out, out_lse
