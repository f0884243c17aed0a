"""The Triton kernels vs float64: the interpreter on CPU (TRITON_INTERPRET=1), compiled on a GPU."""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is first imported
pytest.importorskip("triton")

from flashforge.attention import shared_prefix_decode  # noqa: E402
from flashforge.plan import build_plan  # noqa: E402
from flashforge.reference import reference_decode  # noqa: E402
from flashforge.workloads import chain, kary, make_tensors, two_level  # noqa: E402

pytestmark = pytest.mark.triton
DEV = "cuda" if torch.cuda.is_available() else "cpu"


def _err(w, H, Hkv, D, dtype, **kw):
    q, k, v = make_tensors(w, H, Hkv, D, dtype=dtype, seed=5, device=DEV)
    ref, ref_lse = reference_decode(q, k, v, w.block_tables, w.seq_lens, return_lse=True)
    plan = build_plan(w.block_tables, w.seq_lens, w.block_size, **{"min_shared_tokens": 0, **kw})
    out, lse = shared_prefix_decode(q, k, v, plan, impl="triton", return_lse=True)
    assert out.dtype == dtype
    return (out.double() - ref).abs().max().item(), (lse.double() - ref_lse).abs().max().item()


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 2e-3)])
def test_triton_tiny_tree(dtype, tol):
    w = two_level(5, 48, 21, 16, scatter=True, seed=1)          # partial tails, scattered ids
    err, lse_err = _err(w, 9, 3, 64, dtype, kv_chunk=32, q_tile=2)
    assert err <= tol and lse_err <= 1e-4


def test_triton_deeper_tree_g4_d128():
    err, _ = _err(chain(3, tokens=32), 8, 2, 128, torch.float32, kv_chunk=1024, q_tile=16)
    assert err <= 1e-5


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 2e-3), (torch.bfloat16, 2e-2)])
def test_triton_gpu_sizes(dtype, tol):
    err, _ = _err(kary(2, 4, tokens=1024), 32, 8, 128, dtype)
    assert err <= tol
