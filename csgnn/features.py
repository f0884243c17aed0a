"""Node inputs: one-hot labels plus standardised attributes, else one-hot degree (capped).

The spec is fitted on training graphs only (never on labels y) and stored in the checkpoint, so
`predict` builds exactly the inputs the model was trained on.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from csgnn.graph import Graph

DEGREE_CAP = 64


@dataclass
class FeatureSpec:
    kind: str = "degree"  # "labels" (one-hot labels and/or attributes) or "degree"
    label_min: int = 0
    label_width: int = 0
    attr_dim: int = 0
    attr_mean: list = field(default_factory=list)
    attr_std: list = field(default_factory=list)
    degree_cap: int = DEGREE_CAP

    @classmethod
    def fit(cls, graphs: Sequence[Graph], degree_cap: int = DEGREE_CAP) -> "FeatureSpec":
        labelled = [g.node_labels for g in graphs if g.node_labels is not None and len(g.node_labels)]
        attrs = [g.x for g in graphs if g.x is not None and len(g.x)]
        if not labelled and not attrs:
            return cls(kind="degree", degree_cap=degree_cap)
        spec = cls(kind="labels", degree_cap=degree_cap)
        if labelled:
            allv = np.concatenate(labelled)
            spec.label_min, spec.label_width = int(allv.min()), int(allv.max() - allv.min() + 1)
        if attrs:
            a = np.concatenate(attrs, 0)
            spec.attr_dim = a.shape[1]
            std = a.std(0)
            spec.attr_mean, spec.attr_std = a.mean(0).tolist(), np.where(std > 0, std, 1.0).tolist()
        return spec

    @property
    def dim(self) -> int:
        return self.degree_cap + 1 if self.kind == "degree" else self.label_width + self.attr_dim

    def transform(self, g: Graph) -> np.ndarray:
        n = g.num_nodes
        if self.kind == "degree":
            out = np.zeros((n, self.dim), dtype=np.float32)
            out[np.arange(n), np.minimum(g.degrees(), self.degree_cap)] = 1.0
            return out
        parts = []
        if self.label_width:
            oh = np.zeros((n, self.label_width), dtype=np.float32)
            if g.node_labels is not None:
                idx = g.node_labels - self.label_min
                ok = (idx >= 0) & (idx < self.label_width)  # unseen labels: all-zero row
                oh[np.arange(n)[ok], idx[ok]] = 1.0
            parts.append(oh)
        if self.attr_dim:
            if g.x is not None and g.x.shape[1] == self.attr_dim:
                parts.append(((g.x - np.array(self.attr_mean)) / np.array(self.attr_std)).astype(np.float32))
            else:
                parts.append(np.zeros((n, self.attr_dim), dtype=np.float32))
        return np.concatenate(parts, 1)

    def as_dict(self) -> dict:
        return asdict(self)
