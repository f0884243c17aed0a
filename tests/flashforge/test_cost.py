"""Cost model with fixed constants: refuses little sharing, shares a wide prefix; cache file."""
import json

from flashforge import cost
from flashforge.plan import build_plan
from flashforge.workloads import no_sharing, two_level

# a 2-core AVX2 VM, one thread: 15 GB/s, 40 GFLOP/s square GEMM, 30 grouped, 9 GEMV, 3 us per op
FIXED = cost.MachineConstants(bandwidth=15e9, peak_rate=40e9, gemm_rate=30e9, gemv_rate=9e9, overhead=3e-6,
                              threads=1, key="fixed")


def _choose(w):
    plan = build_plan(w.block_tables, w.seq_lens, w.block_size)
    return cost.choose(plan, 9, 3, 64, 4, FIXED), cost.predict(plan, 9, 3, 64, 4, FIXED)


def test_falls_back_without_sharing():
    assert _choose(no_sharing())[0] == "default"
    assert _choose(two_level(4, 64, 128))[0] == "default"


def test_shares_a_wide_prefix():
    path, pred = _choose(two_level(64, 4096, 128))
    assert path == "shared" and pred["gain"] >= 3


def test_small_gain_is_refused():
    # 2 requests sharing 256 tokens with long suffixes: some sharing, under 1.2x predicted
    path, pred = _choose(two_level(2, 256, 2048))
    assert pred["gain"] < cost.MIN_GAIN and path == "default"


def test_constants_are_measured_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("PAPERSUITE_CACHE", str(tmp_path))
    cost._MEMO.clear()
    c = cost.constants("cpu", threads=1)
    files = list((tmp_path / "flashforge").glob("cost-*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["bandwidth"] == c.bandwidth
    assert c.bandwidth > 1e8 and c.gemm_rate > 1e8 and 0 < c.overhead < 1e-2
    cost._MEMO.clear()
    assert cost.constants("cpu", threads=1) == c          # read back, not re-measured
