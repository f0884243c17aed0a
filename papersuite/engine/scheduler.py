"""Continuous batching: sequences, the token-budget scheduler, and pluggable scheduling policies.

vLLM v1's shape: no separate prefill and decode phases. Each sequence knows how many of its
tokens are computed; each step spends a token budget (`max_num_batched_tokens`) on running
sequences first (one token per decode, the next chunk of a partial prefill), then on waiting
requests in the policy's order (Sarathi-style chunked prefill). When a running sequence needs a
block and none is left, the `SchedulingPolicy` picks a victim that is preempted by recomputation:
its blocks are freed, it waits again with its generated tokens kept and later re-prefills prompt
plus output, usually from the prefix cache. Rows are returned decodes first.
"""
from __future__ import annotations

import enum
import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence as Seq, runtime_checkable

from papersuite.engine.kv_cache import BlockManager


class SequenceStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


_ids = itertools.count()


@dataclass(eq=False)
class Sequence:
    """One request's tokens and its place in the engine.

    `priority`: a class, smaller is more important (None counts as 0). `span_tags`: token ranges
    `(start, end, tag)` of the prompt (e.g. "agent-prefix", "notebook", "transient") that KV and
    scheduling policies may read. `annotations` is free space for policies (ARES's predicted
    remaining length, Echo's online/offline flag).
    """

    prompt_token_ids: list[int]
    params: Any  # papersuite.llm.SamplingParams
    priority: int | None = None
    span_tags: Seq[tuple[int, int, str]] = ()
    request_id: str = ""
    arrival_time: float = field(default_factory=time.monotonic)
    seq_id: int = field(default_factory=lambda: next(_ids))
    token_ids: list[int] = field(default_factory=list)
    num_computed_tokens: int = 0
    block_table: list[int] = field(default_factory=list)
    block_hashes: list[int] = field(default_factory=list)
    status: SequenceStatus = SequenceStatus.WAITING
    num_cached_tokens: int = 0  # prefix-cache hit tokens at first admission
    num_preemptions: int = 0
    first_token_time: float | None = None
    finish_time: float | None = None
    finish_reason: str | None = None
    text: str = ""  # detokenized output so far, cut at a stop string
    logprobs: list[dict] = field(default_factory=list)
    generator: Any = None  # torch.Generator of a sampled request (per-request seed)
    annotations: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.prompt_token_ids = list(self.prompt_token_ids)
        if not self.token_ids:
            self.token_ids = list(self.prompt_token_ids)
        if not self.request_id:
            self.request_id = f"req-{self.seq_id}"

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - len(self.prompt_token_ids)

    @property
    def output_token_ids(self) -> list[int]:
        return self.token_ids[len(self.prompt_token_ids):]

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED

    def __repr__(self) -> str:
        return (f"Sequence({self.request_id}, {self.status.value}, tokens={self.num_tokens}, "
                f"computed={self.num_computed_tokens})")


@runtime_checkable
class SchedulingPolicy(Protocol):
    """Who is admitted first, who is served first, and who is preempted when blocks run out."""

    name: str

    def order_waiting(self, waiting: list[Sequence]) -> list[Sequence]: ...

    def order_running(self, running: list[Sequence]) -> list[Sequence]: ...

    def select_victim(self, running: list[Sequence]) -> Sequence: ...

    # Optional, looked up with getattr (policies without them behave as before):
    # `begin_step(scheduler) -> list[Sequence]`: called first in every `schedule()`; may plan the
    #   step and preempt running sequences itself (`scheduler.preempt(seq)`), returning those.
    # `cap_tokens(seq, n) -> int`: the most of the `n` tokens the scheduler offers `seq` this step
    #   that it may compute (0 skips it this step); lets a plan bound chunk sizes (Echo).


class FCFSPolicy:
    """First come, first served; the newest arrival is preempted first (vLLM's default)."""

    name = "fcfs"

    def order_waiting(self, waiting):
        return sorted(waiting, key=lambda s: (s.arrival_time, s.seq_id))

    def order_running(self, running):
        return sorted(running, key=lambda s: (s.arrival_time, s.seq_id))

    def select_victim(self, running):
        return max(running, key=lambda s: (s.arrival_time, s.seq_id))


class PriorityPolicy(FCFSPolicy):
    """Smaller priority class first, FCFS inside a class; the least important, newest is preempted."""

    name = "priority"

    @staticmethod
    def _key(s: Sequence):
        return (s.priority or 0, s.arrival_time, s.seq_id)

    def order_waiting(self, waiting):
        return sorted(waiting, key=self._key)

    def order_running(self, running):
        return sorted(running, key=self._key)

    def select_victim(self, running):
        return max(running, key=self._key)


SCHEDULING_POLICIES: dict[str, Callable[[], SchedulingPolicy]] = {"fcfs": FCFSPolicy, "priority": PriorityPolicy}


def make_scheduling_policy(spec: str | SchedulingPolicy) -> SchedulingPolicy:
    if isinstance(spec, str):
        if spec not in SCHEDULING_POLICIES:
            raise ValueError(f"unknown scheduler {spec!r}; known: {', '.join(SCHEDULING_POLICIES)}")
        return SCHEDULING_POLICIES[spec]()
    return spec


@dataclass
class ScheduledBatch:
    """One step's work: rows (decodes first), how many new tokens each, who samples this step."""

    seqs: list[Sequence]
    num_new_tokens: list[int]
    num_decodes: int
    preempted: list[Sequence] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not self.seqs

    @property
    def samples(self) -> list[bool]:
        """A row samples when this step computes its last known token (prefill done, or decode)."""
        return [s.num_computed_tokens + n == s.num_tokens for s, n in zip(self.seqs, self.num_new_tokens)]


class Scheduler:
    """Waiting and running lists under one token budget and one block manager."""

    def __init__(self, block_manager: BlockManager, policy: str | SchedulingPolicy = "fcfs",
                 max_num_batched_tokens: int = 512, max_num_seqs: int = 64) -> None:
        if max_num_batched_tokens < 1 or max_num_seqs < 1:
            raise ValueError("max_num_batched_tokens and max_num_seqs must be >= 1")
        self.block_manager = block_manager
        self.policy = make_scheduling_policy(policy)
        self.max_num_batched_tokens = max_num_batched_tokens
        self.max_num_seqs = max_num_seqs
        self.waiting: list[Sequence] = []
        self.running: list[Sequence] = []
        self.num_preemptions = 0

    def add(self, seq: Sequence) -> None:
        seq.status = SequenceStatus.WAITING
        self.waiting.append(seq)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> ScheduledBatch:
        bm, budget = self.block_manager, self.max_num_batched_tokens
        begin = getattr(self.policy, "begin_step", None)
        cap = getattr(self.policy, "cap_tokens", None)
        by_policy = list(begin(self)) if begin is not None else []
        scheduled: dict[Sequence, int] = {}
        preempted: list[Sequence] = []
        for seq in self.policy.order_running(self.running):
            if seq.status is not SequenceStatus.RUNNING or budget == 0:
                continue
            n = min(seq.num_tokens - seq.num_computed_tokens, budget)
            if cap is not None and (n := min(n, cap(seq, n))) <= 0:
                continue
            while not bm.append_slots(seq, n):
                victim = self.policy.select_victim(self.running)
                self._preempt(victim)
                preempted.append(victim)
                budget += scheduled.pop(victim, 0)
                if victim is seq:
                    break
            if seq.status is SequenceStatus.RUNNING:
                scheduled[seq] = n
                budget -= n
        if not preempted:  # admit new work only when nothing had to give way this step
            for seq in self.policy.order_waiting(self.waiting):
                if budget == 0 or len(self.running) >= self.max_num_seqs:
                    break
                hits = bm.allocate(seq)
                if seq.num_preemptions == 0:
                    seq.num_cached_tokens = hits
                n = min(seq.num_tokens - seq.num_computed_tokens, budget)
                if cap is not None and (n := min(n, cap(seq, n))) <= 0:
                    bm.free(seq)
                    seq.num_computed_tokens = 0
                    continue
                if not bm.append_slots(seq, n):
                    bm.free(seq)
                    seq.num_computed_tokens = 0
                    break
                self.waiting.remove(seq)
                seq.status = SequenceStatus.RUNNING
                self.running.append(seq)
                scheduled[seq] = n
                budget -= n
        rows = sorted(scheduled.items(), key=lambda kv: kv[1] != 1)  # stable: decode rows first
        num_decodes = sum(1 for _, n in rows if n == 1)
        return ScheduledBatch([s for s, _ in rows], [n for _, n in rows], num_decodes, by_policy + preempted)

    def preempt(self, seq: Sequence) -> None:
        """Preempt a running sequence by recomputation (for policies' `begin_step`)."""
        self._preempt(seq)

    def _preempt(self, seq: Sequence) -> None:
        self.block_manager.free(seq)
        seq.num_computed_tokens = 0
        seq.status = SequenceStatus.WAITING
        seq.num_preemptions += 1
        self.num_preemptions += 1
        self.running.remove(seq)
        self.waiting.append(seq)

    def advance(self, batch: ScheduledBatch) -> None:
        """After the forward pass: the scheduled tokens are in the cache; register full blocks."""
        for seq, n in zip(batch.seqs, batch.num_new_tokens):
            seq.num_computed_tokens += n
            self.block_manager.commit(seq)

    def finish(self, seq: Sequence, reason: str) -> None:
        """End a sequence (stop, length or abort) and free its blocks; works in any state."""
        if seq.status is SequenceStatus.RUNNING:
            self.running.remove(seq)
        elif seq.status is SequenceStatus.WAITING and seq in self.waiting:
            self.waiting.remove(seq)
        self.block_manager.free(seq)
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = reason
