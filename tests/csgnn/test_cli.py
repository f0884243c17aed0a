"""CLI smoke tests (typer CliRunner on cli.app) and the bad-input contract (exit 2, one line)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app

ROOT = Path(__file__).resolve().parents[2]
GC = ["--quiet", "graph-classify"]
FAST = ["--epochs", "1", "--hidden", "8", "--layers", "2", "--cycle-len", "6", "--workers", "0"]


def run(*args):
    return CliRunner().invoke(app, [*GC, *args], env={"COLUMNS": "1000"}, terminal_width=1000)


def test_datasets_list_and_stats_and_export(tmp_path):
    r = run("datasets")
    assert r.exit_code == 0, r.output
    names = [d["name"] for d in json.loads(r.stdout)["datasets"]]
    assert "MUTAG" in names and "BREC" in names
    r = run("datasets", "MUTAG", "--workers", "0")
    assert r.exit_code == 0, r.output
    stats = json.loads(r.stdout)
    assert stats["graphs"] == 188 and stats["chordless_cycles"] == 538 and stats["classes"] == {"-1": 63, "1": 125}
    out = tmp_path / "m.jsonl"
    assert run("datasets", "MUTAG", "--export", "-o", str(out)).exit_code == 0
    assert len(out.read_text().splitlines()) == 188


@pytest.mark.slow
def test_train_predict_evaluate(tiny_jsonl, tmp_path):
    ckpt = tmp_path / "m.pt"
    r = run("train", str(tiny_jsonl), "--model", "csgnn", "-o", str(ckpt), *FAST)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["selected_epoch"] == 1 and ckpt.exists()
    r = run("predict", str(ckpt), str(tiny_jsonl), "--workers", "0")
    assert r.exit_code == 0, r.output
    preds = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(preds) == 16 and preds[0]["pred"] in ("ring", "path") and set(preds[0]["probs"]) == {"path", "ring"}
    res = tmp_path / "cv.json"
    r = run("evaluate", str(tiny_jsonl), "--models", "csgnn,gin", "--folds", "2", "-o", str(res), *FAST)
    assert r.exit_code == 0, r.output
    out = json.loads(res.read_text())
    assert out["protocol"] == "cv" and set(out["models"]) == {"csgnn", "gin"}
    m = out["models"]["csgnn"]
    assert len(m["folds"]) == 2 and {"test_accuracy", "val_accuracy", "selected_epoch"} <= set(m["folds"][0])
    assert {"seconds", "computed_graphs", "cached_graphs", "cycles", "relation_pairs", "fallbacks"} <= set(m["preprocess"])
    # the folds of a result file are reusable with --splits; a rerun hits the structure cache
    r = run("evaluate", str(tiny_jsonl), "--models", "csgnn", "--splits", str(res), *FAST)
    again = json.loads(r.stdout)
    assert again["splits"]["folds"] == out["splits"]["folds"]
    assert again["models"]["csgnn"]["preprocess"]["computed_graphs"] == 0


def test_evaluate_pairs_and_wl_on_sr25():
    r = run("evaluate", "SR25", "--models", "csgnn,gin", "--seeds", "2", "--cycle-len", "6", "--hidden", "16")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["protocol"] == "pairs"
    assert res["models"]["csgnn"]["distinguished"] == 105 and res["models"]["gin"]["distinguished"] == 0
    r = run("evaluate", "SR25", "--models", "csgnn", "--protocol", "wl", "--cycle-len", "6")
    assert json.loads(r.stdout)["models"]["csgnn"]["distinguished"] == 105


def _bad(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize("case", ["unknown", "tu_missing", "tu_malformed", "jsonl", "edge", "empty", "pair", "no_y",
                                  "model", "cycle_len"])
def test_bad_inputs_exit_2_with_one_line_and_no_output(case, tmp_path):
    out = tmp_path / "out.json"
    tu = tmp_path / "TOY" / "raw"
    tu.mkdir(parents=True)
    (tu / "TOY_A.txt").write_text("1, 2\n2, 1\n")
    (tu / "TOY_graph_indicator.txt").write_text("1\n1\n")
    if case == "tu_malformed":
        (tu / "TOY_graph_labels.txt").write_text("1\nfoo\n")
    args = {
        "unknown": ["evaluate", "NOPE"],
        "tu_missing": ["evaluate", str(tmp_path / "TOY")],
        "tu_malformed": ["evaluate", str(tmp_path / "TOY")],
        "jsonl": ["evaluate", _bad(tmp_path, "a.jsonl", "{oops\n")],
        "edge": ["evaluate", _bad(tmp_path, "b.jsonl", '{"num_nodes": 2, "edges": [[0, 2]], "y": 1}\n')],
        "empty": ["evaluate", _bad(tmp_path, "c.jsonl", '{"num_nodes": 0, "edges": [], "y": 1}\n')],
        "pair": ["evaluate", _bad(tmp_path, "d.jsonl", '{"num_nodes": 1, "edges": [], "pair": "p"}\n' * 3),
                 "--models", "gin"],
        "no_y": ["train", _bad(tmp_path, "e.jsonl", '{"num_nodes": 1, "edges": []}\n')],
        "model": ["evaluate", "SR25", "--models", "gat"],
        "cycle_len": ["evaluate", "SR25", "--cycle-len", "40"],
    }[case]
    r = run(*args, "-o", str(out))
    assert r.exit_code == 2, r.output
    assert not out.exists()
    expect = {"unknown": "known: MUTAG", "tu_missing": "TOY_graph_labels.txt: no such file",
              "tu_malformed": "TOY_graph_labels.txt:2", "jsonl": "a.jsonl:1", "edge": "b.jsonl:1",
              "empty": "c.jsonl:1", "pair": "exactly 2", "no_y": "no 'y'", "model": "unknown model",
              "cycle_len": "3..24"}[case]
    assert expect in r.output


@pytest.mark.slow
def test_installed_executable_error_path(env, tmp_path):
    exe = Path(sys.executable).parent / "papersuite"
    bad = _bad(tmp_path, "x.jsonl", '{"num_nodes": 3, "edges": [[0, 9]]}\n')
    p = subprocess.run([str(exe), "graph-classify", "evaluate", bad], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=120)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "x.jsonl:1" in lines[0] and p.stdout == ""
