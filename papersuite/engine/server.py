"""OpenAI-compatible HTTP server on the engine: FastAPI app factory plus Prometheus metrics.

Routes: POST /v1/completions, POST /v1/chat/completions (both with SSE streaming ending in
`data: [DONE]`), GET /v1/models, /health, /metrics. Bad input is HTTP 400 with OpenAI's error body
`{"error": {"message", "type", "param", "code"}}` and the server keeps serving. A client that
disconnects aborts its request, which frees its KV blocks.
"""
from __future__ import annotations

import json
import time
import uuid
from contextlib import asynccontextmanager
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from papersuite.engine.engine import AsyncLLMEngine, StreamDelta
from papersuite.llm import SamplingParams

TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TPOT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Histogram:
    """A Prometheus histogram: cumulative bucket counts, sum and count."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets, self.counts, self.sum, self.count = buckets, [0] * len(buckets), 0.0, 0

    def observe(self, v: float) -> None:
        self.sum += v
        self.count += 1
        for i, b in enumerate(self.buckets):
            if v <= b:
                self.counts[i] += 1

    def render(self, name: str, help_: str) -> list[str]:
        lines = [f"# HELP {name} {help_}", f"# TYPE {name} histogram"]
        lines += [f'{name}_bucket{{le="{b}"}} {c}' for b, c in zip(self.buckets, self.counts)]
        return lines + [f'{name}_bucket{{le="+Inf"}} {self.count}', f"{name}_sum {self.sum}", f"{name}_count {self.count}"]


class Metrics:
    """What /metrics reports; `on_finish` runs in the engine thread."""

    def __init__(self) -> None:
        self.ttft, self.tpot = Histogram(TTFT_BUCKETS), Histogram(TPOT_BUCKETS)
        self.finished: dict[str, int] = {}
        self.prompt_tokens = self.generation_tokens = 0

    def on_finish(self, seq) -> None:
        self.finished[seq.finish_reason] = self.finished.get(seq.finish_reason, 0) + 1
        self.prompt_tokens += seq.num_prompt_tokens
        self.generation_tokens += seq.num_output_tokens
        if seq.first_token_time is not None:
            self.ttft.observe(seq.first_token_time - seq.arrival_time)
            if seq.num_output_tokens > 1 and seq.finish_time is not None:
                self.tpot.observe((seq.finish_time - seq.first_token_time) / (seq.num_output_tokens - 1))

    def render(self, engine) -> str:
        sch, bm = engine.scheduler, engine.block_manager
        hit_rate = bm.hit_tokens / bm.queried_tokens if bm.queried_tokens else 0.0
        gauges = [("papersuite_requests_running", "Requests being computed.", len(sch.running)),
                  ("papersuite_requests_waiting", "Requests waiting for admission.", len(sch.waiting)),
                  ("papersuite_kv_cache_usage_ratio", "Fraction of KV blocks in use.", bm.usage()),
                  ("papersuite_prefix_cache_hit_rate", "Prompt tokens served from the prefix cache / prompt tokens.",
                   hit_rate)]
        counters = [("papersuite_prefix_cache_hit_tokens_total", "Prompt tokens served from the prefix cache.",
                     bm.hit_tokens),
                    ("papersuite_prefix_cache_queried_tokens_total", "Prompt tokens looked up in the prefix cache.",
                     bm.queried_tokens),
                    ("papersuite_prompt_tokens_total", "Prompt tokens of finished requests.", self.prompt_tokens),
                    ("papersuite_generation_tokens_total", "Generated tokens of finished requests.",
                     self.generation_tokens),
                    ("papersuite_num_preemptions_total", "Preemptions by recomputation.", sch.num_preemptions)]
        lines = []
        for name, help_, v in gauges:
            lines += [f"# HELP {name} {help_}", f"# TYPE {name} gauge", f"{name} {v}"]
        for name, help_, v in counters:
            lines += [f"# HELP {name} {help_}", f"# TYPE {name} counter", f"{name} {v}"]
        lines += ["# HELP papersuite_request_success_total Finished requests by finish reason.",
                  "# TYPE papersuite_request_success_total counter"]
        lines += [f'papersuite_request_success_total{{finish_reason="{k}"}} {v}' for k, v in sorted(self.finished.items())]
        lines += self.ttft.render("papersuite_time_to_first_token_seconds", "Time to first token.")
        lines += self.tpot.render("papersuite_time_per_output_token_seconds", "Time per output token after the first.")
        return "\n".join(lines) + "\n"


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None, status: int = 400, type_: str = "invalid_request_error"):
        super().__init__(message)
        self.message, self.param, self.status, self.type = message, param, status, type_


def error_response(message: str, param: str | None = None, status: int = 400,
                   type_: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": param, "code": None}}, status_code=status)


def _number(body: dict, key: str, default, kind=float, lo=None, hi=None):
    v = body.get(key, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not float(v).is_integer()):
        raise BadRequest(f"{key} must be {'an integer' if kind is int else 'a number'}, got {v!r}", key)
    v = kind(v)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise BadRequest(f"{key} must be in [{lo}, {hi}], got {v}", key)
    return v


def sampling_from_body(body: dict, *, chat: bool, max_model_len: int) -> SamplingParams:
    """Validate OpenAI sampling fields (plus vLLM's top_k / ignore_eos / stop_token_ids)."""
    if _number(body, "n", 1, int) != 1:
        raise BadRequest("only n=1 is supported", "n")
    key = "max_completion_tokens" if chat and body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _number(body, key, 16 if not chat else min(512, max_model_len // 2), int, 1, max_model_len)
    stop = body.get("stop") or ()
    if isinstance(stop, str):
        stop = (stop,)
    if not isinstance(stop, (list, tuple)) or not all(isinstance(s, str) for s in stop) or len(stop) > 16:
        raise BadRequest("stop must be a string or a list of at most 16 strings", "stop")
    stop_ids = body.get("stop_token_ids") or []
    if not isinstance(stop_ids, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in stop_ids):
        raise BadRequest("stop_token_ids must be a list of integers", "stop_token_ids")
    if chat:
        logprobs = _number(body, "top_logprobs", 0, int, 0, 20) if body.get("logprobs") else None
    else:
        logprobs = _number(body, "logprobs", None, int, 0, 20)
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise BadRequest("seed must be an integer", "seed")
    top_p = _number(body, "top_p", 1.0, float, 0.0, 1.0)
    if top_p <= 0:
        raise BadRequest("top_p must be in (0, 1]", "top_p")
    return SamplingParams(max_tokens=max_tokens, temperature=_number(body, "temperature", 1.0, float, 0.0, 2.0),
                          top_p=top_p, top_k=_number(body, "top_k", 0, int, -1, None), stop=tuple(stop),
                          seed=seed, ignore_eos=bool(body.get("ignore_eos", False)),
                          stop_token_ids=tuple(stop_ids), logprobs=logprobs)


def _messages(body: dict) -> list[dict]:
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("messages must be a non-empty list", "messages")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "developer", "tool"):
            raise BadRequest(f"messages[{i}] needs a role of system, user, assistant, developer or tool", "messages")
        content = m.get("content")
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        if not isinstance(content, str):
            raise BadRequest(f"messages[{i}].content must be a string", "messages")
        out.append({"role": "system" if m["role"] == "developer" else m["role"], "content": content})
    return out


def _logprobs_completion(deltas: list[dict], engine) -> dict:
    return {"tokens": [engine.decode([d["token_id"]]) for d in deltas],
            "token_logprobs": [d["logprob"] for d in deltas],
            "top_logprobs": [{engine.decode([t]): lp for t, lp in d["top"]} for d in deltas],
            "text_offset": []}


def _logprobs_chat(deltas: list[dict], engine) -> dict:
    return {"content": [{"token": engine.decode([d["token_id"]]), "logprob": d["logprob"], "bytes": None,
                         "top_logprobs": [{"token": engine.decode([t]), "logprob": lp, "bytes": None}
                                          for t, lp in d["top"]]} for d in deltas]}


def create_app(async_engine: AsyncLLMEngine, model_name: str | None = None, api_key: str | None = None) -> FastAPI:
    """The FastAPI app over a started `AsyncLLMEngine`; its lifespan drains the engine on shutdown."""
    engine = async_engine.engine
    name = model_name or engine.model_name
    metrics = Metrics()
    async_engine.on_finish = metrics.on_finish
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(app):
        yield
        async_engine.shutdown()  # SIGTERM: uvicorn stops accepting, in-flight requests finish, then this

    app = FastAPI(title="papersuite engine", lifespan=lifespan)

    @app.exception_handler(BadRequest)
    async def _bad(request, exc: BadRequest):
        return error_response(exc.message, exc.param, exc.status, exc.type)

    @app.middleware("http")
    async def _auth(request: Request, call_next):
        if api_key and request.url.path.startswith("/v1/"):
            if request.headers.get("authorization", "") != f"Bearer {api_key}":
                return error_response("invalid or missing API key", None, 401, "authentication_error")
        return await call_next(request)

    async def read_body(request: Request) -> dict:
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as e:
            raise BadRequest(f"invalid JSON body: {e}")
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        if body.get("model") not in (None, name):
            raise BadRequest(f"unknown model {body.get('model')!r}; this server serves {name!r}", "model",
                             type_="invalid_request_error")
        return body

    def submit(prompt, params, body, prompt_token_ids=None):
        priority = body.get("priority")
        if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
            raise BadRequest("priority must be an integer", "priority")
        try:
            return async_engine.submit(prompt, params, prompt_token_ids=prompt_token_ids, priority=priority)
        except ValueError as e:  # InvalidRequest: empty, too long, over the KV budget
            raise BadRequest(str(e), "messages" if body.get("messages") is not None else "prompt")

    async def collect(request: Request, seq) -> tuple[str, list[dict], StreamDelta | None]:
        text, lps, last = [], [], None
        stream = async_engine.stream(seq)
        try:
            async for delta in stream:
                if delta.error:
                    raise BadRequest(f"engine error: {delta.error}", status=500, type_="server_error")
                text.append(delta.text)
                lps += delta.logprobs
                last = delta
                if await request.is_disconnected():  # the client left: free its blocks now
                    break
        finally:
            await stream.aclose()
        return "".join(text), lps, last

    def usage(seq) -> dict:
        n_out = engine.to_generation(seq).completion_tokens
        return {"prompt_tokens": seq.num_prompt_tokens, "completion_tokens": n_out,
                "total_tokens": seq.num_prompt_tokens + n_out}

    def sse(chunks, seq):
        async def gen():
            try:
                async for chunk in chunks:
                    yield f"data: {json.dumps(chunk)}\n\n"
                yield "data: [DONE]\n\n"
            finally:  # normal end, or the client disconnected mid-stream
                await chunks.aclose()
                if not seq.is_finished:
                    async_engine.abort(seq.request_id)
        return StreamingResponse(gen(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.get("/health")
    async def health():
        return {"status": "ok" if async_engine.accepting else "draining"}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": name, "object": "model", "created": created,
                                            "owned_by": "papersuite", "max_model_len": engine.max_model_len}]}

    @app.get("/metrics")
    async def prometheus():
        return PlainTextResponse(metrics.render(engine), media_type="text/plain; version=0.0.4")

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await read_body(request)
        prompt, ids = body.get("prompt"), None
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
            prompt = prompt[0]
        if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            prompt, ids = None, prompt
        elif not isinstance(prompt, str):
            raise BadRequest("prompt must be a string, a list with one string, or a list of token ids", "prompt")
        params = sampling_from_body(body, chat=False, max_model_len=engine.max_model_len)
        seq = submit(prompt, params, body, ids)
        rid, base = f"cmpl-{uuid.uuid4().hex[:24]}", {"object": "text_completion", "created": int(time.time()),
                                                      "model": name}
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

            async def chunks():
                async for d in async_engine.stream(seq):
                    lp = _logprobs_completion(d.logprobs, engine) if params.logprobs is not None and d.logprobs else None
                    yield {"id": rid, **base, "choices": [{"index": 0, "text": d.text, "logprobs": lp,
                                                           "finish_reason": d.finish_reason if d.finished else None}]}
                if include_usage:
                    yield {"id": rid, **base, "choices": [], "usage": usage(seq)}
            return sse(chunks(), seq)
        text, lps, last = await collect(request, seq)
        lp = _logprobs_completion(lps, engine) if params.logprobs is not None else None
        return {"id": rid, **base, "choices": [{"index": 0, "text": text, "logprobs": lp,
                                                "finish_reason": seq.finish_reason}], "usage": usage(seq)}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await read_body(request)
        messages = _messages(body)
        params = sampling_from_body(body, chat=True, max_model_len=engine.max_model_len)
        seq = submit(messages, params, body)
        rid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            base = {"object": "chat.completion.chunk", "created": int(time.time()), "model": name}

            async def chunks():
                yield {"id": rid, **base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                       "logprobs": None, "finish_reason": None}]}
                async for d in async_engine.stream(seq):
                    lp = _logprobs_chat(d.logprobs, engine) if params.logprobs is not None and d.logprobs else None
                    if d.text or lp:
                        yield {"id": rid, **base, "choices": [{"index": 0, "delta": {"content": d.text},
                                                               "logprobs": lp, "finish_reason": None}]}
                    if d.finished:
                        yield {"id": rid, **base, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                                               "finish_reason": d.finish_reason}]}
                if include_usage:
                    yield {"id": rid, **base, "choices": [], "usage": usage(seq)}
            return sse(chunks(), seq)
        text, lps, last = await collect(request, seq)
        lp = _logprobs_chat(lps, engine) if params.logprobs is not None else None
        return {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": lp,
                             "finish_reason": seq.finish_reason}], "usage": usage(seq)}

    return app


def serve(engine, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          model_name: str | None = None, log_level: str = "warning") -> None:
    """Run the server in the foreground until SIGINT/SIGTERM (which drain first).

    uvicorn finishes in-flight requests, then re-raises the signal; our no-op handler lets that
    re-raised SIGTERM end the call normally (exit 0) after the drain.
    """
    import signal
    import threading

    import uvicorn

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: None)  # drained already: return normally
    async_engine = AsyncLLMEngine(engine).start()
    uvicorn.run(create_app(async_engine, model_name, api_key), host=host, port=port, log_level=log_level)

