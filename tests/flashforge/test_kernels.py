"""Every executor and baseline against float64 `reference_decode`."""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flashforge.attention import shared_prefix_decode
from flashforge.baselines import cascade_two_level, default_paged, sdpa_dense
from flashforge.plan import build_plan
from flashforge.reference import reference_decode
from flashforge.workloads import chain, identical, kary, make_tensors, no_sharing, two_level

TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}

CASES = {
    "two-level": lambda: two_level(6, 96, 21, 16),
    "binary": lambda: kary(2, 3, tokens=64, name="binary-d3"),
    "kary": lambda: kary(3, 3, tokens=32),
    "chain": lambda: chain(3, tokens=48),
    "no-sharing": lambda: no_sharing(4, 50),
    "identical": lambda: identical(5, 70),
    "b1": lambda: two_level(1, 64, 9),
    "shuffled": lambda: two_level(7, 128, 40, 16, scatter=True, seed=3),
}
SHAPES = [(9, 3, 64), (4, 4, 64), (8, 2, 128)]     # G = 3, 1, 4; D 64, 128


def _run(w, H, Hkv, D, dtype, impl, **plan_kw):
    q, k, v = make_tensors(w, H, Hkv, D, dtype=dtype, seed=1)
    ref = reference_decode(q, k, v, w.block_tables, w.seq_lens)
    plan = build_plan(w.block_tables, w.seq_lens, w.block_size, **{"min_shared_tokens": 0, "kv_chunk": 64,
                                                                    "q_tile": 4, **plan_kw})
    out = shared_prefix_decode(q, k, v, plan, impl=impl)
    assert out.dtype == q.dtype and out.shape == q.shape
    return (out.double() - ref).abs().max().item()


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("impl", ["reference", "torch", "auto"])
def test_impls_fp32(case, impl):
    H, Hkv, D = SHAPES[sorted(CASES).index(case) % 3]
    assert _run(CASES[case](), H, Hkv, D, torch.float32, impl) <= TOL[torch.float32]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_torch_low_precision(shape, dtype):
    assert _run(two_level(5, 80, 30, 16), *shape, dtype, "torch") <= TOL[dtype]


def test_reference_plan_is_exact_in_float64():
    w = kary(2, 4, tokens=32)
    assert _run(w, 6, 2, 16, torch.float64, "reference") < 1e-12


def test_return_lse_matches_reference():
    w = two_level(4, 64, 17)
    q, k, v = make_tensors(w, 9, 3, 64, seed=2)
    _, ref_lse = reference_decode(q, k, v, w.block_tables, w.seq_lens, return_lse=True)
    plan = build_plan(w.block_tables, w.seq_lens, 16, min_shared_tokens=0)
    for impl in ("reference", "torch"):
        _, lse = shared_prefix_decode(q, k, v, plan, impl=impl, return_lse=True)
        assert (lse.double() - ref_lse).abs().max() < 1e-5


@pytest.mark.parametrize("case", ["two-level", "binary", "no-sharing", "shuffled"])
def test_baselines_match_reference(case):
    w = CASES[case]()
    q, k, v = make_tensors(w, 9, 3, 64, seed=4)
    ref = reference_decode(q, k, v, w.block_tables, w.seq_lens)
    for fn in (default_paged, sdpa_dense, cascade_two_level):
        out = fn(q, k, v, w.block_tables, w.seq_lens)
        assert (out.double() - ref).abs().max() <= 1e-5, fn.__name__


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(B=st.integers(1, 6), P=st.integers(0, 5), S=st.integers(1, 40), depth=st.integers(0, 2),
       seed=st.integers(0, 1000), chunk=st.sampled_from([4, 8, 1024]), tile=st.integers(1, 3))
def test_torch_on_random_trees(B, P, S, depth, seed, chunk, tile):
    """Random two- and three-level trees with scattered ids: torch == float64 reference."""
    rng = np.random.default_rng(seed)
    root = (P * 4, [(4 * int(rng.integers(0, 3)), [(S, [])] * int(rng.integers(1, 3)))
                    if depth else (S, []) for _ in range(B)])
    from flashforge.workloads import from_tree

    w = from_tree("rand", root, 4, scatter=True, seed=seed)
    err = _run(w, 6, 2, 16, torch.float32, "torch", kv_chunk=chunk, q_tile=tile)
    assert err <= 1e-5
