"""`shared_prefix_decode`: one entry point over the plan's executors.

impl: `reference` (float64, the plan piece by piece), `torch` (grouped GEMMs, CPU or CUDA),
`triton` (two kernels: pieces, then a one-launch CSR merge; interpreter on CPU), `auto` (the cost
model picks the shared path or the engine's default paged decode; on CUDA with Triton installed
the shared path is the Triton kernel). Output in q's dtype and batch order; fp32 statistics;
natural-log LSE.
"""
from __future__ import annotations

import functools
import math
import os

import torch

from flashforge.plan import Plan

IMPLS = ("auto", "reference", "torch", "triton")


@functools.lru_cache(maxsize=1)
def triton_available() -> bool:
    """True when the triton package imports (on CPU it then runs in its interpreter, which must
    be chosen before triton is first imported). Cached: it is asked on every decode call."""
    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def auto_path(q: torch.Tensor, k_cache: torch.Tensor, plan: Plan) -> str:
    """'shared' or 'default', decided once per plan by the cost model (cached on the plan)."""
    key = ("auto-path", str(q.device), q.dtype)
    if key not in plan.scratch:
        from flashforge import cost

        dev = "cuda" if q.is_cuda else "cpu"
        c = cost.constants(dev)
        executor = "triton" if (q.is_cuda and triton_available()) else "torch"
        plan.scratch[key] = cost.choose(plan, q.shape[1], k_cache.shape[2], q.shape[2],
                                        k_cache.element_size(), c, executor=executor)
    return plan.scratch[key]


def shared_prefix_decode(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, plan: Plan, *,
                         scale: float | None = None, impl: str = "auto", return_lse: bool = False):
    """Decode attention of q [B, H, D] over the paged caches [num_blocks, bs, Hkv, D], per `plan`."""
    if impl not in IMPLS:
        raise ValueError(f"unknown impl {impl!r}; choose one of {', '.join(IMPLS)}")
    B, H, D = q.shape
    if B != plan.batch:
        raise ValueError(f"q has {B} rows, the plan {plan.batch}")
    if k_cache.shape[1] != plan.block_size:
        raise ValueError(f"cache block size {k_cache.shape[1]} != plan block size {plan.block_size}")
    if H % k_cache.shape[2]:
        raise ValueError(f"{H} query heads are not a multiple of {k_cache.shape[2]} KV heads")
    scale = scale if scale is not None else 1.0 / math.sqrt(D)
    if impl == "auto":
        if auto_path(q, k_cache, plan) == "default":
            from papersuite.engine.attention import paged_decode

            key = ("tables", str(q.device))
            if key not in plan.scratch:
                plan.scratch[key] = (torch.as_tensor(plan.block_tables, device=q.device),
                                     torch.as_tensor(plan.seq_lens, device=q.device))
            table, lens = plan.scratch[key]
            return paged_decode(q, k_cache, v_cache, table, lens, scale, return_lse=return_lse)
        impl = "triton" if (q.is_cuda and triton_available()) else "torch"
    if impl == "reference":
        from flashforge.reference import plan_reference

        o, lse = plan_reference(q, k_cache, v_cache, plan, scale)
    elif impl == "torch":
        from flashforge.reference import merge_plan
        from flashforge.torch_impl import plan_partials_torch

        o, lse = merge_plan(*plan_partials_torch(q, k_cache, v_cache, plan, scale), plan)
    else:
        if not triton_available():
            raise RuntimeError("impl='triton' needs the triton package (pip install triton==3.9.0)")
        from flashforge.triton_impl import triton_decode

        o, lse = triton_decode(q, k_cache, v_cache, plan, scale)
    o = o.to(q.dtype)
    return (o, lse.float() if lse.dtype != torch.float64 else lse) if return_lse else o
