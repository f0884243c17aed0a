"""CLI smoke tests on a tiny store, and every bad input: one line, exit 2."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app

runner = CliRunner()
EXE = str(Path(sys.executable).parent / "papersuite")


def invoke(*args):
    return runner.invoke(app, ["serve", "specmoeoff", *args])


def test_help_lists_commands():
    r = invoke("--help")
    assert r.exit_code == 0
    for verb in ("build", "generate", "check"):
        assert verb in r.output


def test_generate_k0_and_auto_identical(tiny_store, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("\n".join(json.dumps({"id": f"q{i}", "prompt": p}) for i, p in
                                 enumerate(["Hello there", "Count to five", "Name a color"])) + "\n")
    outs = {}
    for k in ("0", "auto", "2"):
        out = tmp_path / f"out{k}.json"
        r = invoke("generate", "--model", tiny_store, "--prompts", str(prompts), "--k", k, "--max-tokens", "12",
                   "--batch-size", "2", "--tier", "warm", "-o", str(out))
        assert r.exit_code == 0, r.output
        res = json.loads(out.read_text())
        assert [o["id"] for o in res["outputs"]] == ["q0", "q1", "q2"]
        assert res["stats"]["expert_loads_per_token"] >= 0 and 0 <= res["stats"]["hit_rate"] <= 1
        outs[k] = [o["token_ids"] for o in res["outputs"]]
    assert outs["0"] == outs["auto"] == outs["2"]


def test_build_small_store(tiny_llama, tmp_path):
    out = tmp_path / "built"
    r = invoke("build", "--source", tiny_llama, "--experts", "3", "--noise", "0.2", "--router", "random",
               "--seed", "5", "-o", str(out), "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["files"] == 1 + 2 * 3 and res["build"]["seed"] == 5


@pytest.mark.parametrize("args,needle", [
    (["generate", "--k", "17"], "--k"),
    (["generate", "--k", "-1"], "--k"),
    (["generate", "--cache-slots", "0"], "--cache-slots"),
    (["generate", "--cache-slots", "5"], "--cache-slots"),
    (["generate", "--tier", "throttled:x"], "tier"),
    (["build", "--noise", "-0.1"], "--noise"),
])
def test_bad_options(tiny_store, args, needle):
    extra = ["--model", tiny_store] if args[0] == "generate" else []
    r = invoke(*args, *extra)
    assert r.exit_code == 2 and needle in r.output


def test_model_dir_without_store(tmp_path):
    r = invoke("generate", "--model", str(tmp_path))
    assert r.exit_code == 2 and "store" in r.output


def test_bad_prompts_line(tiny_store, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "prompt": "ok"}\n{"id": 2}\n')
    r = invoke("generate", "--model", tiny_store, "--prompts", str(bad))
    assert r.exit_code == 2 and "bad.jsonl:2" in r.output


def test_corrupt_expert_file_exit_2_through_executable(tiny_store, tmp_path):
    import shutil

    copy = tmp_path / "corrupt"
    shutil.copytree(tiny_store, copy)
    f = copy / "experts" / "L001_E002.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    p = subprocess.run([EXE, "serve", "specmoeoff", "generate", "--model", str(copy), "--k", "0"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "sha256" in lines[0] and "L001_E002" in lines[0]
    assert p.stdout == ""


def test_check_reports_ok(tiny_store):
    r = invoke("check", "--model", tiny_store, "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["ok"] and res["greedy_identical"] and res["hf_max_abs_diff"] <= 1e-4


def test_bench_and_tune_smoke(tiny_store, tmp_path):
    out = tmp_path / "bench.json"
    r = invoke("bench", "--model", tiny_store, "--batch-size", "3", "--max-tokens", "6", "--tier", "ram",
               "--cache-slots", "1", "-o", str(out))
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert set(res["systems"]) == {"plain", "prefetch", "lightning", "specmoeoff"}
    assert all(res["greedy_identical_to_plain"].values())
    assert res["ratios"]["specmoeoff/best_peer"] > 0
    r = invoke("tune", "--model", tiny_store, "--batch-size", "2", "--max-tokens", "6", "--tier", "ram",
               "--ks", "0,1,2", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["k_star"] in (0, 1, 2) and 0 <= res["optimizer_regret"] <= 1


def test_bench_unknown_system(tiny_store):
    r = invoke("bench", "--model", tiny_store, "--systems", "plain,fiddler")
    assert r.exit_code == 2 and "fiddler" in r.output
