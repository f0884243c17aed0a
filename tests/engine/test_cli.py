"""`papersuite serve api`: error paths through CliRunner and the installed executable, and a real
server process answering /health, then draining on SIGTERM."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from cli import app

EXE = Path(sys.executable).parent / "papersuite"


@pytest.mark.parametrize("args,needle", [
    (["--model", "no-such-model"], "unknown model"),
    (["--scheduler", "bogus"], "unknown --scheduler"),
    (["--attention", "nope"], "unknown --attention"),
    (["--kv-policy", "nope"], "unknown --kv-policy"),
    (["--port", "70000"], "--port"),
    (["--max-num-seqs", "0"], "--max-num-seqs"),
])
def test_bad_options_exit_2_with_one_line(args, needle):
    r = CliRunner().invoke(app, ["serve", "api", *args])
    assert r.exit_code == 2 and needle in r.output


def test_executable_error_path_is_one_line():
    r = subprocess.run([str(EXE), "serve", "api", "--kv-policy", "mru"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "unknown --kv-policy 'mru'" in r.stderr


@pytest.mark.slow
def test_server_process_serves_and_drains_on_sigterm(tiny_model):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    proc = subprocess.Popen([str(EXE), "--quiet", "serve", "api", "--model", tiny_model, "--port", str(port),
                             "--num-blocks", "32", "--threads", "1"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, ok = time.time() + 60, False
        while time.time() < deadline and not ok:
            try:
                ok = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json()["status"] == "ok"
            except httpx.HTTPError:
                time.sleep(0.2)
        assert ok, proc.stderr.read() if proc.poll() is not None else "server did not start"
        r = httpx.post(f"http://127.0.0.1:{port}/v1/completions",
                       json={"prompt": "Hi", "max_tokens": 3, "temperature": 0}, timeout=30)
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1
        body = {"prompt": "Tell me more", "max_tokens": 8, "ignore_eos": True, "temperature": 0, "stream": True}
        with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/completions", json=body, timeout=60) as r:
            lines = r.iter_lines()
            first = next(line for line in lines if line.startswith("data:"))
            proc.send_signal(signal.SIGTERM)  # mid-stream: the request must still finish
            rest = [line for line in lines if line.startswith("data:")]
        assert first and rest[-1] == "data: [DONE]"
        assert '"finish_reason": "length"' in rest[-2]
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
