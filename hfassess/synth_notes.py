"""SYNTHETIC templated clinical notes with paraphrases and typos (labelled synthetic everywhere).

Why: the paper's prescription text is private. Notes rendered from a record let us test the
parser exactly (ground truth is known) and give the fusion study a text modality whose only
unique signal is a planted factor (non-adherence) that no table column holds.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from hfassess.gdmt import LADDERS

GENERATOR_VERSION = "hfassess-notes-1"
ARNI_TEXT = {50.0: "24/26", 100.0: "49/51", 200.0: "97/103"}
FREQ_TEXT = {"qd": ["qd", "once daily", "daily", "once a day"],
             "bid": ["bid", "twice daily", "b.i.d.", "twice a day"],
             "tid": ["tid", "three times daily", "t.i.d."]}
DRUG_TEXT = {"sacubitril/valsartan": ["sacubitril/valsartan", "Entresto", "sacubitril-valsartan"],
             "metoprolol succinate": ["metoprolol succinate", "Toprol XL"],
             "spironolactone": ["spironolactone", "Aldactone"],
             "dapagliflozin": ["dapagliflozin", "Farxiga"], "empagliflozin": ["empagliflozin", "Jardiance"]}
HISTORY = {"diabetes": "type 2 diabetes", "high_blood_pressure": "hypertension", "anaemia": "anaemia",
           "smoking": "active smoker"}
ADHERENCE = {True: ["Patient admits missing doses most weeks.", "Reports frequently forgetting medications.",
                    "Poor adherence: ran out of tablets twice this month.",
                    "Family notes he often skips his evening pills."],
             False: ["Takes medications as prescribed.", "Adherence good per pill box review.",
                     "No missed doses reported.", "Reports taking all tablets regularly."]}


def random_regimen(rng: np.random.Generator) -> list[dict[str, Any]]:
    """A plausible regimen: 1-4 pillar drugs at random ladder steps."""
    pillars = {"rasi": ["sacubitril/valsartan", "enalapril", "lisinopril", "ramipril", "candesartan",
                        "losartan", "valsartan", "captopril"],
               "beta_blocker": ["bisoprolol", "carvedilol", "metoprolol succinate"],
               "mra": ["spironolactone", "eplerenone"], "sglt2i": ["dapagliflozin", "empagliflozin"]}
    meds = []
    for names in pillars.values():
        if rng.random() < 0.7:
            drug = names[rng.integers(len(names))]
            lad = LADDERS[drug]
            meds.append({"drug": drug, "dose_mg": float(lad.steps[rng.integers(len(lad.steps))]),
                         "frequency": lad.frequency})
    if not meds:
        meds.append({"drug": "bisoprolol", "dose_mg": 2.5, "frequency": "qd"})
    return meds


def _typo(word: str, rng: np.random.Generator) -> str:
    """One substitution or swap inside a long word (keeps the first two letters)."""
    if len(word) < 8:
        return word
    i = int(rng.integers(2, len(word) - 1))
    if rng.random() < 0.5:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    return word[:i] + "aeiou"[int(rng.integers(5))] + word[i + 1:]


def _dose_text(med: dict[str, Any]) -> str:
    if med["drug"] == "sacubitril/valsartan" and med["dose_mg"] in ARNI_TEXT:
        return f"{ARNI_TEXT[med['dose_mg']]} mg"
    return f"{med['dose_mg']:g} mg"


def med_line(med: dict[str, Any], rng: np.random.Generator, typo_rate: float = 0.1) -> str:
    names = DRUG_TEXT.get(med["drug"], [med["drug"]])
    name = names[rng.integers(len(names))]
    if rng.random() < typo_rate:
        name = _typo(name, rng)
    freq = FREQ_TEXT[med["frequency"]][rng.integers(len(FREQ_TEXT[med["frequency"]]))]
    lad = LADDERS[med["drug"]]
    lower = [s for s in lad.steps if s < med["dose_mg"]]
    if lower and rng.random() < 0.3:
        prev = {"drug": med["drug"], "dose_mg": lower[-1]}
        verb = ["Titrated", "Increased", "Uptitrated"][rng.integers(3)]
        return f"{verb} {name} from {_dose_text(prev)} to {_dose_text(med)} {freq}"
    tpl = ["{n} {d} {f}", "Continue {n} {d} {f}", "On {n} {d} {f}", "{n} {d} po {f}"][rng.integers(4)]
    return tpl.format(n=name, d=_dose_text(med), f=freq)


def make_note(record: dict[str, Any], rng: np.random.Generator, *, non_adherent: bool | None = None,
              typo_rate: float = 0.1, mention_ef: bool = False) -> str:
    """Render one SYNTHETIC note from a record (history, exam, one line per drug, adherence)."""
    lines = ["[SYNTHETIC NOTE]"]
    hist = [HISTORY[k] for k in HISTORY if record.get(k)]
    age = record.get("age")
    sex = "man" if record.get("sex") else "woman"
    intro = f"{int(age)}-year-old {sex} with heart failure" if age else "Patient with heart failure"
    lines.append(intro + (f", history of {', '.join(hist)}." if hist else ", no other history."))
    exam = []
    if record.get("nyha"):
        exam.append(f"NYHA class {['I', 'II', 'III', 'IV'][record['nyha'] - 1]}")
    if record.get("heart_rate"):
        exam.append(f"HR {record['heart_rate']:.0f}")
    if record.get("sbp"):
        exam.append(f"BP {record['sbp']:.0f}/{max(40, record['sbp'] * 0.6):.0f}")
    if mention_ef and record.get("ejection_fraction"):
        exam.append(f"EF {record['ejection_fraction']:.0f}%")
    if exam:
        lines.append("Exam: " + ", ".join(exam) + ".")
    for med in record.get("medications", []):
        lines.append(med_line(med, rng, typo_rate) + ".")
    if non_adherent is not None:
        opts = ADHERENCE[bool(non_adherent)]
        lines.append(opts[rng.integers(len(opts))])
    return "\n".join(lines)


def make_notes(n: int, seed: int = 0, typo_rate: float = 0.1) -> list[dict[str, Any]]:
    """n SYNTHETIC notes with their ground-truth regimens (for parser tests and benchmarks)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        rec = {"age": float(rng.integers(40, 90)), "sex": int(rng.integers(2)),
               "diabetes": int(rng.random() < 0.4), "high_blood_pressure": int(rng.random() < 0.35),
               "nyha": int(rng.integers(1, 5)), "heart_rate": float(rng.integers(55, 100)),
               "sbp": float(rng.integers(90, 150)), "medications": random_regimen(rng)}
        non_adh = bool(rng.random() < 0.3)
        out.append({"id": f"synth-note-{i}", "synthetic": True, "generator_version": GENERATOR_VERSION,
                    "note": make_note(rec, rng, non_adherent=non_adh, typo_rate=typo_rate),
                    "medications": rec["medications"], "non_adherent": non_adh})
    return out
