"""Block manager invariants under random allocate / append / fork / free (hypothesis), prefix hits."""
from __future__ import annotations

from dataclasses import dataclass, field

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from papersuite.engine.kv_cache import EVICTION_POLICIES, BlockManager, EvictionPolicy, LRUEviction

BS = 4


@dataclass(eq=False)
class Seq:
    token_ids: list[int]
    num_computed_tokens: int = 0
    block_table: list[int] = field(default_factory=list)
    block_hashes: list[int] = field(default_factory=list)
    priority: int | None = None
    span_tags: tuple = ()


class AllocatorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.bm = BlockManager(num_blocks=12, block_size=BS)
        self.live: list[Seq] = []

    @rule(prefix=st.sampled_from([(1, 2, 3, 4, 5, 6, 7, 8), (1, 2, 3, 4, 9, 9, 9, 9), (5, 5, 5, 5)]),
          tail=st.lists(st.integers(0, 3), max_size=6))
    def allocate(self, prefix, tail):
        seq = Seq(list(prefix) + tail)
        cached_before = {b.block_id for b in self.bm.blocks if b.hash is not None}
        hits = self.bm.allocate(seq)
        assert hits % BS == 0 and hits < len(seq.token_ids)
        assert all(bid in cached_before for bid in seq.block_table)  # hits are reused cached blocks
        if self.bm.append_slots(seq, len(seq.token_ids) - seq.num_computed_tokens):
            seq.num_computed_tokens = len(seq.token_ids)
            self.bm.commit(seq)
            self.live.append(seq)
        else:
            self.bm.free(seq)

    @precondition(lambda self: self.live)
    @rule(i=st.integers(0, 100), tok=st.integers(0, 3))
    def append(self, i, tok):
        seq = self.live[i % len(self.live)]
        seq.token_ids.append(tok)
        if self.bm.append_slots(seq, 1):
            seq.num_computed_tokens += 1
            self.bm.commit(seq)
        else:
            seq.token_ids.pop()

    @precondition(lambda self: self.live)
    @rule(i=st.integers(0, 100))
    def fork(self, i):
        parent = self.live[i % len(self.live)]
        child = Seq(list(parent.token_ids))
        self.bm.fork(parent, child)
        self.live.append(child)

    @precondition(lambda self: self.live)
    @rule(i=st.integers(0, 100))
    def free(self, i):
        self.bm.free(self.live.pop(i % len(self.live)))

    @invariant()
    def consistent(self):
        bm = self.bm
        holders = {}
        for s in self.live:
            assert len(s.block_table) == bm.blocks_needed(s.num_computed_tokens)
            for bid in s.block_table:
                holders[bid] = holders.get(bid, 0) + 1
        free_ids = set(bm.free_ids)
        cached = {bid for bid in bm.eviction._blocks}
        assert not free_ids & cached
        for b in bm.blocks:
            assert b.ref_count == holders.get(b.block_id, 0)  # counts equal the tables holding it
            assert b.ref_count >= 0
            in_free = b.block_id in free_ids or b.block_id in cached
            assert in_free == (b.ref_count == 0)  # no leak, nothing both used and free
            if b.block_id in cached:
                assert b.hash is not None and bm.hash_to_block[b.hash] == b.block_id
        for h, bid in bm.hash_to_block.items():
            assert bm.blocks[bid].hash == h
        assert bm.num_free_blocks == len(free_ids) + len(cached) >= 0
        # copies pending for copy-on-write always go into blocks someone holds
        for _, dst in bm.pending_copies:
            assert bm.blocks[dst].ref_count >= 1 or dst in free_ids or dst in cached
        bm.pending_copies.clear()


TestAllocator = AllocatorMachine.TestCase
TestAllocator.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


def test_prefix_hit_reuses_cached_free_block_and_counts_tokens():
    bm = BlockManager(num_blocks=8, block_size=BS)
    a = Seq(list(range(10)))
    bm.allocate(a)
    bm.append_slots(a, 10)
    a.num_computed_tokens = 10
    bm.commit(a)
    first_two = a.block_table[:2]
    bm.free(a)
    assert bm.num_free_blocks == 8  # freed, but the two full blocks stay cached
    b = Seq(list(range(9)) + [99, 98])
    assert bm.allocate(b) == 8
    assert b.block_table == first_two
    assert all(bm.blocks[i].ref_count == 1 for i in first_two)
    c = Seq(list(range(8)))  # a prompt that is exactly two blocks: the last token is recomputed
    assert bm.allocate(c) == 4


def test_collision_guard_and_lru_order():
    bm = BlockManager(num_blocks=3, block_size=2)
    s = Seq([1, 2, 3, 4, 5])
    bm.allocate(s)
    bm.append_slots(s, 5)
    s.num_computed_tokens = 5
    bm.commit(s)
    h0 = s.block_hashes[0]
    bm.blocks[s.block_table[0]].token_ids = (7, 7)  # simulate a colliding hash: tokens differ
    hits, _ = bm.match_prefix([1, 2, 3, 4, 5])
    assert hits == []
    bm.blocks[s.block_table[0]].token_ids = (1, 2)
    tail_block = s.block_table[1]
    bm.free(s)  # freed tail first: the tail block is evicted before the head
    t = Seq([9, 9, 9])
    bm.append_slots(t, 3)  # two blocks: the plain free one, then LRU evicts the prefix's tail
    assert tail_block in t.block_table and bm.hash_to_block.get(h0) is not None


def test_eviction_registry_and_protocol():
    assert isinstance(LRUEviction(), EvictionPolicy)
    assert "lru" in EVICTION_POLICIES
