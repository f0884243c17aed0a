"""`serve echo api`: a real uvicorn process, online chats through the openai client while a batch runs."""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_online_chats_succeed_while_batch_completes(tiny_llama, tmp_path):
    import httpx
    import openai

    batch = tmp_path / "batch.jsonl"
    doc = " ".join(f"fact{i}" for i in range(60))
    batch.write_text("".join(json.dumps({"custom_id": f"job-{i}", "method": "POST", "url": "/v1/completions",
                                         "body": {"prompt": f"{doc} question {i}?", "max_tokens": 6}}) + "\n"
                             for i in range(12)))
    out, port = tmp_path / "results.jsonl", _free_port()
    exe = Path(sys.executable).parent / "papersuite"
    proc = subprocess.Popen([str(exe), "serve", "echo", "api", "--model", tiny_llama, "--offline", str(batch),
                             "-o", str(out), "--port", str(port), "--kv-tokens", "4096", "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="x")

        def chat(i):
            r = client.chat.completions.create(model=client.models.list().data[0].id, messages=[{"role": "user", "content": f"hi {i}"}],
                                               max_tokens=5)
            return r.choices[0].message.content is not None

        with ThreadPoolExecutor(8) as pool:
            assert all(pool.map(chat, range(8)))
        bad = httpx.post(f"{base}/v1/chat/completions", json={"model": "m", "messages": "nope"})
        assert bad.status_code == 400
        for _ in range(300):
            if out.exists() and len(out.read_text().splitlines()) == 12:
                break
            time.sleep(0.2)
        metrics = httpx.get(f"{base}/metrics").text
        assert "echo_offline_jobs_done 12" in metrics and "echo_reserve_blocks" in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    ids = [json.loads(x)["custom_id"] for x in out.read_text().splitlines()]
    assert sorted(ids) == sorted(f"job-{i}" for i in range(12))
    assert proc.returncode == 0
