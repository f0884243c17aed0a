"""Rebalancing and cluster simulation on the cost-model runner."""
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from ares import cluster
from ares.errormodel import ErrorModel, measure
from ares.rebalancer import RebalanceConfig, Rebalancer
from cli import app
from papersuite import replay as rp
from papersuite.engine.costmodel import StepCostModel
from papersuite.traces import TraceRequest


def cost_model():
    m = StepCostModel()
    m.intercept_, m.coef_, m.mape_ = 0.02, np.array([2e-4, 1e-3, 2e-7]), 0.0
    return m


def test_no_migration_when_balanced():
    reqs = [TraceRequest(f"r{i}", 0.0, 50, 60, ignore_eos=True) for i in range(8)]
    for policy in ("oracle", "llumnix"):
        res = cluster.simulate_policy(policy, reqs, instances=2, kv_tokens=1024, cost_model=cost_model(),
                                      error_models={})
        assert res.migrations == 0 and sorted(r.instance for r in res.records) == [0] * 4 + [1] * 4


def test_oracle_avoids_preemption_that_rr_suffers():
    """Long requests land together under rr and exhaust one instance's KV; oracle moves them apart."""
    reqs = []
    for i in range(8):
        long = i % 2 == 0
        reqs.append(TraceRequest(f"r{i}", 0.01 * i, 40, 300 if long else 8, ignore_eos=True))
    kw = dict(instances=2, kv_tokens=1100, cost_model=cost_model(), error_models={})
    rr = cluster.simulate_policy("rr", reqs, **kw)
    oracle = cluster.simulate_policy("oracle", reqs, **kw)
    assert rr.preemptions > 0
    assert oracle.preemptions == 0 and oracle.migrations > 0
    assert all(r.finish is not None for r in oracle.records)


def test_error_model_samples_from_measured_bins(tmp_path):
    rng = np.random.default_rng(0)
    t = np.repeat(np.arange(0, 200, 4), 20)
    r = rng.integers(1, 300, len(t)).astype(float)
    bins = measure(t, r, r * 2.0)  # a predictor that always says twice the truth
    em = ErrorModel(bins)
    assert em.sample(100, 0, rng) == pytest.approx(200, rel=1e-3)
    path = tmp_path / "em.json"
    path.write_text(json.dumps({"predictors": {"ares": bins}}))
    assert ErrorModel.load(path).sample(10, 40, rng) == pytest.approx(20, rel=1e-3)


def test_simulate_cli_and_bad_inputs(tmp_path):
    rng = np.random.default_rng(0)
    t = np.repeat(np.arange(0, 400, 4), 10)
    r = rng.integers(1, 400, len(t)).astype(float)
    em = {"predictors": {"ares": measure(t, r, r * np.exp(rng.normal(0, .3, len(t)))),
                         "prompt-minilm": measure(t, r, r * np.exp(rng.normal(0, .8, len(t))))}}
    (tmp_path / "em.json").write_text(json.dumps(em))
    (tmp_path / "cm.json").write_text(json.dumps(cost_model().to_dict()))
    runner = CliRunner()
    base = ["-q", "serve", "ares", "simulate", "--cost-model", str(tmp_path / "cm.json"),
            "--error-model", str(tmp_path / "em.json"), "--n", "60"]
    r = runner.invoke(app, base + ["--instances", "2", "--kv-tokens", "2000", "--goodput", "-o", str(tmp_path / "s.json")])
    assert r.exit_code == 0, r.output
    out = json.loads((tmp_path / "s.json").read_text())
    assert set(out["policies"]) == {"rr", "least-kv", "llumnix", "prompt-only", "ares", "oracle"}
    assert all(v["goodput"] >= 0 for v in out["policies"].values())
    for args in (["--instances", "0"], ["--policy", "best"], ["--trace", "/no/such.csv"]):
        assert runner.invoke(app, base + args).exit_code == 2


def test_engine_policy_preempts_less_than_fcfs_with_true_lengths():
    rng = np.random.default_rng(3)
    reqs = [TraceRequest(f"r{i}", 0.02 * i, int(rng.integers(20, 80)), int(rng.choice([8, 16, 400])),
                         ignore_eos=True) for i in range(40)]
    kw = dict(kv_tokens=1600, cost_model=cost_model(), error_models={})
    fcfs = cluster.simulate_engine_policy("fcfs", reqs, **kw)
    oracle = cluster.simulate_engine_policy("oracle", reqs, **kw)
    assert all(r.finish is not None for r in oracle.records) and all(r.finish is not None for r in fcfs.records)
    m_f, m_o = fcfs.metrics(100, 100), oracle.metrics(100, 100)
    assert m_f["recomputed_tokens"] > 0
    assert m_o["recomputed_tokens"] < 0.5 * m_f["recomputed_tokens"]
