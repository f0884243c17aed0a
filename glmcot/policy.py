"""GLM's priority KV eviction (paper section 3.3.2) as an engine `EvictionPolicy`, named `graphcot`.

Requests carry span tags over their prompt tokens (`glmcot.spans`):
- `P0`: agent prompt prefixes (kept resident as long as anything else can go);
- `P1:<qid>`: a live question's notebook (and its question text);
- `P2`: a finished question's notebook (`finish(qid)` demotes its P1 blocks);
- `P3`: transient text (the C-Agent's question, the missing-information statement, tails).
Unreferenced cached blocks are evicted from P3 up to P0, least recently released first within
a class. A block that overlaps several spans takes the most protected class; an untagged block
counts as transient. Eviction only chooses which cached block is recomputed later, so outputs
never change (tested against LRU).

Import-light on purpose (no torch): `cli.py` registers it at start-up so `serve api --kv-policy
graphcot` finds it.
"""
from __future__ import annotations

from collections import OrderedDict


def block_class(tags, finished: set[str]) -> int:
    best = 3
    for t in tags:
        if t == "P0":
            return 0
        if t.startswith("P1:"):
            best = min(best, 2 if t[3:] in finished else 1)
        elif t in ("P1", "P2", "P3"):
            best = min(best, int(t[1]))
    return best


class GraphCoTEvictionPolicy:
    """Four LRU lists; evict from the least protected non-empty one."""

    name = "graphcot"
    live: "GraphCoTEvictionPolicy | None" = None  # the most recently created instance (for finish())

    def __init__(self) -> None:
        self._classes: list[OrderedDict] = [OrderedDict() for _ in range(4)]
        self._where: dict[int, int] = {}
        self._finished: set[str] = set()
        self.evictions = [0, 0, 0, 0]
        GraphCoTEvictionPolicy.live = self

    def insert(self, block) -> None:
        c = block_class(block.tags, self._finished)
        self._classes[c][block.block_id] = block
        self._where[block.block_id] = c

    def remove(self, block) -> None:
        c = self._where.pop(block.block_id)
        del self._classes[c][block.block_id]

    def evict(self):
        for c in (3, 2, 1, 0):
            if self._classes[c]:
                _, block = self._classes[c].popitem(last=False)
                del self._where[block.block_id]
                self.evictions[c] += 1
                return block
        raise IndexError("evict from an empty policy")

    def finish(self, qid: str) -> None:
        """A question ended: its notebook blocks move from P1 to P2 (kept in release order)."""
        self._finished.add(str(qid))
        tag = f"P1:{qid}"
        moved = [(bid, b) for bid, b in self._classes[1].items() if tag in b.tags]
        for bid, b in moved:
            del self._classes[1][bid]
            self._classes[2][bid] = b
            self._where[bid] = 2

    def __len__(self) -> int:
        return len(self._where)


def register() -> None:
    """Add `graphcot` to the engine's eviction registry (idempotent, torch-free)."""
    from papersuite.engine.kv_cache import EVICTION_POLICIES

    EVICTION_POLICIES.setdefault("graphcot", GraphCoTEvictionPolicy)
