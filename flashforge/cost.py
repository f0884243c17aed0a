"""When to share: a roofline cost model that can refuse (our reconstruction of the paper's
estimator; the released CoDec code has no estimator, only a fixed schedule).

For each path, t = bytes / BW + flops / rate + ops * overhead, with
- default (paged decode): every request reads its whole KV; GEMV-shaped products (G rows);
- shared (FlashForge): each planned piece is read once; shared pieces are GEMMs with
  (requests x G) rows, private rests GEMVs (through paged decode on the torch path); more
  operations (a bucket's gather, two GEMMs, the softmax, the private rests' chunks) plus the merge.
The constants (memory bandwidth, GEMM rate, GEMV rate, per-operation overhead) are measured once
per machine, torch version and thread count in under about 2 s, and cached as JSON in
`$PAPERSUITE_CACHE/flashforge/`. `impl="auto"` takes the shared path only for a predicted gain
>= `MIN_GAIN` (1.2x), so little sharing falls back to the engine's default decode.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from flashforge.plan import Plan

MIN_GAIN = 1.2
OPS_DEFAULT = 4           # paged_decode's set-up and output
OPS_DEFAULT_CHUNK = 14    # per chunk of 64 blocks: gathers, 2 matmuls, mask, softmax, online merge
DEFAULT_CHUNK_BLOCKS = 64
OPS_PER_BUCKET = 12       # torch path: gather k/v, reshape q, 2 matmuls, mask, softmax, scatter
OPS_MERGE = 14            # torch path: padded CSR gather and merge_states
OPS_TRITON = 6            # triton path: two launches and three allocations


@dataclass(frozen=True)
class MachineConstants:
    bandwidth: float       # bytes/s, streaming read (beyond the last-level cache)
    peak_rate: float       # flop/s, a square 512^3 GEMM: the roofline's compute ceiling
    gemm_rate: float       # flop/s, grouped products of our shape (192 rows, D = 64)
    gemv_rate: float       # flop/s, G-row products (paged decode's shape)
    overhead: float        # s per tensor operation
    threads: int
    key: str


def cpu_flags() -> str:
    """The CPU's feature flags (lscpu / /proc/cpuinfo), '' where unreadable."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _key(threads: int, device: str) -> str:
    import torch

    ident = f"{cpu_model()}|{cpu_flags()}|{torch.__version__}|{threads}|{device}"
    return hashlib.sha1(ident.encode()).hexdigest()[:16]


def _median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def measure(device: str = "cpu", threads: int | None = None) -> MachineConstants:
    """Measure the four constants (about 1-2 s on a loaded 2-core machine)."""
    import torch

    threads = threads or torch.get_num_threads()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def timed(fn, repeats=5):
        def run():
            fn()
            sync()
        return _median_time(run, repeats)

    x = torch.ones(32 << 20, device=device)                       # 128 MiB, past a 32 MiB L3
    bw = x.numel() * 4 / timed(lambda: x.sum())
    del x
    sq = torch.randn(512, 512, device=device)
    peak = 2 * 512 ** 3 / timed(lambda: sq @ sq)
    a = torch.randn(8, 192, 64, device=device)
    b = torch.randn(8, 64, 1024, device=device)
    gemm = 2 * 8 * 192 * 64 * 1024 / timed(lambda: torch.bmm(a, b))
    qa = torch.randn(256, 3, 64, device=device)
    kb = torch.randn(256, 64, 512, device=device)
    gemv = 2 * 256 * 3 * 64 * 512 / timed(lambda: torch.bmm(qa, kb))
    small = torch.randn(8, 8, device=device)
    ovh = timed(lambda: [small.add(1.0) for _ in range(50)], repeats=7) / 50
    return MachineConstants(bandwidth=bw, peak_rate=peak, gemm_rate=gemm, gemv_rate=gemv, overhead=ovh, threads=threads,
                            key=_key(threads, device))


def cache_dir() -> Path:
    return Path(os.environ.get("PAPERSUITE_CACHE", Path.home() / ".cache" / "papersuite")) / "flashforge"


_MEMO: dict[str, MachineConstants] = {}


def constants(device: str = "cpu", threads: int | None = None) -> MachineConstants:
    """Cached constants for this machine, torch version and thread count (measured on first use)."""
    import torch

    threads = threads or torch.get_num_threads()
    key = _key(threads, device)
    if key in _MEMO:
        return _MEMO[key]
    path = cache_dir() / f"cost-{key}.json"
    try:
        c = MachineConstants(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        c = measure(device, threads)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(asdict(c)))
            tmp.replace(path)
        except OSError:
            pass
    _MEMO[key] = c
    return c


def predict(plan: Plan, heads: int, kv_heads: int, head_dim: int, elem_bytes: int,
            c: MachineConstants, executor: str = "torch") -> dict[str, float]:
    """Predicted seconds per layer for both paths and the gain (default / shared); `executor` is
    the shared path's: "torch" (a few ops per bucket) or "triton" (two kernel launches)."""
    per_token = 2 * kv_heads * head_dim * elem_bytes           # K and V
    flops_per_token_row = 4 * head_dim                         # QK and PV, per query head
    naive = float(plan.seq_lens.sum())
    chunks = -(-plan.block_tables.shape[1] // DEFAULT_CHUNK_BLOCKS)
    t_default = (naive * per_token / c.bandwidth + naive * heads * flops_per_token_row / c.gemv_rate
                 + (OPS_DEFAULT + OPS_DEFAULT_CHUNK * chunks) * c.overhead)
    rows = (plan.piece_q1 - plan.piece_q0).astype(np.float64)
    toks = plan.piece_tokens.astype(np.float64)
    sh = plan.piece_shared
    flops_sh = float((toks[sh] * rows[sh]).sum()) * heads * flops_per_token_row
    flops_pr = float((toks[~sh] * rows[~sh]).sum()) * heads * flops_per_token_row
    n_buckets = len({(r if r <= 4 else 1 << (int(r) - 1).bit_length()) for r in rows[sh]})
    private_blocks = np.bincount(plan.perm[plan.piece_q0[~sh]], weights=np.diff(plan.piece_block_ptr)[~sh],
                                 minlength=plan.batch)
    private_chunks = -(-int(private_blocks.max()) // DEFAULT_CHUNK_BLOCKS) if (~sh).any() else 0
    ops = OPS_TRITON if executor == "triton" else (
        n_buckets * OPS_PER_BUCKET + OPS_MERGE
        + (OPS_DEFAULT + OPS_DEFAULT_CHUNK * private_chunks if private_chunks else 0))
    t_shared = (float(toks.sum()) * per_token / c.bandwidth + flops_sh / c.gemm_rate
                + flops_pr / c.gemv_rate + ops * c.overhead)
    return {"default_s": t_default, "shared_s": t_shared, "gain": t_default / t_shared}


def choose(plan: Plan, heads: int, kv_heads: int, head_dim: int, elem_bytes: int,
           c: MachineConstants, min_gain: float = MIN_GAIN, executor: str = "torch") -> str:
    """'shared' when the plan shares something and the model predicts >= min_gain, else 'default'."""
    if not plan.piece_shared.any():
        return "default"
    gain = predict(plan, heads, kv_heads, head_dim, elem_bytes, c, executor)["gain"]
    return "shared" if gain >= min_gain else "default"
