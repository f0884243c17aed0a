"""Leakage: `time` never a feature, permuting it changes nothing, folds and preprocessing clean."""
import numpy as np
import pandas as pd
import pytest

from hfassess import store
from hfassess.evaluation import calibration_slope, repeated_folds
from hfassess.records import LeakageError, load_data
from hfassess.tabular import HFRiskModel, make_lr


@pytest.fixture(scope="module")
def uci():
    return load_data("uci-hf")


def test_time_in_no_feature_list(uci, tmp_path):
    assert "time" not in uci.features
    with pytest.raises(LeakageError):
        HFRiskModel(n_estimators=20).fit(uci.X.assign(time=uci.duration), uci.y)


@pytest.mark.slow
def test_permuting_time_leaves_classifier_identical(uci):
    rng = np.random.default_rng(0)
    a = store.train(uci, seed=0, survival="")
    uci2 = load_data("uci-hf")
    uci2.duration = rng.permutation(uci2.duration)
    b = store.train(uci2, seed=0, survival="")
    assert a.manifest["features"] == b.manifest["features"] and "time" not in a.manifest["features"]
    np.testing.assert_array_equal(a.classifier.predict_proba(uci.X), b.classifier.predict_proba(uci.X))


def test_no_patient_in_two_test_folds_of_a_repeat(uci):
    folds = repeated_folds(uci.y, 5, 3, seed=1)
    for r in range(3):
        tests = [f.test for f in folds if f.repeat == r]
        allidx = np.concatenate(tests)
        assert len(allidx) == len(set(allidx)) == len(uci.y)
        for f in folds:
            assert not set(f.train) & set(f.test)


def test_scaler_and_imputer_fit_on_training_rows_only(uci):
    tr = np.arange(150)
    X = uci.X.copy()
    X.iloc[200:, X.columns.get_loc("age")] = np.nan  # test rows: missing ages, extreme values elsewhere
    X.iloc[150:200, X.columns.get_loc("serum_sodium")] = 180
    pipe = make_lr().fit(X.iloc[tr], uci.y[tr])
    imp, scaler = pipe.steps[1][1], pipe.steps[2][1]
    j = list(X.columns).index("serum_sodium")
    assert imp.statistics_[0] == pytest.approx(np.nanmedian(X["age"].iloc[tr]))
    assert scaler.mean_[j] == pytest.approx(X["serum_sodium"].iloc[tr].mean())


def test_calibration_slope_of_perfect_probabilities_is_one():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, 4000)
    y = (rng.uniform(size=4000) < p).astype(int)
    assert calibration_slope(y, p) == pytest.approx(1.0, abs=0.15)
