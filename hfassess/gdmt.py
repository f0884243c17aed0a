"""GDMT rule engine: notes section 5 (2022 AHA/ACC/HFSA guideline) as data plus a decision order.

Why rules and not a model: the paper's "treatment optimisation" recommends nothing; a
guideline-concordance check is what a researcher can audit. Ladders, targets and gates are
tables below; `assess_gdmt` walks the per-pillar decision order (first matching row wins) and
returns, for each pillar, a status with agent, dose, the failing gates, missing data, class of
recommendation, rule id, reason and citation. Research use only: not a prescription.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

CITATION = ("Heidenreich PA et al. 2022 AHA/ACC/HFSA Guideline for the Management of Heart Failure. "
            "Circulation 2022;145:e895-e1032. doi:10.1161/CIR.0000000000001063")


@dataclass(frozen=True)
class Ladder:
    """Dose steps (mg per dose), dosing frequency and the target (first at-target dose)."""

    pillar: str
    cls: str  # arni | acei | arb | bb | mra | sglt2i
    frequency: str
    steps: tuple[float, ...]
    target: float


LADDERS: dict[str, Ladder] = {
    "sacubitril/valsartan": Ladder("rasi", "arni", "bid", (50, 100, 200), 200),
    "enalapril": Ladder("rasi", "acei", "bid", (2.5, 5, 10, 20), 10),
    "lisinopril": Ladder("rasi", "acei", "qd", (2.5, 5, 10, 20, 40), 20),
    "ramipril": Ladder("rasi", "acei", "qd", (1.25, 2.5, 5, 10), 10),
    "captopril": Ladder("rasi", "acei", "tid", (6.25, 12.5, 25, 50), 50),
    "candesartan": Ladder("rasi", "arb", "qd", (4, 8, 16, 32), 32),
    "losartan": Ladder("rasi", "arb", "qd", (25, 50, 100, 150), 50),
    "valsartan": Ladder("rasi", "arb", "bid", (40, 80, 160), 160),
    "bisoprolol": Ladder("beta_blocker", "bb", "qd", (1.25, 2.5, 5, 10), 10),
    "carvedilol": Ladder("beta_blocker", "bb", "bid", (3.125, 6.25, 12.5, 25, 50), 25),
    "metoprolol succinate": Ladder("beta_blocker", "bb", "qd", (12.5, 25, 50, 100, 200), 200),
    "spironolactone": Ladder("mra", "mra", "qd", (12.5, 25, 50), 25),
    "eplerenone": Ladder("mra", "mra", "qd", (25, 50), 50),
    "dapagliflozin": Ladder("sglt2i", "sglt2i", "qd", (10,), 10),
    "empagliflozin": Ladder("sglt2i", "sglt2i", "qd", (10,), 10),
}
#: Agents in a pillar's drug class that are not guideline pillar agents -> what to switch to.
NON_PILLAR: dict[str, tuple[str, str]] = {
    "metoprolol tartrate": ("beta_blocker", "metoprolol succinate"),
    "atenolol": ("beta_blocker", "bisoprolol"),
    "nebivolol": ("beta_blocker", "bisoprolol"),
    "canagliflozin": ("sglt2i", "dapagliflozin"),
    "ertugliflozin": ("sglt2i", "dapagliflozin"),
}
ALIASES = {
    "entresto": "sacubitril/valsartan", "sacubitril-valsartan": "sacubitril/valsartan",
    "sacubitril valsartan": "sacubitril/valsartan", "arni": "sacubitril/valsartan",
    "toprol xl": "metoprolol succinate", "toprol-xl": "metoprolol succinate",
    "metoprolol er": "metoprolol succinate", "metoprolol xl": "metoprolol succinate",
    "lopressor": "metoprolol tartrate", "coreg": "carvedilol", "aldactone": "spironolactone",
    "inspra": "eplerenone", "farxiga": "dapagliflozin", "forxiga": "dapagliflozin",
    "jardiance": "empagliflozin", "invokana": "canagliflozin", "steglatro": "ertugliflozin",
}
PILLARS = ("rasi", "beta_blocker", "mra", "sglt2i")
#: Fields each pillar needs before any decision (row 1), beside ejection_fraction, nyha, medications.
REQUIRED = {
    "rasi": ("sbp", "potassium", "egfr", "angioedema_history"),
    "beta_blocker": ("heart_rate", "sbp", "av_block", "decompensated"),
    "mra": ("potassium", "egfr"),
    "sglt2i": ("egfr",),
}
HAZARD_RATIOS = {  # population averages from the trials, for the optional "what if"
    "rasi": ("PARADIGM-HF, sacubitril/valsartan vs enalapril, CV death or HF hospitalisation", 0.80),
    "sglt2i_dapagliflozin": ("DAPA-HF, worsening HF or CV death", 0.74),
    "sglt2i_empagliflozin": ("EMPEROR-Reduced, CV death or HF hospitalisation", 0.75),
}


def canonical_drug(name: str) -> str:
    n = " ".join(name.strip().lower().replace("_", " ").split())
    return ALIASES.get(n, n)


def ef_class(ef: float, prior_ef: float | None) -> str:
    """HFrEF EF <= 40; HFimpEF EF > 40 after EF <= 40; HFmrEF 41-49; HFpEF >= 50."""
    if ef <= 40:
        return "HFrEF"
    if prior_ef is not None and prior_ef <= 40:
        return "HFimpEF"
    return "HFmrEF" if ef < 50 else "HFpEF"


@dataclass
class Decision:
    """One pillar's decision in the notes' fields."""

    pillar: str
    status: str
    rule: str
    reason: str
    agent: str | None = None
    dose_mg: float | None = None
    frequency: str | None = None
    blocked_by: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    cor: str | None = None
    citation: str = CITATION

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- gates -----------------------------------------------------------------------------------

def _start_gates(pillar: str, agent: str, p: dict[str, Any], *, titration: bool = False) -> list[str]:
    """Failing gates for starting (or, with titration=True, up-titrating) `agent`."""
    failing: list[str] = []
    cls = LADDERS[agent].cls
    egfr, k, sbp = p.get("egfr"), p.get("potassium"), p.get("sbp")
    if pillar == "rasi":
        if sbp < 100:
            failing.append("sbp_low")
        if k >= 5.0:
            failing.append("potassium_high")
        if egfr < 30:
            failing.append("egfr_low")
        if not titration and cls in ("arni", "acei") and p.get("angioedema_history"):
            failing.append("angioedema")
        if (not titration and cls == "arni" and p.get("last_acei_hours") is not None
                and p["last_acei_hours"] < 36):
            failing.append("acei_washout")
    elif pillar == "beta_blocker":
        if sbp < 90:
            failing.append("sbp_low")
        if p.get("heart_rate") < 60:
            failing.append("hr_low")
        if _av_block_unpaced(p):
            failing.append("av_block")
        if p.get("decompensated"):
            failing.append("decompensated")
    elif pillar == "mra":
        if k >= 5.0:
            failing.append("potassium_high")
        if egfr <= 30:
            failing.append("egfr_low")
    elif pillar == "sglt2i":
        if egfr < (30 if agent == "dapagliflozin" else 20):
            failing.append("egfr_low")
    return failing


def _av_block_unpaced(p: dict[str, Any]) -> bool:
    return p.get("av_block") in ("second", "third") and not p.get("pacemaker")


def _stop_gate(pillar: str, ladder: Ladder, p: dict[str, Any]) -> str | None:
    if pillar == "mra" and p["potassium"] >= 5.5:
        return "potassium_high"
    if pillar == "mra" and p["egfr"] < 30:
        return "egfr_low"
    if pillar == "beta_blocker" and _av_block_unpaced(p):
        return "av_block"
    if pillar == "rasi" and ladder.cls in ("arni", "acei") and p["angioedema_history"]:
        return "angioedema"
    return None


def _reduce_gates(pillar: str, p: dict[str, Any]) -> list[str]:
    gates = []
    if pillar in ("rasi", "beta_blocker") and p["sbp"] < 90:
        gates.append("sbp_low")
    if pillar == "rasi" and p["potassium"] >= 5.5:
        gates.append("potassium_high")
    if pillar == "beta_blocker" and p["heart_rate"] < 50:
        gates.append("hr_low")
    return gates


GATE_TEXT = {
    "sbp_low": "systolic BP too low", "potassium_high": "potassium too high",
    "egfr_low": "eGFR too low", "hr_low": "heart rate too low",
    "av_block": "2nd/3rd-degree AV block without a pacemaker", "angioedema": "history of angioedema",
    "acei_washout": "less than 36 h since the last ACE-inhibitor dose",
    "decompensated": "decompensated heart failure",
}


def _gates_text(gates: list[str]) -> str:
    return "; ".join(GATE_TEXT[g] for g in gates)


# -- ladders ---------------------------------------------------------------------------------

def target_dose(agent: str, p: dict[str, Any]) -> float:
    if agent == "carvedilol" and (p.get("weight_kg") or 0) > 85:
        return 50.0
    return LADDERS[agent].target


def next_step(agent: str, dose: float, p: dict[str, Any]) -> float:
    """Smallest step above `dose`, never above the target."""
    tgt = target_dose(agent, p)
    above = [s for s in LADDERS[agent].steps if dose < s <= tgt]
    return min(above) if above else tgt


def step_below(agent: str, dose: float) -> float | None:
    below = [s for s in LADDERS[agent].steps if s < dose]
    return max(below) if below else None


def _start_agent(pillar: str, p: dict[str, Any]) -> str:
    if pillar == "rasi":
        return "sacubitril/valsartan" if p["nyha"] in (2, 3) else "enalapril"
    if pillar == "beta_blocker":
        return "bisoprolol"
    if pillar == "mra":
        return "spironolactone"
    return "empagliflozin" if 20 <= p["egfr"] < 30 else "dapagliflozin"


def _start_dose(agent: str, p: dict[str, Any]) -> float:
    if agent == "spironolactone":
        return 12.5 if p["egfr"] <= 49 else 25.0
    return LADDERS[agent].steps[0]


START_ALTERNATIVES = {
    "beta_blocker": " (alternatives: carvedilol 3.125 mg bid or metoprolol succinate 12.5 mg qd)",
    "sglt2i": "",
    "mra": "",
    "rasi": "",
}


# -- the decision order ----------------------------------------------------------------------

def _current(pillar: str, meds: list[dict[str, Any]]) -> tuple[str, dict[str, Any]] | None:
    """The patient's agent in this pillar (pillar agents first), with its medication entry."""
    for m in meds:
        d = canonical_drug(m["drug"])
        if d in LADDERS and LADDERS[d].pillar == pillar:
            return d, m
    for m in meds:
        d = canonical_drug(m["drug"])
        if d in NON_PILLAR and NON_PILLAR[d][0] == pillar:
            return d, m
    return None


def decide_pillar(pillar: str, p: dict[str, Any], meds: list[dict[str, Any]] | None, efc: str | None
                  ) -> Decision:
    """Walk notes section 5's rows for one pillar; the first matching row wins."""
    missing = [f for f in ("ejection_fraction", "nyha") if p.get(f) is None]
    if meds is None:
        missing.append("medications")
    missing += [f for f in REQUIRED[pillar] if p.get(f) is None]
    if pillar == "beta_blocker" and p.get("av_block") in ("second", "third") and p.get("pacemaker") is None:
        missing.append("pacemaker")
    if missing:
        return Decision(pillar, "needs_data", f"{pillar}.needs_data",
                        f"cannot decide without {', '.join(missing)}", missing=missing)

    reduced_scope = efc in ("HFmrEF", "HFpEF") and pillar != "sglt2i"
    cor = "1" if efc in ("HFrEF", "HFimpEF") else ("2a" if pillar == "sglt2i" else "2b")
    cur = _current(pillar, meds)

    if cur is not None:
        agent, med = cur
        dose = float(med["dose_mg"])
        if agent in NON_PILLAR:
            ladder = LADDERS[NON_PILLAR[agent][1]]
        else:
            ladder = LADDERS[agent]
        stop = _stop_gate(pillar, ladder, p)
        if stop:  # row 2
            return Decision(pillar, "stop", f"{pillar}.stop.{stop}",
                            f"stop {agent}: {GATE_TEXT[stop]}", agent=agent, dose_mg=0.0,
                            frequency=med.get("frequency"), blocked_by=[stop], cor="3: harm")
        reduce = _reduce_gates(pillar, p)
        if reduce:  # row 3
            lower = step_below(agent, dose) if agent in LADDERS else None
            why = f"reduce {agent}: {_gates_text(reduce)}"
            if lower is None:
                why += "; already at or below the lowest step, consider stopping"
            return Decision(pillar, "reduce", f"{pillar}.reduce.{reduce[0]}", why, agent=agent,
                            dose_mg=lower, frequency=med.get("frequency"), blocked_by=reduce, cor=cor)
        if reduced_scope:  # EF > 40, not improved: no switch or titration rows
            return Decision(pillar, "continue", f"{pillar}.continue.ef_gt_40",
                            f"{efc}: continue {agent}; no titration rule at this EF", agent=agent,
                            dose_mg=dose, frequency=med.get("frequency"), cor=cor)
        # row 4: switch
        if agent in NON_PILLAR:
            to = NON_PILLAR[agent][1]
            if to == "dapagliflozin" and p["egfr"] < 30:
                to = "empagliflozin"
            return Decision(pillar, "switch", f"{pillar}.switch.non_pillar",
                            f"{agent} is not a guideline pillar agent; switch to {to}", agent=to,
                            dose_mg=_start_dose(to, p), frequency=LADDERS[to].frequency, cor=cor)
        if ladder.cls in ("acei", "arb") and p["nyha"] in (2, 3):
            arni_block = [g for g in ("angioedema", "sbp_low", "potassium_high", "egfr_low")
                          if g in _start_gates("rasi", "sacubitril/valsartan", p)]
            if not arni_block:
                at_tgt = dose >= target_dose(agent, p)
                why = (f"NYHA {p['nyha']} on {ladder.cls.upper()}: switch {agent} to sacubitril/valsartan "
                       f"{'100' if at_tgt else '50'} mg bid")
                if ladder.cls == "acei":
                    why += "; stop the ACE inhibitor and wait 36 hours before the first ARNI dose (washout)"
                return Decision(pillar, "switch", "rasi.switch.arni", why, agent="sacubitril/valsartan",
                                dose_mg=100.0 if at_tgt else 50.0, frequency="bid", cor=cor)
        tgt = target_dose(agent, p)
        if dose >= tgt:  # row 5
            return Decision(pillar, "at_target", f"{pillar}.at_target",
                            f"{agent} {dose:g} mg {med.get('frequency')} is at or above the target {tgt:g} mg",
                            agent=agent, dose_mg=dose, frequency=med.get("frequency"), cor=cor)
        failing = _start_gates(pillar, agent, p, titration=True)  # row 6
        if not failing:
            nxt = next_step(agent, dose, p)
            return Decision(pillar, "titrate", f"{pillar}.titrate",
                            f"{agent} {dose:g} mg below target {tgt:g} mg; titration gates pass: "
                            f"next step {nxt:g} mg {ladder.frequency}", agent=agent, dose_mg=nxt,
                            frequency=ladder.frequency, cor=cor)
        return Decision(pillar, "continue", f"{pillar}.continue.gated",
                        f"continue {agent} {dose:g} mg; no up-titration: {_gates_text(failing)}",
                        agent=agent, dose_mg=dose, frequency=med.get("frequency"), blocked_by=failing,
                        cor=cor)

    # not on the pillar
    if pillar == "beta_blocker" and efc == "HFpEF":
        return Decision(pillar, "not_indicated", "beta_blocker.not_indicated.hfpef",
                        "HFpEF: no beta-blocker indication for heart failure itself")
    if pillar == "mra" and efc in ("HFrEF", "HFimpEF") and p["nyha"] == 1:  # row 7
        return Decision(pillar, "not_indicated", "mra.not_indicated.nyha1",
                        "NYHA I: MRA is indicated for NYHA II-IV")
    agent = _start_agent(pillar, p)
    failing = _start_gates(pillar, agent, p)
    if pillar == "sglt2i" and failing:  # below empagliflozin's floor too
        failing = ["egfr_low"]
    if failing:  # row 8, blocked
        return Decision(pillar, "blocked", f"{pillar}.blocked",
                        f"not on {pillar}; cannot start {agent}: {_gates_text(failing)}", agent=agent,
                        blocked_by=failing, cor=cor)
    status = "consider" if reduced_scope else "start"
    dose = _start_dose(agent, p)
    why = f"{efc}: {status} {agent} {dose:g} mg {LADDERS[agent].frequency}" + START_ALTERNATIVES[pillar]
    return Decision(pillar, status, f"{pillar}.{status}", why, agent=agent, dose_mg=dose,
                    frequency=LADDERS[agent].frequency, cor=cor)


def _other(p: dict[str, Any], pillars: dict[str, Decision]) -> list[dict[str, Any]]:
    """Listed, not scored: ivabradine, hydralazine/ISDN, ICD, CRT."""
    bb = pillars["beta_blocker"]
    need = [f for f in ("ejection_fraction", "nyha", "heart_rate", "rhythm") if p.get(f) is None]
    if need:
        iva = {"therapy": "ivabradine", "status": "needs_data", "missing": need}
    else:
        bb_ok = bb.status == "at_target" or (bb.status in ("continue", "blocked") and bb.blocked_by)
        ok = (p["ejection_fraction"] <= 35 and p["nyha"] in (2, 3) and p["rhythm"] == "sinus"
              and p["heart_rate"] >= 70 and bb_ok)
        iva = {"therapy": "ivabradine", "status": "consider" if ok else "not_indicated", "cor": "2a",
               "reason": "EF <= 35, NYHA II-III, sinus rhythm, HR >= 70 on a beta-blocker at target or "
                         "gate-limited" + ("" if ok else ": not all met")}
    out = [iva]
    for t in ("hydralazine/ISDN", "ICD", "CRT"):
        out.append({"therapy": t, "status": "not_assessable",
                    "reason": "needs race/ethnicity, QRS width, rhythm history or life expectancy"})
    what_if = []
    for name, d in pillars.items():
        if d.status in ("start", "switch") and name in ("rasi", "sglt2i"):
            key = name if name == "rasi" else f"sglt2i_{d.agent}"
            if key in HAZARD_RATIOS:
                trial, hr = HAZARD_RATIOS[key]
                what_if.append({"pillar": name, "trial": trial, "hazard_ratio": hr,
                                "note": "population average from the trial, not this patient's effect"})
    if what_if:
        out.append({"therapy": "what_if", "status": "informational", "items": what_if})
    return out


def assess_gdmt(inputs: dict[str, Any], medications: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """All four pillars plus `other` for one validated record (canonical units).

    `medications` overrides `inputs["medications"]` (e.g. parsed from the note).
    """
    meds = medications if medications is not None else inputs.get("medications")
    ef = inputs.get("ejection_fraction")
    efc = ef_class(ef, inputs.get("prior_ef")) if ef is not None else None
    pillars = {pl: decide_pillar(pl, inputs, meds, efc) for pl in PILLARS}
    return {"ef_class": efc, "pillars": {k: v.as_dict() for k, v in pillars.items()},
            "other": _other(inputs, pillars), "citation": CITATION}
