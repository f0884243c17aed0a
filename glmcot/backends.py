"""Backends for the oracle driver, and the shared token counter.

- `TokenCounter`: the embedded model's tokenizer and chat template; counts billed tokens
  (Graph-CoT's 10k halt and the records use it whatever the generator).
- `CountingBackend`: forces nothing, only counts: fast, for token and call ratios.
- `TransformersForcedBackend`: teacher-forces each completion through the real model, token by
  token after a prefill, with a small prefix KV cache (longest common prefix over the last few
  sequences, cropped in place) so both systems get prefix caching, as under vLLM.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from glmcot.drivers import Completion


class TokenCounter:
    """Counts chat prompts and completions in the embedded model's tokens."""

    def __init__(self, model: str = "smollm2-135m-instruct", tokenizer=None):
        if tokenizer is None:
            from transformers import AutoTokenizer

            from papersuite.models import _quiet_transformers, hf_folder, resolve

            _quiet_transformers()
            tokenizer = AutoTokenizer.from_pretrained(hf_folder(resolve(model)))
        self.tokenizer = tokenizer
        self.model_name = model

    def encode_chat(self, messages: list[dict]) -> list[int]:
        ids = self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return list(ids)

    def encode_completion(self, text: str) -> list[int]:
        """The completion's tokens plus the end token the model emits to stop."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        end = self.tokenizer.eos_token_id
        return list(ids) + ([end] if end is not None else [])

    def __call__(self, messages: list[dict]) -> int:
        return len(self.encode_chat(messages))


class CountingBackend:
    """Billed tokens only; latency 0. Every prompt token counts as computed prefill."""

    def __init__(self, counter: TokenCounter | None = None):
        self.counter = counter or TokenCounter()
        self.model_name = self.counter.model_name + " (count-only)"

    def force(self, messages: list[dict], completion: str, spans=None, on_text=None) -> Completion:
        if on_text is not None:
            on_text(completion)
        p = len(self.counter.encode_chat(messages))
        return Completion(completion, p, len(self.counter.encode_completion(completion)), 0.0, p, 0)


@dataclass
class _Entry:
    ids: list[int]
    cache: object
    used: float


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class TransformersForcedBackend:
    """Prefill + token-by-token teacher-forced decode on the embedded model, prefix-cached."""

    def __init__(self, model: str = "smollm2-135m-instruct", device: str = "cpu", prefix_caching: bool = True,
                 max_entries: int = 4, counter: TokenCounter | None = None):
        from papersuite.models import load_causal_lm

        self.model, tok = load_causal_lm(model, device=device)
        self.counter = counter or TokenCounter(model, tokenizer=tok)
        self.model_name = model
        self.device = device
        self.prefix_caching = prefix_caching
        self.max_entries = max_entries
        self._entries: list[_Entry] = []

    def reset(self) -> None:
        self._entries.clear()

    def force(self, messages: list[dict], completion: str, spans=None, on_text=None) -> Completion:
        import torch
        from transformers import DynamicCache

        ids = self.counter.encode_chat(messages)
        comp = self.counter.encode_completion(completion)
        t0 = time.perf_counter()
        best, reuse = None, 0
        if self.prefix_caching:
            for e in self._entries:
                n = _common_prefix(e.ids, ids)
                if n > reuse:
                    best, reuse = e, n
        reuse = min(reuse, len(ids) - 1)
        if best is not None and reuse > 0:
            self._entries.remove(best)
            cache = best.cache
            cache.crop(reuse)
        else:
            cache, reuse = DynamicCache(), 0
        with torch.inference_mode():
            x = torch.tensor([ids[reuse:]], device=self.device)
            self.model(input_ids=x, past_key_values=cache, use_cache=True)
            for t in comp[:-1]:  # each step yields the logits of the next forced token
                self.model(input_ids=torch.tensor([[t]], device=self.device), past_key_values=cache, use_cache=True)
        if on_text is not None:
            on_text(completion)
        if self.prefix_caching:
            self._entries.append(_Entry(ids + comp[:-1], cache, time.perf_counter()))
            if len(self._entries) > self.max_entries:
                self._entries.remove(min(self._entries, key=lambda e: e.used))
        return Completion(completion, len(ids), len(comp), time.perf_counter() - t0, len(ids) - reuse, reuse)
