"""The shared engine (papersuite.engine.LLMEngine) as the oracle's backend, with span tags.

Each forced call becomes one engine request whose logits processor allows only the oracle's next
token, so the engine does its real prefill (with prefix caching), decode steps and eviction.
Requests carry span tags (`glmcot.policy` classes) computed from the prompt's parts, so the
`graphcot` eviction policy can rank cached blocks. A small thread front lets several questions'
loops submit at once into the engine's continuous batching (concurrency).
"""
from __future__ import annotations

import queue
import threading
import time

from glmcot.drivers import Completion


def span_token_tags(tokenizer, messages: list[dict], spans: list[tuple[int, str]]):
    """(prompt ids, [(start, end, tag)]) for the last message's char spans.

    `spans` are (end_char, tag) over the last message's content, in order. Template tokens
    before that content are tagged P0 (static), the generation prompt after it P3.
    """
    text = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
    content = messages[-1]["content"]
    base = text.rfind(content)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
    bounds = [(0, base, "P0")]
    start = base
    for end, tag in spans:
        bounds.append((start, base + end, tag))
        start = base + end
    bounds.append((start, len(text) + 1, "P3"))
    tags, cur, first = [], None, 0
    for i, (s, _) in enumerate(offsets):
        tag = next((t for (a, b, t) in bounds if a <= s < b), "P3")
        if tag != cur:
            if cur is not None:
                tags.append((first, i, cur))
            cur, first = tag, i
    if cur is not None:
        tags.append((first, len(ids), cur))
    return ids, tags


class _Forcer:
    """Logits processor: only the next oracle token survives (greedy then picks it)."""

    def __init__(self, tokens: list[int]):
        self.tokens = tokens

    def __call__(self, output_ids, row):
        import torch

        t = self.tokens[min(len(output_ids), len(self.tokens) - 1)]
        keep = row[t].clone()
        row.fill_(-torch.inf)
        row[t] = keep if torch.isfinite(keep) else 0.0
        return row


class EngineForcedBackend:
    """Teacher-forces oracle completions through LLMEngine; thread-safe for concurrent questions."""

    def __init__(self, model: str = "smollm2-135m-instruct", device: str = "cpu", kv_policy: str = "lru",
                 num_blocks: int | None = None, block_size: int = 16, max_num_batched_tokens: int = 1024,
                 counter=None):
        from glmcot.backends import TokenCounter
        from glmcot.policy import register
        from papersuite.engine.engine import LLMEngine

        register()
        self.engine = LLMEngine(model, device, kv_policy=kv_policy, num_blocks=num_blocks, block_size=block_size,
                                max_num_batched_tokens=max_num_batched_tokens, max_model_len=16384)
        self.counter = counter or TokenCounter(model, tokenizer=self.engine.tokenizer)
        self.model_name = self.engine.model_name
        self._inbox: queue.Queue = queue.Queue()
        self._done: dict[str, threading.Event] = {}
        self._on_text: dict[str, object] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="glm-engine", daemon=True)
        self._stop = threading.Event()
        self._thread.start()

    # -- the engine thread ----------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                while True:
                    self.engine.add_sequence(self._inbox.get_nowait())
            except queue.Empty:
                pass
            if not self.engine.has_unfinished():
                try:
                    self.engine.add_sequence(self._inbox.get(timeout=0.2))
                except queue.Empty:
                    continue
            for seq in self.engine.step():
                cb = self._on_text.get(seq.request_id)
                if cb is not None:  # streaming: the text decoded so far
                    cb(self.engine.decode(seq.output_token_ids))
                if seq.is_finished:
                    self._on_text.pop(seq.request_id, None)
                    self._done.pop(seq.request_id).set()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    # -- requests -------------------------------------------------------------------------------
    def force(self, messages: list[dict], completion: str, spans: list[tuple[int, str]] | None = None,
              on_text=None) -> Completion:
        from papersuite.llm import SamplingParams

        tok = self.engine.tokenizer
        with self._lock:
            ids, tags = span_token_tags(tok, messages, spans or [])
        comp = self.counter.encode_completion(completion)
        params = SamplingParams(max_tokens=len(comp), logits_processor=_Forcer(comp))
        seq = self.engine.make_sequence(None, params, prompt_token_ids=ids, span_tags=tags)
        ev = threading.Event()
        self._done[seq.request_id] = ev
        if on_text is not None:
            self._on_text[seq.request_id] = on_text
        t0 = time.perf_counter()
        self._inbox.put(seq)
        ev.wait()
        cached = seq.num_cached_tokens
        return Completion(completion, len(ids), seq.num_output_tokens, time.perf_counter() - t0,
                          len(ids) - cached, cached)

    def finish_question(self, qid: str) -> None:
        pol = self.engine.block_manager.eviction
        if hasattr(pol, "finish"):
            pol.finish(qid)

    def hit_rate(self) -> float:
        bm = self.engine.block_manager
        return bm.hit_tokens / bm.queried_tokens if bm.queried_tokens else 0.0
