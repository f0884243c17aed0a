"""The graph record every reader produces and every other module consumes.

Kept as plain numpy so readers, cycle enumeration and worker processes need no torch.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Graph:
    """An undirected simple graph: `edges` holds each edge once as (u, v) with u < v, 0-based.

    `y` keeps the original label value (e.g. -1/1), `node_labels` integer labels, `x` float
    attributes; `pair` and `category` group graphs for the expressivity protocols.
    """

    id: str
    num_nodes: int
    edges: np.ndarray
    y: Any = None
    node_labels: np.ndarray | None = None
    x: np.ndarray | None = None
    pair: str | None = None
    category: str | None = None
    meta: dict = field(default_factory=dict)

    def content_key(self) -> str:
        """A hash of the structure (nodes and edges) used as the cache key of its cycles."""
        h = hashlib.sha256()
        h.update(np.int64(self.num_nodes).tobytes())
        h.update(np.ascontiguousarray(self.edges, dtype=np.int64).tobytes())
        return h.hexdigest()

    def degrees(self) -> np.ndarray:
        deg = np.zeros(self.num_nodes, dtype=np.int64)
        if len(self.edges):
            np.add.at(deg, self.edges[:, 0], 1)
            np.add.at(deg, self.edges[:, 1], 1)
        return deg

    def to_networkx(self):
        import networkx as nx

        g = nx.Graph()
        g.add_nodes_from(range(self.num_nodes))
        g.add_edges_from(map(tuple, self.edges.tolist()))
        return g

    def permuted(self, perm: np.ndarray, suffix: str = "~perm") -> "Graph":
        """The same graph with node v renamed perm[v]: an isomorphic copy for reliability checks."""
        perm = np.asarray(perm, dtype=np.int64)
        inv = np.empty_like(perm)
        inv[perm] = np.arange(len(perm))
        edges = normalise_edges(perm[self.edges] if len(self.edges) else self.edges, self.num_nodes)
        return Graph(id=f"{self.id}{suffix}", num_nodes=self.num_nodes, edges=edges, y=self.y,
                     node_labels=None if self.node_labels is None else self.node_labels[inv],
                     x=None if self.x is None else self.x[inv], pair=self.pair, category=self.category)


def normalise_edges(edges: Any, num_nodes: int) -> np.ndarray:
    """Undirected, deduplicated, self-loops dropped, sorted rows (u < v): one canonical form."""
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    if len(e) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    e = e[e[:, 0] != e[:, 1]]
    e = np.sort(e, axis=1)
    e = np.unique(e, axis=0)
    return e.reshape(-1, 2)


def from_networkx(g, gid: str, **kw: Any) -> Graph:
    """A networkx graph with arbitrary node names -> Graph (nodes in insertion order)."""
    index = {v: i for i, v in enumerate(g.nodes())}
    edges = [(index[u], index[v]) for u, v in g.edges()]
    return Graph(id=gid, num_nodes=len(index), edges=normalise_edges(edges, len(index)), **kw)
