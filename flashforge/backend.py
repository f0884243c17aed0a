"""`FlashForgeBackend`: the engine's `AttentionBackend` with shared-prefix decode.

Once per step (on the step's first decode call, where the cache gives the block size) it plans
the decode rows' block tables; every layer reuses that plan. Decode rows run
`shared_prefix_decode` (`impl="auto"`: the cost model shares or falls back to the engine's
`paged_decode`); prefill and extend rows go to the default paged backend unchanged. Sharing comes
from the engine's prefix cache (equal physical block ids), so the engine needs
`enable_prefix_caching=True` (its default).
"""
from __future__ import annotations

from collections import Counter

from flashforge.attention import shared_prefix_decode
from flashforge.plan import Plan, build_plan


class FlashForgeBackend:
    """Shared-prefix decode attention; hyperparameters as `build_plan`'s, `impl` as
    `shared_prefix_decode`'s. Learned per step: `plan_`; counters `plans_built_`, `shared_plans_`,
    `paths_` (decode calls per path)."""

    name = "flashforge"

    def __init__(self, impl: str = "auto", *, kv_chunk: int = 1024, q_tile: int = 16,
                 min_shared_tokens: int = 256, chunk_blocks: int = 64) -> None:
        from papersuite.engine.attention import PagedAttentionBackend

        self.impl = impl
        self.kv_chunk = kv_chunk
        self.q_tile = q_tile
        self.min_shared_tokens = min_shared_tokens
        self.chunk_blocks = chunk_blocks
        self._paged = PagedAttentionBackend(chunk_blocks)
        self._meta = None
        self.plan_: Plan | None = None
        self.plans_built_ = 0
        self.shared_plans_ = 0          # plans that found something worth sharing
        self.paths_: Counter = Counter()

    def prepare(self, meta) -> None:
        """A new step: forget the last plan; decode rows are planned on their first layer."""
        self._meta = meta
        self.plan_ = None

    def _plan(self, block_tables, seq_lens, block_size: int) -> Plan:
        if self.plan_ is None:
            lens = (self._meta.seq_lens_list[:len(seq_lens)] if self._meta is not None
                    and len(self._meta.seq_lens_list) >= len(seq_lens) else seq_lens)
            self.plan_ = build_plan(block_tables, lens, block_size, kv_chunk=self.kv_chunk,
                                    q_tile=self.q_tile, min_shared_tokens=self.min_shared_tokens)
            self.plans_built_ += 1
            self.shared_plans_ += int(self.plan_.piece_shared.any())
        return self.plan_

    def decode(self, q, k_cache, v_cache, block_tables, seq_lens, scale):
        plan = self._plan(block_tables, seq_lens, k_cache.shape[1])
        if self.impl == "auto":
            from flashforge.attention import auto_path

            self.paths_[auto_path(q, k_cache, plan)] += 1
        else:
            self.paths_[self.impl] += 1
        return shared_prefix_decode(q, k_cache, v_cache, plan, scale=scale, impl=self.impl)

    def prefill(self, q, k_cache, v_cache, meta, scale):
        return self._paged.prefill(q, k_cache, v_cache, meta, scale)


def forced_shared() -> FlashForgeBackend:
    """Always the shared path (no cost model, every shared block counts): for exactness checks."""
    return FlashForgeBackend(impl="torch", min_shared_tokens=0)
