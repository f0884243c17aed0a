"""Graph datasets: our own readers, so every malformed input is a one-line `file:line` error.

Formats: TU raw folders (`NAME_A.txt`, `NAME_graph_indicator.txt`, ...), JSONL (one graph a
line), the PPGN text format of EXP/CEXP, graph6 files (SR25, graph8c, SRG families), BREC's pair
TSV, and a CSL generator. Names resolve under `--data-dir` (default `$PAPERSUITE_GRAPHS`, else
`../shared/data/graphs` next to the checkout).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from csgnn.graph import Graph, from_networkx, normalise_edges
from papersuite.errors import UserError
from papersuite.io import iter_jsonl, open_text

TU_NAMES = ("MUTAG", "PTC_MR", "PROTEINS", "NCI1", "IMDB-BINARY", "ENZYMES")
SRG_NAMES = ("sr16622", "sr261034", "sr281264", "sr291467", "sr351668", "sr351899", "sr361446",
             "sr401224")
PAIR_NAMES = ("EXP", "CEXP", "BREC")
FAMILY_NAMES = ("SR25", "graph8c") + SRG_NAMES
GENERATED_NAMES = ("CSL",)
KNOWN = TU_NAMES + PAIR_NAMES + FAMILY_NAMES + GENERATED_NAMES
CSL_SKIPS = (2, 3, 4, 5, 6, 9, 11, 12, 13, 16)
BREC_GROUPS = {  # BREC Table 2 columns -> our category names
    "Basic": ("Basic",),
    "Regular": ("Regular", "Strongly_Regular", "4-Vertex_Condition", "Distance_Regular"),
    "Extension": ("Extension",),
    "CFI": ("CFI",),
}


@dataclass
class GraphSet:
    """A named list of graphs plus how pairs are formed for the expressivity protocols.

    kind: `classification` (graphs carry y), `pairs` (graphs grouped two by two through `pair`),
    `family` (every two graphs form a pair).
    """

    name: str
    graphs: list[Graph]
    kind: str
    source: str = ""

    def __len__(self) -> int:
        return len(self.graphs)

    def pairs(self) -> list[tuple[int, int, str, str]]:
        """(index a, index b, category, pair id) for every pair the pair protocols compare."""
        if self.kind == "pairs":
            groups: dict[str, list[int]] = {}
            for i, g in enumerate(self.graphs):
                if g.pair is not None:
                    groups.setdefault(str(g.pair), []).append(i)
            out = []
            for pid, idx in groups.items():
                if len(idx) != 2:
                    raise UserError(f"{self.name}: pair id {pid!r} names {len(idx)} graph(s), expected exactly 2")
                a, b = idx
                out.append((a, b, self.graphs[a].category or self.name, pid))
            return out
        if self.kind == "classification":  # one representative per class, all class pairs (CSL: 45)
            reps: dict[Any, int] = {}
            for i, g in enumerate(self.graphs):
                reps.setdefault(_hashable(g.y), i)
            idx = list(reps.values())
        else:
            idx = list(range(len(self.graphs)))
        return [(a, b, self.name, f"{a}-{b}") for a, b in combinations(idx, 2)]

    def pair_arrays(self) -> tuple[np.ndarray, np.ndarray, list[str], list[str] | None]:
        """Pairs as index arrays (a, b), a category per pair, and pair ids (None: "a-b").

        Families of thousands of graphs have millions of pairs, so they stay numpy arrays.
        """
        if self.kind == "family":
            a, b = np.triu_indices(len(self.graphs), 1)
            return a.astype(np.int64), b.astype(np.int64), [self.name], None
        ps = self.pairs()
        a = np.array([p[0] for p in ps], dtype=np.int64)
        b = np.array([p[1] for p in ps], dtype=np.int64)
        return a, b, [p[2] for p in ps], [p[3] for p in ps]

    def labels(self) -> list[Any]:
        return [g.y for g in self.graphs]


def _hashable(v: Any) -> Any:
    return json.dumps(v) if isinstance(v, (list, dict)) else v


def default_data_dir() -> Path:
    env = os.environ.get("PAPERSUITE_GRAPHS")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent.parent
    return here.parent / "shared" / "data" / "graphs"


# -- TU raw ------------------------------------------------------------------------------------
def _read_rows(path: Path, kind: type, required: bool = True) -> list[list] | None:
    """Comma/space separated numbers per line; a malformed line is `file:line: ...`."""
    if not path.exists():
        if required:
            raise UserError(f"{path}: no such file (a TU folder needs it)")
        return None
    rows: list[list] = []
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            text = line.strip()
            if not text:
                continue
            try:
                rows.append([kind(t) for t in text.replace(",", " ").split()])
            except ValueError:
                raise UserError(f"expected {'integers' if kind is int else 'numbers'}, got {text[:60]!r}",
                                where=f"{path}:{lineno}") from None
    return rows


def read_tu(folder: Path, name: str | None = None) -> GraphSet:
    """Read a TU raw folder (`folder/raw/NAME_*.txt` or `folder/NAME_*.txt`).

    Edge labels are not used (the models here take node inputs only); self-loops and duplicate
    edges are dropped, as `TUDataset` does.
    """
    folder = Path(folder)
    name = name or folder.name
    raw = folder / "raw" if (folder / "raw").is_dir() else folder
    f = lambda suffix: raw / f"{name}_{suffix}.txt"  # noqa: E731
    indicator = _read_rows(f("graph_indicator"), int)
    labels = _read_rows(f("graph_labels"), int)
    adj = _read_rows(f("A"), int)
    node_labels = _read_rows(f("node_labels"), int, required=False)
    node_attr = _read_rows(f("node_attributes"), float, required=False)

    gid = np.array([r[0] for r in indicator], dtype=np.int64)
    for i, r in enumerate(indicator):
        if len(r) != 1:
            raise UserError(f"expected one graph id, got {len(r)} values", where=f"{f('graph_indicator')}:{i + 1}")
    if len(gid) and (gid.min() != 1 or np.any(np.diff(gid) < 0) or np.any(np.diff(gid) > 1)):
        bad = int(np.argmax((np.diff(gid) < 0) | (np.diff(gid) > 1))) + 2 if len(gid) > 1 else 1
        raise UserError("graph ids must start at 1 and rise in steps of 0 or 1",
                        where=f"{f('graph_indicator')}:{bad}")
    num_graphs = int(gid.max()) if len(gid) else 0
    if len(labels) != num_graphs:
        raise UserError(f"{num_graphs} graphs in the indicator but {len(labels)} label lines",
                        where=f"{f('graph_labels')}:{len(labels)}")
    n_total = len(gid)
    for name_, rows in (("node_labels", node_labels), ("node_attributes", node_attr)):
        if rows is not None and len(rows) != n_total:
            raise UserError(f"{len(rows)} lines but {n_total} nodes", where=f"{f(name_)}:{len(rows)}")
    if node_attr is not None:
        widths = {len(r) for r in node_attr}
        if len(widths) > 1:
            bad = next(i for i, r in enumerate(node_attr) if len(r) != len(node_attr[0]))
            raise UserError(f"{len(node_attr[bad])} attributes, expected {len(node_attr[0])}",
                            where=f"{f('node_attributes')}:{bad + 1}")
    e = np.zeros((len(adj), 2), dtype=np.int64)
    for i, r in enumerate(adj):
        if len(r) != 2 or not (1 <= r[0] <= n_total and 1 <= r[1] <= n_total):
            raise UserError(f"expected two node ids in 1..{n_total}, got {r}", where=f"{f('A')}:{i + 1}")
        if gid[r[0] - 1] != gid[r[1] - 1]:
            raise UserError(f"edge joins nodes of graphs {gid[r[0] - 1]} and {gid[r[1] - 1]}",
                            where=f"{f('A')}:{i + 1}")
        e[i] = r
    e -= 1
    starts = np.searchsorted(gid, np.arange(1, num_graphs + 2))
    edge_graph = gid[e[:, 0]] - 1 if len(e) else np.zeros(0, dtype=np.int64)
    order = np.argsort(edge_graph, kind="stable")
    e, edge_graph = e[order], edge_graph[order]
    ebounds = np.searchsorted(edge_graph, np.arange(num_graphs + 1))
    nl = None if node_labels is None else np.array([r[0] for r in node_labels], dtype=np.int64)
    na = None if node_attr is None else np.array(node_attr, dtype=np.float64)
    graphs = []
    for k in range(num_graphs):
        lo, hi = starts[k], starts[k + 1]
        local = e[ebounds[k]:ebounds[k + 1]] - lo
        graphs.append(Graph(id=str(k), num_nodes=int(hi - lo), edges=normalise_edges(local, hi - lo),
                            y=int(labels[k][0]),
                            node_labels=None if nl is None else nl[lo:hi].copy(),
                            x=None if na is None else na[lo:hi].copy()))
    return GraphSet(name=name, graphs=graphs, kind="classification", source=str(raw))


# -- JSONL ---------------------------------------------------------------------------------------
def read_graph_jsonl(path: str | Path, name: str | None = None) -> GraphSet:
    """One graph a line: {"id","num_nodes","edges":[[u,v],...],"y"?,"node_labels"?,"x"?,"pair"?}."""
    label = "<stdin>" if str(path) == "-" else str(path)
    graphs: list[Graph] = []
    lineno = 0
    with open_text(path) as fh:
        for line in fh:
            lineno += 1
            if not line.strip():
                continue
            where = f"{label}:{lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"malformed JSON ({e.msg}, column {e.colno})", where=where) from None
            if not isinstance(rec, dict):
                raise UserError("expected a JSON object", where=where)
            graphs.append(graph_from_record(rec, where, default_id=str(len(graphs))))
    if not graphs:
        raise UserError(f"{label}: no graphs")
    kind = "pairs" if any(g.pair is not None for g in graphs) else (
        "classification" if all(g.y is not None for g in graphs) else "family")
    return GraphSet(name=name or Path(label).stem, graphs=graphs, kind=kind, source=label)


def graph_from_record(rec: dict[str, Any], where: str, default_id: str = "0") -> Graph:
    n = rec.get("num_nodes")
    if not isinstance(n, int) or isinstance(n, bool):
        raise UserError("'num_nodes' must be an integer", where=where)
    if n <= 0:
        raise UserError(f"a graph needs at least one node, got num_nodes={n}", where=where)
    edges = rec.get("edges", [])
    if not isinstance(edges, list):
        raise UserError("'edges' must be a list of [u, v] pairs", where=where)
    for e in edges:
        if (not isinstance(e, list) or len(e) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in e)):
            raise UserError(f"edge {e!r} is not a pair of integers", where=where)
        if not (0 <= e[0] < n and 0 <= e[1] < n):
            raise UserError(f"edge {e} names a node outside 0..{n - 1}", where=where)
    nl = rec.get("node_labels")
    if nl is not None:
        if not isinstance(nl, list) or len(nl) != n or not all(isinstance(v, int) for v in nl):
            raise UserError(f"'node_labels' must be {n} integers", where=where)
        nl = np.array(nl, dtype=np.int64)
    x = rec.get("x")
    if x is not None:
        try:
            x = np.array(x, dtype=np.float64)
        except (TypeError, ValueError):
            raise UserError("'x' must be a list of numeric rows", where=where) from None
        if x.ndim != 2 or x.shape[0] != n:
            raise UserError(f"'x' must have {n} rows of equal length", where=where)
    pair = rec.get("pair")
    return Graph(id=str(rec.get("id", default_id)), num_nodes=n, edges=normalise_edges(edges, n),
                 y=rec.get("y"), node_labels=nl, x=x, pair=None if pair is None else str(pair),
                 category=rec.get("category"))


def graph_to_record(g: Graph) -> dict[str, Any]:
    rec: dict[str, Any] = {"id": g.id, "num_nodes": g.num_nodes, "edges": g.edges.tolist()}
    if g.y is not None:
        rec["y"] = g.y
    if g.node_labels is not None:
        rec["node_labels"] = g.node_labels.tolist()
    if g.x is not None:
        rec["x"] = g.x.tolist()
    if g.pair is not None:
        rec["pair"] = g.pair
    if g.category is not None:
        rec["category"] = g.category
    return rec


# -- PPGN text (EXP / CEXP) ------------------------------------------------------------------------
def read_ppgn(path: Path, name: str) -> GraphSet:
    """Line 1: number of graphs; per graph `n label`, then n lines `node_label degree nbrs...`.

    Node labels are kept (the authors' loader drops them). Graphs 2i and 2i+1 form pair i.
    """
    with open_text(path) as fh:
        lines = fh.read().splitlines()

    def ints(i: int) -> list[int]:
        if i >= len(lines):
            raise UserError("file ends early", where=f"{path}:{i + 1}")
        try:
            return [int(t) for t in lines[i].split()]
        except ValueError:
            raise UserError(f"expected integers, got {lines[i][:60]!r}", where=f"{path}:{i + 1}") from None

    head = ints(0)
    if len(head) != 1:
        raise UserError("line 1 must hold the number of graphs", where=f"{path}:1")
    pos, graphs = 1, []
    for k in range(head[0]):
        hdr = ints(pos)
        if len(hdr) != 2:
            raise UserError("expected `num_nodes label`", where=f"{path}:{pos + 1}")
        n, label = hdr
        labels, edges = np.zeros(n, dtype=np.int64), []
        for v in range(n):
            row = ints(pos + 1 + v)
            if len(row) < 2 or len(row) != 2 + row[1] or any(not 0 <= u < n for u in row[2:]):
                raise UserError(f"expected `label degree` and degree neighbour ids in 0..{n - 1}",
                                where=f"{path}:{pos + 2 + v}")
            labels[v] = row[0]
            edges += [(v, u) for u in row[2:]]
        graphs.append(Graph(id=str(k), num_nodes=n, edges=normalise_edges(edges, n), y=label,
                            node_labels=labels, pair=str(k // 2), category=name))
        pos += 1 + n
    return GraphSet(name=name, graphs=graphs, kind="pairs", source=str(path))


# -- graph6 families, BREC, CSL --------------------------------------------------------------------
def read_graph6_file(path: Path, name: str) -> GraphSet:
    import networkx as nx

    graphs = []
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            s = line.strip()
            if s.startswith(">>graph6<<"):
                s = s[len(">>graph6<<"):]
            if not s:
                continue
            try:
                g = nx.from_graph6_bytes(s.encode())
            except (nx.NetworkXError, ValueError) as e:
                raise UserError(f"not a graph6 string ({e})", where=f"{path}:{lineno}") from None
            graphs.append(from_networkx(g, str(len(graphs))))
    return GraphSet(name=name, graphs=graphs, kind="family", source=str(path))


def read_brec(path: Path, categories: Iterable[str] | None = None) -> GraphSet:
    """BREC pairs TSV: pair_id, category, graph6_a, graph6_b (400 rows in the official order)."""
    import networkx as nx

    wanted = _expand_categories(categories)
    graphs = []
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.rstrip("\n").split("\t")
            if lineno == 1 and parts[0] == "pair_id":
                continue
            if not line.strip():
                continue
            if len(parts) != 4:
                raise UserError(f"expected 4 tab-separated fields, got {len(parts)}", where=f"{path}:{lineno}")
            pid, cat, a, b = parts
            if wanted and cat not in wanted:
                continue
            for tag, s in (("a", a), ("b", b)):
                try:
                    g = nx.from_graph6_bytes(s.strip().encode())
                except (nx.NetworkXError, ValueError) as e:
                    raise UserError(f"graph {tag} is not graph6 ({e})", where=f"{path}:{lineno}") from None
                graphs.append(from_networkx(g, f"{pid}{tag}", pair=pid, category=cat))
    if not graphs:
        raise UserError(f"{path}: no pairs in categories {sorted(wanted)}")
    return GraphSet(name="BREC", graphs=graphs, kind="pairs", source=str(path))


def _expand_categories(categories: Iterable[str] | None) -> set[str]:
    """BREC category names (Basic, Regular, Strongly_Regular, ...) exactly as in the TSV."""
    if not categories:
        return set()
    known = {c for group in BREC_GROUPS.values() for c in group}
    unknown = [c for c in categories if c not in known]
    if unknown:
        raise UserError(f"unknown BREC category {unknown[0]!r}; choose from {', '.join(sorted(known))}")
    return set(categories)


def make_csl(relabellings: int = 15, seed: int = 0) -> GraphSet:
    """CSL: circulant_graph(41, [1, R]) for the ten skip lengths R, each in random relabellings."""
    import networkx as nx

    rng = np.random.default_rng(seed)
    graphs = []
    for cls, r in enumerate(CSL_SKIPS):
        base = from_networkx(nx.circulant_graph(41, [1, r]), f"R{r}")
        for k in range(relabellings):
            g = base.permuted(rng.permutation(41), suffix="")
            g.id, g.y = f"R{r}-{k}", cls
            graphs.append(g)
    return GraphSet(name="CSL", graphs=graphs, kind="classification", source="generated")


# -- resolution ------------------------------------------------------------------------------------
def load(name: str, data_dir: str | Path | None = None, categories: Iterable[str] | None = None) -> GraphSet:
    """Resolve a dataset name (see KNOWN) or a path (TU folder, .jsonl, .g6, `-`) to a GraphSet."""
    root = Path(data_dir) if data_dir else default_data_dir()
    if name == "-" or name.endswith(".jsonl") or name.endswith(".json"):
        return read_graph_jsonl(name)
    p = Path(name)
    if p.suffix == ".g6" and p.exists():
        return read_graph6_file(p, p.stem)
    if p.is_dir():
        return read_tu(p, p.name)
    if name in TU_NAMES:
        return read_tu(_need(root / name), name)
    if name in ("EXP", "CEXP"):
        return read_ppgn(_need(root / name / "raw" / "GRAPHSAT.txt"), name)
    if name == "BREC":
        return read_brec(_need(root / "BREC" / "brec_pairs.tsv"), categories)
    if name == "SR25":
        return read_graph6_file(_need(root / "SR25" / "raw" / "sr251256.g6"), "SR25")
    if name == "graph8c":
        return read_graph6_file(_need(root / "SR25" / "raw" / "graph8c.g6"), "graph8c")
    if name in SRG_NAMES:
        return read_graph6_file(_need(root / "SRG_families" / "raw" / f"{name}.g6"), name)
    if name == "CSL":
        return make_csl()
    raise UserError(f"unknown dataset {name!r}; known: {', '.join(KNOWN)} (or a TU folder, .jsonl, .g6 file, -)")


def _need(path: Path) -> Path:
    if not path.exists():
        raise UserError(f"{path}: no such file or folder (set --data-dir or $PAPERSUITE_GRAPHS)")
    return path


def iter_records(graphs: Iterable[Graph]) -> Iterator[dict[str, Any]]:
    for g in graphs:
        yield graph_to_record(g)
