"""Chordless structures: cycles, per-node cycle counts and the cycle-distance relations P_d.

`networkx.chordless_cycles(G, length_bound=L)` yields each induced cycle once. From each cycle
c = (c_0 ... c_{m-1}) and positions i, j we add (c_i, c_j) to P_d with d = min(|i-j|, m-|i-j|);
each distinct (v, u, d) is stored once with its multiplicity (sum aggregation is unchanged).

Enumeration is never unbounded: over `max_cycles` it is redone with L-1, L-2, ... (a "budget"
fallback), and in worker processes a graph that runs past `time_limit` seconds is killed and
retried one length lower (a "timeout" fallback), because the generator can go a minute without
yielding. Results are cached by graph content plus options, written atomically.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from csgnn.graph import Graph

FORMAT = 2
_FALLBACKS = (None, "budget", "timeout", "complement-budget", "complement-timeout")
MIN_LEN, MAX_LEN = 3, 24


@dataclass(frozen=True)
class CycleOptions:
    """What to enumerate. `chords=True` uses all simple cycles (the with-chords ablation)."""

    cycle_len: int = 8
    max_cycles: int = 100_000
    complement: bool = False
    chords: bool = False
    time_limit: float = 60.0

    @property
    def num_distances(self) -> int:
        return self.cycle_len // 2 + 1

    @property
    def num_relation_types(self) -> int:
        """P_0..P_{L/2}, then the complement's P̄_0..P̄_{L/2} when asked for."""
        return self.num_distances * (2 if self.complement else 1)

    def key(self) -> str:
        return json.dumps({"f": FORMAT, **asdict(self)}, sort_keys=True)


@dataclass
class Structures:
    """Per-graph cycle structures; `rel_index[0]` receives from `rel_index[1]`."""

    bound: int
    counts: np.ndarray
    rel_index: np.ndarray
    rel_type: np.ndarray
    rel_mult: np.ndarray
    num_cycles: int
    fallback: str | None = None
    complement_cycles: int = 0

    def permuted(self, perm: np.ndarray) -> "Structures":
        """Structures of the copy whose node v is perm[v] (enumeration is equivariant)."""
        inv = np.empty_like(perm)
        inv[perm] = np.arange(len(perm))
        return Structures(self.bound, self.counts[inv], perm[self.rel_index], self.rel_type.copy(),
                          self.rel_mult.copy(), self.num_cycles, self.fallback, self.complement_cycles)

    def to_arrays(self) -> dict[str, np.ndarray]:
        meta = np.array([self.bound, self.num_cycles, self.complement_cycles], dtype=np.int64)
        return {"meta": meta, "counts": self.counts, "rel_index": self.rel_index, "rel_type": self.rel_type,
                "rel_mult": self.rel_mult, "fallback": np.array(self.fallback or "")}

    def to_buffer(self) -> np.ndarray:
        """One flat int64 array (header + arrays): the cache format, read back with one np.fromfile."""
        n, w = self.counts.shape
        head = np.array([FORMAT, n, w, self.rel_type.size, self.bound, self.num_cycles, self.complement_cycles,
                         _FALLBACKS.index(self.fallback)], dtype=np.int64)
        return np.concatenate([head, self.counts.ravel(), self.rel_index.ravel(), self.rel_type, self.rel_mult]
                              ).astype(np.int64)

    @classmethod
    def from_buffer(cls, buf: np.ndarray) -> "Structures":
        fmt, n, w, r, bound, ncyc, ncomp, fb = (int(v) for v in buf[:8])
        if fmt != FORMAT or buf.size != 8 + n * w + 4 * r:
            raise ValueError("stale or damaged cache entry")
        o = 8
        counts = buf[o:o + n * w].reshape(n, w)
        o += n * w
        rel_index = buf[o:o + 2 * r].reshape(2, r)
        o += 2 * r
        return cls(bound, counts, rel_index, buf[o:o + r], buf[o + r:o + 2 * r], ncyc, _FALLBACKS[fb], ncomp)

    @classmethod
    def from_arrays(cls, a) -> "Structures":
        meta = a["meta"]
        fb = str(a["fallback"])
        return cls(int(meta[0]), a["counts"], a["rel_index"], a["rel_type"], a["rel_mult"], int(meta[1]),
                   fb or None, int(meta[2]))


# -- enumeration -----------------------------------------------------------------------------
def enumerate_cycles(num_nodes: int, edges: np.ndarray, bound: int, chords: bool = False,
                     max_cycles: int | None = None) -> list[list[int]] | None:
    """All chordless (or simple) cycles of length <= bound; None when over `max_cycles`."""
    import networkx as nx

    g = nx.Graph()
    g.add_nodes_from(range(num_nodes))
    g.add_edges_from(map(tuple, np.asarray(edges).tolist()))
    if bound < MIN_LEN:
        return []
    gen = nx.simple_cycles(g, length_bound=bound) if chords else nx.chordless_cycles(g, length_bound=bound)
    out = []
    for c in gen:
        if len(c) < 3:
            continue
        out.append(c)
        if max_cycles is not None and len(out) > max_cycles:
            return None
    return out


def complement_edges(num_nodes: int, edges: np.ndarray) -> np.ndarray:
    adj = np.ones((num_nodes, num_nodes), dtype=bool)
    np.fill_diagonal(adj, False)
    if len(edges):
        adj[edges[:, 0], edges[:, 1]] = False
        adj[edges[:, 1], edges[:, 0]] = False
    u, v = np.nonzero(np.triu(adj, 1))
    return np.stack([u, v], 1).astype(np.int64)


def relations(num_nodes: int, cycles: Sequence[Sequence[int]], cycle_len: int,
              type_offset: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(counts [n, L-2], rel_index [2, R], rel_type [R], rel_mult [R]) from a cycle list."""
    nd = cycle_len // 2 + 1
    counts = np.zeros((num_nodes, cycle_len - 2), dtype=np.int64)
    by_len: dict[int, list] = {}
    for c in cycles:
        by_len.setdefault(len(c), []).append(c)
    keys = []
    for m, cs in by_len.items():
        arr = np.asarray(cs, dtype=np.int64)  # [k, m]
        np.add.at(counts[:, m - 3], arr.ravel(), 1)
        i, j = np.meshgrid(np.arange(m), np.arange(m), indexing="ij")
        diff = np.abs(i - j).ravel()
        d = np.minimum(diff, m - diff)
        dst = arr[:, i.ravel()]
        src = arr[:, j.ravel()]
        keys.append(((dst * num_nodes + src) * nd + d[None, :]).ravel())
    if not keys:
        empty = np.zeros(0, dtype=np.int64)
        return counts, np.zeros((2, 0), dtype=np.int64), empty, empty
    uniq, mult = np.unique(np.concatenate(keys), return_counts=True)
    d = uniq % nd
    pair = uniq // nd
    rel_index = np.stack([pair // num_nodes, pair % num_nodes]).astype(np.int64)
    return counts, rel_index, (d + type_offset).astype(np.int64), mult.astype(np.int64)


def _bounded(num_nodes: int, edges: np.ndarray, opts: CycleOptions, start: int) -> tuple[int, list, str | None]:
    """Enumerate from bound `start` downwards until the cycle count fits the budget."""
    fallback = None if start == opts.cycle_len else "timeout"
    for bound in range(start, MIN_LEN - 1, -1):
        cycles = enumerate_cycles(num_nodes, edges, bound, opts.chords, opts.max_cycles)
        if cycles is not None:
            return bound, cycles, fallback
        fallback = "budget"
    return MIN_LEN - 1, [], "budget"


def compute(num_nodes: int, edges: np.ndarray, opts: CycleOptions, start: int | None = None,
            start_complement: int | None = None) -> Structures:
    """Structures of one graph, in this process (no hard time limit: see `StructureBuilder`)."""
    start = opts.cycle_len if start is None else start
    bound, cycles, fb = _bounded(num_nodes, edges, opts, start)
    counts, ri, rt, rm = relations(num_nodes, cycles, opts.cycle_len)
    ncomp = 0
    if opts.complement:
        cstart = opts.cycle_len if start_complement is None else start_complement
        cb, ccycles, cfb = _bounded(num_nodes, complement_edges(num_nodes, edges), opts, cstart)
        _, cri, crt, crm = relations(num_nodes, ccycles, opts.cycle_len, type_offset=opts.num_distances)
        ri, rt, rm = np.concatenate([ri, cri], 1), np.concatenate([rt, crt]), np.concatenate([rm, crm])
        ncomp = len(ccycles)
        fb = fb or (f"complement-{cfb}" if cfb else None)
        bound = min(bound, cb) if cfb else bound
    return Structures(bound, counts, ri, rt, rm, len(cycles), fb, ncomp)


# -- worker processes with a hard time limit --------------------------------------------------
def _worker(conn) -> None:  # pragma: no cover - runs in a child process
    while True:
        job = conn.recv()
        if job is None:
            return
        idx, n, edges, opts, start = job
        conn.send((idx, compute(n, edges, opts, start, start).to_arrays()))


@dataclass
class BuildStats:
    """What preprocessing did; reported in every result."""

    seconds: float = 0.0
    computed_graphs: int = 0
    cached_graphs: int = 0
    cycles: int = 0
    relation_pairs: int = 0
    fallbacks: int = 0
    fallback_graphs: list = field(default_factory=list)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["seconds"] = round(self.seconds, 3)
        d["fallback_graphs"] = self.fallback_graphs[:20]
        return d


def default_cache_dir() -> Path:
    root = Path(os.environ.get("PAPERSUITE_CACHE", Path.home() / ".cache" / "papersuite"))
    return root / "csgnn"


class StructureBuilder:
    """Compute (or load from cache) the structures of many graphs.

    workers=0 computes in this process (budget fallback only); workers>=1 uses that many child
    processes and kills any graph that runs past `opts.time_limit`, retrying one length lower.
    cache_dir=None disables the cache.
    """

    def __init__(self, opts: CycleOptions, workers: int = 1, cache_dir: str | Path | None = None,
                 on_progress: Callable[[int], None] | None = None) -> None:
        self.opts = opts
        self.workers = workers
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.on_progress = on_progress

    # cache ---------------------------------------------------------------------------------
    def _path(self, g: Graph) -> Path | None:
        if self.cache_dir is None:
            return None
        key = hashlib.sha256((g.content_key() + self.opts.key()).encode()).hexdigest()
        return self.cache_dir / key[:2] / f"{key}.i64"

    def _load(self, path: Path | None) -> Structures | None:
        if path is None or not path.exists():
            return None
        try:
            return Structures.from_buffer(np.fromfile(path, dtype=np.int64))
        except Exception:  # a damaged entry is recomputed, never trusted
            return None

    def _store(self, path: Path | None, s: Structures) -> None:
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                s.to_buffer().tofile(fh)
            os.replace(tmp, path)  # atomic: a second process at most replaces an equal file
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    # main entry ----------------------------------------------------------------------------
    def build(self, graphs: Sequence[Graph]) -> tuple[list[Structures], BuildStats]:
        t0 = time.perf_counter()
        stats = BuildStats()
        out: list[Structures | None] = [None] * len(graphs)
        paths = [self._path(g) for g in graphs]
        todo = []
        memo: dict[str, int] = {}
        for i, g in enumerate(graphs):
            s = self._load(paths[i])
            if s is not None:
                out[i] = s
                stats.cached_graphs += 1
                if self.on_progress:
                    self.on_progress(1)
            else:
                todo.append(i)
        # identical graphs inside one call are computed once
        unique, dupes = [], []
        for i in todo:
            k = graphs[i].content_key()
            if k in memo:
                dupes.append((i, memo[k]))
            else:
                memo[k] = i
                unique.append(i)
        if self.workers <= 0:
            for i in unique:
                out[i] = compute(graphs[i].num_nodes, graphs[i].edges, self.opts)
                if self.on_progress:
                    self.on_progress(1)
        else:
            self._run_workers(graphs, unique, out)
        for i in unique:
            self._store(paths[i], out[i])  # type: ignore[arg-type]
        for i, j in dupes:
            out[i] = out[j]
            if self.on_progress:
                self.on_progress(1)
        stats.computed_graphs = len(unique)
        for i, s in enumerate(out):
            assert s is not None
            stats.cycles += s.num_cycles + s.complement_cycles
            stats.relation_pairs += int(s.rel_mult.sum())
            if s.fallback:
                stats.fallbacks += 1
                stats.fallback_graphs.append({"graph": graphs[i].id, "bound": s.bound, "reason": s.fallback})
        stats.seconds = time.perf_counter() - t0
        return out, stats  # type: ignore[return-value]

    def _run_workers(self, graphs: Sequence[Graph], todo: list[int], out: list) -> None:
        import multiprocessing as mp
        from multiprocessing.connection import wait

        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        jobs = deque((i, self.opts.cycle_len) for i in todo)
        n_workers = min(self.workers, len(jobs))
        workers: list[dict] = []

        def start() -> dict:
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_worker, args=(child,), daemon=True)
            p.start()
            child.close()
            return {"proc": p, "conn": parent, "job": None, "deadline": None}

        def feed(w: dict) -> None:
            if jobs and w["job"] is None:
                i, bound = jobs.popleft()
                w["job"] = (i, bound)
                w["deadline"] = time.monotonic() + self.opts.time_limit
                w["conn"].send((i, graphs[i].num_nodes, graphs[i].edges, self.opts, bound))

        try:
            for _ in range(n_workers):
                workers.append(start())
                feed(workers[-1])
            while any(w["job"] is not None for w in workers):
                busy = [w for w in workers if w["job"] is not None]
                timeout = max(0.0, min(w["deadline"] for w in busy) - time.monotonic())
                ready = wait([w["conn"] for w in busy], timeout=timeout)
                for w in busy:
                    if w["conn"] in ready:
                        try:
                            idx, arrays = w["conn"].recv()
                        except EOFError:  # the worker died (e.g. out of memory): treat as a timeout
                            ready.remove(w["conn"])
                        else:
                            out[idx] = Structures.from_arrays(arrays)
                            w["job"] = None
                            if self.on_progress:
                                self.on_progress(1)
                            feed(w)
                            continue
                    if w["conn"] not in ready and w["deadline"] <= time.monotonic():
                        i, bound = w["job"]
                        w["proc"].kill()
                        w["proc"].join()
                        w["conn"].close()
                        workers[workers.index(w)] = nw = start()
                        if bound - 1 < MIN_LEN:
                            n = graphs[i].num_nodes
                            out[i] = Structures(MIN_LEN - 1, np.zeros((n, self.opts.cycle_len - 2), np.int64),
                                                np.zeros((2, 0), np.int64), np.zeros(0, np.int64),
                                                np.zeros(0, np.int64), 0, "timeout")
                            if self.on_progress:
                                self.on_progress(1)
                        else:
                            jobs.appendleft((i, bound - 1))
                        feed(nw)
        finally:
            for w in workers:
                try:
                    w["conn"].send(None)
                except (OSError, BrokenPipeError):
                    pass
                w["proc"].join(timeout=1)
                if w["proc"].is_alive():
                    w["proc"].kill()
                    w["proc"].join()
