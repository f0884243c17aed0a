"""Stages: (FWD | BWD | OPTIM, micro-batch, layer), the coordinates every profiled tensor carries.

Forward pre/post hooks on each layer mark FWD stages, full backward pre-hooks mark BWD stages and
an optimizer step pre-hook marks OPTIM. Nested layers (MoE experts inside a block) are stages of
their own, so an expert that is skipped removes one stage instead of shifting its neighbours.
Ops outside every layer fall in the stages "pre" (before the first layer) and "post" (after).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import NamedTuple

import torch.nn as nn


class Stage(NamedTuple):
    kind: str  # FWD | BWD | OPTIM
    micro: int
    layer: str  # "pre", "post", "3" (block 3), "3.e1" (expert 1 of block 3)

    @property
    def block(self) -> int:
        """The top-level block index of the layer (-1 before the first, 10**6 after the last)."""
        if self.layer == "pre":
            return -1
        if self.layer == "post":
            return 10**6
        return int(self.layer.split(".")[0])


@dataclass
class StageTracker:
    """Installs hooks on the layers and knows the current stage at any moment of a step."""

    layers: list[nn.Module]

    def __post_init__(self) -> None:
        self.current = Stage("FWD", 0, "pre")
        self._stack: list[Stage] = []
        self._handles: list = []
        self._ran_layer = False
        self.on_bwd_stage = None  # callback(stage) used by executors to prefetch
        self.micro = 0

    def _named_layers(self) -> list[tuple[str, nn.Module]]:
        named = []
        for i, layer in enumerate(self.layers):
            named.append((str(i), layer))
            experts = getattr(getattr(layer, "mlp", None), "experts", None)
            if isinstance(experts, nn.ModuleList):
                named += [(f"{i}.e{j}", e) for j, e in enumerate(experts)]
        return named

    def install(self, optimizer=None) -> "StageTracker":
        # frozen bottom layers: the pre-hook still fires on output gradients, which is all we need
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for name, mod in self._named_layers():
            self._handles.append(mod.register_forward_pre_hook(self._fwd_pre(name)))
            self._handles.append(mod.register_forward_hook(self._fwd_post(name)))
            self._handles.append(mod.register_full_backward_pre_hook(self._bwd_pre(name)))
        if optimizer is not None:
            self._handles.append(optimizer.register_step_pre_hook(self._optim_pre))
        return self

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def begin_forward(self, micro: int = 0) -> None:
        self.micro = micro
        self._ran_layer = False
        self._stack = []
        self.current = Stage("FWD", micro, "pre")

    def begin_backward(self) -> None:
        self.current = Stage("BWD", self.micro, "post")

    def _fwd_pre(self, name: str):
        def hook(_mod, _args):
            self._stack.append(self.current)
            self.current = Stage("FWD", self.micro, name)
        return hook

    def _fwd_post(self, name: str):
        def hook(_mod, _args, _out):
            prev = self._stack.pop() if self._stack else Stage("FWD", self.micro, "pre")
            self._ran_layer = True
            if prev.layer == "pre" and "." not in name:
                prev = Stage("FWD", self.micro, "post")
            self.current = prev
        return hook

    def _bwd_pre(self, name: str):
        def hook(_mod, _grad_out):
            self.current = Stage("BWD", self.micro, name)
            if self.on_bwd_stage is not None:
                self.on_bwd_stage(self.current)
        return hook

    def _optim_pre(self, _opt, _args, _kwargs):
        self.current = Stage("OPTIM", self.micro, "post")
