"""The shared io layer: file:line errors, stdin, atomic writes."""
import io
import json
import os
import signal
import subprocess
import sys

import pytest

from papersuite import io as pio
from papersuite.errors import UserError


def test_jsonl_malformed_line_names_file_and_line(tmp_path):
    p = tmp_path / "in.jsonl"
    p.write_text('{"a": 1}\n\n{"a": 2}\n{"a": \n')
    with pytest.raises(UserError) as e:
        pio.read_jsonl(p)
    assert f"{p}:4" in str(e.value)
    assert "\n" not in str(e.value)


def test_jsonl_non_object_line_is_an_error(tmp_path):
    p = tmp_path / "in.jsonl"
    p.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(UserError, match=r"in.jsonl:2"):
        pio.read_jsonl(p)


def test_jsonl_reads_stdin(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"x": 1}\n{"x": 2}\n'))
    assert [r["x"] for r in pio.iter_jsonl("-")] == [1, 2]


def test_missing_file_is_user_error(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        pio.read_json(tmp_path / "nope.json")


def test_json_error_has_line(tmp_path):
    p = tmp_path / "x.json"
    p.write_text('{\n "a": 1,\n "b": \n}\n')
    with pytest.raises(UserError, match=r"x.json:4"):
        pio.read_json(p)


def test_csv_wrong_field_count_names_line(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("a,b\n1,2\n3\n")
    with pytest.raises(UserError, match=r"t.csv:3"):
        pio.read_csv_rows(p)
    with pytest.raises(UserError, match=r"missing column\(s\) c"):
        pio.read_csv_rows(p, required=["c"])


def test_csv_frame_reads_and_checks_columns(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("a,b\n1,2\n3,4\n")
    df = pio.read_csv_frame(p, required=["a"])
    assert df["b"].tolist() == [2, 4]
    with pytest.raises(UserError, match="missing column"):
        pio.read_csv_frame(p, required=["zz"])


def test_atomic_write_roundtrip(tmp_path):
    out = tmp_path / "sub" / "o.jsonl"
    pio.write_jsonl(out, [{"a": 1}, {"b": 2}])
    assert pio.read_jsonl(out) == [{"a": 1}, {"b": 2}]
    assert [p.name for p in out.parent.iterdir()] == ["o.jsonl"]


def test_failed_atomic_write_leaves_nothing(tmp_path):
    out = tmp_path / "o.json"
    with pytest.raises(RuntimeError):
        with pio.atomic_write(out) as fh:
            fh.write("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_failed_atomic_write_keeps_previous_file(tmp_path):
    out = tmp_path / "o.json"
    pio.write_json(out, {"v": 1})
    with pytest.raises(RuntimeError):
        with pio.atomic_write(out) as fh:
            fh.write("{broken")
            raise RuntimeError("boom")
    assert json.loads(out.read_text()) == {"v": 1}


def test_killed_writer_leaves_no_output(tmp_path):
    """A process killed mid-write (SIGKILL, no cleanup at all) never leaves the target file."""
    out = tmp_path / "o.jsonl"
    code = (
        "import sys, time\n"
        "from papersuite import io as pio\n"
        "def rows():\n"
        "    for i in range(10**9):\n"
        "        if i == 1000: print('ready', flush=True)\n"
        "        if i > 1000: time.sleep(0.01)\n"
        "        yield {'i': i}\n"
        f"pio.write_jsonl({str(out)!r}, rows())\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert not out.exists()
