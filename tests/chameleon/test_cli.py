"""CLI smoke tests: run, compare, capacity, and the error paths (one line, exit 2 / exit 1)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app

EXE = str(Path(sys.executable).parent / "papersuite")
MID = ["--d-model", "128", "--layers", "4", "--seq-len", "128", "--batch", "8"]
TINY = ["--d-model", "64", "--layers", "2", "--heads", "2", "--seq-len", "32", "--batch", "4"]


@pytest.mark.slow
def test_run_writes_json_trace_and_plot(tmp_path):
    out, trace, plot = tmp_path / "r.json", tmp_path / "t.jsonl", tmp_path / "m.png"
    r = CliRunner().invoke(app, ["-q", "train", "chameleon", "run", *TINY, "--steps", "3",
                                 "--min-bytes-mib", "0.004", "--warmup-steps", "1", "--host-dir",
                                 str(tmp_path / "tier"), "-o", str(out), "--trace", str(trace),
                                 "--plot", str(plot)])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["method"] == "chameleon" and len(doc["steps"]) == 3
    assert {"step", "loss", "cpu_s", "wall_s", "peak_bytes", "swap_out_bytes", "swap_in_bytes", "phase",
            "forced_swaps", "oom_retries"} <= doc["steps"][0].keys()
    assert {"peak_bytes", "step_cpu_s", "mean_cpu_s", "sequence_changes", "policy_regenerations",
            "match_rate", "budget_violations", "ooms"} <= doc["summary"].keys()
    assert len(doc["params_sha256"]) == 64
    assert len(trace.read_text().splitlines()) == 3 and plot.stat().st_size > 0
    assert not any((tmp_path / "tier").iterdir())  # the tier file is gone


@pytest.mark.slow
def test_compare_fresh_processes_none_ooms_where_chameleon_trains(tmp_path):
    out = tmp_path / "c.json"
    r = CliRunner().invoke(app, ["-q", "train", "chameleon", "compare", "--methods", "none,chameleon",
                                 *MID, "--steps", "3", "--threads", "1", "--device-memory-mib", "40",
                                 "-o", str(out)])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["runs"]["none"]["error"] == "oom"
    assert len(doc["runs"]["chameleon"]["steps"]) == 3 and doc["runs"]["chameleon"]["summary"]["ooms"] >= 0
    assert [row["method"] for row in doc["rows"]] == ["chameleon", "none"]


def test_largest_search_doubles_then_bisects():
    from chameleon.commands import largest

    size, tried = largest(lambda n: n <= 11, 1, 256)
    assert size == 11 and [n for n, _ in tried][:5] == [1, 2, 4, 8, 16]
    assert largest(lambda n: False, 1, 64)[0] == 0
    assert largest(lambda n: True, 1, 40)[0] == 40


@pytest.mark.slow
def test_capacity_finds_a_batch(tmp_path):
    out = tmp_path / "cap.json"
    r = CliRunner().invoke(app, ["-q", "train", "chameleon", "capacity", "--methods", "none", *TINY,
                                 "--device-memory-mib", "200", "--max-size", "1", "--threads", "1",
                                 "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["methods"]["none"]["largest"] == 1


@pytest.mark.parametrize("args, needle", [
    (["--method", "nope"], "unknown --method"),
    (["--seq-len-at", "abc"], "STEP:LEN"),
    (["--data", "/no/such/file.txt"], "no such file"),
])
def test_bad_input_is_one_line_exit_2(args, needle, tmp_path):
    p = subprocess.run([EXE, "train", "chameleon", "run", *args, "-o", str(tmp_path / "x.json")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]
    assert not (tmp_path / "x.json").exists()


def test_budget_below_the_floor_is_a_user_error():
    r = CliRunner().invoke(app, ["train", "chameleon", "run", *TINY, "--budget-mib", "0.01", "--steps", "3",
                                 "--min-bytes-mib", "0.004"])
    assert r.exit_code == 2 and "unswappable floor" in r.output


def test_malformed_jsonl_data_names_the_line(tmp_path):
    bad = tmp_path / "d.jsonl"
    bad.write_text('{"text": "hello"}\n{oops\n')
    r = CliRunner().invoke(app, ["train", "chameleon", "run", "--data", str(bad), *TINY])
    assert r.exit_code == 2 and "d.jsonl:2" in r.output


@pytest.mark.slow
def test_run_out_of_memory_is_one_line_exit_1():
    p = subprocess.run([EXE, "-q", "train", "chameleon", "run", "--method", "none", *MID, "--steps", "2",
                        "--threads", "1", "--device-memory-mib", "40"], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 1
    assert len(p.stderr.strip().splitlines()) == 1 and "out of memory" in p.stderr
