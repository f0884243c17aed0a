"""CLI smoke of every verb (CliRunner on cli.app) and the error paths through the executable."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app

EXE = Path(sys.executable).parent / "papersuite"
runner = CliRunner()
CASE = {"id": "c1", "age": 65, "sex": 1, "anaemia": 0, "diabetes": 0, "high_blood_pressure": 0, "smoking": 0,
        "creatinine_phosphokinase": 200, "ejection_fraction": 30, "platelets": 250000, "serum_creatinine": 1.1,
        "serum_sodium": 137, "nyha": 2, "sbp": 118, "heart_rate": 72, "potassium": 4.3,
        "angioedema_history": 0, "av_block": "none", "decompensated": 0,
        "note": "Continue lisinopril 10 mg daily. Bisoprolol 2.5 mg qd."}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("m") / "model"
    r = runner.invoke(app, ["--quiet", "hf-assess", "train", "--survival", "cox", "-o", str(out)])
    assert r.exit_code == 0, r.output
    return out


def test_help_carries_disclaimer():
    r = runner.invoke(app, ["hf-assess", "--help"])
    text = " ".join(r.output.replace("│", " ").split())
    assert r.exit_code == 0 and "research use only" in text and "not medical advice" in text


def test_train_manifest(model_dir):
    m = json.loads((model_dir / "manifest.json").read_text())
    assert "time" not in m["features"] and m["duration"] == "time" and m["target"] == "DEATH_EVENT"
    assert set(m) >= {"features", "target", "duration", "modalities", "training_ranges", "seed", "disclaimer"}
    assert "research use only" in m["disclaimer"]


def test_assess_matches_rules_and_reports_risk(model_dir, tmp_path):
    cases = tmp_path / "cases.jsonl"
    cases.write_text(json.dumps(CASE) + "\n" + json.dumps({"id": "c2", "ejection_fraction": 35}) + "\n")
    out = tmp_path / "out.jsonl"
    r = runner.invoke(app, ["hf-assess", "assess", str(cases), "--model", str(model_dir), "-o", str(out)])
    assert r.exit_code == 0, r.output
    a, b = [json.loads(x) for x in out.read_text().splitlines()]
    assert 0 < a["risk"]["probability"] < 1 and set(a["risk"]["survival"]) == {"30d", "90d", "180d"}
    assert a["gdmt"]["pillars"]["rasi"]["status"] == "switch"  # ACEi, NYHA II, ARNI gates pass
    assert a["gdmt"]["pillars"]["beta_blocker"]["dose_mg"] == 5
    assert a["inputs"]["egfr"] > 0 and "research use only" in a["disclaimer"]
    assert b["risk"]["status"] == "needs_data" and "serum_creatinine" in b["risk"]["missing"]


@pytest.mark.slow
def test_evaluate_small(tmp_path):
    out = tmp_path / "eval.json"
    r = runner.invoke(app, ["--quiet", "hf-assess", "evaluate", "--folds", "2", "--repeats", "1", "--n-boot", "50",
                            "--no-leaky", "--plots", str(tmp_path / "plots"), "-o", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert set(res["models"]) == {"hfassess", "majority", "lr", "gbm", "rf"}
    assert 0.7 < res["models"]["hfassess"]["auroc"]["mean"] < 0.9
    assert res["models"]["majority"]["auroc"]["mean"] == pytest.approx(0.5, abs=0.05)
    assert set(res["survival"]) == {"cox", "rsf", "gbsa"} and "published" in res
    assert (tmp_path / "plots" / "roc_reliability.png").exists()


def test_explain_and_synth(model_dir, tmp_path):
    r = runner.invoke(app, ["hf-assess", "explain", "--model", str(model_dir), "--method", "shap"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert len(res["global"]) == 11 and res["global"][0]["importance"] >= res["global"][-1]["importance"]
    r = runner.invoke(app, ["hf-assess", "synth", "notes", "--n", "5", "-o", str(tmp_path / "s")])
    assert r.exit_code == 0 and len((tmp_path / "s" / "notes.jsonl").read_text().splitlines()) == 5


BAD = [({"ejection_fraction": 120}, "ejection_fraction=120"), ({"age": -5}, "age=-5"),
       ({"serum_creatinine": 110}, "umol/L"), ({"serum_creatinine": {"value": 1, "unit": "g/L"}}, "unknown unit")]


def test_bad_input_exit_2_one_line_no_output_executable(tmp_path):
    cases = tmp_path / "bad.jsonl"
    cases.write_text(json.dumps(CASE) + "\n" + json.dumps(BAD[2][0]) + "\n")
    out = tmp_path / "out.jsonl"
    p = subprocess.run([str(EXE), "hf-assess", "assess", str(cases), "-o", str(out)], capture_output=True, text=True)
    assert p.returncode == 2 and BAD[2][1] in p.stderr and f"{cases}:2" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize("record,needle", BAD)
def test_bad_input_exit_2_no_output(tmp_path, record, needle):
    cases = tmp_path / "bad.jsonl"
    cases.write_text(json.dumps(CASE) + "\n" + json.dumps(record) + "\n")
    out = tmp_path / "out.jsonl"
    r = runner.invoke(app, ["hf-assess", "assess", str(cases), "-o", str(out)])
    assert r.exit_code == 2 and needle in r.output and f"{cases}:2" in r.output and not out.exists()


def test_missing_column_exit_2(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("age,anaemia\n60,0\n")
    p = subprocess.run([str(EXE), "hf-assess", "train", "--data", str(csv), "-o", str(tmp_path / "m")],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "missing column(s)" in p.stderr and f"{csv}:1" in p.stderr
    assert not (tmp_path / "m").exists()


def test_multimodal_needs_synthetic_data():
    r = runner.invoke(app, ["hf-assess", "evaluate", "--modalities", "tabular,echo", "--fusion", "attention"])
    assert r.exit_code == 2 and "--data synthetic" in r.output
    r = runner.invoke(app, ["hf-assess", "evaluate", "--modalities", "tabular,ecg"])
    assert r.exit_code == 2
