"""The search space: orthogonal arms, pipelines on raw columns, the joint space's prefixes."""
import math

import optuna
import pandas as pd
import pytest

from boasf.space import FAMILIES, Param, build_pipeline, orthogonal_arms, suggest_joint


def test_orthogonal_arms_are_two_to_the_d_without_duplicates():
    arms = orthogonal_arms("svc")  # C and gamma: 2 parameters cut -> 4 arms
    assert len(arms) == 4
    sigs = {tuple(p.key() for p in a.space) for a in arms}
    assert len(sigs) == 4


def test_log_ranges_are_cut_at_the_geometric_midpoint():
    lo, hi = Param("C", "float", 1e-2, 1e2, log=True).split()
    assert lo.high == pytest.approx(1.0) and hi.low == pytest.approx(1.0)
    a, b = Param("x", "float", 0.0, 1.0).split()
    assert a.high == b.low == 0.5


def test_single_choices_and_degenerate_ints_do_not_duplicate_arms():
    arms = orthogonal_arms("knn")  # n_neighbors, weights, p (p in 1..2)
    assert len(arms) == 8
    assert len({tuple(p.key() for p in a.space) for a in arms}) == len(arms)
    single = Param("k", "cat", choices=("only",))
    assert single.split() == (single, single)


def test_orthogonal_arm_count_is_capped():
    arms = orthogonal_arms("hgb", max_arms=4)  # 5 parameters, only 2 cut
    assert len(arms) == 4


def test_every_family_builds_and_fits_a_pipeline_on_raw_columns():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    df = pd.DataFrame({"num": [0.1, 0.5, 0.9, 0.3, 0.7, 0.2, 0.8, 0.4] * 8,
                       "txt": ["a", "b", "a", "c", "b", "a", "c", "b"] * 8})
    y = [0, 1, 1, 0, 1, 0, 1, 0] * 8  # > 50 rows: k-NN may ask for 50 neighbours
    for key, fam in FAMILIES.items():
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        trial = study.ask()
        params = {p.name: p.suggest(trial) for p in fam.space()}
        model = build_pipeline(key, params, ["num"], ["txt"]).fit(df, y)
        new = pd.DataFrame({"num": [0.5], "txt": ["never-seen"]})  # unknown category must not fail
        assert model.predict(new).shape == (1,)


def test_joint_space_prefixes_parameters_by_family():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):  # lr's and svc's C have different ranges: prefixes keep optuna happy
        t = study.ask()
        family, params = suggest_joint(t, ["lr", "svc"])
        assert all(k == "family" or k.startswith(f"{family}__") for k in t.params)
        study.tell(t, 0.5)
    assert not math.isnan(study.best_value)
