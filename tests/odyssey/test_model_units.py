"""Performance model, planner, restorer, selector, DSATUR: fast, single-process."""
import itertools

import pytest
import torch

from odyssey.estimator import Estimator, Profile, eq9_symmetric, eq13_reroute, eq14_memory
from odyssey.groups import dsatur_rounds
from odyssey.layout import Plan, Stage, reroute, shares_to_micro, symmetric
from odyssey.model import GPTConfig, build_module, sample_loss_sum
from odyssey.planner import best_dynamic_plan, brute_force_plan, candidates
from odyssey.restorer import assign
from odyssey.selector import Candidate, choose, eq8_score, score_all


def uniform_profile(layers, tf=1.0, tb=2.0, mem=float("inf")):
    n = layers + 2
    z = lambda v: [0.0] + [v] * layers + [0.0]  # noqa: E731
    return Profile(t_f=z(tf), t_b=z(tb), param_bytes=z(1.0), optim_bytes=z(2.0), act_bytes=z(1.0),
                   boundary_bytes=0.0, memory_bytes=mem)


def test_eq8_worked_example():
    # B = 10; reroute 2 s / 0 s vs dynamic 1 s / 10 s: break-even D = 20 s
    for window, winner in ((15, "reroute"), (40, "replan")):
        cands = [Candidate("reroute", True, 2.0, 0.0), Candidate("replan", True, 1.0, 10.0)]
        score_all(cands, 10, window)
        assert choose(cands).strategy == winner
    assert eq8_score(10, 2.0, 0.0, 20) == pytest.approx(eq8_score(10, 1.0, 10.0, 20))
    assert eq8_score(10, 1.0, 10.0, 10) is None  # transition eats the window: unusable


def test_eq9_and_eq13_match_the_simulated_graph():
    est = Estimator(uniform_profile(8), 8, 8)
    plan = symmetric(2, 2, 8, 8)
    assert est.step_time(plan).t_step == pytest.approx(eq9_symmetric(2, 4, 4.0, 8.0))
    rr = reroute(plan, [3])
    assert est.step_time(rr).t_step == pytest.approx(eq13_reroute(2, 4, 2, [0, 1], 4.0, 8.0))
    assert eq13_reroute(2, 4, 2, [0, 2], 1, 1) is None
    est3 = Estimator(uniform_profile(6), 6, 6)
    rr3 = reroute(symmetric(3, 2, 6, 6), [1])
    assert est3.step_time(rr3).t_step == pytest.approx(eq13_reroute(2, 2, 3, [0, 1], 3.0, 6.0))


def test_eq14_memory_counts_in_flight_micro_batches():
    assert eq14_memory(0, 4, 2, 10, 20, 1) == 2 * 40 + 4 * 2 * 1
    assert eq14_memory(3, 4, 2, 10, 20, 1) == 2 * 40 + 1 * 2 * 1
    est = Estimator(uniform_profile(4), 4, 4)
    mem = est.memory(symmetric(1, 2, 4, 4))
    assert mem[0] > mem[1]  # stage 0 keeps more micro-batches in flight


def test_algorithm1_equals_brute_force():
    for n, layers, mb, mem in ((3, 8, 8, float("inf")), (3, 5, 6, float("inf")), (5, 6, 7, 60.0)):
        est = Estimator(uniform_profile(layers, mem=mem), mb, mb)
        got = best_dynamic_plan(n, layers, mb, est)
        want = brute_force_plan(n, layers, mb, est)
        assert got is not None and got.t_step == pytest.approx(want)
        assert sum(len(p) for p in got.plan.pipelines) == n


def test_memory_limit_drops_plans():
    est = Estimator(uniform_profile(8, mem=40.0), 8, 8)
    got = best_dynamic_plan(3, 8, 8, est)
    assert got is not None and all(v <= 40.0 for v in est.memory(got.plan).values())
    assert best_dynamic_plan(1, 8, 8, Estimator(uniform_profile(8, mem=10.0), 8, 8)) is None


def test_hungarian_keeps_what_survivors_hold():
    template = Plan([[Stage(0, 0, 5), Stage(1, 5, 10)], [Stage(2, 0, 10)]], shares_to_micro([5, 3]))
    holdings = {0: list(range(0, 5)), 1: list(range(5, 10)), 3: list(range(5, 10))}
    plan, moves = assign(template, holdings, [1.0] * 10)
    assert plan.pipelines[0][0].rank == 0
    assert sum(len(v) for v in moves.values()) == 5  # only the 1-stage pipeline's missing half moves


def test_dsatur_rounds_are_conflict_free_and_cover():
    groups = [(0, 1), (1, 2), (2, 3), (0, 3), (4, 5), (0,)]
    rounds = dsatur_rounds(groups)
    assert sorted(g for r in rounds for g in r) == sorted(g for g in groups if len(g) > 1)
    for r in rounds:
        ranks = [x for g in r for x in g]
        assert len(ranks) == len(set(ranks))


def test_lost_last_copy_leaves_only_restart():
    est = Estimator(uniform_profile(4), 4, 4)
    plan = reroute(symmetric(2, 2, 4, 4), [3])
    cands = candidates(plan, [1], [], est, 4, 4, 1.0, 5.0, 2)
    ok = {c.strategy for c in cands if c.feasible}
    assert ok == {"restart"}
    cands = candidates(plan, [1], [], est, 4, 4, 1.0, 5.0, None)
    assert not any(c.feasible for c in cands)


def test_uneven_split_gradient_is_exact():
    """[5, 3, 2] samples over three 'pipelines': summed per-sample losses / B == full-batch grad."""
    torch.manual_seed(0)
    gpt = GPTConfig(layers=1, d_model=16, heads=2, seq_len=8, dtype="float64")
    mods = [build_module(gpt, i, 0) for i in range(gpt.n_modules)]
    x = torch.randint(0, 256, (10, 8))
    y = torch.randint(0, 256, (10, 8))

    def grads(parts):
        for m in mods:
            m.zero_grad()
        for lo, hi in parts:
            h = x[lo:hi]
            for m in mods:
                h = m(h)
            sample_loss_sum(h, y[lo:hi]).backward()
        return torch.cat([p.grad.reshape(-1) / 10 for m in mods for p in m.parameters()])

    full = grads([(0, 10)])
    split = grads([(0, 5), (5, 8), (8, 10)])
    assert torch.allclose(full, split, rtol=1e-10, atol=1e-14)
    # averaging the pipeline means instead would be wrong for uneven splits
    means = [(0, 5), (5, 8), (8, 10)]
    assert not all(hi - lo == 10 / 3 for lo, hi in means)


def test_plan_roundtrip():
    p = reroute(symmetric(2, 2, 4, 4), [2])
    q = Plan.from_dict(p.to_dict())
    assert q.route == p.route and q.dead == p.dead and q.owners() == p.owners()
    assert list(itertools.chain(*q.micro)) == [0, 1, 2, 3]
