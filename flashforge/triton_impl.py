"""The Triton executor: kernel A over (task, KV head), kernel B (one-launch CSR merge) over (B, H).

Kernel A loads a task's query tile once (requests x G heads of one KV head as rows, padded to a
power of two >= 16), streams the piece's paged KV in BLOCK_N-token tiles through its block list,
keeps an fp32 online softmax and writes each row's normalised o and natural-log lse to its slot.
Kernel B reduces every request's slots (the plan's CSR) in one launch, replacing CoDec's stage-2
and per-depth stage-3 merges. Loads are upcast to fp32 at once (the interpreter's bf16 is wrong
otherwise); on a GPU fp16/bf16 inputs go to the tensor cores as they are (fp32 accumulation and
softmax statistics). All tl.dot tiles are >= 16 so the same code compiles for a GPU.

Without CUDA this module switches Triton to its interpreter (TRITON_INTERPRET=1) before the
kernels are defined, so they run on CPU tensors with NumPy (slow; for testing).
"""
from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():  # must precede the @triton.jit below
    os.environ.setdefault("TRITON_INTERPRET", "1")

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from flashforge.plan import Plan  # noqa: E402


@triton.jit
def _piece_kernel(Q, K, V, O, LSE, task_piece, task_r0, task_rows, piece_q0, piece_ptr, piece_blocks,
                  piece_tokens, piece_slot0, perm, scale,
                  stride_qb, stride_qh, stride_kb, stride_kt, stride_kh, stride_vb, stride_vt, stride_vh,
                  stride_os, stride_oh, stride_ls,
                  G: tl.constexpr, D: tl.constexpr, BS: tl.constexpr, ROWS: tl.constexpr,
                  BLOCK_N: tl.constexpr, PRECISION: tl.constexpr, LOWP_DOT: tl.constexpr):
    t = tl.program_id(0)
    kvh = tl.program_id(1)
    p = tl.load(task_piece + t)
    r0 = tl.load(task_r0 + t)
    nrows = tl.load(task_rows + t)
    q0 = tl.load(piece_q0 + p)
    bptr = tl.load(piece_ptr + p)
    ntok = tl.load(piece_tokens + p)
    slot0 = tl.load(piece_slot0 + p)

    offs_m = tl.arange(0, ROWS)
    rid = offs_m // G
    head = kvh * G + offs_m % G
    row_ok = rid < nrows
    req = tl.load(perm + r0 + rid, mask=row_ok, other=0)
    offs_d = tl.arange(0, D)
    q = tl.load(Q + req[:, None] * stride_qb + head[:, None] * stride_qh + offs_d[None, :],
                mask=row_ok[:, None], other=0.0)
    if not LOWP_DOT:
        q = q.to(tl.float32)

    m_i = tl.zeros([ROWS], dtype=tl.float32) - float("inf")
    l_i = tl.zeros([ROWS], dtype=tl.float32)
    acc = tl.zeros([ROWS, D], dtype=tl.float32)
    for start in range(0, ntok, BLOCK_N):
        offs_n = start + tl.arange(0, BLOCK_N)
        n_ok = offs_n < ntok
        blk = tl.load(piece_blocks + bptr + offs_n // BS, mask=n_ok, other=0).to(tl.int64)
        tok = offs_n % BS
        k = tl.load(K + blk[None, :] * stride_kb + tok[None, :] * stride_kt + kvh * stride_kh + offs_d[:, None],
                    mask=n_ok[None, :], other=0.0)                          # [D, BLOCK_N]
        if LOWP_DOT:
            s = tl.dot(q, k) * scale                   # fp16/bf16 tensor cores, fp32 accumulate
        else:
            s = tl.dot(q, k.to(tl.float32), input_precision=PRECISION) * scale
        s = tl.where(n_ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp(m_i - m_new)
        pr = tl.exp(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(pr, 1)
        v = tl.load(V + blk[:, None] * stride_vb + tok[:, None] * stride_vt + kvh * stride_vh + offs_d[None, :],
                    mask=n_ok[:, None], other=0.0)                          # [BLOCK_N, D]
        if LOWP_DOT:
            acc = acc * alpha[:, None] + tl.dot(pr.to(v.dtype), v)
        else:
            acc = acc * alpha[:, None] + tl.dot(pr, v.to(tl.float32), input_precision=PRECISION)
        m_i = m_new
    o = acc / l_i[:, None]
    lse = m_i + tl.log(l_i)
    slot = (slot0 + r0 - q0 + rid).to(tl.int64)
    tl.store(O + slot[:, None] * stride_os + head[:, None] * stride_oh + offs_d[None, :], o,
             mask=row_ok[:, None])
    tl.store(LSE + slot * stride_ls + head, lse, mask=row_ok)


@triton.jit
def _merge_kernel(O, LSE, req_ptr, req_slots, OUT, LSE_OUT, H,
                  stride_os, stride_oh, stride_ls, stride_ob, stride_oh2,
                  D: tl.constexpr):
    b = tl.program_id(0)
    h = tl.program_id(1)
    start = tl.load(req_ptr + b)
    end = tl.load(req_ptr + b + 1)
    offs_d = tl.arange(0, D)
    m = tl.zeros([D], dtype=tl.float32) - float("inf")
    den = tl.zeros([D], dtype=tl.float32)
    acc = tl.zeros([D], dtype=tl.float32)
    for i in range(start, end):
        s = tl.load(req_slots + i).to(tl.int64)
        lse = tl.load(LSE + s * stride_ls + h + offs_d * 0)
        o = tl.load(O + s * stride_os + h * stride_oh + offs_d)
        m_new = tl.maximum(m, lse)
        a = tl.exp(m - m_new)
        w = tl.exp(lse - m_new)
        acc = acc * a + w * o
        den = den * a + w
        m = m_new
    out = acc / den
    tl.store(OUT + b * stride_ob + h * stride_oh2 + offs_d, out.to(OUT.dtype.element_ty))
    tl.store(LSE_OUT + b * H + h + offs_d * 0, m + tl.log(den), mask=offs_d == 0)


def _device_arrays(plan: Plan, device) -> dict[str, torch.Tensor]:
    key = ("triton-index", str(device))
    if key not in plan.scratch:
        plan.scratch[key] = {name: torch.as_tensor(getattr(plan, name), dtype=torch.int32, device=device)
                             for name in ("task_piece", "task_r0", "task_rows", "piece_q0",
                                          "piece_block_ptr", "piece_blocks", "piece_tokens",
                                          "piece_slot0", "perm", "req_ptr", "req_slots")}
    return plan.scratch[key]


def triton_decode(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, plan: Plan, scale: float,
                  *, block_n: int = 64, precision: str = "ieee") -> tuple[torch.Tensor, torch.Tensor]:
    """Run both kernels: o [B, H, D] in q's dtype, lse [B, H] fp32. `precision='tf32'` trades
    exactness for speed on NVIDIA GPUs (fp32 inputs)."""
    B, H, D = q.shape
    Hkv = k_cache.shape[2]
    G = H // Hkv
    if D < 16 or D & (D - 1):
        raise ValueError(f"the Triton kernel needs a power-of-two head_dim >= 16, got {D}")
    rows = max(16, triton.next_power_of_2(plan.q_tile * G))
    a = _device_arrays(plan, q.device)
    o_slots = torch.empty(plan.num_slots, H, D, dtype=torch.float32, device=q.device)
    lse_slots = torch.empty(plan.num_slots, H, dtype=torch.float32, device=q.device)
    q = q.contiguous()
    _piece_kernel[(len(plan.task_piece), Hkv)](
        q, k_cache, v_cache, o_slots, lse_slots, a["task_piece"], a["task_r0"], a["task_rows"],
        a["piece_q0"], a["piece_block_ptr"], a["piece_blocks"], a["piece_tokens"], a["piece_slot0"],
        a["perm"], float(scale),
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        o_slots.stride(0), o_slots.stride(1), lse_slots.stride(0),
        G=G, D=D, BS=plan.block_size, ROWS=rows, BLOCK_N=block_n, PRECISION=precision,
        LOWP_DOT=bool(q.is_cuda and q.dtype in (torch.float16, torch.bfloat16)))
    out = torch.empty(B, H, D, dtype=q.dtype, device=q.device)
    lse = torch.empty(B, H, dtype=torch.float32, device=q.device)
    _merge_kernel[(B, H)](o_slots, lse_slots, a["req_ptr"], a["req_slots"], out, lse, H,
                          o_slots.stride(0), o_slots.stride(1), lse_slots.stride(0),
                          out.stride(0), out.stride(1), D=D)
    return out, lse
