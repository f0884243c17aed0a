"""SYNTHETIC clips (exact EF, geometric MAE, a CNN epoch) and fusion on a small planted cohort."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from hfassess.echo import CNNEF, GeometricEF
from hfassess.fusion import FusionClassifier, run_ablation
from hfassess.synth_cohort import make_cohort
from hfassess.synth_echo import make_clip, make_clips


def test_generator_ef_is_exact_and_labelled():
    for s in range(20):
        c = make_clip(level=s % 4, seed=s)
        assert abs(100 * (1 - c.esv / c.edv) - c.ef) < 0.5
        npz = c.as_npz()
        assert npz["synthetic"] is True and npz["frames"].shape == (16, 64, 64) and npz["level"] == s % 4


def test_geometric_mae_below_3_on_40_clean_clips():
    tr, te = make_clips(40, level=0, seed=1), make_clips(40, level=0, seed=2)
    m = GeometricEF().fit([c.frames for c in tr], np.array([c.ef for c in tr]))
    mae = np.abs(m.predict([c.frames for c in te]) - np.array([c.ef for c in te])).mean()
    assert mae < 3.0


@pytest.mark.slow
def test_cnn_epoch_on_32_tiny_clips():
    clips = make_clips(32, level=1, frames=8, size=32, seed=3)
    m = CNNEF(epochs=1, width=8, batch_size=16).fit([c.frames for c in clips], np.array([c.ef for c in clips]))
    assert len(m.history_) == 1 and np.isfinite(m.history_[0])
    assert m.predict([clips[0].frames]).shape == (1,)


@pytest.fixture(scope="module")
def planted():
    c = make_cohort(n=300, seed=0)
    rng = np.random.default_rng(0)
    text = rng.normal(size=(300, 8))
    text[:, 0] += 2 * c.non_adherent  # a stand-in for the note embedding (MiniLM is benchmarked)
    return c, {"tabular": c.table.to_numpy(float), "echo": (c.ef + rng.normal(0, 2, 300))[:, None], "text": text}


@pytest.mark.parametrize("strategy", ["early", "late", "fixed", "attention"])
def test_each_fusion_beats_chance(planted, strategy):
    c, feats = planted
    m = FusionClassifier(strategy).fit({k: v[:200] for k, v in feats.items()}, c.y[:200])
    assert roc_auc_score(c.y[200:], m.predict_proba({k: v[200:] for k, v in feats.items()})[:, 1]) > 0.7


def test_attention_runs_with_a_modality_missing(planted):
    c, feats = planted
    m = FusionClassifier("attention").fit({k: v[:200] for k, v in feats.items()}, c.y[:200])
    assert set(m.weights_) == {"tabular", "echo", "text"} and abs(sum(m.weights_.values()) - 1) < 1e-5
    for drop in ("text", "echo"):
        p = m.predict_proba({k: (None if k == drop else v[200:]) for k, v in feats.items()})[:, 1]
        assert np.isfinite(p).all() and roc_auc_score(c.y[200:], p) > 0.6


def test_ablation_subsets_and_shapley(planted):
    c, feats = planted
    r = run_ablation(folds=3, repeats=1, feats=feats, cohort=c, strategies=("early",))
    assert len(r["auroc"]) == 7
    assert r["auroc"]["tabular+echo+text"]["early"] > max(r["auroc"][m]["early"] for m in ("tabular", "echo", "text"))
    phi = r["shapley"]["early"]
    assert abs(sum(phi.values()) - (r["auroc"]["tabular+echo+text"]["early"] - 0.5)) < 1e-3
    assert all(v > 0.02 for v in phi.values())  # every planted modality contributes
