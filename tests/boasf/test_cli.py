"""`papersuite tune` end to end: determinism, artefacts, timeouts, resume, storages, bad input."""
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from papersuite.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "tabular"
EXE = ROOT / ".venv" / "bin" / "papersuite"
runner = CliRunner(env={"COLUMNS": "400"})  # no rich wrapping of the one-line errors


@pytest.fixture(scope="module")
def iris_csv(tmp_path_factory):
    from sklearn.datasets import load_iris

    d = load_iris(as_frame=True)
    df = d.frame.rename(columns={"target": "species"})
    df["species"] = df["species"].map(dict(enumerate(d.target_names)))
    path = tmp_path_factory.mktemp("iris") / "iris.csv"
    df.to_csv(path, index=False)
    return path


def tune(*args):
    res = runner.invoke(app, ["--quiet", "tune", *map(str, args)])
    return res


def trials(out_dir):
    return [json.loads(line) for line in open(Path(out_dir) / "trials.jsonl")]


def _key(r):
    return (r["arm"], r["round"], json.dumps(r["params"], sort_keys=True), r["status"], r["score"])


@pytest.mark.slow
@pytest.mark.parametrize("data,extra", [("iris", ["--models", "lr,sgd,knn,dt,gnb,lda"]),
                                        ("credit-g", ["--models", "lr,dt,gnb,lda"])])
def test_same_seed_same_trial_log(tmp_path, iris_csv, data, extra):
    path = iris_csv if data == "iris" else DATA / "credit-g.csv"
    logs = []
    for run in ("a", "b"):
        res = tune(path, "--budget-trials", 30, "--n-jobs", 1, "--seed", 3, "--out-dir", tmp_path / run,
                   "-o", tmp_path / f"{run}.json", *extra)
        assert res.exit_code == 0, res.output
        logs.append([_key(r) for r in trials(tmp_path / run)])
    assert len(logs[0]) == 30
    assert logs[0] == logs[1]


def test_artifacts_parse_and_model_predicts_raw_rows(tmp_path, iris_csv):
    import boasf
    from sklearn.metrics import balanced_accuracy_score

    res = tune(iris_csv, "--budget-trials", 12, "--models", "lr,knn,gnb", "--n-jobs", 1, "--test", iris_csv,
               "--out-dir", tmp_path / "out", "-o", tmp_path / "r.json")
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "r.json").read_text())
    for name in ("trials.jsonl", "leaderboard.jsonl", "anytime.png", "best_pipeline.skops", "study.db"):
        assert (tmp_path / "out" / name).stat().st_size > 0, name
    board = [json.loads(line) for line in open(tmp_path / "out" / "leaderboard.jsonl")]
    assert {b["arm"] for b in board} == {"lr", "knn", "gnb"}
    assert board[0]["best"] == pytest.approx(summary["best"]["cv_mean"])
    assert summary["trials"]["total"] == len(trials(tmp_path / "out")) == 12
    assert len(summary["rounds"]) == 3 and summary["rounds"][-1]["survivors"]
    model = boasf.load_pipeline(tmp_path / "out" / "best_pipeline.skops")
    raw = pd.read_csv(iris_csv)
    pred = model.predict(raw)
    assert summary["test_score"] == pytest.approx(balanced_accuracy_score(raw["species"], pred))


def test_slow_arm_is_killed_at_the_cap_and_no_worker_survives(tmp_path, iris_csv):
    res = tune(iris_csv, "--models", "rf", "--budget-trials", 3, "--rounds", 1, "--trial-timeout", 0.05,
               "--n-jobs", 2, "--out-dir", tmp_path / "o", "-o", tmp_path / "r.json")
    assert res.exit_code == 0, res.output
    recs = trials(tmp_path / "o")
    assert recs and all(r["status"] == "timeout" for r in recs)
    assert all(r["duration_s"] < 2.0 and "cap" in r["error"] for r in recs)
    assert multiprocessing.active_children() == []
    assert json.loads((tmp_path / "r.json").read_text())["best"] is None


def test_rerun_on_other_data_is_refused(tmp_path, iris_csv):
    ok = tune(iris_csv, "--budget-trials", 3, "--rounds", 1, "--models", "gnb", "--n-jobs", 1,
              "--out-dir", tmp_path / "o", "-o", tmp_path / "r.json")
    assert ok.exit_code == 0, ok.output
    other = tmp_path / "other.csv"
    other.write_text(iris_csv.read_text().replace("5.1,", "5.2,", 1))
    raw = runner.invoke(app, ["tune", str(other), "--budget-trials", "3", "--rounds", "1", "--models", "gnb",
                              "--out-dir", str(tmp_path / "o")], standalone_mode=False)
    assert isinstance(raw.exception, UserError) and "other data" in str(raw.exception)


def test_journal_storage_and_tpe_random_methods(tmp_path, iris_csv):
    for method in ("tpe", "random"):
        res = tune(iris_csv, "--method", method, "--budget-trials", 8, "--n-jobs", 1, "--storage",
                   f"journal:{tmp_path / 'j.log'}", "--out-dir", tmp_path / method, "-o", tmp_path / f"{method}.json")
        assert res.exit_code == 0, res.output
        assert len(trials(tmp_path / method)) == 8
    assert (tmp_path / "j.log").stat().st_size > 0


def test_hpo_only_uses_orthogonal_arms(tmp_path, iris_csv):
    res = tune(iris_csv, "--hpo-only", "svc", "--budget-trials", 12, "--n-jobs", 1, "--out-dir", tmp_path / "o",
               "-o", tmp_path / "r.json")
    assert res.exit_code == 0, res.output
    assert {r["arm"] for r in trials(tmp_path / "o")} == {"svc.0", "svc.1", "svc.2", "svc.3"}


@pytest.mark.skipif(not os.environ.get("PAPERSUITE_PG_URL"), reason="PAPERSUITE_PG_URL not set")
def test_postgresql_storage(tmp_path, iris_csv):
    res = tune(iris_csv, "--budget-trials", 6, "--models", "lr,gnb", "--n-jobs", 1, "--storage",
               os.environ["PAPERSUITE_PG_URL"], "--study-name", f"test-{os.getpid()}-{time.time_ns()}",
               "--out-dir", tmp_path / "o", "-o", tmp_path / "r.json")
    assert res.exit_code == 0, res.output


@pytest.mark.slow
def test_wall_clock_budget_is_kept(tmp_path):
    t0 = time.perf_counter()
    res = tune(DATA / "diabetes.csv", "--budget", "10s", "--models", "lr,knn,dt", "--out-dir", tmp_path / "o",
               "-o", tmp_path / "r.json")
    wall = time.perf_counter() - t0
    assert res.exit_code == 0, res.output
    s = json.loads((tmp_path / "r.json").read_text())
    assert s["search_s"] <= 10.5
    assert wall <= 10.5 + s["refit_and_artifacts_s"] + 5.0  # + start-up (imports, folds)
    assert s["trials"]["ok"] > 3


@pytest.mark.slow
def test_sigint_then_rerun_resumes_without_repeating(tmp_path, iris_csv):
    args = [str(EXE), "tune", str(iris_csv), "--budget-trials", "30", "--n-jobs", "1", "--out-dir",
            str(tmp_path / "o"), "-o", str(tmp_path / "r.json")]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "o" / "trials.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline:
        if log.exists() and len(log.read_text().splitlines()) >= 10:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    first = len(trials(tmp_path / "o"))
    assert 10 <= first < 30
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    recs = trials(tmp_path / "o")
    assert len(recs) == 30
    assert len({(r["arm"], r["trial"]) for r in recs}) == 30
    assert len({(r["arm"], json.dumps(r["params"], sort_keys=True)) for r in recs}) == 30


@pytest.mark.slow
def test_join_process_runs_trials_for_the_controller(tmp_path, iris_csv):
    store = f"journal:{tmp_path / 'j.log'}"
    common = [str(EXE), "-q", "tune", str(iris_csv), "--n-jobs", "1", "--storage", store]
    main = subprocess.Popen([*common, "--budget-trials", "60", "--out-dir", str(tmp_path / "a"),
                             "-o", str(tmp_path / "a.json")], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (tmp_path / "a" / "trials.jsonl").exists():
        time.sleep(0.05)
    joiner = subprocess.run([*common, "--join", "--out-dir", str(tmp_path / "b"), "-o", str(tmp_path / "b.json")],
                            capture_output=True, text=True, timeout=120)
    _, err = main.communicate(timeout=120)
    assert main.returncode == 0, err
    assert joiner.returncode == 0, joiner.stderr
    mine, theirs = trials(tmp_path / "a"), trials(tmp_path / "b")
    assert mine and theirs
    keys = [(r["arm"], r["trial"]) for r in mine + theirs]
    assert len(keys) == len(set(keys))  # one study, no trial run twice
    assert json.loads((tmp_path / "b.json").read_text())["trials"]["total"] == len(theirs)


# -- bad input: one line, exit 2, nothing written -------------------------------------------------

def _csv(tmp_path, text, name="d.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


BAD = {
    "missing file": (lambda t: ["nope.csv"], "no such file"),
    "unknown target": (lambda t: [_csv(t, "a,b\n1,x\n2,y\n"), "--target", "zz"], "not a column; columns: a, b"),
    "empty target": (lambda t: [_csv(t, "a,b\n1,x\n2,\n3,x\n"), "--target", "b"], "d.csv:3"),
    "single class": (lambda t: [_csv(t, "a,b\n1,x\n2,x\n3,x\n")], "single class"),
    "tiny class": (lambda t: [_csv(t, "a,b\n1,x\n2,x\n3,x\n4,y\n")], "fewer than --cv 3 folds"),
    "float target": (lambda t: [_csv(t, "a,b\n" + "".join(f"{i},{i * 0.37:.3f}\n" for i in range(40)))],
                     "classification only"),
    "junk in numbers": (lambda t: [_csv(t, "age,b\n" + "".join(f"{i},{'xy'[i % 2]}\n" for i in range(15))
                                        + "abc,x\n")],
                        "numeric except 'abc' at "),
    "ragged row": (lambda t: [_csv(t, "a,b\n1,x\n2,y,3\n")], "d.csv:3"),
    "bad budget": (lambda t: [_csv(t, "a,b\n1,x\n"), "--budget", "soon"], "cannot read --budget"),
    "budget too small": (lambda t: [_csv(t, "a,b\n1,x\n"), "--budget", "5s"], "minimum 30s"),
    "unknown metric": (lambda t: [_csv(t, "a,b\n1,x\n"), "--metric", "auc"], "unknown --metric"),
    "unknown model": (lambda t: [_csv(t, "a,b\n1,x\n"), "--models", "lr,xgb"], "unknown model(s) xgb"),
    "join without a run": (lambda t: [_csv(t, "a,b\n" + "".join(f"{i},{'xy'[i % 2]}\n" for i in range(12))),
                                      "--join", "--storage", f"journal:{t / 'none.log'}"], "nothing to join"),
    "bad storage": (lambda t: [_csv(t, "a,b\n" + "".join(f"{i},{'xy'[i % 2]}\n" for i in range(12))),
                               "--storage", "postgresql://nobody@127.0.0.1:1/none"], "cannot open --storage"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_exit_2_and_no_output(tmp_path, case, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make, expected = BAD[case]
    args = make(tmp_path)
    res = tune(*args, "--out-dir", tmp_path / "out", "-o", tmp_path / "r.json")
    assert res.exit_code == 2, res.output
    raw = runner.invoke(app, ["--quiet", "tune", *map(str, args), "--out-dir", str(tmp_path / "out")],
                        standalone_mode=False)  # the message itself, unwrapped by rich's panel
    assert isinstance(raw.exception, UserError) and expected in str(raw.exception)
    assert not (tmp_path / "out").exists() and not (tmp_path / "r.json").exists()


def test_junk_cell_message_names_file_line_and_fix(tmp_path):
    p = BAD["junk in numbers"][0](tmp_path)[0]
    raw = runner.invoke(app, ["tune", str(p)], standalone_mode=False)
    assert str(raw.exception) == f"column 'age' is numeric except 'abc' at {p}:17; pass --na-values abc"
    ok = tune(p, "--na-values", "abc", "--budget-trials", 3, "--rounds", 1, "--models", "gnb", "--n-jobs", 1,
              "--out-dir", tmp_path / "o", "-o", tmp_path / "r.json")
    assert ok.exit_code == 0, ok.output


def test_installed_executable_error_path(tmp_path):
    bad = _csv(tmp_path, "a,b\n1,x\n2,y\n")
    p = subprocess.run([str(EXE), "tune", str(bad), "--target", "nope", "-o", str(tmp_path / "r.json")],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("papersuite: error:") and "columns: a, b" in lines[0]
    assert p.stdout == "" and not (tmp_path / "r.json").exists()
    assert not list(tmp_path.glob("tune-*"))
