"""The model runner: owns the KV tensors, builds one step's metadata, runs one forward pass.

Metadata is built with whole-batch tensor ops (positions, slot mapping, block tables), never per
token in Python. Logits are computed only for rows that sample this step (a partial prefill chunk
needs none). `StepHook`s see every step's scheduled sequences and the final-norm hidden state of
each one's newest token (ARES reads them to predict remaining length).
"""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor

from papersuite.engine.attention import AttentionBackend, AttentionMetadata
from papersuite.engine.model import LlamaModel
from papersuite.engine.scheduler import ScheduledBatch


@runtime_checkable
class StepHook(Protocol):
    """Called after each forward pass with the batch and `[B, hidden]` final-norm hidden states.

    Row i belongs to `batch.seqs[i]`, and is the state of that sequence's newest scheduled token
    (for a row that samples, the state the next token was drawn from). Do not keep the tensor
    past the call without copying it: its storage is reused.
    """

    def __call__(self, batch: ScheduledBatch, hidden_states: Tensor) -> None: ...


class ModelRunner:
    """KV cache tensors plus one `run(batch)` = metadata -> prepare -> forward -> logits."""

    def __init__(self, model: LlamaModel, backend: AttentionBackend, num_blocks: int, block_size: int,
                 device: str = "cpu", dtype: torch.dtype = torch.float32,
                 hooks: Sequence[StepHook] = ()) -> None:
        cfg = model.config
        self.model, self.backend = model, backend
        self.block_size, self.device = block_size, device
        self.hooks = list(hooks)
        shape = (num_blocks, block_size, cfg.num_key_value_heads, cfg.head_dim)
        # zeros, not empty: masked-out slots must never hold NaN (0 * NaN poisons the matmul)
        self.kv_caches = [(torch.zeros(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device))
                          for _ in range(cfg.num_hidden_layers)]

    def copy_blocks(self, pairs: Sequence[tuple[int, int]]) -> None:
        """Copy-on-write for forked sequences: duplicate block src into dst in every layer."""
        if not pairs:
            return
        src = torch.tensor([p[0] for p in pairs], device=self.device)
        dst = torch.tensor([p[1] for p in pairs], device=self.device)
        for k, v in self.kv_caches:
            k[dst] = k[src]
            v[dst] = v[src]

    def build_metadata(self, batch: ScheduledBatch) -> tuple[Tensor, AttentionMetadata]:
        bs, dev = self.block_size, self.device
        starts = [s.num_computed_tokens for s in batch.seqs]
        counts = batch.num_new_tokens
        ids: list[int] = []
        for s, c, n in zip(batch.seqs, starts, counts):
            ids.extend(s.token_ids[c:c + n])
        seq_lens_list = [c + n for c, n in zip(starts, counts)]
        width = max(len(s.block_table) for s in batch.seqs)
        tables = [s.block_table + [-1] * (width - len(s.block_table)) for s in batch.seqs]
        n_t = torch.tensor(counts)
        qsl = torch.zeros(len(counts) + 1, dtype=torch.int64)
        torch.cumsum(n_t, 0, out=qsl[1:])
        rows = torch.repeat_interleave(torch.arange(len(counts)), n_t)
        positions = torch.arange(int(qsl[-1])) - (qsl[:-1] - torch.tensor(starts))[rows]
        block_tables = torch.tensor(tables, dtype=torch.int64)
        slots = block_tables[rows, positions // bs] * bs + positions % bs
        meta = AttentionMetadata(
            positions=positions.to(dev), slot_mapping=slots.to(dev), query_start_loc=qsl.to(dev),
            seq_lens=torch.tensor(seq_lens_list).to(dev), block_tables=block_tables.to(dev),
            num_decodes=batch.num_decodes, query_lens_list=list(counts), seq_lens_list=seq_lens_list)
        return torch.tensor(ids, device=dev), meta

    @torch.inference_mode()
    def run(self, batch: ScheduledBatch, all_logits: bool = False) -> Tensor:
        """One forward pass; returns fp32 logits `[rows that sample, vocab]` in batch order.

        With `all_logits` it returns logits at every scheduled position `[T, vocab]` (rows back to
        back, as scheduled): an extend step that appends n tokens per sequence and needs each of
        them scored, e.g. speculative verification.
        """
        input_ids, meta = self.build_metadata(batch)
        self.backend.prepare(meta)
        hidden = self.model(input_ids, meta.positions, self.kv_caches, meta, self.backend)
        last = hidden[meta.query_start_loc[1:] - 1]  # newest token of each row
        for hook in self.hooks:
            hook(batch, last)
        if all_logits:
            return self.model.compute_logits(hidden)
        samples = batch.samples
        if all(samples):
            return self.model.compute_logits(last)
        idx = torch.tensor([i for i, s in enumerate(samples) if s], dtype=torch.int64, device=self.device)
        return self.model.compute_logits(last[idx])
