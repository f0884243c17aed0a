"""`papersuite serve ares` end to end on the tiny model, and its bad-input errors."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app

runner = CliRunner()
EXE = Path(sys.executable).parent / "papersuite"


@pytest.fixture(scope="module")
def workdir(tiny_llama, tmp_path_factory):
    d = tmp_path_factory.mktemp("ares-cli")
    prompts = d / "prompts.txt"
    prompts.write_text("\n".join(f"Tell me about topic number {i}." for i in range(14)) + "\n")
    r = runner.invoke(app, ["-q", "serve", "ares", "collect", "--prompts", str(prompts), "--model", tiny_llama,
                            "--max-tokens", "16", "--batch-size", "7", "-o", str(d / "data")])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["requests"] == 14
    r = runner.invoke(app, ["-q", "serve", "ares", "train", str(d / "data"), "--epochs", "3", "-o", str(d / "p.pt")])
    assert r.exit_code == 0, r.output
    return d


def test_train_evaluate_predict(workdir, tiny_llama):
    r = runner.invoke(app, ["-q", "serve", "ares", "train", str(workdir / "data"), "--predictor", "ares-literal",
                            "--epochs", "3", "-o", str(workdir / "literal.pt")])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["params"] > 0
    r = runner.invoke(app, ["-q", "serve", "ares", "evaluate", str(workdir / "data"), "--predictors",
                            "ares,constant,elapsed-median,prompt-tfidf", "--seeds", "0", "--epochs", "2",
                            "-o", str(workdir / "eval.json")])
    assert r.exit_code == 0, r.output
    res = json.loads((workdir / "eval.json").read_text())["predictors"]
    assert set(res) == {"ares", "constant", "elapsed-median", "prompt-tfidf"}
    r = runner.invoke(app, ["-q", "serve", "ares", "predict", "Hello there", "--predictor", str(workdir / "p.pt"),
                            "--model", tiny_llama, "--max-tokens", "12", "--k", "4"])
    assert r.exit_code == 0, r.output
    line = json.loads(r.stdout.splitlines()[0])
    assert line["predictions"][0][0] == 0 and all(t % 4 == 0 for t, _ in line["predictions"])
    assert all(p >= 1 for _, p in line["predictions"])


@pytest.mark.parametrize("args, message", [
    (["train", "/no/such/dir"], "no such data folder"),
    (["train", "--predictor", "magic"], "unknown predictor"),
    (["evaluate", "--predictors", "nope"], "unknown predictor"),
    (["collect", "--every", "0"], "--every must be >= 1"),
    (["collect", "--prompts", "/no/such/file.jsonl"], "no such file"),
    (["predict", "hi", "--predictor", "/no/such.pt"], "no predictor"),
])
def test_bad_input_one_line_exit_2(args, message):
    p = subprocess.run([str(EXE), "serve", "ares", *args], capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 2, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and message in p.stderr


def test_malformed_prompt_line_names_file_line(tmp_path):
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"prompt": "a"}\n{"prompt": \n')
    r = runner.invoke(app, ["serve", "ares", "collect", "--prompts", str(bad), "-o", str(tmp_path / "d")])
    flat = "".join(ch for ch in r.output if ch not in " \n│╭╮╰╯─")
    assert r.exit_code == 2 and f"{bad}:2".replace(" ", "") in flat
    assert not (tmp_path / "d").exists()


def test_replay_real_engines_equal_digests(workdir, tiny_llama):
    """Greedy outputs do not depend on placement or migration; every policy finishes every request."""
    (workdir / "cm.json").write_text(json.dumps({"intercept_s": 0.002, "coef": {"n_prefill": 1e-5, "n_decode": 1e-4,
                                                                              "sum_ctx": 1e-8}, "mape": 0.0}))
    r = runner.invoke(app, ["-q", "serve", "ares", "replay", "--model", tiny_llama, "--predictor",
                            str(workdir / "p.pt"), "--policy", "rr,llumnix,ares,oracle", "--instances", "2",
                            "--kv-tokens", "512", "--n", "10", "--rate", "50", "--max-tokens", "24",
                            "--temperature", "0", "--placement", "rr", "--clock", "model",
                            "--cost-model", str(workdir / "cm.json"), "-o", str(workdir / "replay.json")])
    assert r.exit_code == 0, r.output
    res = json.loads((workdir / "replay.json").read_text())["policies"]
    assert set(res) == {"rr", "llumnix", "ares", "oracle"}
    assert len({v["output_digest"] for v in res.values()}) == 1
    assert all(v["p99_tpot"] is not None for v in res.values())
