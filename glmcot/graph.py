"""A graph in the GRBench JSON layout, validated once, with the Graph-CoT functions.

Layout: `{"<type>_nodes": {id: {"features": {...}, "neighbors": {neighbor_type: [ids]}}}}`.
Ids are unique across node types, which is what lets Graph-CoT's functions take a bare id.
The optional `schema.json` (node types, `graph_definition`, `node_text_keys`) is inferred when
absent, so any GRBench graph works without one.

Two faces of the same functions:
- `observe(action, args)` returns Graph-CoT's observation strings (the baseline keeps strings);
- `feature`, `neighbours`, `degree`, `node_info` return raw values for the executor's Python API.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from papersuite.errors import UserError

DATA = Path(__file__).resolve().parent / "data"
DEFAULT_GRAPH = DATA / "graph.json"
DEFAULT_SCHEMA = DATA / "schema.json"
DEFAULT_QUESTIONS = DATA / "questions_dev.jsonl"


class GraphError(Exception):
    """A graph function was called with a bad id or name; becomes an observation, not a crash."""


@dataclass
class Schema:
    """Node types with their feature and neighbour names, the prompt sentence and text keys."""

    node_types: dict[str, dict[str, Any]]
    graph_definition: str
    node_text_keys: dict[str, list[str]]

    @property
    def feature_names(self) -> list[str]:
        return sorted({f for t in self.node_types.values() for f in t["features"]})

    @property
    def neighbour_types(self) -> list[str]:
        return sorted({n for t in self.node_types.values() for n in t["neighbors"]})

    def as_dict(self) -> dict[str, Any]:
        return {"node_types": self.node_types, "graph_definition": self.graph_definition,
                "node_text_keys": self.node_text_keys}


def infer_schema(nodes_by_type: dict[str, dict[str, Any]]) -> Schema:
    """Feature/neighbour names in first-seen order; text keys: the first string feature."""
    types: dict[str, dict[str, Any]] = {}
    text_keys: dict[str, list[str]] = {}
    for ntype, nodes in nodes_by_type.items():
        feats: dict[str, str] = {}
        neigh: dict[str, str] = {}
        first_str: str | None = None
        for node in nodes.values():
            for k, v in node["features"].items():
                feats.setdefault(k, type(v).__name__)
                if first_str is None and isinstance(v, str):
                    first_str = k
            for k in node["neighbors"]:
                neigh.setdefault(k, "ids")
        types[ntype] = {"features": feats, "neighbors": neigh}
        text_keys[ntype] = [first_str] if first_str else []
    parts = [f"There are {len(types)} types of nodes in the graph: {', '.join(types)}."]
    for ntype, t in types.items():
        parts.append(f"{ntype.capitalize()} nodes have features: {', '.join(t['features']) or 'none'}.")
        parts.append(f"{ntype.capitalize()} nodes are linked to their {', '.join(t['neighbors']) or 'no'} nodes.")
    return Schema(types, " ".join(parts), text_keys)


@dataclass
class Graph:
    """The validated graph: `nodes[id] = {"type", "features", "neighbors"}`."""

    nodes: dict[str, dict[str, Any]]
    schema: Schema
    source: str = "<memory>"
    digest: str = ""
    _degree_cache: dict[str, int] = field(default_factory=dict, repr=False)

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path = DEFAULT_GRAPH, schema_path: str | Path | None = None) -> "Graph":
        """Read and validate; every problem is one UserError naming the file and node."""
        p = Path(path)
        if not p.exists():
            raise UserError(f"{p}: no such file")
        raw_bytes = p.read_bytes()
        try:
            raw = json.loads(raw_bytes)
        except json.JSONDecodeError as e:
            raise UserError(f"{p}:{e.lineno}: malformed JSON ({e.msg})") from None
        except UnicodeDecodeError:
            raise UserError(f"{p}: not UTF-8 text") from None
        if schema_path is None and Path(path).resolve() == DEFAULT_GRAPH and DEFAULT_SCHEMA.exists():
            schema_path = DEFAULT_SCHEMA
        graph = cls.from_dict(raw, source=str(p), schema=_load_schema(schema_path) if schema_path else None)
        graph.digest = hashlib.sha256(raw_bytes).hexdigest()[:16]
        return graph

    @classmethod
    def from_dict(cls, raw: Any, source: str = "<memory>", schema: dict | None = None) -> "Graph":
        if not isinstance(raw, dict) or not raw:
            raise UserError(f"{source}: expected an object of '<type>_nodes' tables")
        by_type: dict[str, dict[str, Any]] = {}
        nodes: dict[str, dict[str, Any]] = {}
        for key, table in raw.items():
            if not key.endswith("_nodes") or not isinstance(table, dict):
                raise UserError(f"{source}: top-level key {key!r} is not a '<type>_nodes' object")
            ntype = key[: -len("_nodes")]
            by_type[ntype] = table
            for nid, node in table.items():
                where = f"{source}: node {nid!r} ({key})"
                if nid in nodes:
                    raise UserError(f"{where}: id also used by a {nodes[nid]['type']} node")
                if (not isinstance(node, dict) or not isinstance(node.get("features"), dict)
                        or not isinstance(node.get("neighbors"), dict)):
                    raise UserError(f"{where}: malformed node, expected features and neighbors objects")
                for nt, ids in node["neighbors"].items():
                    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                        raise UserError(f"{where}: neighbors[{nt!r}] must be a list of id strings")
                nodes[nid] = {"type": ntype, "features": node["features"], "neighbors": node["neighbors"]}
        inferred = infer_schema(by_type)
        if schema is not None:
            sch = Schema(schema.get("node_types") or inferred.node_types,
                         schema.get("graph_definition") or inferred.graph_definition,
                         schema.get("node_text_keys") or inferred.node_text_keys)
            for ntype, t in sch.node_types.items():
                t.setdefault("features", {})
                t.setdefault("neighbors", {})
        else:
            sch = inferred
        return cls(nodes, sch, source, hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()[:16])

    def dangling(self, limit: int = 20) -> tuple[int, list[dict[str, str]]]:
        """Neighbour ids that name no node: (count, first `limit` examples)."""
        count, examples = 0, []
        for nid, node in self.nodes.items():
            for nt, ids in node["neighbors"].items():
                for j in ids:
                    if j not in self.nodes:
                        count += 1
                        if len(examples) < limit:
                            examples.append({"node": nid, "neighbor_type": nt, "missing": j})
        return count, examples

    # -- raw API (the executor's) ----------------------------------------------------------------
    def _node(self, nid: Any) -> dict[str, Any]:
        node = self.nodes.get(str(nid))
        if node is None:
            raise GraphError(f"There is no node with id {nid!r}.")
        return node

    def feature(self, nid: str, name: str) -> Any:
        node = self._node(nid)
        if name not in node["features"]:
            have = ", ".join(node["features"])
            raise GraphError(f"Node {nid} ({node['type']}) has no feature {name!r}; it has: {have}.")
        return node["features"][name]

    def neighbours(self, nid: str, ntype: str) -> list[str]:
        node = self._node(nid)
        if ntype not in node["neighbors"]:
            known = self.schema.node_types.get(node["type"], {}).get("neighbors", {})
            if ntype in known:
                return []
            have = ", ".join(node["neighbors"])
            raise GraphError(f"Node {nid} ({node['type']}) has no neighbor type {ntype!r}; it has: {have}.")
        return list(node["neighbors"][ntype])

    def degree(self, nid: str, ntype: str) -> int:
        return len(self.neighbours(nid, ntype))

    def total_degree(self, nid: str) -> int:
        d = self._degree_cache.get(nid)
        if d is None:
            d = sum(len(v) for v in self.nodes[nid]["neighbors"].values()) if nid in self.nodes else 0
            self._degree_cache[nid] = d
        return d

    def node_info(self, nid: str, k: int = 5) -> str:
        """The vertex chunk: centre vertex, features in schema order, 1-hop neighbours top-k.

        Rendered canonically (neighbours by total degree descending, then id) so that the same
        vertex always gives the same text, which is what makes its KV reusable.
        """
        node = self._node(nid)
        order = list(self.schema.node_types.get(node["type"], {}).get("features", {})) or list(node["features"])
        order += [f for f in node["features"] if f not in order]
        feats = "; ".join(f"{f}: {_fmt(node['features'][f])}" for f in order if f in node["features"])
        parts = [f"[{nid} {node['type']}] {feats}"]
        for nt in sorted(node["neighbors"]):
            ids = sorted(node["neighbors"][nt], key=lambda j: (-self.total_degree(j), j))
            shown = ", ".join(ids[:k]) + (f" (+{len(ids) - k} more)" if len(ids) > k else "")
            parts.append(f"{nt} ({len(ids)}): {shown}")
        return " | ".join(parts)

    def text_of(self, nid: str) -> str:
        node = self.nodes[nid]
        keys = self.schema.node_text_keys.get(node["type"]) or []
        return " ".join(str(node["features"].get(k, "")) for k in keys[:1]).strip()

    # -- Graph-CoT observation strings -----------------------------------------------------------
    def observe(self, action: str, args: list[str], retrieve=None) -> str:
        """Run one Graph-CoT action; errors become observations, as in Graph-CoT."""
        try:
            if action == "RetrieveNode":
                if retrieve is None:
                    raise GraphError("no retriever")
                return f"The ID of this retrieval target node is {retrieve(', '.join(args))}."
            if action == "NodeFeature":
                _arity(action, args, 2)
                return f"The {args[1]} feature of {args[0]} are: {_fmt(self.feature(args[0], args[1]))}."
            if action == "NeighbourCheck":
                _arity(action, args, 2)
                return f"The {args[1]} neighbors of {args[0]} are: {self.neighbours(args[0], args[1])}."
            if action == "NodeDegree":
                _arity(action, args, 2)
                return f"The {args[1]} neighbor node degree of {args[0]} are: {self.degree(args[0], args[1])}."
        except GraphError as e:
            return str(e)
        return ("Invalid Action. Valid Actions are RetrieveNode[<Content>] NeighbourCheck[<Node>, <Neighbor_Type>] "
                "NodeFeature[<Node>, <Feature>] NodeDegree[<Node>, <Neighbor_Type>] and Finish[<answer>].")


def _arity(action: str, args: list[str], n: int) -> None:
    if len(args) != n:
        raise GraphError(f"{action} takes {n} arguments, got {len(args)}.")


def _fmt(v: Any) -> str:
    return ", ".join(map(str, v)) if isinstance(v, list) else str(v)


def _load_schema(path: str | Path) -> dict:
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: no such file")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{p}:{e.lineno}: malformed JSON ({e.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("node_types", {}), dict):
        raise UserError(f"{p}: expected an object with node_types, graph_definition, node_text_keys")
    return data
