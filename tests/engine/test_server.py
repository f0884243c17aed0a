"""The OpenAI-compatible server: a real uvicorn on a free loopback port, driven by the `openai` client."""
from __future__ import annotations

import concurrent.futures as cf
import json
import socket
import threading
import time

import httpx
import pytest

openai = pytest.importorskip("openai")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_model):
    import uvicorn

    from papersuite.engine.engine import AsyncLLMEngine, LLMEngine
    from papersuite.engine.server import create_app

    engine = LLMEngine(tiny_model, num_blocks=96, max_model_len=256, max_num_batched_tokens=128)
    app = create_app(AsyncLLMEngine(engine).start(), "tiny")
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    deadline = time.time() + 20
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started
    yield f"http://127.0.0.1:{port}", engine
    srv.should_exit = True
    th.join(timeout=10)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[0] + "/v1", api_key="unused", max_retries=0, timeout=60)


CHAT = [{"role": "user", "content": "Say hello."}]


def test_models_chat_completions_and_streams(client, server):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    chat = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=8, temperature=0)
    assert chat.choices[0].message.role == "assistant" and chat.usage.completion_tokens >= 1
    parts = list(client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=8, temperature=0, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in parts if c.choices)
    assert streamed == chat.choices[0].message.content
    assert parts[-1].choices[0].finish_reason == chat.choices[0].finish_reason
    comp = client.completions.create(model="tiny", prompt="Once upon", max_tokens=6, temperature=0, logprobs=2)
    assert comp.usage.prompt_tokens > 0 and len(comp.choices[0].logprobs.token_logprobs) == comp.usage.completion_tokens
    chunks = list(client.completions.create(model="tiny", prompt="Once upon", max_tokens=6, temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == comp.choices[0].text
    raw = httpx.post(server[0] + "/v1/completions", json={"prompt": "Once upon", "max_tokens": 2, "stream": True})
    assert raw.text.rstrip().endswith("data: [DONE]")


def test_sixteen_concurrent_clients(client):
    def one(i):
        return client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": f"Count to {i}."}], max_tokens=6, temperature=0)
    with cf.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(16)))
    assert all(r.choices[0].finish_reason in ("stop", "length") for r in results)
    assert one(3).choices[0].message.content == results[3].choices[0].message.content


@pytest.mark.parametrize("kwargs", [
    {"messages": []},
    {"messages": CHAT, "max_tokens": -1},
    {"messages": CHAT, "max_tokens": 10**7},
    {"messages": [{"role": "user", "content": "word " * 400}]},
    {"messages": CHAT, "model": "gpt-unknown"},
    {"messages": CHAT, "temperature": "hot"},
    {"messages": [{"role": "wizard", "content": "hi"}]},
])
def test_bad_input_is_400_and_server_keeps_serving(client, kwargs):
    kwargs = {"model": "tiny", "max_tokens": 4, **kwargs}
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(**kwargs)
    assert err.value.status_code == 400 and err.value.body["message"]
    assert client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=2).choices


def test_invalid_json_health_and_metrics(server):
    base, _ = server
    r = httpx.post(base + "/v1/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert httpx.get(base + "/health").json() == {"status": "ok"}
    text = httpx.get(base + "/metrics").text
    for name in ("papersuite_requests_running", "papersuite_requests_waiting", "papersuite_kv_cache_usage_ratio",
                 "papersuite_prefix_cache_hit_rate", "papersuite_time_to_first_token_seconds_bucket",
                 "papersuite_time_per_output_token_seconds_count"):
        assert name in text
    count = [ln for ln in text.splitlines() if ln.startswith("papersuite_time_to_first_token_seconds_count")]
    assert int(count[0].split()[1]) > 0


def test_disconnect_frees_blocks(server):
    base, engine = server
    body = {"prompt": "Tell me a long story", "max_tokens": 200, "ignore_eos": True, "stream": True}
    with httpx.stream("POST", base + "/v1/completions", json=body, timeout=30) as r:
        for line in r.iter_lines():
            if line.startswith("data:") and json.loads(line[5:])["choices"][0]["text"] is not None:
                break  # one chunk, then hang up
    deadline = time.time() + 10
    while time.time() < deadline and (engine.has_unfinished()
                                      or engine.block_manager.num_free_blocks < engine.block_manager.num_blocks):
        time.sleep(0.05)
    assert not engine.has_unfinished()
    assert engine.block_manager.num_free_blocks == engine.block_manager.num_blocks


def test_api_key_required_when_set(tiny_model):
    from fastapi.testclient import TestClient

    from papersuite.engine.engine import AsyncLLMEngine, LLMEngine
    from papersuite.engine.server import create_app

    app = create_app(AsyncLLMEngine(LLMEngine(tiny_model, num_blocks=8)), "tiny", api_key="s3cret")
    with TestClient(app) as c:
        assert c.get("/v1/models").status_code == 401
        assert c.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/health").status_code == 200


def test_stream_with_stop_string_never_leaks_it(client):
    full = client.completions.create(model="tiny", prompt="Once upon", max_tokens=12, temperature=0,
                                     extra_body={"ignore_eos": True}).choices[0].text
    stop = full[len(full) // 2:][:4]
    if not stop.strip():
        pytest.skip("greedy text has no usable stop string")
    ref = client.completions.create(model="tiny", prompt="Once upon", max_tokens=12, temperature=0, stop=[stop],
                                    extra_body={"ignore_eos": True}).choices[0]
    chunks = list(client.completions.create(model="tiny", prompt="Once upon", max_tokens=12, temperature=0,
                                            stop=[stop], stream=True, extra_body={"ignore_eos": True}))
    streamed = "".join(c.choices[0].text for c in chunks)
    assert ref.finish_reason == "stop" and ref.text == full[:full.index(stop)] == streamed
