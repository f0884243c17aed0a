"""`serve flashforge check | bench` through CliRunner, and the error path through the executable."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from papersuite.errors import UserError

EXE = Path(sys.executable).parent / "papersuite"
runner = CliRunner()


def test_check_quick_json():
    r = runner.invoke(app, ["--device", "cpu", "serve", "flashforge", "check", "--quick", "--no-engine",
                            "--impl", "torch", "--json"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert {row["case"] for row in rows} == {"two-level", "binary-d4", "shuffled-partial", "no-sharing"}
    assert all(row["ok"] and row["max_abs_err"] <= row["tol"] for row in rows)


def test_check_given_trees_and_output_file(tmp_path):
    trees = tmp_path / "t.jsonl"
    trees.write_text(json.dumps({"block_size": 4, "block_tables": [[0, 1, 2], [0, 1, 3]], "seq_lens": [11, 12]})
                     + "\n\n" + json.dumps({"block_tables": [[5]], "seq_lens": [3]}) + "\n")
    out = tmp_path / "rows.jsonl"
    r = runner.invoke(app, ["serve", "flashforge", "check", str(trees), "--no-engine", "--impl", "reference",
                            "--dtype", "fp16", "-o", str(out)])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["case"] for row in rows] == ["line1", "line3"] and all(row["dtype"] == "fp16" for row in rows)


def test_bench_quick_one_repeat():
    r = runner.invoke(app, ["--device", "cpu", "serve", "flashforge", "bench", "--scenario", "2level-b16-p1024", "--scenario",
                            "no-sharing", "--repeats", "1", "--warmup", "0", "--json"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    keys = {"scenario", "B", "P", "S", "dtype", "ideal_ratio", "cap", "plan_ms", "path", "ms", "vs_default",
            "vs_sdpa", "vs_cascade2", "max_err"}
    assert all(keys <= set(row) for row in rows)
    assert set(rows[0]["ms"]) >= {"default", "sdpa", "cascade2", "flashforge"}
    assert rows[0]["ideal_ratio"] == pytest.approx(6.0) and rows[0]["path"] == "shared"
    assert rows[1]["path"] == "default" and all(row["max_err"] < 1e-5 for row in rows)


@pytest.mark.parametrize("line,msg", [
    ("{not json", "t.jsonl:1: malformed JSON"),
    ('{"block_tables": [[0, -2]], "seq_lens": [20]}', "t.jsonl:1: request 0: negative block id -2"),
    ('{"block_tables": [[0]], "seq_lens": [40]}', "t.jsonl:1: request 0: seq_len 40 needs 3 blocks"),
    ('{"block_tables": [[0]]}', "t.jsonl:1: missing key 'seq_lens'"),
])
def test_bad_trees_exit_2_one_line(tmp_path, line, msg):
    trees = tmp_path / "t.jsonl"
    trees.write_text(line + "\n")
    args = ["serve", "flashforge", "check", str(trees), "--no-engine"]
    assert runner.invoke(app, args).exit_code == 2
    err = runner.invoke(app, args, standalone_mode=False).exception   # the UserError itself
    assert isinstance(err, UserError) and err.exit_code == 2 and msg in str(err) and "\n" not in str(err)


def test_unknown_impl_and_missing_triton(monkeypatch):
    r = runner.invoke(app, ["serve", "flashforge", "check", "--impl", "cuda-magic"], standalone_mode=False)
    assert isinstance(r.exception, UserError) and "unknown --impl" in str(r.exception)
    import flashforge.attention

    monkeypatch.setattr(flashforge.attention, "triton_available", lambda: False)
    r = runner.invoke(app, ["serve", "flashforge", "check", "--impl", "triton", "--no-engine"],
                      standalone_mode=False)
    assert isinstance(r.exception, UserError) and "needs the triton package" in str(r.exception)


def test_executable_error_path(tmp_path):
    trees = tmp_path / "bad.jsonl"
    trees.write_text('{"block_size": 16, "block_tables": [[0, 1]], "seq_lens": [40]}\n')
    p = subprocess.run([str(EXE), "serve", "flashforge", "bench", str(trees)], capture_output=True, text=True,
                       timeout=120, stdin=subprocess.DEVNULL)
    assert p.returncode == 2 and p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{trees}:1" in lines[0] and "needs 3 blocks" in lines[0]
