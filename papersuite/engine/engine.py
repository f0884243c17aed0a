"""`LLMEngine`: tokenizer + scheduler + runner + sampler; `step()` = schedule -> run -> postprocess.

`generate(prompts or chats, SamplingParams)` makes the engine a `papersuite.llm.TextGenerator`.
`AsyncLLMEngine` runs `step()` on one background thread and streams each request's new tokens to
an asyncio queue, for the server.
"""
from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Sequence as Seq

import torch

from papersuite.engine.attention import make_backend
from papersuite.engine.config import EngineConfig
from papersuite.engine.kv_cache import BlockManager
from papersuite.engine.model import LlamaModel
from papersuite.engine.runner import ModelRunner, StepHook
from papersuite.engine.sampling import Sampler, check_stop, stream_holdback
from papersuite.engine.scheduler import Scheduler, Sequence
from papersuite.llm import Generation, InvalidParams, Prompt, SamplingParams, is_chat


class InvalidRequest(InvalidParams):
    """A request the engine cannot serve as asked (empty, longer than the context or the KV budget)."""


@dataclass
class EngineGeneration(Generation):
    """A `Generation` plus the engine's per-request facts."""

    request_id: str = ""
    cached_tokens: int = 0  # prompt tokens served from the prefix cache at admission
    num_preemptions: int = 0
    logprobs: list[dict] = field(default_factory=list)


class LLMEngine:
    """Paged-KV, continuous-batching engine for Llama-architecture models (a `TextGenerator`)."""

    def __init__(self, model: str = "smollm2-135m-instruct", device: str = "cpu", *, attention: Any = "paged",
                 kv_policy: Any = "lru", scheduler: Any = "fcfs", block_size: int = 16,
                 num_blocks: int | None = None, kv_cache_bytes: int | None = None,
                 max_num_batched_tokens: int = 512, max_num_seqs: int = 64, max_model_len: int | None = None,
                 enable_prefix_caching: bool = True, dtype: str | None = None, seed: int = 0,
                 step_hooks: Seq[StepHook] = ()) -> None:
        from transformers import AutoTokenizer

        from papersuite.models import _quiet_transformers, hf_folder, resolve

        self.config = EngineConfig(model=model, device=device, dtype=dtype, attention=attention, kv_policy=kv_policy,
                                   scheduler=scheduler, block_size=block_size, num_blocks=num_blocks,
                                   kv_cache_bytes=kv_cache_bytes, max_num_batched_tokens=max_num_batched_tokens,
                                   max_num_seqs=max_num_seqs, max_model_len=max_model_len,
                                   enable_prefix_caching=enable_prefix_caching, seed=seed)
        source = resolve(model)
        if source.kind != "causal-lm":
            raise InvalidRequest(f"{model!r} is a {source.kind} model, not a text generator")
        _quiet_transformers()
        folder = hf_folder(source)
        self.model_name = source.name
        torch_dtype = getattr(torch, dtype) if dtype else (torch.float32 if device == "cpu" else torch.bfloat16)
        self.model = LlamaModel.from_folder(folder, dtype=torch_dtype, device=device)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        mcfg = self.model.config
        self.max_model_len = min(max_model_len or mcfg.max_position_embeddings, mcfg.max_position_embeddings)
        n_blocks = self.config.resolve_num_blocks(mcfg, torch.finfo(torch_dtype).bits // 8)
        self.block_manager = BlockManager(n_blocks, block_size, kv_policy, enable_prefix_caching)
        self.scheduler = Scheduler(self.block_manager, scheduler, max_num_batched_tokens, max_num_seqs)
        self.runner = ModelRunner(self.model, make_backend(attention), n_blocks, block_size, device, torch_dtype,
                                  step_hooks)
        self.sampler = Sampler()
        self.eos_ids = set(mcfg.eos_token_id) | ({self.tokenizer.eos_token_id} - {None})
        self.requests: dict[str, Sequence] = {}
        self._rng = torch.Generator().manual_seed(seed)
        self._tok_lock = threading.Lock()  # HF fast tokenizers are not safe under concurrent calls

    # -- requests -------------------------------------------------------------------------------
    def encode(self, prompt: Prompt) -> list[int]:
        with self._tok_lock:
            if is_chat(prompt):
                if not prompt:
                    raise InvalidRequest("a chat needs at least one message")
                ids = self.tokenizer.apply_chat_template(list(prompt), add_generation_prompt=True, tokenize=True)
                return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "input_ids") else ids)
            return list(self.tokenizer(prompt)["input_ids"])

    def decode(self, token_ids: list[int]) -> str:
        with self._tok_lock:
            return self.tokenizer.decode(token_ids, skip_special_tokens=True)

    def make_sequence(self, prompt: Prompt | None, params: SamplingParams | None = None, *,
                      prompt_token_ids: list[int] | None = None, priority: int | None = None,
                      span_tags: Seq[tuple[int, int, str]] = (), request_id: str | None = None) -> Sequence:
        """Tokenize and validate a request without submitting it (raises InvalidRequest)."""
        params = params or SamplingParams()
        ids = list(prompt_token_ids) if prompt_token_ids is not None else self.encode(prompt)
        if not ids:
            raise InvalidRequest("the prompt is empty")
        if len(ids) + params.max_tokens > self.max_model_len:
            raise InvalidRequest(f"prompt ({len(ids)} tokens) + max_tokens ({params.max_tokens}) exceeds the "
                                 f"model's context of {self.max_model_len} tokens")
        need = self.block_manager.blocks_needed(len(ids) + params.max_tokens)
        if need > self.block_manager.num_blocks:
            raise InvalidRequest(f"prompt + max_tokens needs {need} KV blocks; the cache has "
                                 f"{self.block_manager.num_blocks}")
        seq = Sequence(ids, params, priority=priority, span_tags=tuple(span_tags), request_id=request_id or "")
        if params.temperature > 0:
            seed = params.seed if params.seed is not None else int(torch.randint(2**62, (1,), generator=self._rng))
            seq.generator = torch.Generator(device="cpu").manual_seed(seed)
        return seq

    def add_sequence(self, seq: Sequence) -> Sequence:
        if seq.request_id in self.requests:
            raise InvalidRequest(f"request id {seq.request_id!r} is already in use")
        self.requests[seq.request_id] = seq
        self.scheduler.add(seq)
        return seq

    def add_request(self, prompt: Prompt | None, params: SamplingParams | None = None, **kw) -> Sequence:
        return self.add_sequence(self.make_sequence(prompt, params, **kw))

    def abort(self, request_id: str) -> bool:
        """Stop a request and free its blocks (a disconnected client)."""
        seq = self.requests.pop(request_id, None)
        if seq is None or seq.is_finished:
            return False
        self.scheduler.finish(seq, "abort")
        seq.finish_time = time.monotonic()
        return True

    def has_unfinished(self) -> bool:
        return self.scheduler.has_unfinished()

    # -- the step loop --------------------------------------------------------------------------
    def step(self) -> list[Sequence]:
        """Schedule, run one forward pass, sample, postprocess; returns the rows that got a token."""
        batch = self.scheduler.schedule()
        if batch.is_empty:
            return []
        self.runner.copy_blocks(self.block_manager.pending_copies)
        self.block_manager.pending_copies.clear()
        logits = self.runner.run(batch)
        sampling = [s for s, flag in zip(batch.seqs, batch.samples) if flag]
        tokens = self.sampler(logits, sampling)
        self.scheduler.advance(batch)
        return self._postprocess(sampling, tokens)

    def _postprocess(self, seqs: list[Sequence], tokens: list[int]) -> list[Sequence]:
        now = time.monotonic()
        for seq, tok in zip(seqs, tokens):
            seq.token_ids.append(tok)
            if seq.first_token_time is None:
                seq.first_token_time = now
            reason = check_stop(seq, tok, self.eos_ids, self.decode)
            if reason is not None:
                self.scheduler.finish(seq, reason)
                seq.finish_time = now
                self.requests.pop(seq.request_id, None)
        return seqs

    # -- offline batches ------------------------------------------------------------------------
    def generate(self, prompts: Seq[Prompt], params: SamplingParams | None = None, *,
                 priorities: Seq[int | None] | None = None) -> list[EngineGeneration]:
        """Run every prompt to completion (continuous batching); results in prompt order."""
        seqs = [self.make_sequence(p, params, priority=priorities[i] if priorities else None)
                for i, p in enumerate(prompts)]
        for seq in seqs:
            self.add_sequence(seq)
        while any(not s.is_finished for s in seqs):
            self.step()
        return [self.to_generation(s) for s in seqs]

    def to_generation(self, seq: Sequence) -> EngineGeneration:
        """The finished request as a Generation; a stop token is not part of the output."""
        out, p = seq.output_token_ids, seq.params
        if seq.finish_reason == "stop" and out and (
                (out[-1] in self.eos_ids and not p.ignore_eos) or out[-1] in p.stop_token_ids):
            out = out[:-1]
        start, end = seq.arrival_time, seq.finish_time or time.monotonic()
        ttft = (seq.first_token_time - start) if seq.first_token_time is not None else None
        return EngineGeneration(seq.text, seq.num_prompt_tokens, len(out), end - start, ttft,
                                seq.finish_reason or "length", out, request_id=seq.request_id,
                                cached_tokens=seq.num_cached_tokens, num_preemptions=seq.num_preemptions,
                                logprobs=list(seq.logprobs))


@dataclass
class StreamDelta:
    """New output of one request since the last delta (text held back if it may become a stop)."""

    text: str
    token_ids: list[int]
    finished: bool
    finish_reason: str | None
    seq: Sequence
    logprobs: list[dict] = field(default_factory=list)
    error: str | None = None


@dataclass
class _Stream:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue
    sent_chars: int = 0
    sent_tokens: int = 0


class AsyncLLMEngine:
    """The server's front: one thread runs `step()`; each request streams through an asyncio.Queue.

    `submit` validates at once (so a server can answer 400 before streaming) and hands the request
    to the engine thread through a thread-safe inbox; `stream` yields `StreamDelta`s. A consumer
    that stops early (client disconnect) aborts the request, which frees its blocks.
    """

    def __init__(self, engine: LLMEngine, on_finish=None) -> None:
        self.engine = engine
        self.on_finish = on_finish  # callback(seq) in the engine thread, for metrics
        self.accepting = True
        self._inbox: queue.Queue = queue.Queue()
        self._streams: dict[str, _Stream] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="engine-step", daemon=True)

    def start(self) -> "AsyncLLMEngine":
        self._thread.start()
        return self

    def shutdown(self, drain_timeout: float = 30.0) -> None:
        """Stop admission, let running requests finish (up to `drain_timeout`), stop the thread."""
        self.accepting = False
        deadline = time.monotonic() + drain_timeout
        while self._streams and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def submit(self, prompt: Prompt | None, params: SamplingParams, **kw) -> Sequence:
        if not self.accepting:
            raise InvalidRequest("the server is shutting down")
        seq = self.engine.make_sequence(prompt, params, **kw)
        self._streams[seq.request_id] = _Stream(asyncio.get_running_loop(), asyncio.Queue())
        self._inbox.put(("add", seq))
        self._wake.set()
        return seq

    def abort(self, request_id: str) -> None:
        self._inbox.put(("abort", request_id))
        self._wake.set()

    async def stream(self, seq: Sequence) -> AsyncIterator[StreamDelta]:
        st = self._streams[seq.request_id]
        try:
            while True:
                delta = await st.queue.get()
                yield delta
                if delta.finished:
                    return
        finally:
            if not seq.is_finished:
                self.abort(seq.request_id)
            self._streams.pop(seq.request_id, None)

    # -- the engine thread ----------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            while True:
                try:
                    op, arg = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if op == "add":
                    try:
                        self.engine.add_sequence(arg)
                    except ValueError as e:  # e.g. a duplicate request id: fail that request only
                        self._emit(arg, error=str(e))
                elif self.engine.abort(arg):
                    self._streams.pop(arg, None)
            if not self.engine.has_unfinished():
                self._wake.wait(timeout=0.5)
                self._wake.clear()
                continue
            try:
                seqs = self.engine.step()
            except Exception as e:  # a bug: fail every open request rather than hang them
                for rid in list(self.engine.requests):
                    seq = self.engine.requests[rid]
                    self.engine.abort(rid)
                    self._emit(seq, error=f"{type(e).__name__}: {e}")
                continue
            for seq in seqs:
                self._emit(seq)

    def _emit(self, seq: Sequence, error: str | None = None) -> None:
        if seq.is_finished and self.on_finish is not None and error is None:
            self.on_finish(seq)
        st = self._streams.get(seq.request_id)
        if st is None:
            return
        finished = seq.is_finished
        keep = 0 if finished else stream_holdback(seq.text, seq.params.stop)
        text = seq.text[st.sent_chars:max(st.sent_chars, len(seq.text) - keep)]
        st.sent_chars += len(text)
        out = seq.output_token_ids
        if finished and seq.finish_reason == "stop" and out and (
                (out[-1] in self.engine.eos_ids and not seq.params.ignore_eos) or out[-1] in seq.params.stop_token_ids):
            out = out[:-1]
        new_ids = out[st.sent_tokens:]
        logprobs = seq.logprobs[st.sent_tokens:st.sent_tokens + len(new_ids)]
        st.sent_tokens += len(new_ids)
        delta = StreamDelta(text, new_ids, finished or error is not None, seq.finish_reason, seq, logprobs, error)
        st.loop.call_soon_threadsafe(st.queue.put_nowait, delta)
