"""`prefix-group`: a scheduling policy that keeps sharers of a prompt prefix together.

FlashForge gains only when requests that share KV blocks decode in the same batch. FCFS admits in
arrival order, so with interleaved arrivals (document A, chat, document B, document A, ...) a
`max_num_seqs`-sized batch mixes groups. This policy orders the waiting queue by group (requests
whose first `prefix_tokens` prompt tokens are equal), groups by their earliest arrival, FCFS inside
a group, so sharers are admitted together; running requests are kept in the same order, and the
victim under memory pressure is the newest request of the latest group (as FCFS would pick).
"""
from __future__ import annotations


class PrefixGroupPolicy:
    """Group-then-FCFS ordering on the first `prefix_tokens` prompt tokens."""

    name = "prefix-group"

    def __init__(self, prefix_tokens: int = 64) -> None:
        self.prefix_tokens = prefix_tokens

    def _keys(self, seqs):
        first: dict[tuple, tuple] = {}
        for s in seqs:
            g = tuple(s.prompt_token_ids[:self.prefix_tokens])
            first[g] = min(first.get(g, (s.arrival_time, s.seq_id)), (s.arrival_time, s.seq_id))
        return {s.seq_id: (first[tuple(s.prompt_token_ids[:self.prefix_tokens])], s.arrival_time, s.seq_id)
                for s in seqs}

    def order_waiting(self, waiting):
        keys = self._keys(waiting)
        return sorted(waiting, key=lambda s: keys[s.seq_id])

    def order_running(self, running):
        keys = self._keys(running)
        return sorted(running, key=lambda s: keys[s.seq_id])

    def select_victim(self, running):
        keys = self._keys(running)
        return max(running, key=lambda s: keys[s.seq_id])
