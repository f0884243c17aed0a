"""Training text as bytes and the sample-id -> (input, target) map shared by every rank.

Step s uses sample ids [s*B, (s+1)*B); a sample id alone fixes its window, so pipelines and
micro-batches only partition ids and a recovered run sees the same samples as a failure-free one.
"""
from __future__ import annotations

from pathlib import Path

import torch

from papersuite.errors import UserError


def default_text() -> bytes:
    """CPython's docs topics (shipped with Python): offline English text."""
    from pydoc_data import topics

    return "\n".join(topics.topics.values()).encode("utf-8")


def load_text(path: str | None) -> bytes:
    """`path` (a file, `-` for stdin) or the default text, as bytes."""
    if path is None:
        return default_text()
    if path == "-":
        import sys

        return sys.stdin.buffer.read()
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such file")
    return p.read_bytes()


class ByteDataset:
    """Fixed windows of `seq_len + 1` bytes; sample id -> window by a multiplicative hash."""

    def __init__(self, text: bytes, seq_len: int, seed: int = 0) -> None:
        if len(text) < seq_len + 2:
            raise UserError(f"training text has {len(text)} bytes, need at least {seq_len + 2}")
        self.data = torch.frombuffer(bytearray(text), dtype=torch.uint8).long()
        self.seq_len, self.seed = seq_len, seed
        self.span = len(text) - seq_len - 1

    def offset(self, sample_id: int) -> int:
        return (sample_id * 2654435761 + self.seed * 40503 + 12345) % self.span

    def batch(self, sample_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.stack([self.data[o:o + self.seq_len + 1] for o in map(self.offset, sample_ids)])
        return rows[:, :-1], rows[:, 1:]


def micro_batch_ids(step: int, global_batch: int, micro_batches: int, index: int) -> list[int]:
    """Sample ids of global micro-batch `index` of `step` (B split as evenly as possible)."""
    base, rem = divmod(global_batch, micro_batches)
    start = index * base + min(index, rem)
    size = base + (1 if index < rem else 0)
    first = step * global_batch + start
    return list(range(first, first + size))
