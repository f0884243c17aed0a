"""CLI smoke tests through cli.app, and the error path through the installed executable."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app

EXE = Path(sys.executable).parent / "papersuite"


def _run(*args):
    return CliRunner().invoke(app, ["serve", "glm", *args])


def test_check_graph_default():
    r = _run("check-graph")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["nodes"] == 906 and d["dangling"] == 0 and d["nodes_by_type"]["venue"] == 12


def test_exec_default_and_jsonl(tmp_path):
    r = _run("exec")
    assert r.exit_code == 0 and json.loads(r.stdout)["ok"] is True
    f = tmp_path / "s.jsonl"
    f.write_text(json.dumps({"id": "ok", "code": "print(NodeDegree('a0090', 'paper'))"}) + "\n"
                 + json.dumps({"id": "bad", "code": "import os"}) + "\n")
    out = tmp_path / "o.jsonl"
    r = _run("exec", str(f), "-o", str(out))
    assert r.exit_code == 0, r.output
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert recs[0] == {"id": "ok", "ok": True, "output": "20\n", "error": None}
    assert recs[1]["ok"] is False and "Import" in recs[1]["error"]


@pytest.mark.slow
def test_ask_oracle_count_then_score(tmp_path):
    out = tmp_path / "pred.jsonl"
    r = _run("ask", "--driver", "oracle", "--oracle-backend", "count", "--no-embeddings", "--limit", "2",
             "-o", str(out))
    assert r.exit_code == 0, r.output
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(x["qid"], x["system"]) for x in recs] == [("dev-0000", "glm"), ("dev-0000", "graphcot"),
                                                       ("dev-0001", "glm"), ("dev-0001", "graphcot")]
    assert all(x["em"] == 1.0 for x in recs)
    assert {"calls", "steps", "tokens_prompt", "tokens_completion", "prefill_computed", "prefill_cached",
            "parse_errors", "exec_errors", "halt", "latency_s", "class", "driver", "model"} <= set(recs[0])
    s = tmp_path / "score.json"
    r = _run("score", str(out), "-o", str(s))
    assert r.exit_code == 0, r.output
    summ = json.loads(s.read_text())
    assert summ["glm"]["overall"]["em"] == 1.0 and summ["glm"]["overall"]["class_acc"] == 1.0


def test_bad_inputs_exit_2(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"paper_nodes": {"p1": {"features": {}, "neighbors": {}}}, '
                   '"author_nodes": {"p1": {"features": {}, "neighbors": {}}}}')
    r = _run("check-graph", str(bad))
    assert r.exit_code == 2 and "p1" in r.output
    r = _run("score", str(tmp_path / "missing.jsonl"))
    assert r.exit_code == 2
    r = _run("ask", "--system", "nope", "--driver", "oracle", "--oracle-backend", "count")
    assert r.exit_code == 2


def test_executable_error_is_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    p = subprocess.run([str(EXE), "serve", "glm", "check-graph", str(bad)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2 and p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "malformed JSON" in lines[0] and str(bad) in lines[0]
