"""Every top-level command through CliRunner and through the installed executable."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app

EXE = Path(sys.executable).parent / "papersuite"
runner = CliRunner()


def run_exe(*args, timeout=120):
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_help_lists_commands_fast():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0 and "models" in r.output
    t0 = time.perf_counter()
    p = run_exe("--help")
    assert p.returncode == 0 and "models" in p.stdout
    assert time.perf_counter() - t0 < 5  # the 1 s goal is measured in benchmarks/model_load.py


def test_version():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.startswith("papersuite ")


def test_models_list_json():
    r = runner.invoke(app, ["models", "list", "--json"])
    assert r.exit_code == 0
    names = [json.loads(line)["name"] for line in r.stdout.splitlines()]
    assert names == ["smollm2-135m-instruct", "minilm-l6-v2"]


def test_models_info():
    r = runner.invoke(app, ["models", "info", "minilm-l6-v2"])
    assert r.exit_code == 0 and json.loads(r.stdout)["kind"] == "embedding"


def test_models_info_unknown_exits_2_one_line():
    r = runner.invoke(app, ["models", "info", "no-such-model"])
    assert r.exit_code == 2
    p = run_exe("models", "info", "no-such-model")
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1 and "no-such-model" in p.stderr
    assert "Traceback" not in p.stderr


def test_generate_unreadable_gguf_exits_2(tmp_path):
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"\x00garbage")
    p = run_exe("models", "generate", str(bad), "hi")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    missing = run_exe("models", "generate", str(tmp_path / "missing.gguf"), "hi")
    assert missing.returncode == 2


def test_generate_json_through_runner():
    r = runner.invoke(app, ["--quiet", "models", "generate", "smollm2-135m-instruct", "Say hi.",
                            "--max-tokens", "5", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert 0 < out["completion_tokens"] <= 5 and out["prompt_tokens"] > 0 and out["text"]


def test_generate_through_executable_reads_stdin():
    p = subprocess.run([str(EXE), "-q", "models", "generate", "smollm2-135m-instruct", "-", "--max-tokens", "4",
                        "--json"], input="What is 2+2?", capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["completion_tokens"] <= 4


def test_unknown_global_device_exits_2():
    p = run_exe("--device", "tpu", "models", "list")
    assert p.returncode == 2


def test_internal_error_is_one_line_with_log(capsys):
    """A bug (not bad input) prints one line naming a traceback log and exits 1."""
    from cli import PapersuiteApp

    crashy = PapersuiteApp()

    @crashy.command()
    def boom() -> None:
        raise RuntimeError("kaput")

    @crashy.command()
    def fine() -> None:
        pass

    with pytest.raises(SystemExit) as e:
        crashy(["boom"], prog_name="papersuite")
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "RuntimeError: kaput" in err[0] and "traceback in" in err[0]
    log = err[0].rsplit("traceback in ", 1)[1].rstrip(")")
    assert "Traceback" in Path(log).read_text()
