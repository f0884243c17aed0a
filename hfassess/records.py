"""Patient records: the schema of notes section 6, unit conversion, validation, data sets.

Why a schema of our own: a risk model or a rule engine fed a creatinine in umol/L as if it were
mg/dL gives confidently wrong answers. Every value is checked at the boundary and converted to
one canonical unit; errors name the field, the value, the range, a likely unit and file:line.
Nothing is imputed for a patient: a missing model input makes the risk `needs_data`.

`time` (follow-up days) is a survival *duration*, known only after the fact. It never enters a
classifier feature matrix: `assert_no_leak` is called wherever a feature matrix is built.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from papersuite.errors import UserError

DATA_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "heart"
UCI_FILE = "heart_failure_clinical_records_dataset.csv"
CLEVELAND_FILE = "processed.cleveland.data"

DISCLAIMER = ("research use only; not medical advice; not a medical device. Risk figures come from "
              "299 patients (UCI, Pakistan 2015) and the GDMT output is a guideline-concordance check "
              "for researchers, not a prescription.")

#: Leak guard: names that must never reach a classifier feature matrix.
LEAKY = ("time",)


class LeakageError(RuntimeError):
    """A follow-up quantity reached a feature matrix: a bug, never a user error."""


def assert_no_leak(columns) -> None:
    """Raise if a follow-up duration column is among the features (the paper's leak)."""
    bad = [c for c in columns if str(c) in LEAKY]
    if bad:
        raise LeakageError(f"follow-up column(s) {bad} reached a feature matrix; "
                           "`time` is a survival duration, never a classifier feature")


@dataclass(frozen=True)
class Field:
    """A numeric field: canonical unit, accepted range of a bare number, accepted units."""

    name: str
    unit: str
    lo: float
    hi: float
    units: dict[str, float] = field(default_factory=dict)  # unit -> factor to canonical
    integer: bool = False

    def likely_unit(self, value: float) -> str | None:
        """A unit under which `value` would be in range, to suggest in the error."""
        for unit, factor in self.units.items():
            if self.lo <= value * factor <= self.hi and factor != 1.0:
                return unit
        return None


NUMERIC: dict[str, Field] = {f.name: f for f in [
    Field("age", "years", 18, 110),
    Field("ejection_fraction", "%", 5, 90, {"%": 1.0, "fraction": 100.0}),
    Field("prior_ef", "%", 5, 90, {"%": 1.0, "fraction": 100.0}),
    Field("serum_creatinine", "mg/dL", 0.1, 20, {"mg/dL": 1.0, "umol/L": 1 / 88.4}),
    Field("serum_sodium", "mEq/L", 100, 180, {"mEq/L": 1.0, "mmol/L": 1.0}),
    Field("potassium", "mEq/L", 1.5, 9, {"mEq/L": 1.0, "mmol/L": 1.0}),
    Field("egfr", "mL/min/1.73 m2", 1, 200, {"mL/min/1.73 m2": 1.0, "mL/min/1.73m2": 1.0}),
    Field("sbp", "mmHg", 50, 260, {"mmHg": 1.0, "kPa": 7.5006}),
    Field("heart_rate", "bpm", 20, 250, {"bpm": 1.0}),
    Field("weight_kg", "kg", 25, 300, {"kg": 1.0, "lb": 0.45359}),
    Field("platelets", "per mL", 1_000, 2_000_000, {"per mL": 1.0, "10^9/L": 1000.0}),
    Field("creatinine_phosphokinase", "mcg/L", 1, 100_000, {"mcg/L": 1.0, "U/L": 1.0}),
    Field("nyha", "class", 1, 4, integer=True),
    Field("last_acei_hours", "h", 0, math.inf, {"h": 1.0}),
]}
FLAGS = ("anaemia", "diabetes", "high_blood_pressure", "smoking", "sex", "angioedema_history",
         "pacemaker", "decompensated")
AV_BLOCK = ("none", "first", "second", "third")
RHYTHM = ("sinus", "af", "paced", "other")
FREQUENCIES = ("qd", "bid", "tid")
PASS_THROUGH = ("id", "note", "echo")

#: The UCI table: 11 baseline features, the duration and the event.
UCI_FEATURES = ["age", "anaemia", "creatinine_phosphokinase", "diabetes", "ejection_fraction",
                "high_blood_pressure", "platelets", "serum_creatinine", "serum_sodium", "sex", "smoking"]
UCI_DURATION = "time"
UCI_TARGET = "DEATH_EVENT"
CLEVELAND_COLUMNS = ["age", "sex", "cp", "trestbps", "chol", "fbs", "restecg", "thalach", "exang",
                     "oldpeak", "slope", "ca", "thal", "num"]


def ckd_epi_2021(creatinine_mg_dl: float, age: float, male: bool) -> float:
    """eGFR (mL/min/1.73 m2), race-free CKD-EPI 2021 (Inker et al., NEJM 2021)."""
    kappa, alpha = (0.9, -0.302) if male else (0.7, -0.241)
    ratio = creatinine_mg_dl / kappa
    egfr = 142 * min(ratio, 1) ** alpha * max(ratio, 1) ** -1.200 * 0.9938 ** age
    return egfr * (1.0 if male else 1.012)


def _number(name: str, raw: Any, where: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        if isinstance(raw, str):
            try:
                return float(raw)
            except ValueError:
                pass
        raise UserError(f"{name}={raw!r} is not a number", where=where)
    if not math.isfinite(raw):
        raise UserError(f"{name}={raw!r} is not a finite number", where=where)
    return float(raw)


def convert(name: str, raw: Any, where: str) -> float:
    """A bare number or {"value", "unit"} -> canonical unit, with range and unit checks."""
    spec = NUMERIC[name]
    unit = None
    if isinstance(raw, dict):
        if "value" not in raw:
            raise UserError(f"{name}: a unit object needs \"value\" and \"unit\"", where=where)
        unit = raw.get("unit")
        value = _number(name, raw["value"], where)
        if unit not in spec.units:
            known = ", ".join(spec.units) or spec.unit + " (bare number only)"
            raise UserError(f"{name}: unknown unit {unit!r}; use one of {known}", where=where)
        value *= spec.units[unit]
    else:
        value = _number(name, raw, where)
    if not spec.lo <= value <= spec.hi:
        hi = "" if math.isinf(spec.hi) else f"-{spec.hi:g}"
        msg = f"{name}={value:g} is outside {spec.lo:g}{hi} {spec.unit}"
        if unit is None:
            likely = spec.likely_unit(value)
            if likely:
                msg += f"; for {likely} write {{\"value\": {value:g}, \"unit\": \"{likely}\"}}"
        else:
            msg += f" (after converting from {unit})"
        raise UserError(msg, where=where)
    if spec.integer and value != int(value):
        raise UserError(f"{name}={value:g} must be a whole number", where=where)
    return int(value) if spec.integer else value


def _flag(name: str, raw: Any, where: str) -> int:
    if isinstance(raw, bool) or (isinstance(raw, (int, float)) and raw in (0, 1)):
        return int(raw)
    if isinstance(raw, str) and raw.strip().lower() in ("0", "1", "true", "false"):
        return int(raw.strip().lower() in ("1", "true"))
    raise UserError(f"{name}={raw!r} must be 0/1 or true/false", where=where)


def _medications(raw: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise UserError("medications must be a list of {drug, dose_mg, frequency}", where=where)
    meds = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or "drug" not in m or "dose_mg" not in m:
            raise UserError(f"medications[{i}] needs drug and dose_mg", where=where)
        dose = _number(f"medications[{i}].dose_mg", m["dose_mg"], where)
        if dose <= 0:
            raise UserError(f"medications[{i}].dose_mg={dose:g} must be positive", where=where)
        freq = m.get("frequency", "qd")
        if freq not in FREQUENCIES:
            raise UserError(f"medications[{i}].frequency={freq!r}; use qd, bid or tid", where=where)
        meds.append({"drug": str(m["drug"]).strip().lower(), "dose_mg": dose, "frequency": freq})
    return meds


@dataclass
class Record:
    """One validated patient: canonical inputs, what we derived, and warnings."""

    id: str
    inputs: dict[str, Any]
    derived: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def validate(raw: dict[str, Any], where: str, *, default_id: str = "") -> Record:
    """Check and convert one raw record; unknown fields are ignored with a warning."""
    inputs: dict[str, Any] = {}
    warnings: list[str] = []
    for key, val in raw.items():
        if val is None:
            continue
        if key in NUMERIC:
            inputs[key] = convert(key, val, where)
        elif key in FLAGS:
            inputs[key] = _flag(key, val, where)
        elif key == "av_block":
            if val not in AV_BLOCK:
                raise UserError(f"av_block={val!r}; use one of {', '.join(AV_BLOCK)}", where=where)
            inputs[key] = val
        elif key == "rhythm":
            if val not in RHYTHM:
                raise UserError(f"rhythm={val!r}; use one of {', '.join(RHYTHM)}", where=where)
            inputs[key] = val
        elif key == "medications":
            inputs[key] = _medications(val, where)
        elif key in PASS_THROUGH:
            inputs[key] = str(val)
        elif key in (UCI_DURATION, UCI_TARGET):
            continue  # outcomes are never inputs to an assessment
        else:
            warnings.append(f"unknown field {key!r} ignored")
    rec = Record(id=str(inputs.pop("id", default_id)), inputs=inputs, warnings=warnings)
    if "egfr" not in inputs and all(k in inputs for k in ("serum_creatinine", "age", "sex")):
        inputs["egfr"] = round(ckd_epi_2021(inputs["serum_creatinine"], inputs["age"], bool(inputs["sex"])), 1)
        rec.derived.append("egfr (CKD-EPI 2021, race-free, from serum_creatinine, age, sex)")
    return rec


def range_warnings(rec: Record, training_ranges: dict[str, list[float]]) -> None:
    """Add a warning for each model input outside the range seen in training (extrapolation)."""
    for name, (lo, hi) in training_ranges.items():
        v = rec.inputs.get(name)
        if v is not None and not lo <= v <= hi:
            rec.warnings.append(f"{name}={v:g} is outside the training data's range {lo:g}-{hi:g}; "
                                "the risk is an extrapolation")


# -- data sets -------------------------------------------------------------------------------

@dataclass
class Dataset:
    """A feature frame, a binary target and (when known) a survival duration, kept apart."""

    name: str
    X: Any  # pandas DataFrame of features only
    y: Any  # numpy int array
    duration: Any | None = None  # numpy float array (days) or None
    target: str = UCI_TARGET
    duration_name: str | None = UCI_DURATION
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert_no_leak(self.X.columns)

    @property
    def features(self) -> list[str]:
        return list(self.X.columns)


def load_uci_csv(path: str | Path) -> Dataset:
    """A CSV with the UCI header; every cell validated with file:line."""
    import numpy as np
    import pandas as pd

    from papersuite.io import read_csv_rows

    name = str(path)
    rows = read_csv_rows(path, required=UCI_FEATURES + [UCI_DURATION, UCI_TARGET])
    if not rows:
        raise UserError(f"{name}: no data rows")
    feats, ys, ts = [], [], []
    for i, row in enumerate(rows):
        where = f"{name}:{i + 2}"
        rec = {}
        for c in UCI_FEATURES:
            cell = row[c].strip()
            if cell == "":
                raise UserError(f"{c} is empty (nothing is imputed)", where=where)
            rec[c] = _flag(c, cell, where) if c in FLAGS else convert(c, cell, where)
        t = _number(UCI_DURATION, row[UCI_DURATION], where)
        if t < 0:
            raise UserError(f"{UCI_DURATION}={t:g} must be >= 0 days", where=where)
        ys.append(_flag(UCI_TARGET, row[UCI_TARGET], where))
        ts.append(t)
        feats.append(rec)
    X = pd.DataFrame(feats, columns=UCI_FEATURES).astype(float)
    return Dataset(Path(name).stem if name != "-" else "stdin", X, np.array(ys, dtype=int),
                   np.array(ts, dtype=float))


def load_cleveland(path: str | Path | None = None) -> Dataset:
    """UCI Cleveland (coronary disease, `num > 0`): a second tabular benchmark; `?` stays NaN."""
    import numpy as np
    import pandas as pd

    from papersuite.io import open_text

    path = Path(path or DATA_DIR / CLEVELAND_FILE)
    rows = []
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            cells = line.strip().split(",")
            if len(cells) != len(CLEVELAND_COLUMNS):
                raise UserError(f"expected {len(CLEVELAND_COLUMNS)} fields, got {len(cells)}",
                                where=f"{path}:{lineno}")
            try:
                rows.append([np.nan if c == "?" else float(c) for c in cells])
            except ValueError:
                raise UserError(f"non-numeric cell in {cells}", where=f"{path}:{lineno}") from None
    df = pd.DataFrame(rows, columns=CLEVELAND_COLUMNS)
    y = (df.pop("num") > 0).astype(int).to_numpy()
    return Dataset("cleveland", df, y, None, target="num>0", duration_name=None)


def load_data(spec: str, *, n: int = 1000, seed: int = 0) -> Dataset:
    """`uci-hf` (default), `cleveland`, `synthetic` (tabular part of the planted cohort) or a CSV."""
    if spec in ("uci-hf", "uci", ""):
        return load_uci_csv(DATA_DIR / UCI_FILE)
    if spec == "cleveland":
        return load_cleveland()
    if spec == "synthetic":
        from hfassess.synth_cohort import make_cohort

        cohort = make_cohort(n=n, seed=seed)
        return cohort.tabular_dataset()
    p = Path(spec)
    if not p.exists():
        raise UserError(f"--data {spec!r}: not uci-hf, cleveland, synthetic, nor an existing CSV file")
    return load_uci_csv(p)
