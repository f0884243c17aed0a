"""The step-time cost model: exact recovery on synthetic data, profiling a real (tiny) engine."""
import numpy as np
import pytest

from papersuite.engine.costmodel import StepCostModel, StepFeatures, fitted_cost_model, profile_engine


def test_fit_recovers_known_coefficients():
    rng = np.random.default_rng(0)
    feats = [StepFeatures(int(p), int(d), int(c)) for p, d, c in
             zip(rng.integers(0, 512, 200), rng.integers(0, 32, 200), rng.integers(0, 8000, 200))]
    true = lambda f: 0.004 + 2e-5 * f.n_prefill + 3e-4 * f.n_decode + 1e-7 * f.sum_ctx  # noqa: E731
    secs = [true(f) * (1 + rng.normal(0, 0.01)) for f in feats]
    m = StepCostModel().fit(feats, secs)
    assert m.intercept_ == pytest.approx(0.004, rel=0.05)
    np.testing.assert_allclose(m.coef_, [2e-5, 3e-4, 1e-7], rtol=0.1)
    assert m.mape_ < 0.02
    again = StepCostModel.from_dict(m.to_dict())
    assert again.predict_one(feats[0]) == pytest.approx(m.predict_one(feats[0]))
    assert m.unloaded_ttft(1000, chunk=512) == pytest.approx(
        m.predict_one(StepFeatures(512, 0, 512)) + m.predict_one(StepFeatures(488, 0, 1000)))
    with pytest.raises(ValueError):
        StepCostModel().fit(feats[:2], secs[:2])


def test_profile_tiny_engine_and_cache(tiny_model, tmp_path, monkeypatch):
    from papersuite.engine.engine import LLMEngine

    monkeypatch.setenv("PAPERSUITE_CACHE", str(tmp_path))
    engine = LLMEngine(tiny_model, num_blocks=256, max_num_batched_tokens=128)
    feats, secs = profile_engine(engine, budget_s=3.0, max_steps=60, max_prompt=100, max_output=8)
    assert len(feats) >= 10 and all(s > 0 for s in secs)
    assert any(f.n_prefill > 0 for f in feats) and any(f.n_decode > 0 for f in feats)
    assert all(f.n_prefill <= 128 for f in feats)  # the token budget chunks prefill
    assert not engine.has_unfinished()
    m = fitted_cost_model(engine, budget_s=3.0)
    cached = list((tmp_path / "costmodel").glob("*.json"))
    assert len(cached) == 1
    m2 = fitted_cost_model(engine, budget_s=3.0)  # from the cache, no profiling
    assert m2.intercept_ == m.intercept_ and np.array_equal(m2.coef_, m.coef_)
