"""Policy executor on torch.autograd.graph.saved_tensors_hooks.

pack: fingerprint the tensor (matcher), count its storage once (views of one storage share a
handle), and either swap the storage out to the tier now (policy hit, offload-all, static
ordinal) or keep it resident in a handle. unpack: fetch the storage if it is out (or take the
prefetched copy), rebuild the view with its dtype, size, stride and offset. A guard watches the
step's memory at every pack: past the budget it force-swaps the largest resident storage of an
earlier stage. Parameters and small tensors are never swapped.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch.multiprocessing.reductions import StorageWeakRef

from chameleon.matcher import Fingerprint, Matcher
from chameleon.stages import Stage, StageTracker
from chameleon.transfer import Slot, as_bytes


class Handle:
    """One saved storage of this step."""

    __slots__ = ("base", "slot", "nbytes", "refs", "weak", "fp", "stage", "pack_op", "last_fwd_op",
                 "in_op", "swapped_bytes", "ordinal", "released")

    def __init__(self, base, nbytes: int, fp: Fingerprint, stage: Stage, pack_op: int, ordinal: int):
        self.base, self.slot, self.nbytes, self.refs = base, None, nbytes, 0
        self.weak = None
        self.fp, self.stage, self.pack_op, self.last_fwd_op = fp, stage, pack_op, pack_op
        self.in_op: int | None = None
        self.swapped_bytes = 0
        self.ordinal = ordinal
        self.released = False


class View:
    __slots__ = ("h", "dtype", "size", "stride", "offset")

    def __init__(self, h: Handle, t: torch.Tensor):
        self.h, self.dtype, self.size = h, t.dtype, t.size()
        self.stride, self.offset = t.stride(), t.storage_offset()


@dataclass
class StepStats:
    swap_out_bytes: int = 0
    swap_in_bytes: int = 0
    forced_swaps: int = 0
    packs: int = 0
    candidates: int = 0
    swapped: int = 0


@dataclass
class SwapExecutor:
    """Applies one step's decisions. `decide(fp, ordinal, nbytes) -> bool` says swap or keep."""

    tier: object
    tracker: StageTracker
    memory: object
    min_bytes: int = 1 << 20
    prefetch_blocks: int = 0
    guard_budget: int | None = None
    op_counter: Callable[[], int] = field(default=lambda: 0)
    stats: StepStats = field(default_factory=StepStats)

    def __post_init__(self) -> None:
        self.matcher = Matcher()
        self.decide: Callable[[Fingerprint, int, int], bool] = lambda fp, o, n: False
        self.live: dict[int, Handle] = {}
        self.handles: list[Handle] = []
        self.param_ptrs: set[int] = set()
        self._prefetched_upto = 10**9
        self.on_first_unpack: Callable[[], None] | None = None

    # -- step boundaries -------------------------------------------------------------------
    def begin_step(self, params, matcher: Matcher, decide) -> None:
        self.matcher, self.decide = matcher, decide
        matcher.begin_step()
        self.param_ptrs = {p.untyped_storage().data_ptr() for p in params}
        self.live, self.handles, self.stats = {}, [], StepStats()
        self._prefetched_upto = 10**9
        self.tracker.on_bwd_stage = self._on_bwd_stage if self.prefetch_blocks > 0 else None

    def end_step(self) -> None:
        for h in self.handles:
            h.base = None
            if h.slot is not None:
                self.tier.release(h.slot)
        self.live = {}
        self.tier.reset()

    def hooks(self) -> torch.autograd.graph.saved_tensors_hooks:
        return torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)

    # -- the hooks ---------------------------------------------------------------------------
    def pack(self, t: torch.Tensor):
        storage = t.untyped_storage()
        nbytes = storage.nbytes()
        observed = self.matcher.observe(self.tracker.current, t, nbytes)
        self.stats.packs += 1
        if nbytes < self.min_bytes or t.device.type == "meta":
            return t
        ptr = storage.data_ptr()
        if ptr in self.param_ptrs:
            return t
        fp = Matcher.fingerprint(observed)
        h = self.live.get(ptr)
        if h is not None and h.base is None and h.weak is not None and h.weak.expired():
            h = None  # the address was freed and reused: a different storage
        if h is None:
            h = Handle(as_bytes(t), nbytes, fp, self.tracker.current, self.op_counter(),
                       len(self.handles))
            self.live[ptr] = h
            self.handles.append(h)
            self.stats.candidates += 1
            if self.decide(fp, h.ordinal, nbytes):
                self._swap_out(h)
            elif self.guard_budget is not None:
                self._guard()
        h.refs += 1
        return View(h, t)

    def unpack(self, v):
        if self.on_first_unpack is not None:
            self.on_first_unpack()
            self.on_first_unpack = None
        if isinstance(v, torch.Tensor):
            return v
        h = v.h
        if h.in_op is None:
            h.in_op = self.op_counter()
        if h.base is None:
            if h.slot is None or h.released:
                raise RuntimeError("a saved tensor was unpacked after its last use "
                                   "(retain_graph is not supported by the swap executor)")
            h.base = self.tier.get(h.slot)
            self.stats.swap_in_bytes += h.nbytes
        base = h.base
        h.refs -= 1
        if h.refs <= 0:
            h.base = None
            h.released = True
            if h.slot is not None:
                self.tier.release(h.slot)
        return torch.empty(0, dtype=v.dtype, device=base.device).set_(
            base.untyped_storage(), v.offset, v.size, v.stride)

    # -- swapping ----------------------------------------------------------------------------
    def _swap_out(self, h: Handle) -> None:
        base = h.base
        h.weak = StorageWeakRef(base.untyped_storage())
        h.slot = self.tier.put(base)
        h.base = None
        h.swapped_bytes = h.nbytes
        self.stats.swap_out_bytes += h.nbytes
        self.stats.swapped += 1

    def _guard(self) -> None:
        """Past the budget: force-swap resident storages of earlier stages, largest first, until
        the bytes sent out cover the excess (the forward has let go of earlier stages' tensors)."""
        excess = self.memory.current() - self.guard_budget
        if excess <= 0:
            return
        here = self.tracker.current
        resident = sorted((h for h in self.handles if h.base is not None and h.stage != here and h.refs > 0),
                          key=lambda h: h.nbytes, reverse=True)
        for h in resident:
            if excess <= 0:
                break
            self._swap_out(h)
            self.stats.forced_swaps += 1
            excess -= h.nbytes

    def _on_bwd_stage(self, stage: Stage) -> None:
        """Prefetch the swapped storages of the blocks `prefetch_blocks` below this one."""
        lo = stage.block - self.prefetch_blocks
        if lo >= self._prefetched_upto:
            return
        for h in self.handles:
            if h.slot is not None and h.base is None and not h.released and lo <= h.stage.block:
                self.tier.prefetch(h.slot)
        self._prefetched_upto = lo
