"""Plan selection under the step budget, and the `serve echo` CLI (smoke, resume, bad input)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from echo.estimator import StepTimeEstimator, plan_features
from echo.kv import EchoEviction, ReserveEstimator
from echo.scheduler import echo_policy
from papersuite.engine.costmodel import StepCostModel, StepFeatures
from papersuite.engine.kv_cache import BlockManager
from papersuite.engine.scheduler import Scheduler, Sequence
from papersuite.llm import SamplingParams

ROOT = Path(__file__).parents[2]
COST = StepCostModel.from_dict({"intercept_s": 0.01, "coef": {"n_prefill": 1e-4, "n_decode": 1e-3, "sum_ctx": 1e-6}})


def _seq(n, priority, start=0, max_tokens=50):
    return Sequence(list(range(start, start + n)), SamplingParams(max_tokens=max_tokens, ignore_eos=True),
                    priority=priority)


def _sched(tpot=0.02):
    est = StepTimeEstimator(COST)
    pol = echo_policy(est, tpot_slo=tpot, ttft_slo=1.0, reserve=ReserveEstimator(fixed=0))
    bm = BlockManager(400, 16, EchoEviction(pol.index))
    return Scheduler(bm, pol, max_num_batched_tokens=512, max_num_seqs=64), est


def _run(sch, steps):
    for _ in range(steps):
        b = sch.schedule()
        samples, b.features = b.samples, StepFeatures.of(b)
        sch.advance(b)
        for s, flag in zip(b.seqs, samples):
            if flag:
                s.token_ids.append(7)
    return b


def test_plan_fits_budget_while_online_decodes():
    sch, est = _sched(tpot=0.02)
    sch.add(_seq(40, 0, 0))
    _run(sch, 1)  # the online request is decoding now
    for i in range(20):
        sch.add(_seq(300, 1, 1000 + 400 * i))
    for _ in range(6):
        b = _run(sch, 1)
        t = est.predict(b.features)
        assert t <= 0.9 * 0.02 + 1e-9
        assert any(s.priority == 0 for s in b.seqs)
    assert any(s.priority == 1 for s in sch.running)  # offline work did get in


def test_without_online_offline_fills_the_token_budget():
    sch, _ = _sched()
    sch.policy.ttft_slo = None  # no online traffic at all: only the token budget limits
    for i in range(10):
        sch.add(_seq(300, 1, 1000 + 400 * i))
    b = _run(sch, 1)
    assert sum(b.num_new_tokens) == 512


def test_plan_features_count_prefill_decode_context():
    f = plan_features([(10, 1, True), (0, 32, False)])
    assert (f.n_prefill, f.n_decode, f.sum_ctx) == (32, 1, 43)


runner = CliRunner()


def _replay(args):
    res = runner.invoke(app, ["serve", "echo", "replay", "--duration", "60", "--jobs", "40", "--json", *args])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_replay_smoke_and_results_resume_without_duplicates(tmp_path):
    out = _replay(["--policy", "online-only,slo-budget,echo", "--offline", "docs-qa", "--kv-tokens", "4096",
                   "--results", str(tmp_path)])
    pol = out["policies"]
    assert set(pol) == {"online-only", "slo-budget", "echo"}
    assert pol["online-only"]["offline_tokens_per_s"] == 0
    lines = (tmp_path / "echo.jsonl").read_text().splitlines()
    assert len(lines) == pol["echo"]["offline_jobs_done"] > 4
    # an interrupted run: keep half the lines and a torn one; the rerun completes without duplicates
    (tmp_path / "echo.jsonl").write_text("\n".join(lines[: len(lines) // 2]) + "\n" + lines[-1][:20])
    _replay(["--policy", "echo", "--offline", "docs-qa", "--kv-tokens", "4096", "--results", str(tmp_path)])
    ids = [json.loads(x)["custom_id"] for x in (tmp_path / "echo.jsonl").read_text().splitlines()]
    assert len(ids) == len(set(ids)) and len(ids) >= len(lines) // 2


def test_plan_and_help():
    res = runner.invoke(app, ["serve", "echo", "--help"])
    assert all(v in res.output for v in ("replay", "api", "plan", "profile"))
    res = runner.invoke(app, ["serve", "echo", "plan", "--instances", "1,2", "--duration", "40", "--jobs", "30"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout.strip().splitlines()[-1])["configurations"]
    assert [r["instances"] for r in rows] == [1, 2] and all(r["offline_tokens_per_s"] > 0 for r in rows)


@pytest.mark.parametrize("args,msg", [
    (["replay", "--policy", "bogus"], "unknown policy"),
    (["replay", "--online", "nope-trace"], "unknown online trace"),
    (["replay", "--slo-scale", "0"], "SLO scale must be > 0"),
    (["replay", "--reserve", "512", "--kv-tokens", "8192"], "--reserve must be in"),
    (["replay", "--policy", "separate"], "needs --instances >= 2"),
])
def test_bad_input_one_line_exit_2(args, msg):
    res = runner.invoke(app, ["serve", "echo", *args])
    assert res.exit_code == 2 and msg in res.output


def test_bad_batch_through_executable(tmp_path):
    bad = tmp_path / "b.jsonl"
    bad.write_text(json.dumps({"custom_id": "x", "url": "/v1/completions", "body": {"prompt": "hi"}}) + "\n"
                   + json.dumps({"custom_id": "x", "url": "/v1/completions", "body": {"prompt": "yo"}}) + "\n")
    exe = Path(sys.executable).parent / "papersuite"
    p = subprocess.run([str(exe), "serve", "echo", "replay", "--offline", str(bad)], capture_output=True, text=True,
                       cwd=ROOT, timeout=60)
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and f"{bad}:2" in p.stderr and "duplicate custom_id" in p.stderr


@pytest.mark.slow
def test_measured_replay_results_equal_plain_greedy_engine(tiny_llama, tmp_path):
    """Co-serving changes when offline work runs, never what it computes (greedy, forced lengths)."""
    from papersuite.engine.engine import LLMEngine

    batch = tmp_path / "b.jsonl"
    prompts = [[100 + (7 * i + j) % 300 for j in range(20)] + [400 + i] * 12 for i in range(6)]
    batch.write_text("".join(json.dumps({"custom_id": f"j{i}", "url": "/v1/completions",
                                         "body": {"prompt": p, "max_tokens": 5, "ignore_eos": True}}) + "\n"
                             for i, p in enumerate(prompts)))
    _replay(["--policy", "echo", "--offline", str(batch), "--clock", "measured", "--model", tiny_llama,
             "--duration", "1.5", "--kv-tokens", "2048", "--results", str(tmp_path / "R")])
    got = {json.loads(x)["custom_id"]: json.loads(x)["response"]["body"]["token_ids"]
           for x in (tmp_path / "R" / "echo.jsonl").read_text().splitlines()}
    assert got, "no offline job finished inside the window"
    engine = LLMEngine(tiny_llama)
    for cid, tokens in got.items():
        p = prompts[int(cid[1:])]
        seq = engine.add_request(None, SamplingParams(max_tokens=5, ignore_eos=True, temperature=0.0),
                                 prompt_token_ids=p)
        while not seq.is_finished:
            engine.step()
        assert tokens == seq.output_token_ids, cid
