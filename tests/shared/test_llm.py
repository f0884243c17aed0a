"""The TextGenerator implementations: transformers in-process and an OpenAI-compatible server."""
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from papersuite.errors import UserError
from papersuite.llm import OpenAIGenerator, SamplingParams, TextGenerator, TransformersGenerator


@pytest.fixture(scope="module")
def hf():
    return TransformersGenerator("smollm2-135m-instruct")


def test_transformers_generator_batch_and_chat(hf):
    assert isinstance(hf, TextGenerator)
    params = SamplingParams(max_tokens=8)
    outs = hf.generate(["The sky is", [{"role": "user", "content": "Say hello."}]], params)
    assert len(outs) == 2
    for o in outs:
        assert 0 < o.completion_tokens <= 8 and o.prompt_tokens > 0 and o.latency_s > 0
    # batching with left padding gives the same greedy text as running alone
    alone = hf.generate(["The sky is"], params)[0]
    assert alone.token_ids == outs[0].token_ids


def test_transformers_generator_stop_string(hf):
    full = hf.generate(["1, 2, 3, 4,"], SamplingParams(max_tokens=10))[0].text
    assert "," in full
    cut = hf.generate(["1, 2, 3, 4,"], SamplingParams(max_tokens=10, stop=(",",)))[0]
    assert cut.text == full[: full.index(",")] and cut.finish_reason == "stop"


class _Handler(BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Handler.seen.append((self.path, body, self.headers.get("Authorization")))
        if body.get("max_tokens") == 999:
            self.send_response(400)
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "too many"}}')
            return
        if self.path.endswith("/chat/completions"):
            choice = {"message": {"role": "assistant", "content": "hi there"}, "finish_reason": "stop"}
        else:
            choice = {"text": " blue", "finish_reason": "length"}
        data = {"choices": [choice], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}
        payload = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def test_openai_generator_against_local_server(monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        gen = OpenAIGenerator("m")
        outs = gen.generate(["The sky is", [{"role": "user", "content": "hey"}]],
                            SamplingParams(max_tokens=4, stop=("\n",)))
        assert [o.text for o in outs] == [" blue", "hi there"]
        assert outs[0].prompt_tokens == 5 and outs[1].completion_tokens == 2
        paths = [p for p, _, _ in _Handler.seen]
        assert paths == ["/v1/completions", "/v1/chat/completions"]
        assert _Handler.seen[0][1]["stop"] == ["\n"] and _Handler.seen[0][2] == "Bearer sk-test"
        with pytest.raises(UserError, match="HTTP 400"):
            gen.generate(["x"], SamplingParams(max_tokens=999))
    finally:
        server.shutdown()


def test_openai_generator_needs_url(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(UserError, match="OPENAI_BASE_URL"):
        OpenAIGenerator("m")
    with pytest.raises(UserError, match="cannot connect"):
        OpenAIGenerator("m", base_url="http://127.0.0.1:9").generate(["x"])
