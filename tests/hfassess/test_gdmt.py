"""The rule engine against notes section 5: a case per row and gate, boundaries, ladders."""
import pytest

from hfassess.gdmt import assess_gdmt, ef_class, next_step
from hfassess.notes import parse_medications

BASE = {"ejection_fraction": 30, "nyha": 2, "sbp": 120, "heart_rate": 75, "potassium": 4.2, "egfr": 60,
        "angioedema_history": 0, "av_block": "none", "pacemaker": 0, "decompensated": 0, "weight_kg": 80}


def run(meds=None, **changes):
    p = {**BASE, **changes}
    return assess_gdmt(p, meds if meds is not None else [])["pillars"]


def med(drug, dose, freq="qd"):
    return {"drug": drug, "dose_mg": dose, "frequency": freq}


def test_ef_classes():
    assert ef_class(40, None) == "HFrEF" and ef_class(41, None) == "HFmrEF"
    assert ef_class(50, None) == "HFpEF" and ef_class(55, 35) == "HFimpEF" and ef_class(45, 45) == "HFmrEF"


def test_naive_hfref_starts_all_four_pillars():
    p = run()
    assert [p[k]["status"] for k in ("rasi", "beta_blocker", "mra", "sglt2i")] == ["start"] * 4
    assert (p["rasi"]["agent"], p["rasi"]["dose_mg"], p["rasi"]["frequency"]) == ("sacubitril/valsartan", 50, "bid")
    assert (p["beta_blocker"]["agent"], p["beta_blocker"]["dose_mg"]) == ("bisoprolol", 1.25)
    assert (p["mra"]["agent"], p["mra"]["dose_mg"]) == ("spironolactone", 25)
    assert p["sglt2i"]["agent"] == "dapagliflozin" and p["rasi"]["cor"] == "1"
    assert all(p[k]["rule"] and p[k]["reason"] and "CIR.0000000000001063" in p[k]["citation"] for k in p)


def test_nyha_i_and_iv_start_enalapril_and_mra_not_indicated_nyha_i():
    assert run(nyha=4)["rasi"]["agent"] == "enalapril"
    p = run(nyha=1)
    assert p["rasi"]["agent"] == "enalapril" and p["mra"]["status"] == "not_indicated"


def test_no_medications_anywhere_means_needs_data():
    out = assess_gdmt({k: v for k, v in BASE.items()})
    assert all(v["status"] == "needs_data" and "medications" in v["missing"] for v in out["pillars"].values())


def test_needs_data_lists_missing_fields():
    p = {k: v for k, v in BASE.items() if k not in ("potassium", "heart_rate")}
    out = assess_gdmt(p, [])["pillars"]
    assert out["rasi"]["missing"] == ["potassium"] and out["mra"]["missing"] == ["potassium"]
    assert out["beta_blocker"]["missing"] == ["heart_rate"] and out["sglt2i"]["status"] == "start"
    out = assess_gdmt({**BASE, "av_block": "second", "pacemaker": None}, [])["pillars"]
    assert out["beta_blocker"]["missing"] == ["pacemaker"]


@pytest.mark.parametrize("k,status", [(4.9, "start"), (5.0, "blocked")])
def test_potassium_boundary_for_start(k, status):
    p = run(potassium=k)
    assert p["rasi"]["status"] == status and p["mra"]["status"] == status
    if status == "blocked":
        assert p["mra"]["blocked_by"] == ["potassium_high"]


@pytest.mark.parametrize("egfr,rasi,mra,sglt,agent", [(30, "start", "blocked", "start", "dapagliflozin"),
                                                       (29, "blocked", "blocked", "start", "empagliflozin"),
                                                       (19, "blocked", "blocked", "blocked", "empagliflozin"),
                                                       (31, "start", "start", "start", "dapagliflozin")])
def test_egfr_boundaries(egfr, rasi, mra, sglt, agent):
    p = run(egfr=egfr)
    assert (p["rasi"]["status"], p["mra"]["status"], p["sglt2i"]["status"]) == (rasi, mra, sglt)
    if sglt == "start":
        assert p["sglt2i"]["agent"] == agent
    if mra == "start":
        assert p["mra"]["dose_mg"] == 12.5  # eGFR <= 49


@pytest.mark.parametrize("sbp,rasi,bb", [(100, "start", "start"), (99, "blocked", "start"),
                                         (89, "blocked", "blocked")])
def test_sbp_boundaries(sbp, rasi, bb):
    p = run(sbp=sbp)
    assert (p["rasi"]["status"], p["beta_blocker"]["status"]) == (rasi, bb)


@pytest.mark.parametrize("hr,status", [(60, "start"), (59, "blocked")])
def test_hr_start_boundary(hr, status):
    assert run(heart_rate=hr)["beta_blocker"]["status"] == status


def test_reduce_rows_and_step_below():
    bb = run([med("bisoprolol", 5)], heart_rate=49)["beta_blocker"]
    assert bb["status"] == "reduce" and bb["dose_mg"] == 2.5 and bb["blocked_by"] == ["hr_low"]
    assert run([med("bisoprolol", 5)], heart_rate=50)["beta_blocker"]["status"] == "continue"
    r = run([med("sacubitril/valsartan", 100, "bid")], sbp=85)["rasi"]
    assert r["status"] == "reduce" and r["dose_mg"] == 50
    r = run([med("sacubitril/valsartan", 100, "bid")], potassium=5.6)["rasi"]
    assert r["status"] == "reduce" and r["blocked_by"] == ["potassium_high"]


def test_stop_rows():
    assert run([med("spironolactone", 25)], potassium=5.5)["mra"]["status"] == "stop"
    assert run([med("spironolactone", 25)], egfr=29)["mra"]["status"] == "stop"
    assert run([med("carvedilol", 12.5, "bid")], av_block="third")["beta_blocker"]["status"] == "stop"
    assert run([med("carvedilol", 12.5, "bid")], av_block="third", pacemaker=1)["beta_blocker"]["status"] == "titrate"
    assert run([med("enalapril", 5, "bid")], angioedema_history=1)["rasi"]["status"] == "stop"
    # SGLT2i has no stop rule
    assert run([med("dapagliflozin", 10)], egfr=15)["sglt2i"]["status"] == "at_target"


def test_switch_rows():
    r = run([med("enalapril", 10, "bid")], nyha=3)["rasi"]
    assert r["status"] == "switch" and r["dose_mg"] == 100 and "36 hours" in r["reason"]
    r = run([med("losartan", 25)], nyha=2)["rasi"]
    assert r["status"] == "switch" and r["dose_mg"] == 50 and "36 hours" not in r["reason"]
    # ARNI gate fails (K+ 5.0): no switch, and K+ blocks titration -> continue
    r = run([med("enalapril", 5, "bid")], potassium=5.0)["rasi"]
    assert r["status"] == "continue" and r["blocked_by"] == ["potassium_high"]
    assert run([med("enalapril", 5, "bid")], nyha=1)["rasi"]["status"] == "titrate"
    b = run([med("metoprolol tartrate", 50, "bid")])["beta_blocker"]
    assert b["status"] == "switch" and b["agent"] == "metoprolol succinate"
    assert run([med("atenolol", 50)])["beta_blocker"]["agent"] == "bisoprolol"
    assert run([med("canagliflozin", 100)])["sglt2i"]["agent"] == "dapagliflozin"


def test_ladders_titrate_and_at_target():
    assert run([med("bisoprolol", 2.5)])["beta_blocker"]["dose_mg"] == 5
    assert run([med("bisoprolol", 10)])["beta_blocker"]["status"] == "at_target"
    assert run([med("metoprolol succinate", 100)])["beta_blocker"]["dose_mg"] == 200
    assert run([med("spironolactone", 12.5)])["mra"]["dose_mg"] == 25
    assert run([med("losartan", 50)], nyha=1)["rasi"]["status"] == "at_target"
    assert run([med("sacubitril/valsartan", 100, "bid")])["rasi"]["dose_mg"] == 200
    assert next_step("enalapril", 7.5, {}) == 10  # off-ladder dose: smallest step above


def test_carvedilol_target_depends_on_weight():
    assert run([med("carvedilol", 25, "bid")], weight_kg=85)["beta_blocker"]["status"] == "at_target"
    b = run([med("carvedilol", 25, "bid")], weight_kg=86)["beta_blocker"]
    assert b["status"] == "titrate" and b["dose_mg"] == 50


def test_titration_gated_by_decompensation():
    b = run([med("bisoprolol", 2.5)], decompensated=1)["beta_blocker"]
    assert b["status"] == "continue" and b["blocked_by"] == ["decompensated"]
    assert run(decompensated=1)["beta_blocker"]["status"] == "blocked"


def test_arni_washout_gate():
    r = run(last_acei_hours=24)["rasi"]
    assert r["status"] == "blocked" and r["blocked_by"] == ["acei_washout"]
    assert run(last_acei_hours=36)["rasi"]["status"] == "start"


def test_hfimpef_uses_hfref_rules_and_ef_over_40_considers():
    p = run([med("enalapril", 5, "bid")], ejection_fraction=50, prior_ef=35)
    assert p["rasi"]["status"] == "switch"
    p = run(ejection_fraction=45)
    assert p["rasi"]["status"] == "consider" and p["rasi"]["cor"] == "2b"
    assert p["beta_blocker"]["status"] == "consider" and p["sglt2i"]["status"] == "start"
    assert p["sglt2i"]["cor"] == "2a"
    p = run([med("bisoprolol", 2.5)], ejection_fraction=55)
    assert p["beta_blocker"]["status"] == "continue"
    assert run(ejection_fraction=55)["beta_blocker"]["status"] == "not_indicated"


def test_medications_from_a_note():
    note = ("Continue Entresto 49/51 mg twice daily. Titrated carvedilol from 6.25 mg to 12.5 mg bid. "
            "Spironolactone 25 mg daily.")
    meds = parse_medications(note)
    assert meds == [med("sacubitril/valsartan", 100.0, "bid"), med("carvedilol", 12.5, "bid"),
                    med("spironolactone", 25.0, "qd")]
    p = assess_gdmt({**BASE}, meds)["pillars"]
    assert p["rasi"]["dose_mg"] == 200 and p["beta_blocker"]["dose_mg"] == 25
    assert p["mra"]["status"] == "at_target" and p["sglt2i"]["status"] == "start"


def test_ivabradine_other():
    p = {**BASE, "ejection_fraction": 30, "rhythm": "sinus", "heart_rate": 80}
    other = assess_gdmt(p, [med("bisoprolol", 10)])["other"]
    assert other[0] == {**other[0], "therapy": "ivabradine", "status": "consider"}
    assert {o["therapy"] for o in other if o["status"] == "not_assessable"} == {"hydralazine/ISDN", "ICD", "CRT"}
