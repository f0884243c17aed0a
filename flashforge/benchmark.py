"""One benchmark row: default paged decode, dense SDPA, the two-level cascade and FlashForge on
the same workload in the same run, timed interleaved (medians, caches flushed before each call),
with the ideal byte ratio and the roofline cap min(R, ridge * s / 2G) of the machine at hand."""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from flashforge.workloads import Workload


def roofline_cap(ratio: float, peak_rate: float, bandwidth: float, elem_bytes: int, group: int) -> float:
    """Best possible speedup of sharing over a memory-bound decode: bytes saved (R) or the compute
    ceiling (ridge * s / 2G, ridge = peak / bandwidth in flop/byte)."""
    ridge = peak_rate / bandwidth
    return min(ratio, ridge * elem_bytes / (2 * group))


def interleaved_flushed(contenders: dict[str, Any], repeats: int, warmup: int, device: str = "cpu"):
    """Like `papersuite.bench.interleaved`, but the caches are flushed (an untimed write of a
    buffer larger than the last-level cache) before each timed call, so a contender does not
    inherit the KV the previous one left in L2/L3 (on a GPU the 50 MB L2 holds a whole shared
    prefix; without the flush whoever runs right after FlashForge looked faster)."""
    import torch

    from papersuite.bench import interleaved

    cuda = device.startswith("cuda")
    flush = torch.empty((64 if cuda else 16) << 20, dtype=torch.int32, device=device)  # 256 / 64 MiB
    return interleaved(contenders, repeats=repeats, warmup=warmup,
                       sync=torch.cuda.synchronize if cuda else None, before_each=lambda: flush.fill_(1))


def plan_time_ms(w: Workload, repeats: int = 5) -> float:
    from flashforge.plan import build_plan

    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        build_plan(w.block_tables, w.seq_lens, w.block_size)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def run_workload(w: Workload, *, dtype: str = "fp32", heads: int = 9, kv_heads: int = 3, head_dim: int = 64,
                 repeats: int = 10, warmup: int = 3, device: str = "cpu", seed: int = 0,
                 with_sdpa: bool = True, with_triton: bool | None = None) -> dict[str, Any]:
    """Time every contender on one workload; returns the issue's row (ms per layer, ratios)."""
    import torch

    from flashforge import cost
    from flashforge.attention import auto_path, shared_prefix_decode, triton_available
    from flashforge.baselines import (cascade_two_level, default_paged, materialise_dense,
                                      prepare_two_level, sdpa_dense)
    from flashforge.plan import build_plan
    from flashforge.reference import reference_decode
    from flashforge.workloads import make_tensors

    tdt = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    q, k, v = make_tensors(w, heads, kv_heads, head_dim, dtype=tdt, seed=seed, device=device)
    table = torch.as_tensor(w.block_tables, device=device)
    lens = torch.as_tensor(w.seq_lens, device=device)
    plan_ms = plan_time_ms(w)
    plan = build_plan(w.block_tables, w.seq_lens, w.block_size)
    two = prepare_two_level(w.block_tables, w.seq_lens, w.block_size, device=device)
    dense = materialise_dense(k, v, w.block_tables, w.seq_lens) if with_sdpa else None
    path = auto_path(q, k, plan)
    contenders = {
        "default": lambda: default_paged(q, k, v, table, lens),
        "flashforge": lambda: shared_prefix_decode(q, k, v, plan, impl="auto"),
        "cascade2": lambda: cascade_two_level(q, k, v, table, lens, prepared=two),
        "shared": lambda: shared_prefix_decode(q, k, v, plan, impl="torch"),
    }
    if with_sdpa:
        contenders["sdpa"] = lambda: sdpa_dense(q, k, v, table, lens, dense=dense)
    if with_triton is None:
        with_triton = q.is_cuda and triton_available()
    if with_triton:
        contenders["triton"] = lambda: shared_prefix_decode(q, k, v, plan, impl="triton")
    ref = reference_decode(q, k, v, w.block_tables, w.seq_lens)
    errs = {name: float((fn().double() - ref).abs().max()) for name, fn in contenders.items()}
    timings = interleaved_flushed(contenders, repeats, warmup, device=str(q.device))
    ms = {name: t.median * 1e3 for name, t in timings.items()}
    spread = {name: [min(t.seconds) * 1e3, max(t.seconds) * 1e3] for name, t in timings.items()}
    c = cost.constants("cuda" if q.is_cuda else "cpu")
    G = heads // kv_heads
    ratio = plan.stats["ideal_ratio"]
    row: dict[str, Any] = {
        "scenario": w.name, "B": int(len(w.seq_lens)), "P": w.shape.get("P"), "S": w.shape.get("S"),
        "dtype": dtype, "ideal_ratio": ratio, "plan_ratio": plan.stats["plan_ratio"],
        "cap": roofline_cap(ratio, c.peak_rate, c.bandwidth, k.element_size(), G),
        "plan_ms": plan_ms, "path": path, "ms": ms, "spread_ms": spread,
        "vs_default": ms["default"] / ms["flashforge"],
        "vs_sdpa": ms["sdpa"] / ms["flashforge"] if with_sdpa else None,
        "vs_cascade2": ms["cascade2"] / ms["flashforge"],
        "shared_vs_default": ms["default"] / ms["shared"],
        "max_err": max(errs.values()), "errs": errs, "depth": plan.stats["depth"],
        "plan_share_30_layers": plan_ms / (30 * ms["flashforge"]),
    }
    if with_triton:
        row["triton_vs_default"] = ms["default"] / ms["triton"]
    return row


SUMMARY_COLUMNS = ["scenario", "B", "P", "S", "ideal_ratio", "cap", "path", "default", "sdpa", "cascade2",
                   "flashforge", "vs_default", "vs_sdpa", "vs_cascade2", "plan_ms", "max_err"]


def flat(row: dict[str, Any]) -> dict[str, Any]:
    """A row with the per-contender ms lifted out, for tables."""
    out = {k: v for k, v in row.items() if k not in ("ms", "spread_ms", "errs")}
    out.update({k: round(v, 3) for k, v in row["ms"].items()})
    return out
