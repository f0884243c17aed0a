"""Parser exactness on generated notes; survival C-index on UCI; sampled Shapley additivity."""
import numpy as np

from hfassess.evaluation import repeated_folds
from hfassess.explain import modality_shapley, sampled_shapley
from hfassess.notes import parse_medications
from hfassess.records import load_data
from hfassess.survival import band, evaluate_survival
from hfassess.synth_notes import make_notes


def test_parser_recovers_200_generated_prescription_lists_exactly():
    notes = make_notes(200, seed=3, typo_rate=0.15)
    for n in notes:
        assert n["synthetic"] and n["note"].startswith("[SYNTHETIC NOTE]")
        key = lambda ms: sorted((m["drug"], m["dose_mg"], m["frequency"]) for m in ms)  # noqa: E731
        assert key(parse_medications(n["note"])) == key(n["medications"]), n["note"]


def test_cox_c_index_on_uci_above_065():
    ds = load_data("uci-hf")
    res = evaluate_survival(ds.X, ds.y, ds.duration, repeated_folds(ds.y, 5, 1), names=("cox",), n_boot=100)
    assert res["cox"]["c_index"]["mean"] > 0.65
    assert 0.0 < res["cox"]["ibs"]["mean"] < 0.25


def test_bands():
    assert (band(0.05), band(0.10), band(0.3)) == ("low", "medium", "high")


def test_sampled_shapley_is_exact_for_a_linear_model():
    w = np.array([1.0, -2.0, 0.5])
    bg = np.random.default_rng(0).normal(size=(50, 3))
    x = np.array([1.0, 1.0, 1.0])
    phi = sampled_shapley(lambda A: A @ w, x, bg, n_permutations=400, seed=0)
    np.testing.assert_allclose(phi, w * (x - bg.mean(0)), atol=0.35)


def test_modality_shapley_sums_to_gain_over_chance():
    mods = ["tabular", "echo", "text"]
    v = {frozenset(["tabular"]): 0.6, frozenset(["echo"]): 0.6, frozenset(["text"]): 0.6,
         frozenset(["tabular", "echo"]): 0.7, frozenset(["tabular", "text"]): 0.7,
         frozenset(["echo", "text"]): 0.7, frozenset(mods): 0.8}
    phi = modality_shapley(v, mods)
    assert abs(sum(phi.values()) - 0.3) < 1e-3
    assert len({round(x, 4) for x in phi.values()}) == 1


def test_permutation_importance_ranks_ef_and_creatinine_high():
    from hfassess.explain import permutation_global
    from hfassess.tabular import make_lr

    ds = load_data("uci-hf")
    rows = permutation_global(make_lr, ds.X, ds.y, repeated_folds(ds.y, 2, 1), n_repeats=2)
    top3 = [r["feature"] for r in rows[:3]]
    assert "ejection_fraction" in top3 and "serum_creatinine" in top3
