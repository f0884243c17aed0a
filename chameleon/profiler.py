"""Online profiler: full mode (every aten op), light mode (signatures), phases, change detection.

Full mode runs a TorchDispatchMode that sees every operator of forward and backward: its name,
stage, duration and the memory level after it; it also notes the last forward op that reads each
saved storage, i.e. when a swap-out starts to save memory. Light mode is only the per-stage
signature the matcher builds anyway. The phase machine follows SmartSwap: WARMUP (full profile,
no policy) -> SEARCH (profile, regenerate, execute, keep the fastest) -> STABLE (light + executor),
back to WARMUP when the sequence changes or a forced swap happens in STABLE.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from chameleon.matcher import Fingerprint, Signature
from chameleon.stages import Stage

WARMUP, SEARCH, STABLE = "WARMUP", "SEARCH", "STABLE"


class OpRecorder(TorchDispatchMode):
    """Records (name, stage, seconds, memory level) per op and forward last-uses of saved storages."""

    def __init__(self, memory, tracker, live: dict, min_bytes: int) -> None:
        super().__init__()
        self.memory, self.tracker, self.live, self.min_bytes = memory, tracker, live, min_bytes
        self.names: list[str] = []
        self.stages: list[Stage] = []
        self.seconds: list[float] = []
        self.mem: list[int] = []
        self._last = time.perf_counter()

    @property
    def n_ops(self) -> int:
        return len(self.names)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        now = time.perf_counter()
        stage = self.tracker.current
        idx = len(self.names)
        self.names.append(func.__name__)
        self.stages.append(stage)
        self.seconds.append(now - self._last)
        self.mem.append(self.memory.current())
        if self.live and stage.kind == "FWD":
            for a in tree_flatten((args, kwargs))[0]:
                if isinstance(a, torch.Tensor) and a.numel() * a.element_size() >= self.min_bytes:
                    h = self.live.get(a.untyped_storage().data_ptr())
                    if h is not None:
                        h.last_fwd_op = idx
        self._last = time.perf_counter()
        return out


@dataclass
class Candidate:
    """A saved storage that could be swapped: bytes, the op after which it can leave, its use."""

    fp: Fingerprint
    nbytes: int
    out_op: int
    in_op: int
    block: int
    ordinal: int = -1


@dataclass
class Profile:
    """One fully profiled step, with memory reconstructed as if nothing had been swapped."""

    seconds: list[float]
    mem: list[int]
    candidates: list[Candidate]
    bwd_start: int
    bwd_block_start: dict[int, int]
    transient: int
    signature: Signature
    step_seconds: float

    @property
    def n_ops(self) -> int:
        return len(self.seconds)


def build_profile(rec: OpRecorder, handles: list, signature: Signature, peak_fwd_bwd: int,
                  step_seconds: float, bwd_start: int, even: bool = False) -> Profile:
    """Turn the recorder and the step's handles into a Profile (unswapped memory curve).

    `even` spreads the step time evenly over the ops (SmartSwap's choice on an accelerator,
    where the host sees only launch times); on CPU the recorded per-op times are real.
    """
    n = rec.n_ops
    measured = list(rec.mem)
    delta = [0] * (n + 1)
    cands = []
    for h in handles:
        if h.in_op is None:
            continue
        out = max(h.pack_op, h.last_fwd_op)
        if h.swapped_bytes and out + 1 < h.in_op:
            delta[out + 1] += h.nbytes  # it was off the device then: add it back
            delta[h.in_op] -= h.nbytes
        cands.append(Candidate(h.fp, h.nbytes, out, h.in_op, h.stage.block, h.ordinal))
    mem, acc = [], 0
    for i in range(n):
        acc += delta[i]
        mem.append(measured[i] + acc)
    bwd_block_start: dict[int, int] = {}
    for i in range(bwd_start, n):
        st = rec.stages[i]
        if st.kind == "BWD":
            bwd_block_start.setdefault(st.block, i)
    transient = max(0, peak_fwd_bwd - max(measured, default=0))
    seconds = [step_seconds / max(n, 1)] * n if even else list(rec.seconds)
    return Profile(seconds, mem, cands, bwd_start, bwd_block_start, transient, signature,
                   step_seconds)


def _block_bytes(sig: Signature) -> dict[str, int]:
    out: dict[str, int] = {}
    for (_kind, _micro, layer), st in sig.stages.items():
        block = layer.split(".")[0]
        out[block] = out.get(block, 0) + st.nbytes
    return out


@dataclass
class ChangeDetector:
    """Is this step's signature the one the policy was made for? Returns a reason or None.

    Stages absent now (a dropped layer, an expert without tokens) are skipped, not changes; new
    stages, a count off by >= threshold, a same-count reorder (hash) or drifting bytes are.
    """

    threshold: float = 0.05
    bytes_drift: float = 0.2

    def compare(self, now: Signature, ref: Signature) -> str | None:
        new = [k for k, s in now.stages.items() if k not in ref.stages and s.count]
        if new:
            return f"new stages ({len(new)})"
        common = [k for k in now.stages if k in ref.stages]
        c_now = sum(now.stages[k].count for k in common)
        c_ref = sum(ref.stages[k].count for k in common)
        if c_ref and abs(c_now - c_ref) / c_ref >= self.threshold:
            return f"op count {c_ref} -> {c_now}"
        if any(now.stages[k].code != ref.stages[k].code for k in common):
            return "operator order"
        # bytes by block, over all of a block's stages: experts share their block's tokens
        by_now, by_ref = _block_bytes(now), _block_bytes(ref)
        blocks = by_now.keys() & by_ref.keys()
        b_now, b_ref = sum(by_now[b] for b in blocks), sum(by_ref[b] for b in blocks)
        if b_ref and abs(b_now - b_ref) / b_ref > self.bytes_drift:
            return f"saved bytes {b_ref / 2**20:.1f} -> {b_now / 2**20:.1f} MiB"
        return None


@dataclass
class PhaseMachine:
    """WARMUP -> SEARCH -> STABLE with SmartSwap's step counts; the caller reports each step."""

    warmup_steps: int = 2
    stable_steps: int = 3
    phase: str = WARMUP
    similar: int = 0
    searched: int = 0
    changes: int = 0
    history: list[str] = field(default_factory=list)

    @property
    def full_profiling(self) -> bool:
        return self.phase != STABLE

    def after_warmup_step(self, similar_to_previous: bool) -> bool:
        """Returns True when a policy should be generated now (enter SEARCH)."""
        self.similar = self.similar + 1 if similar_to_previous else 1
        if self.similar >= self.warmup_steps:
            self.phase, self.searched = SEARCH, 0
            return True
        return False

    def after_search_step(self) -> None:
        self.searched += 1
        if self.searched >= self.stable_steps:
            self.phase = STABLE

    def back_to_warmup(self, reason: str) -> None:
        self.changes += 1
        self.history.append(reason)
        self.phase, self.similar, self.searched = WARMUP, 0, 0
