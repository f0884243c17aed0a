"""From graphs to PyG `Data`: the model configuration, its structures and the tensors.

Each graph carries every tensor any model reads (`rel_index` [2, R], `rel_type`, `rel_weight`,
`rel_mult`, `cyc`), empty where unused, so one batching path serves all models; PyG offsets
`rel_index` when batching because its name contains "index".
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from csgnn.chordless import BuildStats, CycleOptions, Structures, StructureBuilder
from csgnn.features import FeatureSpec
from csgnn.graph import Graph
from papersuite.errors import UserError

MODELS = ("csgnn", "csgnn-chords", "gin-cycles", "gin", "gcn")


def needs_structures(name: str) -> bool:
    return name in ("csgnn", "csgnn-chords", "gin-cycles")


def uses_chords(name: str) -> bool:
    return name == "csgnn-chords"


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines a model and its inputs; stored in checkpoints and results."""

    model: str = "csgnn"
    cycle_len: int = 8
    complement: bool = False
    max_cycles: int = 100_000
    time_limit: float = 60.0
    hidden: int = 64
    layers: int = 4
    dropout: float = 0.5
    faithful: bool = False
    relation_weights: str = "diag"

    def __post_init__(self) -> None:
        if self.relation_weights not in ("diag", "full"):
            raise UserError(f"--relation-weights must be diag or full, got {self.relation_weights!r}")
        if self.model not in MODELS:
            raise UserError(f"unknown model {self.model!r}; choose from {', '.join(MODELS)}")
        if not 3 <= self.cycle_len <= 24:
            raise UserError(f"--cycle-len must be in 3..24 (never unbounded), got {self.cycle_len}")
        if self.max_cycles < 1:
            raise UserError(f"--max-cycles must be positive, got {self.max_cycles}")

    def build(self, in_dim: int, num_classes: int):
        """The torch module this configuration describes."""
        from csgnn.model import build_model

        return build_model(self.model, in_dim, num_classes, self.cycle_len, self.complement, self.hidden,
                           self.layers, self.dropout, self.faithful, self.relation_weights)

    def cycle_options(self) -> CycleOptions | None:
        if not needs_structures(self.model):
            return None
        return CycleOptions(cycle_len=self.cycle_len, max_cycles=self.max_cycles,
                            complement=self.complement and self.model != "gin-cycles",
                            chords=uses_chords(self.model), time_limit=self.time_limit)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_structures(graphs: Sequence[Graph], cfg: ModelConfig, workers: int = 1,
                     cache_dir: str | Path | None = None,
                     on_progress: Callable[[int], None] | None = None) -> tuple[list[Structures | None], BuildStats]:
    opts = cfg.cycle_options()
    if opts is None:
        return [None] * len(graphs), BuildStats()
    return StructureBuilder(opts, workers=workers, cache_dir=cache_dir, on_progress=on_progress).build(graphs)


def to_data(graphs: Sequence[Graph], structs: Sequence[Structures | None], spec: FeatureSpec,
            cfg: ModelConfig, label_index: dict | None = None, dtype=None) -> list:
    """PyG Data list; `y` is the class index when `label_index` is given (else -1)."""
    import torch
    from torch_geometric.data import Data

    dtype = dtype or torch.float32
    ncyc = cfg.cycle_len - 2
    out = []
    for g, s in zip(graphs, structs):
        e = g.edges
        edge_index = torch.from_numpy(np.concatenate([e.T, e[:, ::-1].T], 1).copy()) if len(e) else \
            torch.zeros((2, 0), dtype=torch.long)
        if s is None:
            ri, rt, rm = np.zeros((2, 0), np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
            cyc = np.zeros((g.num_nodes, ncyc))
        else:
            ri, rt, rm, cyc = s.rel_index, s.rel_type, s.rel_mult, s.counts
        y = -1
        if label_index is not None:
            key = json_key(g.y)
            if key not in label_index:
                raise UserError(f"graph {g.id}: label {g.y!r} was not seen in training")
            y = label_index[key]
        out.append(Data(x=torch.from_numpy(spec.transform(g)).to(dtype), edge_index=edge_index.long(),
                        rel_index=torch.from_numpy(np.ascontiguousarray(ri)).long(),
                        rel_type=torch.from_numpy(rt).long(),
                        rel_weight=torch.from_numpy(np.log1p(rm)).to(dtype),
                        rel_mult=torch.from_numpy(rm.astype(np.float64)).to(dtype),
                        cyc=torch.from_numpy(np.log1p(cyc)).to(dtype),
                        y=torch.tensor([y]), num_nodes=g.num_nodes))
    return out


def json_key(v: Any) -> str:
    """Label values keyed as JSON so -1, "a" and [1] all round-trip through checkpoints."""
    import json

    return json.dumps(v, sort_keys=True)


def label_map(graphs: Sequence[Graph]) -> tuple[dict[str, int], list[Any]]:
    """Sorted distinct label values -> class indices (as TUDataset does), plus the inverse list."""
    missing = [g.id for g in graphs if g.y is None]
    if missing:
        raise UserError(f"graph {missing[0]} has no 'y' label, and training needs one "
                        f"({len(missing)} graph(s) without)")
    values = sorted({json_key(g.y): g.y for g in graphs}.items(), key=lambda kv: _sort_key(kv[1]))
    return {k: i for i, (k, _) in enumerate(values)}, [v for _, v in values]


def _sort_key(v: Any):
    return (0, v, "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0, json_key(v))
