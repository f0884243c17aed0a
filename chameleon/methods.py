"""The memory methods compared by `run --method` and `compare`, behind one small protocol.

Each method wraps forward + backward of a step (`step(i)` is a context manager), may learn the
budget after the first step, and says whether a step that ran out of memory can be retried.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Protocol

import torch

from chameleon.executor import SwapExecutor
from chameleon.manager import MIB, Chameleon
from chameleon.matcher import Matcher
from chameleon.policy import generate
from chameleon.profiler import OpRecorder, build_profile
from chameleon.stages import StageTracker
from chameleon import transfer

METHODS = ("none", "checkpoint", "selective", "save-on-cpu", "offload-all", "static", "chameleon")


class Method(Protocol):
    name: str
    budget: int | None

    def step(self, i: int) -> contextlib.AbstractContextManager: ...
    def set_budget(self, nbytes: int) -> None: ...
    def on_oom(self) -> bool: ...
    def info(self) -> dict: ...
    def close(self) -> None: ...


class _Base:
    name = "none"
    budget: int | None = None
    notes: str = ""

    def step(self, i: int):
        return contextlib.nullcontext()

    def set_budget(self, nbytes: int) -> None:
        self.budget = int(nbytes)

    def on_oom(self) -> bool:
        return False

    def info(self) -> dict:
        return {"phase": "-", "swap_out_bytes": 0, "swap_in_bytes": 0, "forced_swaps": 0}

    def close(self) -> None:
        pass


class NoOptimisation(_Base):
    name = "none"


def _matmul_policy():
    from torch.utils.checkpoint import CheckpointPolicy

    aten = torch.ops.aten
    keep = {aten.mm.default, aten.addmm.default, aten.bmm.default, aten.baddbmm.default,
            aten._scaled_dot_product_flash_attention.default,
            aten._scaled_dot_product_efficient_attention.default}
    for name in ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_cudnn_attention"):
        if hasattr(aten, name):
            keep.add(getattr(aten, name).default)

    def policy(ctx, op, *args, **kwargs):
        return CheckpointPolicy.MUST_SAVE if op in keep else CheckpointPolicy.PREFER_RECOMPUTE
    return policy


class Checkpointing(_Base):
    """Non-reentrant activation checkpointing of every layer; `selective` keeps matmul outputs."""

    def __init__(self, layers, selective: bool = False) -> None:
        from torch.utils.checkpoint import checkpoint, create_selective_checkpoint_contexts

        self.name = "selective" if selective else "checkpoint"
        policy = _matmul_policy() if selective else None
        for layer in layers:
            inner = layer.forward

            def fwd(*args, _inner=inner, **kwargs):
                extra = {"context_fn": functools.partial(create_selective_checkpoint_contexts, policy)} \
                    if policy else {}
                return checkpoint(_inner, *args, use_reentrant=False, **extra, **kwargs)
            layer.forward = fwd


class SaveOnCpu(_Base):
    """torch.autograd.graph.save_on_cpu: pinned host copies on CUDA; on CPU it keeps the same storage."""

    name = "save-on-cpu"

    def __init__(self, device: str) -> None:
        self.pin = device.startswith("cuda")
        self.notes = "" if self.pin else "no effect on CPU: save_on_cpu keeps CPU tensors where they are"

    def step(self, i: int):
        return torch.autograd.graph.save_on_cpu(pin_memory=self.pin)


class _Swapping(_Base):
    def __init__(self, workload, memory, host_dir, min_bytes: int) -> None:
        self.model = workload.model
        self.tier = transfer.for_device(workload.device, host_dir)
        self.tracker = StageTracker(workload.layers)
        self.executor = SwapExecutor(self.tier, self.tracker, memory, min_bytes)
        self.memory = memory

    def info(self) -> dict:
        s = self.executor.stats
        return {"phase": "-", "swap_out_bytes": s.swap_out_bytes, "swap_in_bytes": s.swap_in_bytes,
                "forced_swaps": s.forced_swaps}

    def close(self) -> None:
        self.tier.close()


class OffloadAll(_Swapping):
    """torchtune's policy on our tier: every non-parameter saved tensor >= 1 KiB, fetched at unpack."""

    name = "offload-all"

    def __init__(self, workload, memory, host_dir) -> None:
        super().__init__(workload, memory, host_dir, min_bytes=1024)

    @contextlib.contextmanager
    def step(self, i: int):
        self.executor.begin_step(self.model.parameters(), Matcher(), lambda fp, o, n: True)
        try:
            with self.executor.hooks():
                yield
        finally:
            self.executor.end_step()


class StaticPolicy(_Swapping):
    """Planned once from the first step and applied by saved-tensor ordinal ever after.

    This is the "every step runs the same operators" assumption of earlier swap planners: no
    re-profiling, no fingerprints, no forced swaps.
    """

    name = "static"

    def __init__(self, workload, memory, host_dir, min_bytes: int = 1 << 20) -> None:
        super().__init__(workload, memory, host_dir, min_bytes)
        self.tracker.install(workload.optimizer)
        if hasattr(self.tier, "calibrate"):
            self.tier.calibrate()
        self.ordinals: set[int] | None = None
        self.profile = None

    @contextlib.contextmanager
    def step(self, i: int):
        ex = self.executor
        chosen = self.ordinals or set()
        ex.begin_step(self.model.parameters(), Matcher(), lambda fp, o, n: o in chosen)
        self.tracker.begin_forward()
        rec = OpRecorder(self.memory, self.tracker, ex.live, ex.min_bytes) if self.profile is None else None
        ex.op_counter = (lambda: rec.n_ops) if rec else (lambda: 0)
        mark = {"op": 0}

        def first_unpack():
            mark["op"] = rec.n_ops if rec else 0
            self.tracker.begin_backward()
        ex.on_first_unpack = first_unpack
        ok = False
        try:
            with ex.hooks(), (rec if rec else contextlib.nullcontext()):
                yield
            ok = True
        finally:
            if ok and rec is not None:
                self.profile = build_profile(rec, ex.handles, ex.matcher.signature, self.memory.peak(),
                                             0.0, mark["op"])
                self._plan()
            ex.end_step()

    def set_budget(self, nbytes: int) -> None:
        super().set_budget(nbytes)
        self._plan()

    def _plan(self) -> None:
        if self.ordinals is not None or self.profile is None or self.budget is None:
            return
        pol = generate(self.profile, self.budget, self.tier.bandwidth, False, 0, self.executor.min_bytes)
        self.ordinals = {c.ordinal for c in pol.chosen}


class ChameleonMethod(_Base):
    name = "chameleon"

    def __init__(self, workload, memory, host_dir, budget: int | None, **knobs) -> None:
        self.cham = Chameleon(workload.model, workload.optimizer, layers=workload.layers,
                              device=workload.device, host_dir=host_dir, memory=memory, **knobs)
        if budget is not None:
            self.set_budget(budget, strict=True)

    def step(self, i: int):
        return self.cham.step()

    def set_budget(self, nbytes: int, strict: bool = False) -> None:
        super().set_budget(nbytes)
        self.cham.set_budget(nbytes, strict)

    def on_oom(self) -> bool:
        self.cham.on_oom()
        return True

    def info(self) -> dict:
        r = self.cham.reports_[-1]
        return {"phase": r.phase, "swap_out_bytes": r.swap_out_bytes, "swap_in_bytes": r.swap_in_bytes,
                "forced_swaps": r.forced_swaps, "match_rate": r.match_rate, "change": r.change,
                "regenerated": r.regenerated, "unplanned_swaps": r.unplanned}

    def close(self) -> None:
        self.cham.close()


def make(name: str, workload, memory, host_dir: str | None = None, budget: int | None = None,
         **knobs) -> Method:
    if name == "none":
        return NoOptimisation()
    if name in ("checkpoint", "selective"):
        return Checkpointing(workload.layers, selective=name == "selective")
    if name == "save-on-cpu":
        return SaveOnCpu(workload.device)
    if name == "offload-all":
        return OffloadAll(workload, memory, host_dir)
    if name == "static":
        m = StaticPolicy(workload, memory, host_dir, knobs.get("min_bytes", 1 << 20))
        if budget is not None:
            m.set_budget(budget)
        return m
    if name == "chameleon":
        return ChameleonMethod(workload, memory, host_dir, budget, **knobs)
    raise ValueError(f"unknown method {name!r}; choose {', '.join(METHODS)}")
