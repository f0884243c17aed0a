"""Loading the upcycled target on the engine, with experts resident or behind an offload cache."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from papersuite.engine.moe import ExpertProvider, MixtralModel, StackedExperts
from specmoeoff.store import expert_file, load_expert_file, read_manifest


def resident_experts(store: str | Path, dtype: torch.dtype = torch.float32) -> StackedExperts:
    """Every expert of the store in memory (for checks; offloaded runs use an ExpertCache)."""
    import json

    store = Path(store)
    cfg = json.loads((store / "config.json").read_text())
    gu, dn = [], []
    for i in range(cfg["num_hidden_layers"]):
        pairs = [load_expert_file(store / expert_file(i, e)) for e in range(cfg["num_local_experts"])]
        gu.append(torch.stack([p[0].to(dtype) for p in pairs]))
        dn.append(torch.stack([p[1].to(dtype) for p in pairs]))
    return StackedExperts(gu, dn)


def load_target(store: str | Path, provider: ExpertProvider | None = None,
                dtype: torch.dtype = torch.float32) -> MixtralModel:
    """The engine's MixtralModel over the store's dense weights; experts resident unless `provider`."""
    read_manifest(store)
    return MixtralModel.from_folder(store, dtype=dtype, provider=provider or resident_experts(store, dtype),
                                    weights="dense.safetensors")


@torch.inference_mode()
def prefill_logits(model, ids: Tensor, block_size: int = 16) -> Tensor:
    """Logits at every position of one sequence through the engine's paged path (fp32)."""
    from papersuite.engine.attention import PagedAttentionBackend
    from papersuite.engine.runner import ModelRunner
    from papersuite.engine.scheduler import ScheduledBatch, Sequence

    n = len(ids)
    blocks = -(-n // block_size)
    runner = ModelRunner(model, PagedAttentionBackend(), blocks, block_size, dtype=next(model.parameters()).dtype)
    seq = Sequence(ids.tolist(), params=None)
    seq.block_table = list(range(blocks))
    return runner.run(ScheduledBatch([seq], [n], 0), all_logits=True)
