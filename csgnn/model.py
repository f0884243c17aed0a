"""Models: CSGNN (trainable default and the authors' faithful schedule) and the baselines.

- `CSGNN`: every layer uses every relation with its own weight (notes §2.5). All relations are
  handled at once: one Linear to (D)·hidden, a gather by (source, relation type) scaled by
  log(1+multiplicity), and a single index_add per layer together with the plain edges.
  h' = h + ReLU(BN(MLP((1+ε)h + Σ_N h_u + Σ_d Σ_{P_d} log(1+m) W_d h_u))); JK sum readout.
- `FaithfulCSGNN`: GIN on E, then on P_t, then on P̄_t at layer t, one shared MLP per layer,
  ε = 0, no norm, no residual, sum pool, Linear-ReLU-Dropout-Linear (notes §2.4).
- `GIN` / `GCN`: PyG GINConv / GCNConv with BN, ReLU and the same JK readout. `gin-cycles`
  is GIN whose input also holds log(1+chordless-cycle counts per length).
"""
from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import GCNConv, GINConv, global_add_pool

def _mlp(i: int, h: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, h), nn.ReLU(), nn.Linear(h, o))


class _JKReadout(nn.Module):
    """Sum-pool every layer's node states; one linear head per layer, logits summed (Xu et al.)."""

    def __init__(self, hidden: int, layers: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.heads = nn.ModuleList(nn.Linear(hidden, num_classes) for _ in range(layers + 1))
        self.dropout = nn.Dropout(dropout)

    def pooled(self, states: list[torch.Tensor], batch: torch.Tensor, size: int) -> list[torch.Tensor]:
        return [global_add_pool(h, batch, size=size) for h in states]

    def forward(self, pooled: list[torch.Tensor]) -> torch.Tensor:
        return sum(head(self.dropout(p)) for head, p in zip(self.heads, pooled))


class CSGNN(nn.Module):
    """Trainable CSGNN: all cycle-distance relations in every layer, one fused transform each."""

    def __init__(self, in_dim: int, num_classes: int, num_relations: int, hidden: int = 64, layers: int = 4,
                 dropout: float = 0.5, cycle_dim: int = 0, relation_weights: str = "diag") -> None:
        super().__init__()
        self.num_relations, self.hidden = num_relations, hidden
        self.encoder = nn.Linear(in_dim + cycle_dim, hidden)
        self.eps = nn.Parameter(torch.zeros(layers))
        self.full = relation_weights == "full"
        if self.full:  # W_{t,d}: a full matrix per relation, applied as one Linear to D·hidden
            self.rel = nn.ModuleList(nn.Linear(hidden, num_relations * hidden, bias=False) for _ in range(layers))
        else:  # W_{t,d} = diag(γ_{t,d}): a learned per-channel scale per relation (D·hidden FLOPs less)
            self.rel = nn.ParameterList(nn.Parameter(1 + 0.5 * torch.randn(num_relations, hidden))
                                        for _ in range(layers))
        self.mlps = nn.ModuleList(_mlp(hidden, hidden, hidden) for _ in range(layers))
        self.norms = nn.ModuleList(nn.BatchNorm1d(hidden) for _ in range(layers))
        self.readout = _JKReadout(hidden, layers, num_classes, dropout)
        self.use_cycles = cycle_dim > 0

    def _states(self, data) -> list[torch.Tensor]:
        x = torch.cat([data.x, data.cyc], 1) if self.use_cycles else data.x
        h = self.encoder(x)
        n = h.size(0)
        src_e, dst_e = data.edge_index[1], data.edge_index[0]
        dst_r, src_r = data.rel_index[0], data.rel_index[1]
        w = data.rel_weight.to(h.dtype).unsqueeze(1)
        dst = torch.cat([dst_e, dst_r])
        gather = src_r * self.num_relations + data.rel_type  # row of z holding W_type h_src
        states = [h]
        for t, (rel, mlp, norm) in enumerate(zip(self.rel, self.mlps, self.norms)):
            if self.full:
                rel_msgs = rel(h).view(n * self.num_relations, self.hidden)[gather] * w
            else:
                rel_msgs = h[src_r] * (rel[data.rel_type] * w)
            msgs = torch.cat([h[src_e], rel_msgs])
            agg = torch.index_add((1 + self.eps[t]) * h, 0, dst, msgs)
            h = h + torch.relu(norm(mlp(agg)))
            states.append(h)
        return states

    def embed(self, data) -> torch.Tensor:
        size = int(data.num_graphs)
        return torch.cat(self.readout.pooled(self._states(data), data.batch, size), 1)

    def forward(self, data) -> torch.Tensor:
        size = int(data.num_graphs)
        return self.readout(self.readout.pooled(self._states(data), data.batch, size))


class FaithfulCSGNN(nn.Module):
    """The authors' synthetic schedule: layer t = GIN on E, then on P_t, then on P̄_t (shared MLP)."""

    def __init__(self, in_dim: int, num_classes: int, num_distances: int, complement: bool = False,
                 hidden: int = 64, layers: int = 4, dropout: float = 0.5) -> None:
        super().__init__()
        self.num_distances, self.complement = num_distances, complement
        self.encoder = _mlp(in_dim, hidden, hidden)
        self.mlps = nn.ModuleList(nn.Sequential(_mlp(hidden, hidden, hidden), nn.ReLU()) for _ in range(layers))
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, num_classes))

    @staticmethod
    def _gin(mlp: nn.Module, h: torch.Tensor, dst: torch.Tensor, src: torch.Tensor,
             w: torch.Tensor | None = None) -> torch.Tensor:
        msg = h[src] if w is None else h[src] * w.unsqueeze(1)
        return mlp(h.index_add(0, dst, msg))  # ε = 0: (1+0)·h + Σ

    def _final(self, data) -> torch.Tensor:
        h = self.encoder(data.x)
        mult = data.rel_mult.to(h.dtype)
        for t, mlp in enumerate(self.mlps):
            h = self._gin(mlp, h, data.edge_index[0], data.edge_index[1])
            for rtype in (t, t + self.num_distances) if self.complement else (t,):
                if t >= self.num_distances:
                    break
                m = data.rel_type == rtype
                if bool(m.any()):
                    h = self._gin(mlp, h, data.rel_index[0, m], data.rel_index[1, m], mult[m])
        return h

    def embed(self, data) -> torch.Tensor:
        return global_add_pool(self._final(data), data.batch, size=int(data.num_graphs))

    def forward(self, data) -> torch.Tensor:
        return self.head(self.embed(data))


class GIN(nn.Module):
    """GIN (Xu et al.): GINConv(MLP) + BN + ReLU per layer, learned ε, JK sum readout."""

    def __init__(self, in_dim: int, num_classes: int, hidden: int = 64, layers: int = 4, dropout: float = 0.5,
                 cycle_dim: int = 0, conv: str = "gin") -> None:
        super().__init__()
        self.encoder = nn.Linear(in_dim + cycle_dim, hidden)
        self.use_cycles = cycle_dim > 0
        if conv == "gin":
            self.convs = nn.ModuleList(
                GINConv(nn.Sequential(nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                      nn.Linear(hidden, hidden)), train_eps=True) for _ in range(layers))
        else:
            self.convs = nn.ModuleList(GCNConv(hidden, hidden) for _ in range(layers))
        self.norms = nn.ModuleList(nn.BatchNorm1d(hidden) for _ in range(layers))
        self.readout = _JKReadout(hidden, layers, num_classes, dropout)

    def _states(self, data) -> list[torch.Tensor]:
        x = torch.cat([data.x, data.cyc], 1) if self.use_cycles else data.x
        h = self.encoder(x)
        states = [h]
        for conv, norm in zip(self.convs, self.norms):
            h = torch.relu(norm(conv(h, data.edge_index)))
            states.append(h)
        return states

    def embed(self, data) -> torch.Tensor:
        return torch.cat(self.readout.pooled(self._states(data), data.batch, int(data.num_graphs)), 1)

    def forward(self, data) -> torch.Tensor:
        return self.readout(self.readout.pooled(self._states(data), data.batch, int(data.num_graphs)))


def build_model(name: str, in_dim: int, num_classes: int, cycle_len: int, complement: bool = False,
                hidden: int = 64, layers: int = 4, dropout: float = 0.5, faithful: bool = False,
                relation_weights: str = "diag") -> nn.Module:
    """The model called `name` (see MODELS); `faithful` switches CSGNN to the authors' schedule."""
    nd = cycle_len // 2 + 1
    if name in ("csgnn", "csgnn-chords"):
        if faithful:
            return FaithfulCSGNN(in_dim, num_classes, nd, complement, hidden, layers, dropout)
        return CSGNN(in_dim, num_classes, nd * (2 if complement else 1), hidden, layers, dropout,
                     cycle_dim=cycle_len - 2, relation_weights=relation_weights)
    if name == "gin-cycles":
        return GIN(in_dim, num_classes, hidden, layers, dropout, cycle_dim=cycle_len - 2)
    if name == "gin":
        return GIN(in_dim, num_classes, hidden, layers, dropout)
    if name == "gcn":
        return GIN(in_dim, num_classes, hidden, layers, dropout, conv="gcn")
    raise ValueError(name)
