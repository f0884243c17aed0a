"""Sampling and stopping: greedy, temperature, top-k, top-p, per-request seeds, stops, logprobs.

Order per row: the request's logits processor, then (if temperature > 0) temperature, top-k,
top-p and a draw from the request's own `torch.Generator`, so a seeded request's output does not
depend on what else shares its batch. An all-greedy batch is one vectorised argmax.
Logprobs are the log-softmax of the processed logits (after the logits processor, before
temperature), for the chosen token plus the top n.
"""
from __future__ import annotations

from typing import Callable, Collection, Sequence as Seq

import torch
from torch import Tensor

from papersuite.engine.scheduler import Sequence


def filter_logits(row: Tensor, temperature: float, top_k: int, top_p: float) -> Tensor:
    """Temperature, then top-k, then top-p (nucleus; always keeps the most likely token)."""
    x = row / temperature
    if top_k > 0 and top_k < x.shape[-1]:
        kth = torch.topk(x, top_k).values[-1]
        x = x.masked_fill(x < kth, float("-inf"))
    if top_p < 1.0:
        sorted_x, order = torch.sort(x, descending=True)
        probs = sorted_x.softmax(-1)
        drop = probs.cumsum(-1) - probs > top_p  # mass before this token already exceeds top_p
        x = x.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), float("-inf"))
    return x


class Sampler:
    """Turns a step's logits `[N, V]` (one row per sampling sequence) into next tokens."""

    def __call__(self, logits: Tensor, seqs: Seq[Sequence]) -> list[int]:
        if all(s.params.temperature == 0 and s.params.logits_processor is None and s.params.logprobs is None
               for s in seqs):
            return logits.argmax(-1).tolist()
        tokens = []
        for row, seq in zip(logits, seqs):
            p = seq.params
            if p.logits_processor is not None:
                row = p.logits_processor(seq.output_token_ids, row.clone())
            if p.temperature == 0:
                tok = int(row.argmax())
            else:
                probs = filter_logits(row.float(), p.temperature, p.top_k, p.top_p).softmax(-1)
                tok = int(torch.multinomial(probs.cpu(), 1, generator=seq.generator))  # CPU generator
            if p.logprobs is not None:
                lp = row.float().log_softmax(-1)
                top = torch.topk(lp, p.logprobs) if p.logprobs > 0 else None
                seq.logprobs.append({"token_id": tok, "logprob": float(lp[tok]),
                                     "top": [] if top is None else
                                     list(zip(top.indices.tolist(), top.values.tolist()))})
            tokens.append(tok)
        return tokens


def check_stop(seq: Sequence, token_id: int, eos_ids: Collection[int],
               decode: Callable[[list[int]], str]) -> str | None:
    """After appending `token_id`: update `seq.text` and return "stop", "length" or None.

    A stop token (EOS unless ignored, or one of `stop_token_ids`) ends the sequence at once and is
    not part of the text. A stop string cuts the text where it begins.
    """
    p = seq.params
    if (token_id in eos_ids and not p.ignore_eos) or token_id in p.stop_token_ids:
        return "stop"
    prev = len(seq.text)
    seq.text = decode(seq.output_token_ids)
    if p.stop:
        start = max(0, prev - max(len(s) for s in p.stop))
        hits = [i for i in (seq.text.find(s, start) for s in p.stop if s) if i >= 0]
        if hits:
            seq.text = seq.text[:min(hits)]
            return "stop"
    if seq.num_output_tokens >= p.max_tokens:
        return "length"
    return None


def stream_holdback(text: str, stop: Seq[str]) -> int:
    """How many trailing characters a stream must hold back: a possible stop-string start, or a
    partial UTF-8 character (decoded as U+FFFD) that the next token may complete."""
    n = 0
    for s in stop:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                n = max(n, k)
                break
    if text.endswith("\ufffd"):
        n = max(n, len(text) - len(text.rstrip("\ufffd")))
    return n
