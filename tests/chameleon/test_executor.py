"""Executor + host tier: exact round trips, one write per storage, bit-identical gradients."""
import torch
import torch.nn as nn

from chameleon.executor import SwapExecutor
from chameleon.matcher import Matcher
from chameleon.stages import StageTracker
from chameleon.transfer import FileTier


class _Mem:
    def current(self):
        return 0


def _executor(tmp_path, min_bytes=1):
    tier = FileTier(str(tmp_path))
    ex = SwapExecutor(tier, StageTracker([]), _Mem(), min_bytes=min_bytes)
    ex.begin_step([], Matcher(), lambda fp, o, n: True)
    return ex, tier


def test_file_tier_round_trip_of_views_and_dtypes(tmp_path):
    ex, tier = _executor(tmp_path)
    base = torch.arange(48, dtype=torch.float32).reshape(6, 8)
    tensors = [base.t()[1:5, ::2], base[2:, 3:], torch.randn(5, 7).to(torch.bfloat16).t(),
               torch.arange(-20, 20, dtype=torch.int64)[::3], torch.rand(9, 4) > 0.5]
    packed = [ex.pack(t) for t in tensors]
    assert ex.stats.swapped == 4  # the two float views share one storage
    got = [ex.unpack(p) for p in packed]
    for t, g in zip(tensors, got):
        assert g.dtype == t.dtype and g.shape == t.shape and g.stride() == t.stride()
        assert torch.equal(g, t)
        assert g.untyped_storage().data_ptr() != t.untyped_storage().data_ptr()  # really re-read
    tier.close()


def test_shared_storage_is_written_once(tmp_path):
    ex, tier = _executor(tmp_path)
    x = torch.randn(64, 64)
    views = [ex.pack(x[:10]), ex.pack(x[10:]), ex.pack(x.t())]
    assert ex.stats.swap_out_bytes == x.untyped_storage().nbytes()
    assert len(ex.handles) == 1
    assert torch.equal(ex.unpack(views[2]), x.t())
    assert torch.equal(ex.unpack(views[0]), x[:10])
    assert ex.stats.swap_in_bytes == x.untyped_storage().nbytes()
    ex.end_step()
    tier.close()


def test_parameters_are_never_swapped(tmp_path):
    tier = FileTier(str(tmp_path))
    lin = nn.Linear(32, 32)
    ex = SwapExecutor(tier, StageTracker([]), _Mem(), min_bytes=1)
    ex.begin_step(lin.parameters(), Matcher(), lambda fp, o, n: True)
    assert ex.pack(lin.weight.t()) is not None
    assert ex.stats.swapped == 0
    tier.close()


def test_swapped_training_gradients_are_bit_identical(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.LayerNorm(64), nn.Linear(64, 4))
    x = torch.randn(32, 16)
    model(x).square().mean().backward()
    ref = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    tier = FileTier(str(tmp_path))
    ex = SwapExecutor(tier, StageTracker([]), _Mem(), min_bytes=1)
    ex.begin_step(model.parameters(), Matcher(), lambda fp, o, n: True)
    with ex.hooks():
        model(x).square().mean().backward()
    assert ex.stats.swapped > 0 and tier.bytes_in == tier.bytes_out > 0
    for p, r in zip(model.parameters(), ref):
        assert torch.equal(p.grad, r)
    ex.end_step()
    tier.close()


def test_tier_file_is_gone_from_the_directory(tmp_path):
    tier = FileTier(str(tmp_path))
    tier.put(torch.ones(1000, dtype=torch.uint8))
    assert list(tmp_path.iterdir()) == []  # unlinked at open: nothing survives any exit
    tier.close()
