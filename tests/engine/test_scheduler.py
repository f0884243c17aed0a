"""Scheduler: token budget, decode rows first, chunked prefill, policies, preemption by recompute."""
from __future__ import annotations

import random

from papersuite.engine.kv_cache import BlockManager
from papersuite.engine.scheduler import (SCHEDULING_POLICIES, FCFSPolicy, PriorityPolicy, Scheduler,
                                         SchedulingPolicy, Sequence, SequenceStatus)
from papersuite.llm import SamplingParams


def seq(n, arrival, priority=None):
    return Sequence(list(range(100, 100 + n)), SamplingParams(max_tokens=4), priority=priority, arrival_time=arrival)


def test_budget_chunks_and_decodes_first():
    sch = Scheduler(BlockManager(64, 4), "fcfs", max_num_batched_tokens=10, max_num_seqs=8)
    a, b = seq(3, 0.0), seq(25, 1.0)
    sch.add(a)
    sch.add(b)
    batch = sch.schedule()
    assert batch.seqs == [a, b] and batch.num_new_tokens == [3, 7]  # b's prompt is chunked
    assert batch.samples == [True, False]
    sch.advance(batch)
    a.token_ids.append(1)
    batch = sch.schedule()  # a decodes (first row), b continues its prefill with the rest of the budget
    assert batch.seqs == [a, b] and batch.num_new_tokens == [1, 9] and batch.num_decodes == 1
    assert sum(batch.num_new_tokens) <= 10


def test_policies_order_and_victims():
    x, y, z = seq(2, 2.0, priority=1), seq(2, 1.0, priority=5), seq(2, 3.0, priority=0)
    assert FCFSPolicy().order_waiting([x, y, z]) == [y, x, z]
    assert FCFSPolicy().select_victim([x, y, z]) is z
    assert PriorityPolicy().order_waiting([x, y, z]) == [z, x, y]
    assert PriorityPolicy().select_victim([x, y, z]) is y
    assert isinstance(FCFSPolicy(), SchedulingPolicy) and set(SCHEDULING_POLICIES) >= {"fcfs", "priority"}


def test_preemption_frees_newest_and_keeps_its_tokens():
    bm = BlockManager(4, 4)
    sch = Scheduler(bm, "fcfs", max_num_batched_tokens=64)
    old, new = seq(7, 0.0), seq(7, 1.0)
    for s in (old, new):
        sch.add(s)
    batch = sch.schedule()
    sch.advance(batch)
    for s in (old, new):
        s.token_ids.append(5)  # both now need an 8th slot: fits in their second block
    sch.advance(sch.schedule())
    for s in (old, new):
        s.token_ids.append(6)  # the 9th token needs a third block each: only one can stay
    batch = sch.schedule()
    assert batch.preempted == [new] and batch.seqs == [old]
    assert new.status is SequenceStatus.WAITING and new.block_table == [] and new.num_computed_tokens == 0
    assert new.token_ids[-2:] == [5, 6] and new.num_preemptions == 1


def _workload(n=16, seed=0):
    rng = random.Random(seed)
    return [[rng.randrange(3, 40000) for _ in range(rng.randrange(5, 41))] for _ in range(n)], \
           [rng.randrange(8, 25) for _ in range(n)]


def test_tiny_budget_preempts_and_matches_ample_budget(tiny_model, scheduler="fcfs"):
    from papersuite.engine.engine import LLMEngine

    prompts, lens = _workload()
    need = max(-(-(len(p) + m) // 16) for p, m in zip(prompts, lens))

    def run(num_blocks, budget):
        eng = LLMEngine(tiny_model, num_blocks=num_blocks, max_num_batched_tokens=budget, scheduler=scheduler)
        seqs = [eng.add_request(None, SamplingParams(max_tokens=m, ignore_eos=True), prompt_token_ids=p,
                                priority=i % 3) for i, (p, m) in enumerate(zip(prompts, lens))]
        while eng.has_unfinished():
            eng.step()
        return [s.output_token_ids for s in seqs], eng.scheduler.num_preemptions, eng

    ample, n_ample, _ = run(256, 512)
    tight, n_tight, eng = run(need + 2, 24)
    assert n_ample == 0 and n_tight > 0
    assert tight == ample and all(len(o) == m for o, m in zip(tight, lens))
    assert eng.block_manager.num_free_blocks == eng.block_manager.num_blocks  # nothing leaked
