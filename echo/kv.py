"""Echo's KV-cache side: prefix reference counts, the prefix-aware eviction policy, the online reserve.

- `PrefixIndex`: for each chained block hash, how many queued or running offline requests have
  that block in their prompt (the "prefix reference count"). The scheduling policy keeps it in
  sync each step; the eviction policy reads it.
- `EchoEviction` (an engine `EvictionPolicy`): among cached free blocks, evicts first the ones
  no one will reuse (offline blocks no queued job shares, online blocks never hit again), then
  offline blocks by fewest queued sharers and least recent use, and online prefixes that were
  re-hit (system prompts) last. Blocks of running requests are never in the pool. A preempted
  offline request counts as a sharer of its own blocks, so its private tail (1 sharer) goes
  before a prefix other jobs share, and it resumes from the shared prefix.
- `ReserveEstimator`: free blocks kept for online bursts, the P99 over sliding windows (length =
  TTFT SLO) of KV blocks demanded by online arrivals, recomputed every few seconds.
"""
from __future__ import annotations

from collections import Counter, deque

import numpy as np

from papersuite.engine.kv_cache import Block, block_hash

from echo.jobs import is_offline


def prompt_block_hashes(token_ids, block_size: int) -> list[int]:
    """Chained hashes of the full blocks of a prompt, equal to the block manager's."""
    out, prev = [], None
    for i in range(len(token_ids) // block_size):
        prev = block_hash(prev, tuple(token_ids[i * block_size:(i + 1) * block_size]))
        out.append(prev)
    return out


class PrefixIndex:
    """Counts queued/running offline requests per prompt block hash (kept in sync per step)."""

    def __init__(self, block_size: int = 16) -> None:
        self.block_size = block_size
        self.counts: Counter[int] = Counter()
        self._members: dict[int, list[int]] = {}  # seq_id -> its prompt block hashes
        self.version = 0  # bumped on every change, so caches of rankings know to refresh

    def __contains__(self, seq) -> bool:
        return seq.seq_id in self._members

    def add(self, seq) -> list[int]:
        hashes = prompt_block_hashes(seq.prompt_token_ids, self.block_size)
        self._members[seq.seq_id] = hashes
        self.counts.update(hashes)
        self.version += 1
        return hashes

    def discard(self, seq_id: int) -> None:
        hashes = self._members.pop(seq_id, None)
        if hashes:
            self.counts.subtract(hashes)
            for h in hashes:
                if self.counts[h] <= 0:
                    del self.counts[h]
            self.version += 1

    def sync(self, live_offline) -> list[int]:
        """Make the index hold exactly `live_offline`; returns the seq_ids that left."""
        live = {s.seq_id: s for s in live_offline}
        gone = [sid for sid in self._members if sid not in live]
        for sid in gone:
            self.discard(sid)
        for sid, s in live.items():
            if sid not in self._members:
                self.add(s)
        return gone

    def sharers(self, h: int | None) -> int:
        return 0 if h is None else self.counts.get(h, 0)


class EchoEviction:
    """Evict cached free blocks by (tier, queued sharers, last use); see the module docstring.

    The ranking is cached and rebuilt only when the pool or the index changed (a sort of at most
    `num_blocks` entries), so eviction stays cheap inside the step loop.
    """

    name = "echo"

    def __init__(self, index: PrefixIndex | None = None) -> None:
        self.index = index if index is not None else PrefixIndex()
        self._blocks: dict[int, Block] = {}
        self._hits: Counter[int] = Counter()  # times a cached block was taken back by a hit
        self._order: list[Block] = []
        self._stamp: tuple | None = None

    def key(self, block: Block) -> tuple:
        if is_offline(block):
            s = self.index.sharers(block.hash)
            return (0, 0, block.last_used) if s == 0 else (1, s, block.last_used)
        if self._hits[block.block_id] == 0:
            return (0, 0, block.last_used)  # an online block nobody reused: no prefix worth keeping
        return (2, 0, block.last_used)

    def insert(self, block: Block) -> None:
        self._blocks[block.block_id] = block
        self._stamp = None

    def remove(self, block: Block) -> None:
        del self._blocks[block.block_id]
        self._hits[block.block_id] += 1
        self._stamp = None

    def evict(self) -> Block:
        stamp = (len(self._blocks), self.index.version)
        if self._stamp != stamp:
            self._order = sorted(self._blocks.values(), key=self.key, reverse=True)
            self._stamp = stamp
        while True:
            block = self._order.pop()
            if self._blocks.get(block.block_id) is block:
                break
        del self._blocks[block.block_id]
        self._hits.pop(block.block_id, None)
        self._stamp = (len(self._blocks), self.index.version)
        return block

    def ranking(self) -> list[Block]:
        """Cached free blocks, first evicted first (for tests and /metrics)."""
        return sorted(self._blocks.values(), key=self.key)

    def __len__(self) -> int:
        return len(self._blocks)


class ReserveEstimator:
    """Free KV blocks to keep for online bursts, from the recent online arrivals.

    `observe(t, blocks)` records an online arrival at time t needing `blocks`; `reserve(now)`
    returns the `quantile` over windows of `window_s` (the TTFT SLO) of the blocks demanded in that
    window, over the last `history_s`, recomputed at most every `every_s`; at least `floor`, at
    most `cap` blocks. A fixed reserve: `fixed=N`.
    """

    def __init__(self, window_s: float = 2.0, quantile: float = 99.0, every_s: float = 2.0,
                 history_s: float = 60.0, floor: int = 0, cap: int | None = None, fixed: int | None = None) -> None:
        if window_s <= 0 or every_s <= 0 or history_s <= 0:
            raise ValueError("window_s, every_s and history_s must be > 0")
        self.window_s, self.quantile, self.every_s, self.history_s = window_s, quantile, every_s, history_s
        self.floor, self.cap, self.fixed = floor, cap, fixed
        self._events: deque[tuple[float, int]] = deque()
        self._last = -float("inf")
        self.reserve_ = fixed if fixed is not None else floor
        self.history_: list[tuple[float, int]] = []  # (time, reserve) at each recomputation

    def observe(self, t: float, blocks: int) -> None:
        self._events.append((t, blocks))

    def reserve(self, now: float) -> int:
        if self.fixed is not None:
            return self.fixed
        if now - self._last < self.every_s:
            return self.reserve_
        self._last = now
        while self._events and self._events[0][0] < now - self.history_s:
            self._events.popleft()
        if not self._events:
            value = self.floor
        else:
            t = np.array([e[0] for e in self._events])
            b = np.cumsum([0] + [e[1] for e in self._events])
            ends = np.searchsorted(t, t + self.window_s, side="left")
            sums = b[ends] - b[np.arange(len(t))]
            value = int(np.ceil(np.percentile(sums, self.quantile)))
        value = max(self.floor, value)
        if self.cap is not None:
            value = min(value, self.cap)
        self.reserve_ = value
        self.history_.append((now, value))
        return value
