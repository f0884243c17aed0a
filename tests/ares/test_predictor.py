"""Predictors on planted signals (no engine): learnable, honest splits, save/load, hidden-size guard."""
import numpy as np
import pytest

from ares.collect import Records
from ares.evaluate import evaluate, kendall_tau, mae_by_bin, split
from ares.predictor import PREDICTORS, load_predictor, make_predictor
from papersuite.errors import UserError


def planted(n_req=160, d=32, every=4, seed=0) -> Records:
    """Hidden states that encode the remaining length r along a fixed direction, plus noise."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=d)
    direction /= np.linalg.norm(direction)
    hs, hms, ts, rs, reqs, requests = [], [], [], [], [], []
    for q in range(n_req):
        L = int(rng.integers(8, 200))
        words = "short" if L < 60 else "long essay"
        requests.append({"id": f"p{q:05d}", "prompt": f"please write a {words} about topic {q % 7}",
                         "output_tokens": L})
        acc = np.zeros(d)
        for t in range(0, L, every):
            h = direction * (L - t) / 50 + rng.normal(scale=0.02, size=d)
            if t:
                acc += h
            hs.append(h)
            hms.append(acc / max(1, t // every) if t else h)
            ts.append(t)
            rs.append(L - t)
            reqs.append(q)
    f = np.float32
    return Records(np.array(hs, f), np.array(hms, f), np.array(ts), np.array(rs), np.array(reqs), requests,
                   {"hidden_size": d})


@pytest.fixture(scope="module")
def rec():
    return planted()


def test_split_is_by_request(rec):
    tr, va, te = split(rec, seed=1)
    a, b, c = set(tr.req), set(va.req), set(te.req)
    assert not (a & b or a & c or b & c) and len(a | b | c) == len(rec.requests)
    assert abs(len(a) / len(rec.requests) - 0.7) < 0.02
    assert np.all(rec.t + rec.r == rec.lengths)


@pytest.mark.parametrize("name", ["ares", "ares-literal"])
def test_hidden_state_predictors_learn_planted_signal(rec, name):
    tr, va, te = split(rec, seed=0)
    pred = make_predictor(name, epochs=60, random_state=0).fit(tr, va)
    mae = np.abs(pred.predict(te) - te.r).mean()
    assert mae < 0.05 * te.r.mean()  # the bar: MAE under 5 % of the mean
    const = make_predictor("constant").fit(tr, va)
    assert mae < 0.5 * np.abs(const.predict(te) - te.r).mean()


def test_save_load_and_hidden_size_guard(rec, tmp_path):
    tr, va, te = split(rec, seed=0)
    pred = make_predictor("ares", epochs=5).fit(tr, va)
    path = tmp_path / "p.pt"
    pred.save(path)
    again = load_predictor(path)
    np.testing.assert_allclose(again.predict(te), pred.predict(te))
    other = planted(n_req=10, d=16)
    with pytest.raises(UserError, match="hidden size 32"):
        again.predict(other)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(UserError, match="not a predictor"):
        load_predictor(tmp_path / "junk.pt")
    with pytest.raises(UserError, match="unknown predictor"):
        make_predictor("magic")


def test_all_predictors_run_and_metrics(rec):
    out = evaluate(rec, [p for p in PREDICTORS if p != "prompt-minilm"], seeds=[0], epochs=5)
    for name, res in out.items():
        assert res["mae"] > 0 and set(res["mae_by_bin"]) == {"t=0", "[1,32)", "[32,128)", "[128,512)", ">=512"}
        assert res["us_per_call"] > 0
    assert out["elapsed-median"]["mae"] < out["constant"]["mae"]


def test_metric_helpers():
    t = np.array([0, 0, 0, 0, 0, 40])
    r = np.array([10, 20, 30, 40, 50, 5])
    assert kendall_tau(t, r, r * 2.0) == pytest.approx(1.0)
    assert kendall_tau(t, r, -r * 1.0) == pytest.approx(-1.0)
    bins = mae_by_bin(t, r, r + 1.0)
    assert bins["t=0"] == 1.0 and bins["[32,128)"] == 1.0 and bins[">=512"] is None
