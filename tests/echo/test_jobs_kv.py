"""Batch files, resumable results, eviction order, preemption resume, reserve, estimators."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from echo.estimator import MemoryEstimator, heldout_mape
from echo.jobs import ResultsWriter, output_line, read_batch
from echo.kv import EchoEviction, PrefixIndex, ReserveEstimator, prompt_block_hashes
from echo.scheduler import CoServePolicy, echo_policy
from papersuite.engine.costmodel import StepFeatures
from papersuite.engine.kv_cache import BlockManager
from papersuite.engine.scheduler import Scheduler, Sequence
from papersuite.errors import UserError
from papersuite.llm import SamplingParams


def _batch(tmp_path, lines):
    p = tmp_path / "b.jsonl"
    p.write_text("\n".join(lines) + "\n")
    return p


GOOD = json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
                   "body": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}})


@pytest.mark.parametrize("bad,msg", [
    ("{not json", "malformed JSON"),
    (GOOD, "duplicate custom_id"),
    (json.dumps({"custom_id": "b", "url": "/v1/embeddings", "body": {"input": "x"}}), "unsupported url"),
    (json.dumps({"custom_id": "b", "url": "/v1/chat/completions", "body": {"max_tokens": 3}}), "messages"),
    (json.dumps({"custom_id": "b", "url": "/v1/completions", "body": {"max_tokens": 3}}), "prompt"),
])
def test_bad_batch_lines_name_file_and_line(tmp_path, bad, msg):
    p = _batch(tmp_path, [GOOD, bad])
    with pytest.raises(UserError, match=msg) as e:
        read_batch(p)
    assert f"{p}:2" in str(e.value)


def test_results_writer_recovers_torn_line_and_skips_done(tmp_path):
    job = read_batch(_batch(tmp_path, [GOOD]))[0]
    out = tmp_path / "r.jsonl"
    with ResultsWriter(out) as w:
        w.write(output_line(job, "m", "x", [1, 2], 3, "length"))
    out.write_bytes(out.read_bytes() + b'{"custom_id": "torn')  # killed mid-write
    w = ResultsWriter(out)
    assert w.done == {"a"}
    w.write(output_line(job, "m", "x", [1, 2], 3, "length"))  # duplicate: ignored
    w.close()
    lines = out.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["response"]["body"]["usage"]["completion_tokens"] == 2


def _seq(tokens, priority=0, max_tokens=4):
    return Sequence(list(tokens), SamplingParams(max_tokens=max_tokens, ignore_eos=True), priority=priority)


def test_eviction_order_unshared_offline_first_online_prefix_last():
    bs = 4
    index = PrefixIndex(bs)
    ev = EchoEviction(index)
    bm = BlockManager(16, bs, ev)
    shared, online_p, lone = list(range(10, 18)), list(range(50, 58)), list(range(90, 98))
    seqs = {"shared": _seq(shared + [1], 1), "online": _seq(online_p + [2], 0), "lone": _seq(lone + [3], 1)}
    for s in seqs.values():  # compute and release every prompt: all blocks become cached free
        bm.allocate(s)
        bm.append_slots(s, s.num_tokens)
        s.num_computed_tokens = s.num_tokens
        bm.commit(s)
        bm.free(s)
    again = _seq(online_p + [5], 0)  # a second online request hits the online prefix: a real prefix
    assert bm.allocate(again) == 8
    bm.free(again)
    waiting = _seq(shared + [7], 1)  # a queued offline job shares the first prefix
    index.add(waiting)
    running = _seq(list(range(200, 209)), 1)
    bm.allocate(running)
    bm.append_slots(running, 9)
    order = [b.token_ids[0] for b in ev.ranking()]
    assert set(order[:2]) == {90, 94}  # offline blocks nobody waits for
    assert order[2:4] == [10, 14] or set(order[2:4]) == {10, 14}  # offline blocks with a queued sharer
    assert set(order[4:]) == {50, 54}  # the re-hit online prefix goes last
    assert not {200, 204} & set(order)  # running blocks are never candidates
    assert ev.evict().token_ids[0] in (90, 94)


def test_preempted_offline_resumes_from_prefix_and_recomputes_only_tail():
    bs = 4
    policy = echo_policy()  # no estimator: memory/reserve rules only
    policy.reserve = ReserveEstimator(fixed=0)
    bm = BlockManager(16, bs, EchoEviction(policy.index))
    sch = Scheduler(bm, policy, max_num_batched_tokens=64, max_num_seqs=8)
    doc = list(range(100, 124))  # 6 shared blocks
    a, b = _seq(doc + [1, 2, 3, 4, 5], 1, 6), _seq(doc + [9, 8, 7, 6, 5], 1, 6)
    sch.add(a)
    for _ in range(2):
        batch = sch.schedule()
        samples = batch.samples
        sch.advance(batch)
        for s, flag in zip(batch.seqs, samples):
            if flag:
                s.token_ids.append(11)
    sch.add(b)  # shares a's document: a's blocks get a second queued sharer
    policy._lose(a)
    sch.preempt(a)
    policy._observe(sch)  # the index now counts a (waiting again) and b as sharers of the document
    pressure = _seq(range(500, 540), 1)  # 10 blocks: 9 free + 1 evicted cached block
    bm.allocate(pressure)
    assert bm.append_slots(pressure, 40)
    bm.free(pressure)
    batch = sch.schedule()
    assert a in batch.seqs
    assert a.num_computed_tokens == len(doc)  # the private tail went; the shared prefix stayed cached
    assert policy.stats["recovered_tokens"] == len(doc)  # only the private tail is recomputed
    assert policy.stats["lost_tokens"] - len(doc) < 2 * bs


def test_online_within_reserve_is_admitted_without_preemption():
    bs = 4
    policy = CoServePolicy(reserve=ReserveEstimator(fixed=3), step_budget=False, plan_search=True)
    bm = BlockManager(12, bs, EchoEviction(policy.index))
    sch = Scheduler(bm, policy, max_num_batched_tokens=64, max_num_seqs=16)
    for i in range(6):
        sch.add(_seq(list(range(i * 20, i * 20 + 7)), 1, 8))
    for _ in range(3):
        sch.advance(sch.schedule())
    assert bm.num_free_blocks >= 3  # offline admission stopped at the reserve
    online = _seq(list(range(900, 906)), 0, 2)
    sch.add(online)
    batch = sch.schedule()
    assert online in batch.seqs and not batch.preempted and sch.num_preemptions == 0


def test_reserve_is_p99_of_windowed_online_demand():
    r = ReserveEstimator(window_s=1.0, every_s=0.1, quantile=100)
    for t, b in [(0.0, 2), (0.5, 3), (3.0, 1), (3.2, 1), (3.4, 1)]:
        r.observe(t, b)
    assert r.reserve(4.0) == 5


def test_memory_estimator_conditions_on_generated_tokens():
    m = MemoryEstimator(min_samples=3).fit([("offline", n) for n in (10, 20, 30, 40)])
    assert m.expected_remaining("offline", 0, 100) == pytest.approx(25)
    assert m.expected_remaining("offline", 25, 100) == pytest.approx(10)  # mean(30, 40) - 25
    assert m.expected_remaining("online", 0, 50) == 50  # no data: the cap


def test_step_time_estimator_heldout_mape_below_15_percent():
    d = json.loads((Path(__file__).parents[2] / "echo" / "data" / "costmodel_smollm2_cpu1.json").read_text())
    feats = [StepFeatures(s["n_prefill"], s["n_decode"], s["sum_ctx"]) for s in d["samples"]]
    rep = heldout_mape(feats, [s["s"] for s in d["samples"]])
    assert rep["heldout_mape"] < 0.15


def test_prefix_index_counts_queued_sharers():
    idx = PrefixIndex(4)
    a, b = _seq(range(12), 1), _seq(list(range(8)) + [50, 51, 52, 53], 1)
    idx.sync([a, b])
    h = prompt_block_hashes(list(range(12)), 4)
    assert [idx.sharers(x) for x in h] == [2, 2, 1]
    idx.sync([b])
    assert [idx.sharers(x) for x in h] == [1, 1, 0]
