"""Change detector, phases, simulator and policy against hand-computed cases."""
import pytest
import torch

from chameleon.matcher import Fingerprint, Matcher
from chameleon.policy import generate
from chameleon.profiler import SEARCH, STABLE, WARMUP, Candidate, ChangeDetector, PhaseMachine, Profile
from chameleon.simulate import Transfer, simulate
from chameleon.stages import Stage


def _sig(items):
    """items: list of (layer, tensor) packed in order -> the step's light signature."""
    m = Matcher()
    for layer, t in items:
        m.observe(Stage("FWD", 0, layer), t, t.untyped_storage().nbytes())
    return m.signature


A = torch.zeros(256, 4)
B = torch.zeros(256, 4, dtype=torch.int64)
C = torch.zeros(256)


def test_identical_steps_are_not_flagged():
    base = [("0", A), ("0", B), ("1", A), ("1", C)] * 5
    assert ChangeDetector().compare(_sig(base), _sig(list(base))) is None


def test_count_change_is_flagged():
    base = [("0", A), ("0", B), ("1", A), ("1", C)] * 5
    reason = ChangeDetector().compare(_sig(base + [("1", A)] * 3), _sig(base))
    assert reason and reason.startswith("op count")


def test_same_count_reorder_is_flagged():
    base = [("0", A), ("0", B), ("0", C)] * 4
    swapped = [("0", B), ("0", A), ("0", C)] * 4
    assert ChangeDetector().compare(_sig(swapped), _sig(base)) == "operator order"


def test_bytes_drift_is_flagged_and_skipped_stage_is_not():
    base = [("0", A), ("1", A), ("1.e0", A), ("1.e1", A)]
    bigger = [("0", torch.zeros(512, 4)), ("1", torch.zeros(512, 4)), ("1.e0", A), ("1.e1", A)]
    assert ChangeDetector().compare(_sig(bigger), _sig(base)).startswith("saved bytes")
    skipped_expert = [("0", A), ("1", A), ("1.e0", torch.zeros(512, 4))]
    assert ChangeDetector().compare(_sig(skipped_expert), _sig(base)) is None
    new_stage = base + [("2", A)]
    assert ChangeDetector().compare(_sig(new_stage), _sig(base)).startswith("new stages")


def test_phase_machine_warmup_search_stable_and_back():
    pm = PhaseMachine(warmup_steps=2, stable_steps=3)
    assert pm.phase == WARMUP and not pm.after_warmup_step(False)
    assert pm.after_warmup_step(True) and pm.phase == SEARCH
    for _ in range(3):
        pm.after_search_step()
    assert pm.phase == STABLE and not pm.full_profiling
    pm.back_to_warmup("forced swap")
    assert pm.phase == WARMUP and pm.changes == 1


def test_simulator_without_overlap_adds_copy_time():
    r = simulate([1.0, 1.0, 1.0], [Transfer(100, 0, 2, 2)], (100.0, 50.0), overlap=False)
    assert r.step_seconds == pytest.approx(3.0 + 1.0 + 2.0)


def test_simulator_with_overlap_hand_computed():
    # op0 1s, op1 1s, op2 1s, op3 1s. Out after op0 takes 1s (done t=2), prefetched at op2 (t=2)
    # takes 2s (done t=4), used at op3 which would start at t=3: 1s stall.
    r = simulate([1.0] * 4, [Transfer(100, 0, 3, 2)], (100.0, 50.0), overlap=True)
    assert r.stall_seconds == pytest.approx(1.0) and r.late == 1
    assert r.step_seconds == pytest.approx(5.0)
    early = simulate([1.0] * 4, [Transfer(100, 0, 3, 1)], (100.0, 100.0), overlap=True)
    assert early.stall_seconds == 0.0 and early.step_seconds == pytest.approx(4.0)


def _fp(i):
    return Fingerprint("FWD", 0, str(i), "MmBackward0", 0, "float32", 2)


def test_policy_swaps_the_fewest_largest_candidates_to_meet_budget():
    # memory per op: rises through forward, peaks at op 5, falls in backward
    mem = [10, 20, 30, 40, 50, 60, 50, 40, 30, 20]
    cands = [Candidate(_fp(0), 10, 0, 9, 0, 0), Candidate(_fp(1), 20, 1, 8, 1, 1),
             Candidate(_fp(2), 5, 2, 7, 2, 2), Candidate(_fp(3), 10, 4, 6, 3, 3)]
    prof = Profile([0.1] * 10, mem, cands, 6, {}, transient=0, signature=None, step_seconds=1.0)
    pol = generate(prof, budget=40, bandwidth=(1e9, 1e9), overlap=False, min_bytes=1)
    # peak 60 at op 5; the 20-byte candidate (largest, widest) brings it to 40
    assert pol.entries == {_fp(1)} and pol.predicted_peak == 40 and pol.feasible
    # the floor, every candidate out: ops 8 and 9 keep 20 (only candidate 0 covers op 8)
    assert pol.floor == 20
    exact = generate(prof, budget=20, bandwidth=(1e9, 1e9), overlap=False, min_bytes=1)
    assert exact.feasible and exact.entries == {_fp(0), _fp(1), _fp(3)}
    tight = generate(prof, budget=15, bandwidth=(1e9, 1e9), overlap=False, min_bytes=1)
    assert not tight.feasible and tight.predicted_peak == 20
