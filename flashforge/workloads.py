"""Decode-step workloads: block tables with a known sharing structure, and a paged cache for them.

A workload is what the engine holds at a decode step (block tables padded with -1, seq_lens with
the new token, a block size) plus a name. Trees are built from nested (tokens, children) nodes:
each node gets its own physical blocks, a request is a leaf (or, for chains, any node) and its
table is the concatenation of the blocks on its root-to-node path. Internal nodes hold whole
blocks (paging cannot share a partial block between different continuations); leaves may end in
a partial block. `scatter=True` permutes physical ids and requests, as a long-running cache does.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from papersuite.errors import UserError

MOONCAKE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "traces" / "mooncake_fast25" / \
    "synthetic_trace.jsonl"


@dataclass
class Workload:
    name: str
    block_tables: np.ndarray   # [B, W] int64, -1 padded
    seq_lens: np.ndarray       # [B]
    block_size: int
    shape: dict[str, Any]      # B, P, S (or tree parameters) for reporting

    @property
    def num_blocks(self) -> int:
        return int(self.block_tables.max()) + 1

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "block_size": self.block_size,
                "block_tables": [[int(b) for b in row if b >= 0] for row in self.block_tables],
                "seq_lens": [int(x) for x in self.seq_lens]}


Node = tuple[int, list]  # (tokens, children)


def from_tree(name: str, root: Node, block_size: int, *, requests_at_all_nodes: bool = False,
              scatter: bool = False, seed: int = 0, shape: dict | None = None) -> Workload:
    """Block tables of a token tree; requests at the leaves (or at every node for chains)."""
    next_id = 0
    tables: list[list[int]] = []
    lens: list[int] = []

    def walk(node: Node, path: list[int], tokens_before: int) -> None:
        nonlocal next_id
        tokens, children = node
        if children and tokens % block_size:
            raise ValueError(f"internal node of {tokens} tokens is not whole blocks of {block_size}")
        nb = -(-tokens // block_size)
        own = list(range(next_id, next_id + nb))
        next_id += nb
        here = path + own
        if not children or requests_at_all_nodes:
            tables.append(here)
            lens.append(tokens_before + tokens)
        for child in children:
            walk(child, here, tokens_before + tokens)

    walk(root, [], 0)
    table = _pad(tables)
    lens_a = np.array(lens, dtype=np.int64)
    if scatter:
        rng = np.random.default_rng(seed)
        ids = rng.permutation(next_id * 2)[:next_id]       # scattered, with holes
        table = np.where(table >= 0, ids[np.maximum(table, 0)], -1)
        order = rng.permutation(len(lens_a))
        table, lens_a = table[order], lens_a[order]
    return Workload(name, table, lens_a, block_size, shape or {})


def _pad(rows: list[list[int]]) -> np.ndarray:
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def two_level(B: int, P: int, S: int, block_size: int = 16, **kw) -> Workload:
    """A P-token prefix shared by B requests, each with its own S-token suffix (S may be partial)."""
    root: Node = (P, [(S, []) for _ in range(B)]) if P else (0, [(S, []) for _ in range(B)])
    suffix = f"-s{S}" if S != 128 else ""
    return from_tree(f"2level-b{B}-p{P}{suffix}", root, block_size, shape={"B": B, "P": P, "S": S}, **kw)


def kary(k: int, depth: int, tokens: int = 1024, block_size: int = 16, *, name: str | None = None,
         **kw) -> Workload:
    """Full k-ary tree of `depth` levels of `tokens`-token nodes; k**(depth-1) requests."""
    def build(level: int) -> Node:
        return (tokens, [] if level == depth else [build(level + 1) for _ in range(k)])

    name = name or f"kary-k{k}-d{depth}"
    B = k ** (depth - 1)
    return from_tree(name, build(1), block_size, shape={"B": B, "P": tokens * (depth - 1), "S": tokens,
                                                        "k": k, "depth": depth}, **kw)


def shared_fraction(fraction: float, B: int = 16, tokens: int = 8192, block_size: int = 16) -> Workload:
    """B requests of `tokens` tokens whose first `fraction` (rounded to whole blocks) is shared."""
    if not 0 <= fraction <= 1:
        raise UserError(f"shared fraction must be in [0, 1], got {fraction}")
    P = int(round(fraction * tokens / block_size)) * block_size
    w = two_level(B, P, tokens - P, block_size) if tokens > P else identical(B, tokens, block_size)
    w.name = f"fraction-{fraction:g}"
    return w


def chain(n: int = 4, tokens: int = 512, block_size: int = 16, **kw) -> Workload:
    """n requests, each table a prefix of the next (a request mid-way down another's path)."""
    node: Node = (tokens, [])
    for _ in range(n - 1):
        node = (tokens, [node])
    return from_tree(f"chain-{n}", node, block_size, requests_at_all_nodes=True,
                     shape={"B": n, "P": tokens, "S": tokens}, **kw)


def no_sharing(B: int = 16, tokens: int = 1024, block_size: int = 16, **kw) -> Workload:
    w = from_tree(f"no-sharing-b{B}", (0, [(tokens, []) for _ in range(B)]), block_size,
                  shape={"B": B, "P": 0, "S": tokens}, **kw)
    w.name = "no-sharing" if (B, tokens) == (16, 1024) else w.name
    return w


def identical(B: int = 8, tokens: int = 700, block_size: int = 16) -> Workload:
    """B requests with the very same table (beam-like): all of it shared, partial tail included."""
    nb = -(-tokens // block_size)
    table = np.tile(np.arange(nb, dtype=np.int64), (B, 1))
    return Workload(f"identical-b{B}", table, np.full(B, tokens, dtype=np.int64), block_size,
                    {"B": B, "P": tokens, "S": 0})


def mooncake_windows(window: int = 32, count: int = 3, scale: int = 16, block_size: int = 16,
                     path: Path = MOONCAKE, start: int = 0) -> list[Workload]:
    """Windows of consecutive Mooncake requests; 512-token trace blocks -> 512/scale engine tokens.

    A trace block id h becomes the engine blocks h*m .. h*m+m-1 (m = 512/scale/block_size), the
    length is input_length/scale. The real little-sharing control.
    """
    from papersuite.io import iter_jsonl

    if not Path(path).exists():
        raise UserError(f"{path}: no such file (the Mooncake trace)")
    per = 512 // scale // block_size
    if per < 1:
        raise UserError(f"scale {scale} with block size {block_size} leaves < 1 block per trace block")
    rows = []
    for i, rec in enumerate(iter_jsonl(path)):
        if i < start:
            continue
        if len(rows) >= window * count:
            break
        rows.append(rec)
    out = []
    for w in range(len(rows) // window):
        recs = rows[w * window:(w + 1) * window]
        tables, lens = [], []
        for rec in recs:
            n = max(1, int(rec["input_length"]) // scale)
            blocks = [h * per + j for h in rec["hash_ids"] for j in range(per)]
            need = -(-n // block_size)
            blocks = (blocks + [max(blocks, default=0) + 1 + j for j in range(need)])[:need]
            tables.append(blocks)
            lens.append(n)
        table = _pad(tables)
        out.append(Workload(f"mooncake-w{window}-{w}", table, np.array(lens, dtype=np.int64), block_size,
                            {"B": window, "P": 0, "S": int(np.mean(lens)), "scale": scale}))
    return out


def make_tensors(w: Workload, heads: int = 9, kv_heads: int = 3, head_dim: int = 64, dtype=None,
                 seed: int = 0, device: str = "cpu"):
    """Random q [B, H, D] and paged caches [num_blocks, bs, Hkv, D] for a workload."""
    import torch

    dtype = dtype or torch.float32
    g = torch.Generator().manual_seed(seed)
    nblk = w.num_blocks
    k = torch.randn(nblk, w.block_size, kv_heads, head_dim, generator=g).to(dtype)
    v = torch.randn(nblk, w.block_size, kv_heads, head_dim, generator=g).to(dtype)
    q = torch.randn(len(w.seq_lens), heads, head_dim, generator=g).to(dtype)
    return q.to(device), k.to(device), v.to(device)


def scenario(name: str, block_size: int = 16) -> Workload:
    """A named benchmark scenario: 2level-bB-pP[-sS], binary-dD, kary-kK-dD, chain-N, no-sharing,
    no-sharing-bB, identical-bB, fraction-F (B = 16 x 8192 tokens, the first F shared)."""
    import re

    m = re.fullmatch(r"2level-b(\d+)-p(\d+)(?:-s(\d+))?", name)
    if m:
        return two_level(int(m[1]), int(m[2]), int(m[3] or 128), block_size)
    m = re.fullmatch(r"fraction-([0-9.]+)", name)
    if m:
        return shared_fraction(float(m[1]), block_size=block_size)
    m = re.fullmatch(r"binary-d(\d+)", name)
    if m:
        return kary(2, int(m[1]), block_size=block_size, name=name)
    m = re.fullmatch(r"kary-k(\d+)-d(\d+)", name)
    if m:
        return kary(int(m[1]), int(m[2]), block_size=block_size)
    m = re.fullmatch(r"chain-(\d+)", name)
    if m:
        return chain(int(m[1]), block_size=block_size)
    if name == "no-sharing":
        return no_sharing(block_size=block_size)
    m = re.fullmatch(r"no-sharing-b(\d+)", name)
    if m:
        return no_sharing(int(m[1]), block_size=block_size)
    m = re.fullmatch(r"identical-b(\d+)", name)
    if m:
        return identical(int(m[1]), block_size=block_size)
    raise UserError(f"unknown scenario {name!r}; use 2level-bB-pP[-sS], binary-dD, kary-kK-dD, chain-N, "
                    "no-sharing[-bB], identical-bB, fraction-F, or mooncake")
