"""Expressivity protocols: which non-isomorphic pairs a model (or its ceiling) tells apart.

- `pair_test` (protocol `pairs`): untrained models in float64 with random weights under several
  seeds, BatchNorm in eval mode. A pair is distinguished when the relative L2 distance of the two
  graph embeddings exceeds `tol` under every seed. Every graph is also compared with a relabelled
  copy: a distance above `tol` there is a reliability failure (a non-invariant model would
  "separate" everything).
- `wl_test` (protocol `wl`): exact colour refinement over the inputs the model sees (node
  features, and per model the edges, cycle counts, and relations P_d with multiplicities). No
  message-passing model on those inputs can separate more: it is the ceiling. Multisets are
  hashed by sums of 64-bit mixes, so a collision has probability ~2^-64 per comparison.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from csgnn.chordless import Structures
from csgnn.data import BREC_GROUPS, GraphSet
from csgnn.features import FeatureSpec
from csgnn.graph import Graph
from csgnn.inputs import ModelConfig

LIST_LIMIT = 20_000  # list every pair up to this many; above it, only the undistinguished ones


def _relabelled(graphs: Sequence[Graph], structs: Sequence[Structures | None], seed: int):
    rng = np.random.default_rng(seed)
    pg, ps = [], []
    for g, s in zip(graphs, structs):
        perm = rng.permutation(g.num_nodes)
        pg.append(g.permuted(perm))
        ps.append(None if s is None else s.permuted(perm))
    return pg, ps


def _report(gset: GraphSet, a: np.ndarray, b: np.ndarray, cats: list[str], ids: list[str] | None,
            separated: np.ndarray, distance: np.ndarray, reliability_failures: int) -> dict[str, Any]:
    by_cat: dict[str, dict[str, int]] = defaultdict(lambda: {"total": 0, "distinguished": 0})
    if len(cats) == 1:
        by_cat[cats[0]] = {"total": int(len(a)), "distinguished": int(separated.sum())}
    else:
        for c, s in zip(cats, separated):
            by_cat[c]["total"] += 1
            by_cat[c]["distinguished"] += int(s)
    listed = np.arange(len(a)) if len(a) <= LIST_LIMIT else np.nonzero(~separated)[0][:LIST_LIMIT]
    pairs = [{"pair": ids[i] if ids else f"{a[i]}-{b[i]}", "a": gset.graphs[a[i]].id, "b": gset.graphs[b[i]].id,
              "distinguished": bool(separated[i]), "distance": float(distance[i])} for i in listed]
    out: dict[str, Any] = {"pairs_total": int(len(a)), "distinguished": int(separated.sum()),
                           "reliability_failures": int(reliability_failures), "by_category": dict(by_cat),
                           "pairs": pairs}
    if len(a) > LIST_LIMIT:
        out["pairs_listed"] = "undistinguished only"
    if gset.name == "BREC":
        out["by_group"] = {grp: {"total": sum(by_cat[c]["total"] for c in members if c in by_cat),
                                 "distinguished": sum(by_cat[c]["distinguished"] for c in members if c in by_cat)}
                           for grp, members in BREC_GROUPS.items()}
    return out


# -- untrained pair test ------------------------------------------------------------------------
def embeddings(cfg: ModelConfig, graphs: Sequence[Graph], structs: Sequence, spec: FeatureSpec, seed: int,
               batch_size: int = 128):
    """Graph embeddings of an untrained float64 model with weights drawn from `seed`."""
    import torch
    from torch_geometric.loader import DataLoader

    from csgnn.inputs import to_data

    torch.manual_seed(seed)
    model = cfg.build(spec.dim, 2).double().eval()
    datas = to_data(graphs, structs, spec, cfg, dtype=torch.float64)
    with torch.no_grad():
        parts = [model.embed(b) for b in DataLoader(datas, batch_size=batch_size, shuffle=False)]
    return torch.cat(parts, 0)


def _relative(x, y):
    import torch

    num = torch.linalg.vector_norm(x - y, dim=1)
    den = torch.maximum(torch.linalg.vector_norm(x, dim=1), torch.linalg.vector_norm(y, dim=1)).clamp_min(1e-300)
    return num / den


def pair_test(gset: GraphSet, structs: Sequence[Structures | None], cfg: ModelConfig, seeds: int = 5,
              tol: float = 1e-6, seed: int = 0) -> dict[str, Any]:
    import torch

    a, b, cats, ids = gset.pair_arrays()
    spec = FeatureSpec.fit(gset.graphs)
    used = np.unique(np.concatenate([a, b]))  # CSL: only the class representatives
    pos = np.full(len(gset.graphs), -1)
    pos[used] = np.arange(len(used))
    graphs, sub = [gset.graphs[i] for i in used], [structs[i] for i in used]
    perm_graphs, perm_structs = _relabelled(graphs, sub, seed)
    min_dist = np.full(len(a), np.inf)
    unreliable = np.zeros(len(used), dtype=bool)
    ta, tb = torch.from_numpy(pos[a]), torch.from_numpy(pos[b])
    for s in range(seeds):
        emb = embeddings(cfg, graphs, sub, spec, seed + s)
        emb_p = embeddings(cfg, perm_graphs, perm_structs, spec, seed + s)
        unreliable |= (_relative(emb, emb_p) > tol).numpy()
        for lo in range(0, len(a), 20_000):
            d = _relative(emb[ta[lo:lo + 20_000]], emb[tb[lo:lo + 20_000]]).numpy()
            np.minimum(min_dist[lo:lo + 20_000], d, out=min_dist[lo:lo + 20_000])
    return _report(gset, a, b, cats, ids, min_dist > tol, min_dist, int(unreliable.sum()))


# -- exact colour refinement (the ceiling) ---------------------------------------------------------
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a fixed bijective scramble of 64-bit integers."""
    x = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        return x ^ (x >> np.uint64(31))


def refine(features: np.ndarray, dst: np.ndarray, src: np.ndarray, code: np.ndarray) -> np.ndarray:
    """Stable colouring of a (disjoint union of) graph(s) under relational 1-WL.

    Node v's new colour = (old colour, multiset of (code, colour of u) over entries u -> v);
    iterates until the number of colours stops growing.
    """
    _, colour = np.unique(features, axis=0, return_inverse=True)
    colour = colour.ravel().astype(np.int64)
    n = len(colour)
    order = np.argsort(dst, kind="stable")
    dst, src, code = dst[order], src[order], code[order].astype(np.uint64)
    starts = np.searchsorted(dst, np.arange(n))
    has = np.zeros(n, dtype=bool)
    has[np.unique(dst)] = True
    count = len(np.unique(colour))
    while True:
        with np.errstate(over="ignore"):
            h = _mix(code * np.uint64(0x9E3779B97F4A7C15) + _mix(colour[src].astype(np.uint64) + np.uint64(1)))
        sig = np.zeros(n, dtype=np.uint64)
        if len(h):
            sums = np.add.reduceat(h, starts[has])
            sig[has] = sums
        _, new = np.unique(np.stack([colour.astype(np.uint64), sig], 1), axis=0, return_inverse=True)
        new = new.ravel().astype(np.int64)
        new_count = int(new.max()) + 1 if n else 0
        colour = new
        if new_count == count:
            return colour
        count = new_count


def _wl_inputs(cfg: ModelConfig, graphs: Sequence[Graph], structs: Sequence, spec: FeatureSpec):
    feats, dsts, srcs, codes, offs = [], [], [], [], [0]
    uses_cycles = cfg.model in ("csgnn", "csgnn-chords", "gin-cycles")
    uses_rel = cfg.model in ("csgnn", "csgnn-chords")
    for g, s in zip(graphs, structs):
        f = spec.transform(g).astype(np.float64)
        if uses_cycles and s is not None:
            f = np.concatenate([f, s.counts.astype(np.float64)], 1)
        feats.append(f)
        o = offs[-1]
        e = g.edges
        dsts += [e[:, 0] + o, e[:, 1] + o]
        srcs += [e[:, 1] + o, e[:, 0] + o]
        codes += [np.zeros(2 * len(e), dtype=np.int64)]
        if uses_rel and s is not None and len(s.rel_type):
            dsts.append(s.rel_index[0] + o)
            srcs.append(s.rel_index[1] + o)
            codes.append((s.rel_type + 1) * 1_000_003 + s.rel_mult)
        offs.append(o + g.num_nodes)
    width = max(f.shape[1] for f in feats)
    feats = [np.pad(f, ((0, 0), (0, width - f.shape[1]))) for f in feats]
    return (np.concatenate(feats, 0), np.concatenate(dsts), np.concatenate(srcs), np.concatenate(codes),
            np.array(offs))


def graph_signatures(cfg: ModelConfig, graphs: Sequence[Graph], structs: Sequence, spec: FeatureSpec) -> list[bytes]:
    """Per graph, its sorted stable-colour multiset (jointly refined, so comparable across graphs)."""
    feats, dst, src, code, offs = _wl_inputs(cfg, graphs, structs, spec)
    colour = refine(feats, dst, src, code)
    return [np.sort(colour[offs[i]:offs[i + 1]]).tobytes() for i in range(len(graphs))]


def wl_test(gset: GraphSet, structs: Sequence[Structures | None], cfg: ModelConfig, seed: int = 0) -> dict[str, Any]:
    a, b, cats, ids = gset.pair_arrays()
    spec = FeatureSpec.fit(gset.graphs)
    perm_graphs, perm_structs = _relabelled(gset.graphs, structs, seed)
    sig = graph_signatures(cfg, list(gset.graphs) + perm_graphs, list(structs) + perm_structs, spec)
    n = len(gset.graphs)
    _, sid = np.unique(np.array(sig, dtype=object), return_inverse=True)
    sid = sid.ravel()
    separated = sid[a] != sid[b]
    unreliable = int((sid[:n] != sid[n:]).sum())
    return _report(gset, a, b, cats, ids, separated, separated.astype(np.float64), unreliable)
