"""Shape-free fingerprints of saved tensors, and the per-stage light signature of a step.

No tensor carries a stable identifier from one eager step to the next, so a policy names its
tensors by what can be observed cheaply at pack time: the stage, the producer (the autograd node
that made the tensor), its ordinal among the stage's saved tensors, dtype and rank. Shapes and
byte counts are left out on purpose, so a policy survives a change of sequence length.
The same pass builds the light-mode signature: per stage a count, a rolling hash of
(producer, dtype, rank) and the saved bytes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from chameleon.stages import Stage


class Fingerprint(NamedTuple):
    kind: str
    micro: int
    layer: str
    producer: str
    ordinal: int
    dtype: str
    rank: int


def producer_of(t: torch.Tensor) -> str:
    fn = t.grad_fn
    if fn is not None:
        return type(fn).__name__
    return "leaf" if t.requires_grad else "const"


@dataclass
class StageSig:
    count: int = 0
    code: int = 0
    nbytes: int = 0


@dataclass
class Signature:
    """Light-mode record of one step: per-stage counts, hashes and saved bytes."""

    stages: dict[tuple[str, int, str], StageSig] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(s.count for s in self.stages.values())

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.stages.values())


class Matcher:
    """Assigns fingerprints at pack time and checks them against a policy's entries."""

    def __init__(self, entries: set[Fingerprint] | frozenset = frozenset()) -> None:
        self.entries = frozenset(entries)
        self.begin_step()

    def begin_step(self) -> None:
        self.signature = Signature()
        self.matched: set[Fingerprint] = set()

    def observe(self, stage: Stage, t: torch.Tensor, nbytes: int) -> tuple:
        """Fold the tensor being saved now into the signature; returns its (stage, ordinal, ...)
        key, cheap to build for every saved tensor (`fingerprint` makes the named form)."""
        key = (stage.kind, stage.micro, stage.layer)
        sig = self.signature.stages.get(key)
        if sig is None:
            sig = self.signature.stages[key] = StageSig()
        fn = t.grad_fn
        producer = type(fn).__name__ if fn is not None else ("leaf" if t.requires_grad else "const")
        item = (producer, t.dtype, t.dim())
        ordinal = sig.count
        sig.count += 1
        sig.code = (sig.code * 1_000_003 + hash(item)) & 0xFFFFFFFFFFFF
        sig.nbytes += nbytes
        return key, ordinal, item

    @staticmethod
    def fingerprint(observed: tuple) -> Fingerprint:
        (kind, micro, layer), ordinal, (producer, dtype, rank) = observed
        return Fingerprint(kind, micro, layer, producer, ordinal, str(dtype)[6:], rank)

    def wants(self, fp: Fingerprint) -> bool:
        if fp in self.entries:
            self.matched.add(fp)
            return True
        return False

    def expected(self) -> set[Fingerprint]:
        """Policy entries whose stage ran this step (skipped experts/layers expect nothing)."""
        ran = self.signature.stages
        return {fp for fp in self.entries if (fp.kind, fp.micro, fp.layer) in ran}

    def hit_rate(self) -> float | None:
        exp = self.expected()
        return len(self.matched & exp) / len(exp) if exp else None
