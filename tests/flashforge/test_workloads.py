"""Benchmark workloads: named scenarios build the sharing they promise."""
import pytest

from flashforge.plan import build_plan
from flashforge.workloads import MOONCAKE, mooncake_windows, scenario
from papersuite.errors import UserError


@pytest.mark.parametrize("name,B,ratio", [
    ("2level-b16-p1024", 16, 16 * 1152 / (1024 + 16 * 128)),
    ("2level-b4-p64-s20", 4, 4 * 84 / (64 + 80)),
    ("binary-d4", 8, 8 * 4 / 15),
    ("kary-k3-d3", 9, 27 / 13),
    ("chain-3", 3, 6 / 3),
    ("identical-b5", 5, 5.0),
    ("no-sharing", 16, 1.0),
    ("fraction-0.5", 16, 16 * 8192 / (4096 + 16 * 4096)),
])
def test_scenarios_have_the_promised_sharing(name, B, ratio):
    w = scenario(name)
    assert w.name == name and len(w.seq_lens) == B
    assert build_plan(w.block_tables, w.seq_lens, w.block_size).stats["ideal_ratio"] == pytest.approx(ratio)


def test_unknown_scenario_is_a_user_error():
    with pytest.raises(UserError, match="unknown scenario"):
        scenario("3level-whatever")


@pytest.mark.skipif(not MOONCAKE.exists(), reason="the Mooncake trace lives in ../shared/data")
def test_mooncake_windows_share_little():
    ws = mooncake_windows(32, 2)
    assert len(ws) == 2 and all(len(w.seq_lens) == 32 for w in ws)
    ratios = [build_plan(w.block_tables, w.seq_lens, 16).stats["ideal_ratio"] for w in ws]
    assert all(1.0 <= r < 2.5 for r in ratios)
