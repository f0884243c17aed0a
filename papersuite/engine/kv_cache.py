"""Paged KV blocks: allocator with reference counts, prefix caching by chained hashes, eviction.

A block holds `block_size` tokens' K/V in every layer. Full blocks get a hash chained over the
whole prefix (`h_i = hash(h_{i-1}, tokens of block i)`), so equal hashes mean equal prefixes; on a
hit the stored token ids are compared too (collisions). A block with no references that still
carries a hash is "cached free": reusable by a later hit until the allocator needs it for new
data, and then the `EvictionPolicy` says which one goes (default LRU). Sequences free their blocks
tail first, so the end of a prefix is evicted before its head (vLLM's order).

The block manager works on any object with the `BlockOwner` attributes (the scheduler's
`Sequence`), so it stays testable alone.
"""
from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence, runtime_checkable


@dataclass(eq=False)
class Block:
    """One KV block and the facts eviction policies may rank by."""

    block_id: int
    ref_count: int = 0
    hash: int | None = None
    token_ids: tuple[int, ...] = ()
    last_used: int = 0  # logical clock of the last release or hit
    priority: int | None = None  # priority class of the request that wrote it
    tags: tuple[str, ...] = ()  # span tags overlapping this block's tokens


@runtime_checkable
class EvictionPolicy(Protocol):
    """Chooses which cached free block (ref 0, hashed) is reused for new data.

    The manager calls `insert` when a hashed block's last reference goes, `remove` when a hit takes
    it back, and `evict` when it needs a block and the plain free list is empty.
    """

    name: str

    def insert(self, block: Block) -> None: ...

    def remove(self, block: Block) -> None: ...

    def evict(self) -> Block: ...

    def __len__(self) -> int: ...


class LRUEviction:
    """Least recently released first (an ordered dict: O(1) for every operation)."""

    name = "lru"

    def __init__(self) -> None:
        self._blocks: OrderedDict[int, Block] = OrderedDict()

    def insert(self, block: Block) -> None:
        self._blocks[block.block_id] = block

    def remove(self, block: Block) -> None:
        del self._blocks[block.block_id]

    def evict(self) -> Block:
        return self._blocks.popitem(last=False)[1]

    def __len__(self) -> int:
        return len(self._blocks)


EVICTION_POLICIES: dict[str, Callable[[], EvictionPolicy]] = {"lru": LRUEviction}


def make_eviction_policy(spec: str | EvictionPolicy) -> EvictionPolicy:
    if isinstance(spec, str):
        if spec not in EVICTION_POLICIES:
            raise ValueError(f"unknown KV eviction policy {spec!r}; known: {', '.join(EVICTION_POLICIES)}")
        return EVICTION_POLICIES[spec]()
    return spec


class BlockOwner(Protocol):
    """What the manager reads and writes on a sequence."""

    token_ids: list[int]
    num_computed_tokens: int
    block_table: list[int]
    block_hashes: list[int]  # hashes of the leading full, computed blocks
    priority: int | None
    span_tags: Sequence[tuple[int, int, str]]


def block_hash(prev: int | None, tokens: Sequence[int]) -> int:
    """Chained hash of one full block (Python's tuple hash of ints is stable across runs)."""
    return hash((prev if prev is not None else -1, tuple(tokens)))


class BlockManager:
    """Hands out KV blocks to sequences; shares full blocks by prefix hash.

    Invariants (checked by the hypothesis test): every block is either referenced, plain free or
    cached free, never two at once; a block's ref_count equals the number of block tables holding
    it; `hash_to_block` points only at blocks that carry that hash.
    """

    def __init__(self, num_blocks: int, block_size: int, eviction: str | EvictionPolicy = "lru",
                 enable_prefix_caching: bool = True) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"need num_blocks >= 1 and block_size >= 1, got {num_blocks}, {block_size}")
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        self.free_ids: deque[int] = deque(range(num_blocks))
        self.eviction = make_eviction_policy(eviction)
        self.hash_to_block: dict[int, int] = {}
        self.pending_copies: list[tuple[int, int]] = []  # copy-on-write (src, dst), applied by the runner
        self._clock = 0
        self.hit_tokens = 0  # prefix-cache statistics over the manager's lifetime
        self.queried_tokens = 0

    # -- capacity ---------------------------------------------------------------------------
    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def num_free_blocks(self) -> int:
        return len(self.free_ids) + len(self.eviction)

    def usage(self) -> float:
        return 1.0 - self.num_free_blocks / self.num_blocks

    def blocks_needed(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def _take_free(self) -> Block:
        if self.free_ids:
            block = self.blocks[self.free_ids.popleft()]
        else:
            block = self.eviction.evict()
            if self.hash_to_block.get(block.hash) == block.block_id:
                del self.hash_to_block[block.hash]
            block.hash, block.token_ids, block.tags = None, (), ()
        block.ref_count = 1
        return block

    def _release(self, block: Block) -> None:
        block.ref_count -= 1
        assert block.ref_count >= 0, f"block {block.block_id} released twice"
        if block.ref_count == 0:
            self._clock += 1
            block.last_used = self._clock
            if block.hash is not None and self.hash_to_block.get(block.hash) == block.block_id:
                self.eviction.insert(block)
            else:
                block.hash, block.token_ids, block.tags = None, (), ()
                self.free_ids.append(block.block_id)

    # -- prefix caching ---------------------------------------------------------------------
    def match_prefix(self, token_ids: Sequence[int]) -> tuple[list[Block], list[int]]:
        """The cached blocks that hold a prefix of `token_ids`, and their hashes.

        Stops before the last token: at least one token must run through the model for logits.
        """
        if not self.enable_prefix_caching:
            return [], []
        bs = self.block_size
        hits, hashes, prev = [], [], None
        for i in range((len(token_ids) - 1) // bs):
            tokens = tuple(token_ids[i * bs:(i + 1) * bs])
            h = block_hash(prev, tokens)
            bid = self.hash_to_block.get(h)
            if bid is None or self.blocks[bid].token_ids != tokens:
                break
            hits.append(self.blocks[bid])
            hashes.append(h)
            prev = h
        return hits, hashes

    def allocate(self, seq: BlockOwner) -> int:
        """Admit a sequence: share its cached prefix blocks; returns the number of hit tokens."""
        assert not seq.block_table, "sequence already holds blocks"
        hits, hashes = self.match_prefix(seq.token_ids)
        self._clock += 1
        for block in hits:
            if block.ref_count == 0:
                self.eviction.remove(block)
            block.ref_count += 1
            block.last_used = self._clock
        seq.block_table = [b.block_id for b in hits]
        seq.block_hashes = hashes
        seq.num_computed_tokens = len(hits) * self.block_size
        self.hit_tokens += seq.num_computed_tokens
        self.queried_tokens += len(seq.token_ids)
        return seq.num_computed_tokens

    def can_append(self, seq: BlockOwner, num_new_tokens: int) -> bool:
        need = self.blocks_needed(seq.num_computed_tokens + num_new_tokens) - len(seq.block_table)
        cow = self._needs_copy(seq)
        return max(need, 0) + cow <= self.num_free_blocks

    def _needs_copy(self, seq: BlockOwner) -> int:
        if seq.num_computed_tokens % self.block_size == 0 or not seq.block_table:
            return 0
        last = self.blocks[seq.block_table[(seq.num_computed_tokens - 1) // self.block_size]]
        return int(last.ref_count > 1)

    def append_slots(self, seq: BlockOwner, num_new_tokens: int) -> bool:
        """Give `seq` room for its next `num_new_tokens` tokens; False (nothing changed) if short."""
        if not self.can_append(seq, num_new_tokens):
            return False
        if self._needs_copy(seq):  # a forked, shared partial block: copy before the first write
            i = (seq.num_computed_tokens - 1) // self.block_size
            old = self.blocks[seq.block_table[i]]
            new = self._take_free()
            self.pending_copies.append((old.block_id, new.block_id))
            seq.block_table[i] = new.block_id
            self._release(old)
        need = self.blocks_needed(seq.num_computed_tokens + num_new_tokens) - len(seq.block_table)
        for _ in range(need):
            seq.block_table.append(self._take_free().block_id)
        return True

    def commit(self, seq: BlockOwner) -> None:
        """Hash and register the blocks that became full and computed (prefill chunks, decode)."""
        if not self.enable_prefix_caching:
            return
        bs = self.block_size
        while (len(seq.block_hashes) + 1) * bs <= seq.num_computed_tokens:
            i = len(seq.block_hashes)
            tokens = tuple(seq.token_ids[i * bs:(i + 1) * bs])
            h = block_hash(seq.block_hashes[-1] if seq.block_hashes else None, tokens)
            seq.block_hashes.append(h)
            block = self.blocks[seq.block_table[i]]
            if block.hash is None and h not in self.hash_to_block:
                block.hash, block.token_ids = h, tokens
                block.priority = seq.priority
                block.tags = tuple(sorted({t for (s, e, t) in seq.span_tags if s < (i + 1) * bs and e > i * bs}))
                self.hash_to_block[h] = block.block_id

    def free(self, seq: BlockOwner) -> None:
        """Drop the sequence's references, tail first (the end of a prefix is evicted first)."""
        for bid in reversed(seq.block_table):
            self._release(self.blocks[bid])
        seq.block_table = []
        seq.block_hashes = []

    def truncate(self, seq: BlockOwner, num_tokens: int) -> None:
        """KV rollback: keep only the first `num_tokens` computed tokens of `seq`.

        Blocks wholly past the cut are released (tail first); a kept block that the cut makes
        partial loses its prefix hash if this sequence owns it alone, so no later hit can read
        the rejected tokens. `token_ids` is the caller's to trim.
        """
        if num_tokens < 0 or num_tokens > seq.num_computed_tokens:
            raise ValueError(f"cannot truncate to {num_tokens} of {seq.num_computed_tokens} computed tokens")
        keep = self.blocks_needed(num_tokens)
        for bid in reversed(seq.block_table[keep:]):
            self._release(self.blocks[bid])
        del seq.block_table[keep:]
        full = num_tokens // self.block_size
        for i in range(full, min(len(seq.block_hashes), keep)):
            block = self.blocks[seq.block_table[i]]
            if block.ref_count == 1 and block.hash is not None:
                if self.hash_to_block.get(block.hash) == block.block_id:
                    del self.hash_to_block[block.hash]
                block.hash, block.token_ids, block.tags = None, (), ()
        del seq.block_hashes[full:]
        seq.num_computed_tokens = num_tokens

    def fork(self, parent: BlockOwner, child: BlockOwner) -> None:
        """Let `child` share all of `parent`'s blocks (n > 1 samples); partial blocks copy on write."""
        assert not child.block_table, "child already holds blocks"
        for bid in parent.block_table:
            self.blocks[bid].ref_count += 1
        child.block_table = list(parent.block_table)
        child.block_hashes = list(parent.block_hashes)
        child.num_computed_tokens = parent.num_computed_tokens

    def reset_prefix_cache(self) -> None:
        """Forget every cached free block (keeps blocks in use)."""
        while len(self.eviction):
            block = self.eviction.evict()
            if self.hash_to_block.get(block.hash) == block.block_id:
                del self.hash_to_block[block.hash]
            block.hash, block.token_ids, block.tags = None, (), ()
            self.free_ids.append(block.block_id)
