"""The text-generation client protocol every LLM-using tool calls.

`TextGenerator.generate(prompts, params)` takes a batch of prompts (plain strings, or chat messages
as lists of `{"role", "content"}` dicts) and returns one `Generation` each with the text, prompt and
completion token counts and timings. Implementations:

- `TransformersGenerator`: Hugging Face `generate`; also the correctness reference for the engine.
- `OpenAIGenerator`: any OpenAI-compatible server (vLLM, SGLang, llama.cpp server, `papersuite
  serve api`); URL and key from arguments or `OPENAI_BASE_URL` / `OPENAI_API_KEY`.
The in-process engine (`papersuite.engine`) implements the same protocol.
"""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence, Union, runtime_checkable

from papersuite.errors import UserError

Message = dict  # {"role": "system"|"user"|"assistant", "content": str}
Prompt = Union[str, Sequence[Message]]


class InvalidParams(UserError, ValueError):
    """Bad sampling parameters: a UserError for the CLI, a ValueError for Python callers."""


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. temperature 0 means greedy; top_k <= 0 and top_p 1 mean off.

    Engine-only extras (other generators ignore them): `stop_token_ids` end a sequence at once;
    `logprobs` (n >= 0) returns the chosen token's log-probability plus the top n; a
    `logits_processor(output_token_ids, logits_row) -> logits_row` edits one request's logits
    before sampling (grammars, forced tokens).
    """

    max_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    ignore_eos: bool = False
    stop_token_ids: tuple[int, ...] = ()
    logprobs: int | None = None
    logits_processor: Callable | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise InvalidParams(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise InvalidParams(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise InvalidParams(f"top_p must be in (0, 1], got {self.top_p}")
        if self.logprobs is not None and self.logprobs < 0:
            raise InvalidParams(f"logprobs must be >= 0, got {self.logprobs}")
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        object.__setattr__(self, "stop", tuple(self.stop))
        object.__setattr__(self, "stop_token_ids", tuple(int(t) for t in self.stop_token_ids))


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    ttft_s: float | None = None
    finish_reason: str = "length"  # "stop" | "length"
    token_ids: list[int] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.latency_s if self.latency_s > 0 else float("inf")


@runtime_checkable
class TextGenerator(Protocol):
    model_name: str

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams | None = None) -> list[Generation]:
        ...


def is_chat(prompt: Prompt) -> bool:
    return not isinstance(prompt, str)


def apply_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut `text` at the first stop string; returns (text, stopped)."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class TransformersGenerator:
    """Batch generation with Hugging Face `generate` (left padding, greedy or sampled)."""

    def __init__(self, model: str = "smollm2-135m-instruct", device: str = "cpu", dtype=None):
        from papersuite.models import load_causal_lm

        self.model_name = model
        self.device = device
        self.model, self.tokenizer = load_causal_lm(model, device=device, dtype=dtype)

    def encode(self, prompt: Prompt) -> list[int]:
        if is_chat(prompt):
            ids = self.tokenizer.apply_chat_template(list(prompt), add_generation_prompt=True, tokenize=True)
            if isinstance(ids, dict) or hasattr(ids, "input_ids"):
                ids = ids["input_ids"]
            return list(ids)
        return self.tokenizer(prompt)["input_ids"]

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams | None = None) -> list[Generation]:
        import torch

        params = params or SamplingParams()
        if params.seed is not None:
            torch.manual_seed(params.seed)
        encoded = [self.encode(p) for p in prompts]
        width = max(len(e) for e in encoded)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded], device=self.device)
        mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded], device=self.device)
        kwargs = dict(max_new_tokens=params.max_tokens, pad_token_id=pad)
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p,
                          top_k=params.top_k or None)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if params.ignore_eos:
            kwargs["eos_token_id"] = None
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(input_ids=input_ids, attention_mask=mask, **kwargs)
        elapsed = time.perf_counter() - t0
        results = []
        eos = self.tokenizer.eos_token_id
        for e, row in zip(encoded, out[:, width:].tolist()):
            finish = "length"
            if not params.ignore_eos and eos in row:
                row = row[: row.index(eos)]
                finish = "stop"
            text = self.tokenizer.decode(row, skip_special_tokens=True)
            text, stopped = apply_stop(text, params.stop)
            results.append(Generation(text, len(e), len(row), elapsed, None,
                                      "stop" if stopped else finish, row))
        return results


class OpenAIGenerator:
    """Any OpenAI-compatible endpoint, through /v1/completions or /v1/chat/completions."""

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None,
                 timeout: float = 600.0):
        base = base_url or os.environ.get("OPENAI_BASE_URL")
        if not base:
            raise UserError("no server URL: pass --base-url or set OPENAI_BASE_URL (e.g. http://127.0.0.1:8000/v1)")
        base = base.rstrip("/")
        self.base_url = base if base.endswith("/v1") else base + "/v1"
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY", "EMPTY")
        self.model_name = model
        self.timeout = timeout

    def _post(self, route: str, body: dict) -> dict:
        req = urllib.request.Request(f"{self.base_url}{route}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {self.api_key}"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")[:200]
            raise UserError(f"{self.base_url}{route}: HTTP {e.code} {detail}") from None
        except urllib.error.URLError as e:
            raise UserError(f"{self.base_url}{route}: cannot connect ({e.reason})") from None

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams | None = None) -> list[Generation]:
        params = params or SamplingParams()
        results = []
        for prompt in prompts:
            body: dict = {"model": self.model_name, "max_tokens": params.max_tokens,
                          "temperature": params.temperature, "top_p": params.top_p}
            if params.stop:
                body["stop"] = list(params.stop)
            if params.seed is not None:
                body["seed"] = params.seed
            if params.top_k:
                body["top_k"] = params.top_k
            if params.ignore_eos:
                body["ignore_eos"] = True
            t0 = time.perf_counter()
            if is_chat(prompt):
                body["messages"] = list(prompt)
                data = self._post("/chat/completions", body)
                choice = data["choices"][0]
                text = choice["message"]["content"] or ""
            else:
                body["prompt"] = prompt
                data = self._post("/completions", body)
                choice = data["choices"][0]
                text = choice["text"]
            usage = data.get("usage") or {}
            results.append(Generation(text, int(usage.get("prompt_tokens", 0)),
                                      int(usage.get("completion_tokens", 0)), time.perf_counter() - t0,
                                      None, choice.get("finish_reason") or "stop"))
        return results
