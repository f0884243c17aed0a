"""Unit tests of the BOASF formulas (notes section 2): UCB, keep probability, shares, budgets."""
import math

import numpy as np
import pytest

from boasf.filtering import (EMPTY_SD, filter_arms, integer_allocation, keep_probabilities, round_budgets,
                             softmax_shares, ucb)
from boasf.search import parse_budget
from papersuite.errors import UserError


def test_ucb_log2_bonus_matches_formula():
    x = [0.6, 0.7, 0.8]
    sd = np.std(x)  # population sd
    assert ucb(x, c=2, bonus="log2") == pytest.approx(0.7 + 2 * sd / math.log2(5))


def test_ucb_sqrt_bonus_matches_formula():
    x = [0.6, 0.7, 0.8, 0.9]
    assert ucb(x, c=2, bonus="sqrt") == pytest.approx(0.75 + 2 * np.std(x) / 2.0)


def test_ucb_without_rewards_is_the_authors_prior():
    assert ucb([], c=2, bonus="log2") == pytest.approx(2 * EMPTY_SD / math.log2(2))


def test_ucb_max_score_uses_best_reward():
    x = [0.2, 0.2, 0.9]
    assert ucb(x, score="max-ucb") - ucb(x, score="mean-ucb") == pytest.approx(0.9 - np.mean(x))


def test_keep_probability_best_kept_worst_dropped():
    p = keep_probabilities({"a": 0.9, "b": 0.7, "c": 0.5})
    assert p == pytest.approx({"a": 1.0, "b": 0.5, "c": 0.0})
    rng = np.random.default_rng(0)
    for _ in range(50):
        kept, _ = filter_arms({"a": 0.9, "b": 0.7, "c": 0.5}, rng)
        assert "a" in kept and "c" not in kept


def test_keep_probability_ties_are_one_over_n_and_redraw_keeps_someone():
    p = keep_probabilities({"a": 0.5, "b": 0.5, "c": 0.5, "d": 0.5})
    assert p == pytest.approx({k: 0.25 for k in "abcd"})
    rng = np.random.default_rng(1)
    sizes = [len(filter_arms({"a": 0.5, "b": 0.5, "c": 0.5, "d": 0.5}, rng)[0]) for _ in range(200)]
    assert min(sizes) >= 1  # nobody kept -> drawn again
    # expected survivors given at least one: 1 / (1 - 0.75**4) about 1.46
    assert 1.2 < np.mean(sizes) < 1.8


def test_softmax_shares_paper_temperature_is_near_uniform():
    s = softmax_shares({"a": 0.85, "b": 0.80, "c": 0.70, "d": 0.60})
    assert [round(100 * s[k]) for k in "abcd"] == [28, 26, 24, 22]
    assert sum(s.values()) == pytest.approx(1.0)


def test_softmax_shares_standardised_temperature_favours_strong_arms():
    s = softmax_shares({"a": 0.85, "b": 0.80, "c": 0.70, "d": 0.60}, temperature=0.5)
    assert s["a"] > 0.5 and s["d"] < 0.05


def test_round_split_and_integer_allocation():
    assert round_budgets(90, 3) == [30, 30, 30]
    alloc = integer_allocation(10, {"a": 0.5, "b": 0.3, "c": 0.2})
    assert sum(alloc.values()) == 10 and min(alloc.values()) >= 1 and alloc["a"] >= alloc["b"] >= alloc["c"]
    assert integer_allocation(3, {"a": 0.9, "b": 0.05, "c": 0.05}) == {"a": 1, "b": 1, "c": 1}


@pytest.mark.parametrize("text,seconds", [("90", 90), ("90s", 90), ("2m", 120), ("1h", 3600), ("1.5m", 90)])
def test_budget_parsing(text, seconds):
    assert parse_budget(text) == seconds


def test_budget_parsing_refuses_junk():
    with pytest.raises(UserError, match="cannot read --budget"):
        parse_budget("ten minutes")
