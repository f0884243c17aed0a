"""Single-process reference training: the whole model, the same samples, the same loss rule.

Per-sample mean token loss, summed over the step's B samples in micro-batch order, gradient
divided by B once, Adam. Distributed runs must match its losses (float64: rtol 1e-9).
"""
from __future__ import annotations

import torch

from .data import ByteDataset, load_text, micro_batch_ids
from .model import Adam, GPTConfig, build_module, sample_loss_sum


def reference_losses(gpt: GPTConfig, steps: int, global_batch: int, micro_batches: int, lr: float = 1e-3,
                     seed: int = 0, data: str | None = None) -> list[float]:
    mods = [build_module(gpt, i, seed) for i in range(gpt.n_modules)]
    params = [p for m in mods for p in m.parameters()]
    mstate = [torch.zeros_like(p) for p in params]
    vstate = [torch.zeros_like(p) for p in params]
    ds = ByteDataset(load_text(data), gpt.seq_len, seed)
    adam = Adam(lr=lr)
    out = []
    for step in range(steps):
        for p in params:
            p.grad = None
        total = 0.0
        for m in range(micro_batches):
            x, y = ds.batch(micro_batch_ids(step, global_batch, micro_batches, m))
            h = x
            for mod in mods:
                h = mod(h)
            loss = sample_loss_sum(h, y)
            loss.backward()
            total += float(loss.detach())
        for p in params:
            p.grad.div_(global_batch)
        adam.step(params, mstate, vstate, step + 1)
        out.append(total / global_batch)
    return out
