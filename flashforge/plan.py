"""The decode-step planner: block tables -> prefix tree -> pieces, tasks and a merge CSR.

Built once per decode step with NumPy and reused by every layer. Sharing is implicit, as
hash-based prefix caching produces it: requests that hold the same physical block ids at the same
positions from the start share that prefix. The planner

1. sorts requests by their (block id, valid length) sequence (depth-first order; `perm` kept), so
   every group of sharers is a contiguous range of sorted requests;
2. computes the LCP (in blocks) of sorted neighbours and walks it with a stack (the LCP-interval
   tree of a suffix array): each interval is a node = a block run read by exactly the requests
   [q0, q1); each request's remaining blocks are its leaf;
3. demotes nodes saving fewer than `min_shared_tokens` reads ((q1 - q0 - 1) * tokens) to private
   work (each sharer reads them itself, as paged decode does);
4. cuts every shared node into pieces of <= `kv_chunk` tokens (all its requests), and every
   request's private blocks into pieces of <= `kv_chunk` tokens (one request);
5. tiles pieces into tasks of <= `q_tile` requests (the GPU kernel's grid);
6. gives each (piece, request) pair a slot for its partial attention state and builds a CSR from
   each request (original order) to its slots, which the merge reduces in one pass.

A block counts as shared only when every sharer sees the same valid length in it (the valid
length is part of the sort key), so partial tail blocks are shared only where that is exact.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from papersuite.errors import UserError


@dataclass(frozen=True)
class Plan:
    """A decode step's work split, in arrays. Requests are named by their original batch index
    except where a field says `sorted` (position in depth-first order; `perm[pos]` = request)."""

    batch: int
    block_size: int
    kv_chunk: int
    q_tile: int
    min_shared_tokens: int
    seq_lens: np.ndarray          # [B] int64, original order
    block_tables: np.ndarray      # [B, W] int64, original order, -1 past each request's blocks
    perm: np.ndarray              # [B] sorted position -> original request
    # nodes of the prefix tree (intervals and non-empty leaves)
    node_q0: np.ndarray           # [N] first sorted position reading the node
    node_q1: np.ndarray           # [N] one past the last
    node_b0: np.ndarray           # [N] first block position (same for all its requests)
    node_b1: np.ndarray           # [N] one past the last block position
    node_tokens: np.ndarray       # [N] valid tokens in the node
    node_parent: np.ndarray       # [N] parent node id, -1 at the top
    node_depth: np.ndarray        # [N] 1 for top-level nodes
    node_shared: np.ndarray       # [N] bool: computed once for all its requests
    # pieces: <= kv_chunk tokens x all requests of a shared node, or of one request's private rest
    piece_q0: np.ndarray          # [P] sorted positions [q0, q1) reading the piece
    piece_q1: np.ndarray
    piece_block_ptr: np.ndarray   # [P+1] CSR into piece_blocks
    piece_blocks: np.ndarray      # [sum] physical block ids, in token order
    piece_tokens: np.ndarray      # [P] valid tokens (only a piece's last block may be partial)
    piece_slot0: np.ndarray       # [P] first slot; slot of sorted position r is slot0 + r - q0
    piece_shared: np.ndarray      # [P] bool
    piece_run: np.ndarray         # [P] bool: block ids are consecutive (a view of the cache)
    # tasks: a piece x <= q_tile requests (the Triton kernel's grid)
    task_piece: np.ndarray        # [T]
    task_r0: np.ndarray           # [T] first sorted position of the tile
    task_rows: np.ndarray         # [T] requests in the tile
    # slots and the merge CSR
    num_slots: int
    slot_req: np.ndarray          # [S] original request owning the slot
    req_ptr: np.ndarray           # [B+1] CSR over req_slots
    req_slots: np.ndarray         # [S] slot ids grouped by original request
    stats: dict[str, Any] = field(default_factory=dict)
    # per-executor index tensors built once per plan and reused by every layer
    scratch: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def max_path(self) -> int:
        """Most slots any one request merges."""
        return int(np.diff(self.req_ptr).max()) if self.batch else 0

    def padded_req_slots(self) -> np.ndarray:
        """[B, max_path] slot ids, padded with `num_slots` (an empty state)."""
        counts = np.diff(self.req_ptr)
        k = max(1, self.max_path)
        out = np.full((self.batch, k), self.num_slots, dtype=np.int64)
        col = np.arange(len(self.req_slots)) - np.repeat(self.req_ptr[:-1], counts)
        out[np.repeat(np.arange(self.batch), counts), col] = self.req_slots
        return out

    def piece_blocks_of(self, p: int) -> np.ndarray:
        return self.piece_blocks[self.piece_block_ptr[p]:self.piece_block_ptr[p + 1]]


def _as_table(block_tables: Any, seq_lens: Any, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate the engine's inputs once, at the boundary, and return int64 arrays."""
    if block_size < 1:
        raise UserError(f"block_size must be >= 1, got {block_size}")
    if hasattr(block_tables, "detach"):
        block_tables = block_tables.detach().cpu().numpy()
    if hasattr(seq_lens, "detach"):
        seq_lens = seq_lens.detach().cpu().numpy()
    if isinstance(block_tables, np.ndarray):
        table = block_tables.astype(np.int64, copy=False)
        if table.ndim != 2:
            raise UserError(f"block_tables must be 2-D [B, max_blocks], got shape {table.shape}")
    else:
        rows = [list(r) for r in block_tables]
        width = max((len(r) for r in rows), default=0)
        table = np.full((len(rows), width), -1, dtype=np.int64)
        for i, r in enumerate(rows):
            table[i, :len(r)] = r
    lens = np.asarray(seq_lens, dtype=np.int64).reshape(-1)
    if len(lens) != table.shape[0]:
        raise UserError(f"{table.shape[0]} block tables but {len(lens)} seq_lens")
    if len(lens) == 0:
        raise UserError("empty batch: no block tables")
    if (lens < 1).any():
        i = int(np.argmax(lens < 1))
        raise UserError(f"request {i}: seq_len {int(lens[i])} < 1 (seq_lens include the new token)")
    if (table < -1).any():
        i, j = np.argwhere(table < -1)[0]
        raise UserError(f"request {i}: negative block id {int(table[i, j])} at position {j}")
    need = (lens + block_size - 1) // block_size
    if need.max() > table.shape[1]:
        i = int(np.argmax(need > table.shape[1]))
        raise UserError(f"request {i}: seq_len {int(lens[i])} needs {int(need[i])} blocks of "
                        f"{block_size}, its table has {table.shape[1]}")
    pos = np.arange(table.shape[1])
    used = pos[None, :] < need[:, None]
    if (used & (table < 0)).any():
        i, j = np.argwhere(used & (table < 0))[0]
        raise UserError(f"request {i}: seq_len {int(lens[i])} beyond its blocks "
                        f"(padding -1 at position {j})")
    return np.where(used, table, -1), lens


def _lcp_intervals(lcp: np.ndarray) -> list[tuple[int, int, int, int]]:
    """(lcp, q0, q1, parent index) of every LCP interval with lcp > 0, children before parents.

    The classic bottom-up stack walk (Abouelhoda et al.): one pass over the LCP array. Parent
    indices point into the returned list; -1 is the root (lcp 0).
    """
    n = len(lcp) + 1
    out: list[list[int]] = []
    stack: list[list[int]] = [[0, 0, -1]]  # lcp, lb, id (id -1: root or not yet numbered)
    for i in range(1, n + 1):
        cur = int(lcp[i - 1]) if i < n else 0
        lb = i - 1
        last = -1
        while cur < stack[-1][0]:
            top = stack.pop()
            lb = top[1]
            out[top[2]][2] = i
            last = top[2]
            if cur <= stack[-1][0]:
                out[last][3] = stack[-1][2]
                last = -1
        if cur > stack[-1][0]:
            out.append([cur, lb, -1, -1])
            stack.append([cur, lb, len(out) - 1])
            if last >= 0:
                out[last][3] = len(out) - 1
    return [tuple(x) for x in out]  # type: ignore[misc]


def build_plan(block_tables: Any, seq_lens: Any, block_size: int, *, kv_chunk: int = 1024,
               q_tile: int = 16, min_shared_tokens: int = 256, max_shared_depth: int | None = None
               ) -> Plan:
    """Plan one decode step. See the module docstring for the steps; O(total blocks) NumPy work
    plus a Python walk over the B-1 LCP values and the (at most 2B) nodes.

    `max_shared_depth=1` keeps only top-level shared nodes: the two-level (Hydragen / cascade)
    decomposition, used by the `cascade_two_level` baseline so that only the depth differs.
    """
    if kv_chunk < 1 or q_tile < 1 or min_shared_tokens < 0:
        raise UserError("kv_chunk and q_tile must be >= 1, min_shared_tokens >= 0")
    table, lens = _as_table(block_tables, seq_lens, block_size)
    B, W = table.shape
    nb = (lens + block_size - 1) // block_size
    pos = np.arange(W)
    valid = np.clip(lens[:, None] - pos[None, :] * block_size, 0, block_size)  # [B, W]
    key = np.where(table >= 0, table * (block_size + 1) + valid, -1)

    # 1. depth-first order: lexicographic on the key sequence. Rows as big-endian unsigned bytes
    # compare like the integer sequences, so one argsort of opaque rows (memcmp) replaces a
    # W-pass lexsort.
    if W:
        be = np.ascontiguousarray((key + 1).astype(">u8"))
        perm = np.argsort(be.view(np.dtype((np.void, 8 * W))).ravel(), kind="stable")
    else:
        perm = np.arange(B)
    skey, sval, stab = key[perm], valid[perm], table[perm]
    snb = nb[perm]

    # 2. LCP of neighbours, in blocks
    if B > 1:
        ne = (skey[1:] != skey[:-1]) | (skey[1:] < 0)
        lcp = np.where(ne.any(axis=1), ne.argmax(axis=1), W).astype(np.int64)
    else:
        lcp = np.zeros(0, dtype=np.int64)
    intervals = _lcp_intervals(lcp)

    # nodes: intervals (block run [parent lcp, lcp)) then non-empty leaves
    node_rows: list[tuple[int, int, int, int, int]] = []  # q0, q1, b0, b1, parent
    for depth_lcp, q0, q1, parent in intervals:
        b0 = intervals[parent][0] if parent >= 0 else 0
        node_rows.append((q0, q1, b0, depth_lcp, parent))
    n_int = len(node_rows)
    order = sorted(range(n_int), key=lambda k: node_rows[k][3])  # ancestors have smaller lcp
    leaf_parent = np.full(B, -1, dtype=np.int64)
    for k in order:
        leaf_parent[node_rows[k][0]:node_rows[k][1]] = k
    left = np.concatenate([[0], lcp]) if B > 1 else np.zeros(1, dtype=np.int64)
    right = np.concatenate([lcp, [0]]) if B > 1 else np.zeros(1, dtype=np.int64)
    leaf_b0 = np.maximum(left, right)
    for r in range(B):
        if snb[r] > leaf_b0[r]:
            node_rows.append((r, r + 1, int(leaf_b0[r]), int(snb[r]), int(leaf_parent[r])))
    nodes = np.array(node_rows, dtype=np.int64).reshape(-1, 5)
    node_q0, node_q1, node_b0, node_b1, node_parent = nodes.T
    N = len(nodes)
    node_depth = np.zeros(N, dtype=np.int64)
    for k in order + list(range(n_int, N)):
        node_depth[k] = 1 if node_parent[k] < 0 else node_depth[node_parent[k]] + 1
    csum = np.concatenate([np.zeros((B, 1), dtype=np.int64), np.cumsum(sval, axis=1)], axis=1)
    node_tokens = csum[node_q0, node_b1] - csum[node_q0, node_b0]
    nreq = node_q1 - node_q0
    node_shared = (nreq >= 2) & ((nreq - 1) * node_tokens >= min_shared_tokens)
    if max_shared_depth is not None:
        node_shared &= node_depth <= max_shared_depth

    # 3./4. pieces. Shared: chunk each shared node; private: everything a request reads alone.
    chunk_blocks = max(1, kv_chunk // block_size)
    owned = np.zeros((B, W), dtype=bool)  # sorted rows: covered by a shared node
    pq0: list[np.ndarray] = []
    pq1: list[np.ndarray] = []
    pblk: list[np.ndarray] = []
    pcnt: list[np.ndarray] = []
    pshared: list[np.ndarray] = []
    for k in np.flatnonzero(node_shared):
        q0, q1, b0, b1 = int(node_q0[k]), int(node_q1[k]), int(node_b0[k]), int(node_b1[k])
        owned[q0:q1, b0:b1] = True
        n_chunks = -(-(b1 - b0) // chunk_blocks)
        counts = np.full(n_chunks, chunk_blocks, dtype=np.int64)
        counts[-1] = (b1 - b0) - chunk_blocks * (n_chunks - 1)
        pq0.append(np.full(n_chunks, q0))
        pq1.append(np.full(n_chunks, q1))
        pblk.append(stab[q0, b0:b1])
        pcnt.append(counts)
        pshared.append(np.ones(n_chunks, dtype=bool))
    private = (pos[None, :] < snb[:, None]) & ~owned
    flat = np.flatnonzero(private)      # row-major: per request, in block order
    r_idx, c_idx = flat // max(W, 1), flat % max(W, 1)
    if len(r_idx):
        per_row = private.sum(1)
        rank = np.arange(len(r_idx)) - np.repeat(np.cumsum(per_row) - per_row, per_row)
        chunk_of = rank // chunk_blocks
        # a new piece starts at each (row, chunk) change
        starts = np.flatnonzero(np.concatenate([[True], (r_idx[1:] != r_idx[:-1]) |
                                                (chunk_of[1:] != chunk_of[:-1])]))
        counts = np.diff(np.concatenate([starts, [len(r_idx)]]))
        pq0.append(r_idx[starts])
        pq1.append(r_idx[starts] + 1)
        pblk.append(stab.ravel()[flat])
        pcnt.append(counts)
        pshared.append(np.zeros(len(starts), dtype=bool))
    piece_q0 = np.concatenate(pq0).astype(np.int64)
    piece_q1 = np.concatenate(pq1).astype(np.int64)
    piece_blocks = np.concatenate(pblk).astype(np.int64)
    piece_block_ptr = np.concatenate([[0], np.cumsum(np.concatenate(pcnt))]).astype(np.int64)
    piece_shared = np.concatenate(pshared)
    P = len(piece_q0)
    # valid tokens: only a sequence's last block is partial, and it is a piece's last block
    first_row = np.repeat(piece_q0, np.diff(piece_block_ptr))
    blk_valid = np.zeros(len(piece_blocks), dtype=np.int64)
    # recover block positions from (row, id): valid length lives in the key of the sorted row
    sh_mask = np.repeat(piece_shared, np.diff(piece_block_ptr))
    sh_pos = np.concatenate([np.arange(node_b0[k], node_b1[k]) for k in np.flatnonzero(node_shared)]
                            ) if node_shared.any() else np.zeros(0, dtype=np.int64)
    blk_valid[sh_mask] = sval[first_row[sh_mask], sh_pos]
    blk_valid[~sh_mask] = sval.ravel()[flat]
    piece_tokens = np.add.reduceat(blk_valid, piece_block_ptr[:-1]) if P else np.zeros(0, np.int64)
    steps = np.diff(piece_blocks) == 1
    not_step = np.concatenate([~steps, [True]]).astype(np.int64)
    # a piece is a run if no non-step occurs before its last block
    bad = np.concatenate([[0], np.cumsum(not_step)])
    piece_run = (bad[piece_block_ptr[1:] - 1] - bad[piece_block_ptr[:-1]]) == 0

    # 5. tasks
    rows = piece_q1 - piece_q0
    n_tiles = -(-rows // q_tile)
    task_piece = np.repeat(np.arange(P), n_tiles)
    tile_idx = np.arange(len(task_piece)) - np.repeat(np.cumsum(n_tiles) - n_tiles, n_tiles)
    task_r0 = piece_q0[task_piece] + tile_idx * q_tile
    task_rows = np.minimum(q_tile, piece_q1[task_piece] - task_r0)

    # 6. slots and CSR
    piece_slot0 = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(np.int64)
    num_slots = int(rows.sum())
    slot_piece = np.repeat(np.arange(P), rows)
    slot_sorted = piece_q0[slot_piece] + (np.arange(num_slots) - piece_slot0[slot_piece])
    slot_req = perm[slot_sorted]
    req_slots = np.argsort(slot_req, kind="stable").astype(np.int64)
    req_ptr = np.concatenate([[0], np.cumsum(np.bincount(slot_req, minlength=B))]).astype(np.int64)

    naive = int(lens.sum())
    unique = int(node_tokens.sum())
    planned = int(piece_tokens.sum())
    stats = {
        "batch": int(B),
        "tokens_naive": naive,
        "tokens_unique": unique,
        "tokens_planned": planned,
        "ideal_ratio": naive / unique,
        "plan_ratio": naive / planned,
        "nodes": int(N),
        "shared_nodes": int(node_shared.sum()),
        "pieces": int(P),
        "shared_pieces": int(piece_shared.sum()),
        "tasks": int(len(task_piece)),
        "slots": num_slots,
        "depth": int(node_depth.max()) if N else 0,
        "max_path": int(np.diff(req_ptr).max()),
    }
    return Plan(batch=int(B), block_size=int(block_size), kv_chunk=int(kv_chunk), q_tile=int(q_tile),
                min_shared_tokens=int(min_shared_tokens), seq_lens=lens, block_tables=table, perm=perm.astype(np.int64),
                node_q0=node_q0, node_q1=node_q1, node_b0=node_b0, node_b1=node_b1,
                node_tokens=node_tokens, node_parent=node_parent, node_depth=node_depth,
                node_shared=node_shared, piece_q0=piece_q0, piece_q1=piece_q1,
                piece_block_ptr=piece_block_ptr, piece_blocks=piece_blocks,
                piece_tokens=piece_tokens.astype(np.int64), piece_slot0=piece_slot0,
                piece_shared=piece_shared, piece_run=piece_run, task_piece=task_piece,
                task_r0=task_r0, task_rows=task_rows, num_slots=num_slots, slot_req=slot_req,
                req_ptr=req_ptr, req_slots=req_slots, stats=stats)

