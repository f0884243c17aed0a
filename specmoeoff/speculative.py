"""Speculative decoding over the engine: a resident dense draft, one verify pass of the MoE target.

Per iteration each active request has one pending token (accepted, not yet in the target's KV).
The draft extends its own KV with the tokens it has not seen and proposes a chain of k tokens;
the target runs ONE extend step over b*(k+1) tokens (pending + drafts) with logits at every new
position, so each expert a layer needs is fetched once per iteration for all of them. Greedy
acceptance keeps drafts while they equal the target's argmax, then adds the target's own token,
so the output is token for token the target's autoregressive output. For T > 0, rejection
sampling (Leviathan et al.) keeps the target's distribution. Rejected positions are rolled back
from both paged KV caches (`BlockManager.truncate`). k = 0 is plain autoregressive decoding.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence as Seq

import torch
from torch import Tensor

from papersuite.engine.attention import PagedAttentionBackend
from papersuite.engine.kv_cache import BlockManager
from papersuite.engine.runner import ModelRunner
from papersuite.engine.scheduler import ScheduledBatch, Sequence


class PagedModel:
    """A model, its paged KV (runner + block manager, no prefix caching) and a row-step helper."""

    def __init__(self, model, num_blocks: int, block_size: int = 16, backend=None) -> None:
        dtype = next(model.parameters()).dtype
        self.model = model
        self.runner = ModelRunner(model, backend or PagedAttentionBackend(), num_blocks, block_size, dtype=dtype)
        self.blocks = BlockManager(num_blocks, block_size, enable_prefix_caching=False)

    def step(self, seqs: list[Sequence], all_logits: bool = False) -> list[Tensor]:
        """Compute every sequence's uncomputed tokens; per row fp32 logits (all positions or last)."""
        counts = [s.num_tokens - s.num_computed_tokens for s in seqs]
        order = sorted(range(len(seqs)), key=lambda i: counts[i] != 1)  # decode rows first
        rows = [seqs[i] for i in order]
        n = [counts[i] for i in order]
        for s, c in zip(rows, n):
            if not self.blocks.append_slots(s, c):
                raise RuntimeError("KV cache is full: raise num_blocks")
        logits = self.runner.run(ScheduledBatch(rows, n, sum(1 for c in n if c == 1)), all_logits=all_logits)
        out: list[Tensor] = [None] * len(seqs)  # type: ignore[list-item]
        start = 0
        for j, (i, c) in enumerate(zip(order, n)):
            if all_logits:
                out[i] = logits[start:start + c]
                start += c
            else:
                out[i] = logits[j:j + 1]
            rows[j].num_computed_tokens += c
        return out

    def truncate(self, seq: Sequence, num_tokens: int) -> None:
        self.blocks.truncate(seq, num_tokens)

    def free(self, seq: Sequence) -> None:
        self.blocks.free(seq)


@dataclass
class SpecStats:
    """Counters of one generate call; tokens exclude prefill."""

    iterations: int = 0
    tokens: int = 0
    proposed: int = 0
    accepted: int = 0
    draft_s: float = 0.0
    verify_s: float = 0.0
    prefill_s: float = 0.0
    ks: list[int] = field(default_factory=list)
    prefill_io: tuple = ()  # whatever the caller's probe returned right after prefill
    row_iterations: int = 0  # sum over iterations of the requests active in it

    @property
    def decode_s(self) -> float:
        return self.draft_s + self.verify_s

    def as_dict(self) -> dict:
        return {"iterations": self.iterations, "tokens": self.tokens,
                "tokens_per_iteration": self.tokens / max(self.row_iterations, 1),
                "acceptance": self.accepted / self.proposed if self.proposed else None,
                "draft_s": self.draft_s, "verify_s": self.verify_s, "prefill_s": self.prefill_s,
                "tokens_per_s": self.tokens / self.decode_s if self.decode_s else 0.0,
                "k_mean": sum(self.ks) / len(self.ks) if self.ks else 0.0}


KChooser = Callable[[int, SpecStats], int]  # (active requests, stats so far) -> k for this iteration


def _probs(logits: Tensor, temperature: float) -> Tensor:
    return torch.softmax(logits.float() / temperature, dim=-1)


class SpeculativeDecoder:
    """Draft-then-verify generation for a batch of prompts (token ids in, token ids out).

    `k`: a fixed draft length (0 = autoregressive target) or a `KChooser` (the optimizer).
    """

    def __init__(self, target, draft, k: int | KChooser = 3, num_blocks: int = 512, block_size: int = 16,
                 temperature: float = 0.0, seed: int = 0, target_backend=None) -> None:
        if isinstance(k, int) and not 0 <= k <= 16:
            raise ValueError(f"k must be in 0..16, got {k}")
        self.target = PagedModel(target, num_blocks, block_size, target_backend)
        self.draft = PagedModel(draft, num_blocks, block_size) if draft is not None else None
        self.k, self.temperature = k, temperature
        self.gen = torch.Generator().manual_seed(seed)

    def _pick(self, logits: Tensor) -> int:
        if self.temperature <= 0:
            return int(logits.argmax())
        return int(torch.multinomial(_probs(logits, self.temperature), 1, generator=self.gen))

    @torch.inference_mode()
    def generate(self, prompts: Seq[Seq[int]], max_tokens: int = 64, eos: Seq[int] = (),
                 on_iteration: Callable[[SpecStats], None] | None = None,
                 probe: Callable[[], tuple] | None = None) -> tuple[list[list[int]], SpecStats]:
        """Token ids per prompt and the run's counters; `probe()` is recorded right after prefill
        (I/O counters, so that prefill's expert loads can be left out of per-token figures)."""
        stats = SpecStats()
        eos = set(eos)
        tgt = [Sequence(list(p), params=None) for p in prompts]
        dft = [Sequence(list(p), params=None) for p in prompts]
        outs: list[list[int]] = [[] for _ in prompts]
        t0 = time.perf_counter()
        first = self.target.step(tgt)
        for i, lg in enumerate(first):
            outs[i].append(self._pick(lg[-1]))
        if self.draft is not None:
            self.draft.step(dft)
        stats.prefill_s = time.perf_counter() - t0
        if probe is not None:
            stats.prefill_io = probe()
        active = [i for i in range(len(prompts)) if not self._done(outs[i], max_tokens, eos)]
        while active:
            k = self.k if isinstance(self.k, int) else self.k(len(active), stats)
            if self.draft is None:
                k = 0
            drafts, qs = self._propose(active, dft, outs, prompts, k, stats)
            t1 = time.perf_counter()
            for i in active:
                tgt[i].token_ids = list(prompts[i]) + outs[i] + drafts[i]
            logits = self.target.step([tgt[i] for i in active], all_logits=True)
            stats.verify_s += time.perf_counter() - t1
            stats.iterations += 1
            stats.ks.append(k)
            stats.row_iterations += len(active)
            still = []
            for j, i in enumerate(active):
                base = len(prompts[i]) + len(outs[i])  # tokens known before this iteration
                new = self._accept(drafts[i], logits[j], qs[i] if qs else None)
                stats.proposed += k
                stats.accepted += len(new) - 1
                room = max_tokens - len(outs[i])
                new = new[:room]
                for t_idx, t in enumerate(new):
                    if t in eos:
                        new = new[:t_idx + 1]
                        break
                outs[i].extend(new)
                stats.tokens += len(new)
                total = base + len(new)
                tgt[i].token_ids = list(prompts[i]) + outs[i]
                self.target.truncate(tgt[i], min(tgt[i].num_computed_tokens, total - 1))
                if self.draft is not None:
                    dft[i].token_ids = list(prompts[i]) + outs[i]
                    self.draft.truncate(dft[i], min(dft[i].num_computed_tokens, total - 1))
                if self._done(outs[i], max_tokens, eos):
                    self.target.free(tgt[i])
                    if self.draft is not None:
                        self.draft.free(dft[i])
                else:
                    still.append(i)
            active = still
            if on_iteration is not None:
                on_iteration(stats)
        return outs, stats

    @staticmethod
    def _done(out: list[int], max_tokens: int, eos: set[int]) -> bool:
        return len(out) >= max_tokens or (bool(out) and out[-1] in eos)

    def _propose(self, active, dft, outs, prompts, k, stats):
        """Chain of k draft tokens per active request (and the draft's distributions if sampling)."""
        drafts = {i: [] for i in active}
        qs = {i: [] for i in active} if self.temperature > 0 else None
        if k == 0:
            return drafts, qs
        t0 = time.perf_counter()
        for step in range(k):
            seqs = []
            for i in active:
                dft[i].token_ids = list(prompts[i]) + outs[i] + drafts[i]
                seqs.append(dft[i])
            logits = self.draft.step(seqs)
            for i, lg in zip(active, logits):
                drafts[i].append(self._pick(lg[-1]))
                if qs is not None:
                    qs[i].append(_probs(lg[-1], self.temperature))
        stats.draft_s += time.perf_counter() - t0
        return drafts, qs

    def _accept(self, drafts: list[int], logits: Tensor, q: list[Tensor] | None) -> list[int]:
        """Accepted drafts plus one target token (greedy match, or Leviathan rejection sampling)."""
        if self.temperature <= 0:
            target = logits.argmax(-1).tolist()
            n = 0
            while n < len(drafts) and drafts[n] == target[n]:
                n += 1
            return drafts[:n] + [target[n]]
        p = _probs(logits, self.temperature)
        out = []
        for n, d in enumerate(drafts):
            ratio = (p[n, d] / q[n][d]).item()
            if torch.rand((), generator=self.gen).item() < min(1.0, ratio):
                out.append(d)
                continue
            residual = (p[n] - q[n]).clamp(min=0)
            residual = residual / residual.sum() if residual.sum() > 0 else p[n]
            return out + [int(torch.multinomial(residual, 1, generator=self.gen))]
        return out + [int(torch.multinomial(p[len(drafts)], 1, generator=self.gen))]
