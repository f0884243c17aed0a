"""Planner: hand-built trees give the expected nodes; random forests keep every invariant."""
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flashforge.plan import build_plan
from flashforge.workloads import kary, two_level
from papersuite.errors import UserError


def _nodes(plan):
    """{(sorted request set, block range)} with shared flag, independent of node numbering."""
    out = {}
    for k in range(len(plan.node_q0)):
        reqs = tuple(sorted(int(r) for r in plan.perm[plan.node_q0[k]:plan.node_q1[k]]))
        out[(reqs, int(plan.node_b0[k]), int(plan.node_b1[k]))] = (bool(plan.node_shared[k]),
                                                                    int(plan.node_depth[k]))
    return out


def test_hand_built_tree_nodes():
    tables = [[0, 1, 2, 3, 10], [0, 1, 5, 7], [20], [0, 1, 2, 3, 11], [0, 1, 5, 6]]
    lens = [80, 64, 3, 80, 60]
    plan = build_plan(tables, lens, 16, min_shared_tokens=0, kv_chunk=32)
    assert _nodes(plan) == {
        ((0, 1, 3, 4), 0, 2): (True, 1),       # [0, 1] read by four requests
        ((0, 3), 2, 4): (True, 2),             # [2, 3]
        ((1, 4), 2, 3): (True, 2),             # [5]
        ((0,), 4, 5): (False, 3), ((3,), 4, 5): (False, 3),
        ((1,), 3, 4): (False, 3), ((4,), 3, 4): (False, 3),
        ((2,), 0, 1): (False, 1),
    }
    assert plan.stats["depth"] == 3
    assert plan.stats["tokens_unique"] == 32 + 32 + 16 + 16 + 16 + 16 + 12 + 3


def test_min_shared_tokens_demotes_small_nodes():
    tables = [[0, 1, 2, 3, 10], [0, 1, 5, 7], [0, 1, 2, 3, 11], [0, 1, 5, 6]]
    plan = build_plan(tables, [80, 64, 80, 60], 16, min_shared_tokens=40)
    shared = {k: v for k, v in _nodes(plan).items() if v[0]}
    # [0,1]: 3 * 32 = 96 saved; [2,3]: 1 * 32 < 40; [5]: 1 * 16 < 40
    assert list(shared) == [((0, 1, 2, 3), 0, 2)]
    assert plan.stats["tokens_planned"] == 32 + 2 * 48 + 2 * 32 - 4


def test_partial_block_shared_only_with_equal_valid_length():
    # block 3 is request 0's partial tail (5 tokens) but request 1 reads it full: not shareable
    plan = build_plan([[0, 1, 2, 3], [0, 1, 2, 3, 4]], [53, 70], 16, min_shared_tokens=0)
    nodes = _nodes(plan)
    assert nodes[((0, 1), 0, 3)] == (True, 1)
    assert ((0,), 3, 4) in nodes and ((1,), 3, 5) in nodes
    same = build_plan([[0, 1, 2, 3], [0, 1, 2, 3]], [53, 53], 16, min_shared_tokens=0)
    assert same.stats["shared_nodes"] == 1 and same.stats["tokens_planned"] == 53


def test_request_that_is_a_prefix_of_another():
    plan = build_plan([[0, 1, 2, 3], [0, 1]], [64, 32], 16, min_shared_tokens=0)
    assert _nodes(plan)[((0, 1), 0, 2)] == (True, 1)
    assert plan.max_path == 2 and np.diff(plan.req_ptr).tolist() == [2, 1]


def test_two_level_and_binary_ratios_match_formula():
    p = build_plan(*_wl(two_level(16, 1024, 128)))
    assert p.stats["ideal_ratio"] == pytest.approx(16 * (1024 + 128) / (1024 + 16 * 128))
    b = build_plan(*_wl(kary(2, 5)))
    assert b.stats["depth"] == 5 and b.stats["shared_nodes"] == 15
    assert b.stats["ideal_ratio"] == pytest.approx(16 * 5 / 31)


def test_tasks_tile_queries_and_chunk_kv():
    p = build_plan(*_wl(two_level(40, 2048 + 16, 20)), kv_chunk=1024, q_tile=16)
    shared = np.flatnonzero(p.piece_shared)
    assert sorted(p.piece_tokens[shared].tolist()) == [16, 1024, 1024]
    assert (p.task_rows <= 16).all()
    assert sorted(p.task_rows[np.isin(p.task_piece, shared)].tolist()) == [8, 8, 8, 16, 16, 16, 16, 16, 16]
    assert p.piece_run[shared].all()


def _wl(w):
    return w.block_tables, w.seq_lens, w.block_size


@pytest.mark.parametrize("tables,lens,msg", [
    ([[0, -3]], [20], "negative block id"),
    ([[0, -1]], [20], "beyond its blocks"),
    ([[0]], [17], "needs 2 blocks"),
    ([[0]], [0], "seq_len 0"),
    ([[0], [1]], [3], "2 block tables but 1"),
])
def test_bad_inputs_are_user_errors(tables, lens, msg):
    with pytest.raises(UserError, match=msg):
        build_plan(tables, lens, 16)


# -- property tests on random forests ---------------------------------------------------------

@st.composite
def forests(draw):
    """Random block tables: each request copies a prefix of an earlier one (possibly ending in that
    request's partial tail), adds fresh blocks; ids optionally scattered, requests shuffled."""
    bs = draw(st.sampled_from([1, 2, 4, 16]))
    B = draw(st.integers(1, 12))
    tables, lens, next_id = [], [], 0
    for i in range(B):
        base: list[int] = []
        base_len = 0
        if i and draw(st.booleans()):
            j = draw(st.integers(0, i - 1))
            k = draw(st.integers(0, len(tables[j])))
            base = tables[j][:k]
            base_len = min(lens[j], k * bs)
        extra = draw(st.integers(0 if base else 1, 6))
        fresh = list(range(next_id, next_id + extra))
        next_id += extra
        table = base + fresh
        if not table:
            table, next_id = [next_id], next_id + 1
        lo = (len(table) - 1) * bs + 1
        if base and not fresh:
            lo = max(lo, base_len)            # keep the copied tail's valid length or more
        n = draw(st.integers(lo, len(table) * bs))
        tables.append(table)
        lens.append(n)
    if draw(st.booleans()):
        ids = np.random.default_rng(draw(st.integers(0, 99))).permutation(3 * next_id + 3)
        tables = [[int(ids[b]) for b in t] for t in tables]
    order = draw(st.permutations(list(range(B))))
    tables = [tables[o] for o in order]
    lens = [lens[o] for o in order]
    kw = dict(kv_chunk=draw(st.sampled_from([1, 5, 16, 64, 1024])), q_tile=draw(st.integers(1, 5)),
              min_shared_tokens=draw(st.sampled_from([0, 1, 8, 64, 256])))
    return tables, lens, bs, kw


def _valid(n, j, bs):
    return min(bs, n - j * bs)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(forests())
def test_plan_invariants(case):
    tables, lens, bs, kw = case
    plan = build_plan(tables, lens, bs, **kw)
    B = len(tables)
    # CSR consistency
    assert plan.req_ptr[0] == 0 and plan.req_ptr[-1] == plan.num_slots
    assert (np.diff(plan.req_ptr) >= 1).all()
    assert sorted(plan.req_slots.tolist()) == list(range(plan.num_slots))
    for b in range(B):
        assert (plan.slot_req[plan.req_slots[plan.req_ptr[b]:plan.req_ptr[b + 1]]] == b).all()
    # each (request, token) covered exactly once: multiset of (block, valid length) per request
    slot_piece = np.repeat(np.arange(len(plan.piece_q0)), plan.piece_q1 - plan.piece_q0)
    for b in range(B):
        want = Counter((tables[b][j], _valid(lens[b], j, bs)) for j in range(-(-lens[b] // bs)))
        got: Counter = Counter()
        for s in plan.req_slots[plan.req_ptr[b]:plan.req_ptr[b + 1]]:
            p = slot_piece[s]
            blocks = plan.piece_blocks_of(p).tolist()
            tok = int(plan.piece_tokens[p])
            for j, blk in enumerate(blocks):
                got[(blk, min(bs, tok - j * bs))] += 1
        assert got == want
    # pieces and tasks
    assert (plan.piece_tokens <= max(kw["kv_chunk"], bs)).all()
    for p in range(len(plan.piece_q0)):
        rows = np.flatnonzero(plan.task_piece == p)
        covered = sorted(r for t in rows for r in range(plan.task_r0[t], plan.task_r0[t] + plan.task_rows[t]))
        assert covered == list(range(plan.piece_q0[p], plan.piece_q1[p]))
    assert (plan.task_rows <= kw["q_tile"]).all()
    # shared nodes save enough and their sharers agree on blocks and valid lengths
    for k in np.flatnonzero(plan.node_shared):
        n = plan.node_q1[k] - plan.node_q0[k]
        assert n >= 2 and (n - 1) * plan.node_tokens[k] >= kw["min_shared_tokens"]
    # byte ratio per formula: unique tokens = distinct root-to-position prefixes
    prefixes = {}
    for b in range(B):
        key = ()
        for j in range(-(-lens[b] // bs)):
            key = key + ((tables[b][j], _valid(lens[b], j, bs)),)
            prefixes[key] = key[-1][1]
    assert plan.stats["tokens_unique"] == sum(prefixes.values())
    assert plan.stats["ideal_ratio"] == pytest.approx(sum(lens) / sum(prefixes.values()))
    assert plan.stats["tokens_planned"] == int(plan.piece_tokens @ (plan.piece_q1 - plan.piece_q0 > 0))
