"""Co-serving scheduling policies on the engine's `Scheduler`: Echo and its peers.

All of them run online requests (priority 0) first and preempt offline requests first. They differ
in how much offline work enters a step:

- `priority` (vLLM-style): online first, offline FIFO in whatever token budget and sequence slots
  are left (`max_num_seqs` is its knob), an online arrival preempts offline work to get in.
- `slo-budget` (HyGen/ConServe-like): like `priority`, but while an online request decodes the
  step's estimated time must stay within `safety x TPOT SLO`; offline prefill chunks are cut to fit.
- `echo`: plans from the previous batch (`begin_step`): base = running requests + waiting online;
  candidates grow it by up to J offline chunks (prefix-cache hits and shared-prefix groups first)
  or shrink it by up to M offline decodes (least progress first); the feasible plan (estimated
  step time <= budget, projected memory <= capacity - reserve) with the most offline tokens wins.
  Its KV side is `echo.kv.EchoEviction` and the online reserve.

The plan is handed to the engine's scheduler through the optional policy hooks `begin_step` and
`cap_tokens`; the engine's scheduler still does the allocation, chunking and preemption.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from papersuite.engine.scheduler import SequenceStatus

from echo.estimator import MemoryEstimator, StepTimeEstimator, plan_features
from echo.jobs import class_name, is_offline
from echo.kv import EchoEviction, PrefixIndex, ReserveEstimator

INF = math.inf


def _progress_key(s):
    return (s.num_computed_tokens, -s.arrival_time, -s.seq_id)


class CoServePolicy:
    """Online-first co-serving; the knobs switch between the peers (see the factories below)."""

    name = "coserve"

    def __init__(self, estimator: StepTimeEstimator | None = None,
                 tpot_slo: Callable[[int], float] | float | None = None, safety: float = 0.9,
                 ttft_slo: Callable[[int], float] | float | None = None,
                 step_budget: bool = True, plan_search: bool = True, prefix_order: bool = True,
                 reserve: ReserveEstimator | None = None, memory: MemoryEstimator | None = None,
                 index: PrefixIndex | None = None, max_grow: int = 8, max_shrink: int = 8,
                 min_chunk: int = 16, preempt_for_online: bool = True) -> None:
        if safety <= 0:
            raise ValueError(f"safety must be > 0, got {safety}")
        self.estimator, self.safety = estimator, safety
        self.tpot_slo, self.ttft_slo = tpot_slo, ttft_slo
        self._online_prompts: list[int] = []
        self.step_budget = step_budget and estimator is not None and tpot_slo is not None
        self.plan_search, self.prefix_order = plan_search, prefix_order
        self.reserve, self.memory = reserve, memory or MemoryEstimator()
        self.index = index if index is not None else PrefixIndex()
        self.max_grow, self.max_shrink, self.min_chunk = max_grow, max_shrink, min_chunk
        self.preempt_for_online = preempt_for_online
        self._live: dict[int, object] = {}
        self._plan: dict[int, int] | None = None  # seq_id -> tokens allowed this step (offline)
        self._order: list = []
        self._now = 0.0
        self._group: dict[int, int] = {}  # first prompt block hash -> group rank
        self.stats = {"steps": 0, "planned_offline_tokens": 0, "online_preemptions": 0, "budget_steps": 0,
                      "reserve_blocks": 0, "lost_tokens": 0, "recovered_tokens": 0}

    # -- bookkeeping --------------------------------------------------------------------------
    def _observe(self, sch) -> None:
        bm = sch.block_manager
        self.index.block_size = bm.block_size
        ev = bm.eviction
        if isinstance(ev, EchoEviction) and ev.index is not self.index:
            ev.index = self.index
        for s in sch.running + sch.waiting:
            if s.seq_id in self._live:
                continue
            self._live[s.seq_id] = s
            self._now = max(self._now, s.arrival_time)
            if not is_offline(s):
                self._online_prompts.append(s.num_prompt_tokens)
                del self._online_prompts[:-500]
            if not is_offline(s) and self.reserve is not None:
                self.reserve.observe(s.arrival_time, bm.blocks_needed(s.num_tokens + s.params.max_tokens))
            if is_offline(s):
                hashes = self.index.add(s) if self.prefix_order else []
                first = hashes[0] if hashes else -s.seq_id
                s.annotations["echo_group"] = self._group.setdefault(first, len(self._group))
        for sid in [sid for sid, s in self._live.items() if s.status is SequenceStatus.FINISHED]:
            s = self._live.pop(sid)
            if s.finish_reason != "abort":
                self.memory.observe(class_name(s), s.num_output_tokens)
            self.index.discard(sid)

    def _reserve_blocks(self, bm) -> int:
        if self.reserve is None:
            return 0
        r = self.reserve.reserve(self._now)
        self.stats["reserve_blocks"] = r
        return r

    # -- the plan -----------------------------------------------------------------------------
    def begin_step(self, sch) -> list:
        self._observe(sch)
        self.stats["steps"] += 1
        bm, bs = sch.block_manager, sch.block_manager.block_size
        preempted = self._make_room_for_online(sch)
        tok_budget = sch.max_num_batched_tokens
        online_run = sorted((s for s in sch.running if not is_offline(s)), key=lambda s: (s.arrival_time, s.seq_id))
        online_wait = sorted((s for s in sch.waiting if not is_offline(s)), key=lambda s: (s.arrival_time, s.seq_id))
        rows, used = [], 0
        for s in online_run:
            n = min(s.num_tokens - s.num_computed_tokens, tok_budget - used)
            if n > 0:
                rows.append((s.num_computed_tokens, n, n == 1))
                used += n
        for s in online_wait:
            hits = len(bm.match_prefix(s.token_ids)[0]) * bs
            n = min(s.num_tokens - hits, tok_budget - used)
            if n > 0:
                rows.append((hits, n, False))
                used += n
        decoding = [s for s in online_run if s.num_tokens - s.num_computed_tokens == 1]
        budget_s = INF
        if self.step_budget and decoding:
            slo = self.tpot_slo
            budget_s = self.safety * min((slo(s.num_tokens) if callable(slo) else slo) for s in decoding)
            self.stats["budget_steps"] += 1
        elif self.step_budget and self.ttft_slo is not None and online_wait and self.estimator is not None:
            # an online prefill runs this step: offline work may add only a tenth of its TTFT SLO
            slo = self.ttft_slo
            p = min(s.num_prompt_tokens for s in online_wait)
            budget_s = self.estimator.predict(plan_features(rows)) + self.safety * 0.1 * (slo(p) if callable(slo) else slo)
        elif self.step_budget and self.ttft_slo is not None:
            # idle: an online arrival waits at most one step, so an offline step may take half the
            # TTFT SLO of the shortest online prompt seen (the tightest SLO)
            p = min(self._online_prompts) if self._online_prompts else 1
            slo = self.ttft_slo
            budget_s = self.safety * 0.5 * (slo(p) if callable(slo) else slo)
        plan = self._plan_offline(sch, rows, used, tok_budget, budget_s)
        self._plan = plan
        self.stats["planned_offline_tokens"] += sum(plan.values())
        return preempted

    def _make_room_for_online(self, sch) -> list:
        """vLLM-priority-style: preempt offline (least progress first) so waiting online work fits."""
        if not self.preempt_for_online:
            return []
        bm = sch.block_manager
        out = []
        need, slots = 0, 0
        for s in sorted((s for s in sch.waiting if not is_offline(s)), key=lambda s: s.arrival_time):
            n = min(s.num_tokens, sch.max_num_batched_tokens)
            need += bm.blocks_needed(n) + 1
            slots += 1
        if not slots:
            return out
        while need > bm.num_free_blocks or len(sch.running) + slots > sch.max_num_seqs:
            offline = [s for s in sch.running if is_offline(s)]
            if not offline:
                break
            victim = min(offline, key=_progress_key)
            self._lose(victim)
            sch.preempt(victim)
            out.append(victim)
            self.stats["online_preemptions"] += 1
        return out

    def _offline_waiting(self, sch) -> list:
        waiting = [s for s in sch.waiting if is_offline(s)]
        if self.prefix_order:  # resumed first, then shared-prefix groups, then arrival
            key = lambda s: (s.num_preemptions == 0, s.annotations.get("echo_group", 0), s.arrival_time, s.seq_id)  # noqa: E731
        else:
            key = lambda s: (s.arrival_time, s.seq_id)  # noqa: E731
        return sorted(waiting, key=key)

    def _plan_offline(self, sch, online_rows, used, tok_budget, budget_s) -> dict[int, int]:
        """Choose this step's offline work; returns seq_id -> tokens."""
        if not self.step_budget and not self.plan_search and self.reserve is None:
            self._order = self._offline_waiting(sch)  # priority peer: the plain scheduler fills the rest
            return {s.seq_id: 1 << 30 for s in sch.running + self._order if is_offline(s)}
        bm, bs = sch.block_manager, sch.block_manager.block_size
        est = self.estimator
        reserve = self._reserve_blocks(bm)
        off_run = [s for s in sch.running if is_offline(s)]
        decodes = sorted((s for s in off_run if s.num_tokens - s.num_computed_tokens == 1), key=_progress_key,
                         reverse=True)  # most progress first; shrink drops from the end
        prefills = [s for s in off_run if s.num_tokens - s.num_computed_tokens > 1]

        def time_of(rows):
            return est.predict(plan_features(rows)) if est is not None else 0.0

        # base = previous batch (running) + online waiting; offline prefill chunks cut to fit
        base_rows = list(online_rows) + [(s.num_computed_tokens, 1, True) for s in decodes]
        base_alloc: dict[int, int] = {s.seq_id: 1 for s in decodes}
        left = tok_budget - used - len(decodes)
        for s in prefills:
            n = self._fit(s.num_tokens - s.num_computed_tokens, s.num_computed_tokens, base_rows, left, budget_s)
            if n > 0:
                base_rows.append((s.num_computed_tokens, n, False))
                base_alloc[s.seq_id] = n
                left -= n
        candidates = [(dict(base_alloc), list(base_rows), left)]
        # shrink: drop up to M offline decodes, least progress first
        if self.plan_search:
            alloc, rows = dict(base_alloc), list(base_rows)
            dropped = 0
            for s in reversed(decodes[-self.max_shrink:]):
                alloc.pop(s.seq_id)
                rows.remove((s.num_computed_tokens, 1, True))
                dropped += 1
                candidates.append((dict(alloc), list(rows), left + dropped))
        # grow: add up to J offline waiting chunks (prefix hits first when prefix_order)
        order = self._offline_waiting(sch)
        self._order = order
        free = bm.num_free_blocks
        held = bm.num_blocks - free
        future = self.memory.future_tokens(sch.running, class_name)
        slots = sch.max_num_seqs - len(sch.running) - sum(1 for s in sch.waiting if not is_offline(s))
        alloc, rows, grow_left = dict(base_alloc), list(base_rows), left
        scan = order[: max(4 * self.max_grow, 32)]
        if self.prefix_order:  # cached prefixes first among the next few
            hits_of = {s.seq_id: len(bm.match_prefix(s.token_ids)[0]) * bs for s in scan}
            scan = sorted(scan, key=lambda s: (s.num_preemptions == 0, -hits_of[s.seq_id] // max(bs, 1)))
        else:
            hits_of = {s.seq_id: len(bm.match_prefix(s.token_ids)[0]) * bs for s in scan}
        grown = 0
        for s in scan:
            if grown >= self.max_grow or grow_left < 1 or slots <= 0:
                break
            hits = hits_of[s.seq_id]
            remaining = s.num_tokens - hits
            n = self._fit(remaining, hits, rows, grow_left, budget_s)
            if n < min(self.min_chunk, remaining):
                break
            new_blocks = bm.blocks_needed(hits + n) - hits // bs
            if free - new_blocks < reserve:  # the reserve stays free for online bursts
                break
            peak = s.num_tokens + self.memory.expected_remaining("offline", s.num_output_tokens, s.params.max_tokens)
            if self.reserve is not None and future + peak - hits > (bm.num_blocks - reserve) * bs and held > 0:
                break
            alloc[s.seq_id] = n
            rows.append((hits, n, False))
            grow_left -= n
            free -= new_blocks
            held += new_blocks
            future += peak - hits
            slots -= 1
            grown += 1
            candidates.append((dict(alloc), list(rows), grow_left))
        feasible = [c for c in candidates if time_of(c[1]) <= budget_s]
        if feasible:
            best = max(feasible, key=lambda c: sum(c[0].values()))[0]  # first (least change) on ties
        else:
            best = min(candidates, key=lambda c: time_of(c[1]))[0]
        if not best and not online_rows:  # progress guarantee: an empty step would stall the engine
            first = (decodes or prefills or [s for s in scan if slots > 0] or [None])[0]
            if first is not None:
                best = {first.seq_id: max(1, min(self.min_chunk, first.num_tokens - first.num_computed_tokens))}
        return best

    def _fit(self, remaining: int, context: int, rows, tokens_left: int, budget_s: float) -> int:
        n = min(remaining, tokens_left)
        if n <= 0 or budget_s == INF or self.estimator is None:
            return max(n, 0)
        room = self.estimator.max_prefill_tokens(plan_features(rows), budget_s, context)
        return max(0, min(n, room))

    # -- the engine's SchedulingPolicy protocol ------------------------------------------------
    def cap_tokens(self, seq, n: int) -> int:
        lost = seq.annotations.pop("echo_lost", None)
        if lost is not None:  # re-admitted after preemption: its prefix hits are recovered work
            self.stats["recovered_tokens"] += min(lost, seq.num_computed_tokens)
        if not is_offline(seq) or self._plan is None:
            return n
        return min(n, self._plan.get(seq.seq_id, 0))

    def order_running(self, running):
        online = sorted((s for s in running if not is_offline(s)), key=lambda s: (s.arrival_time, s.seq_id))
        offline = sorted((s for s in running if is_offline(s) and (self._plan is None or s.seq_id in self._plan)),
                         key=lambda s: (s.arrival_time, s.seq_id))
        return online + offline

    def order_waiting(self, waiting):
        online = sorted((s for s in waiting if not is_offline(s)), key=lambda s: (s.arrival_time, s.seq_id))
        if self._plan is None:
            offline = [s for s in waiting if is_offline(s)]
        else:
            offline = [s for s in self._order if s.seq_id in self._plan and s in waiting]
        return online + offline

    def select_victim(self, running):
        offline = [s for s in running if is_offline(s)]
        if offline:
            victim = min(offline, key=_progress_key)
        else:
            victim = max(running, key=lambda s: (s.arrival_time, s.seq_id))
        self._lose(victim)
        return victim

    def _lose(self, seq) -> None:
        """Account the computed tokens a preemption throws away (recomputation = lost - recovered)."""
        seq.annotations["echo_lost"] = seq.num_computed_tokens
        self.stats["lost_tokens"] += seq.num_computed_tokens


def priority_policy() -> CoServePolicy:
    """vLLM-style priority: online first, offline FIFO, recompute preemption (pair with LRU)."""
    p = CoServePolicy(step_budget=False, plan_search=False, prefix_order=False)
    p.name = "priority"
    return p


def slo_budget_policy(estimator: StepTimeEstimator | None = None, tpot_slo=None, safety: float = 0.9,
                      ttft_slo=None) -> CoServePolicy:
    """HyGen/ConServe-like: SLO-aware step budget from the same estimator, FIFO offline, no reserve."""
    p = CoServePolicy(estimator, tpot_slo, safety, ttft_slo, step_budget=True, plan_search=False,
                      prefix_order=False)
    p.name = "slo-budget"
    return p


def echo_policy(estimator: StepTimeEstimator | None = None, tpot_slo=None, safety: float = 0.9,
                reserve: ReserveEstimator | None = None, index: PrefixIndex | None = None,
                max_grow: int = 8, max_shrink: int = 8, ttft_slo=None) -> CoServePolicy:
    """Echo: plan search, prefix-aware ordering, online reserve (pair with `EchoEviction`)."""
    p = CoServePolicy(estimator, tpot_slo, safety, ttft_slo, step_budget=True, plan_search=True, prefix_order=True,
                      reserve=reserve if reserve is not None else ReserveEstimator(), index=index,
                      max_grow=max_grow, max_shrink=max_shrink)
    p.name = "echo"
    return p
