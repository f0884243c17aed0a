"""A SYNTHETIC multi-modal cohort whose outcome depends on planted, modality-specific factors.

Why: clips and notes rendered from the UCI table carry no new information, so a fusion gain
there would be an artefact. Here the outcome's logit is the sum of three standardised parts of
equal weight: a tabular part (age, creatinine, sodium), an echo part (EF, present *only* in the
clip) and a text part (non-adherence, present *only* in the note). Deaths get Weibull times
before 285 days; survivors are censored uniformly in 30-285 days.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

TAB_FEATURES = ["age", "serum_creatinine", "serum_sodium", "diabetes", "anaemia"]


@dataclass
class Cohort:
    table: Any  # DataFrame: tabular features (no EF, no adherence)
    ef: np.ndarray
    non_adherent: np.ndarray
    notes: list[str]
    y: np.ndarray
    time: np.ndarray
    seed: int
    shares: dict[str, float]

    def tabular_dataset(self):
        from hfassess.records import Dataset

        return Dataset("synthetic", self.table.copy(), self.y.copy(), self.time.copy(),
                       extra={"synthetic": True})

    def clips(self, level: int = 1, size: int = 64, frames: int = 16):
        from hfassess.synth_echo import make_clips

        return make_clips(len(self.y), level=level, frames=frames, size=size, seed=self.seed, efs=self.ef)

    def write(self, folder: str | Path, clips: bool = True, size: int = 64) -> None:
        from papersuite.io import atomic_path, write_jsonl

        folder = Path(folder)
        rows = []
        for i in range(len(self.y)):
            r = {k: float(v) for k, v in self.table.iloc[i].items()}
            r.update({"id": f"synth-{i}", "note": self.notes[i], "synthetic": True,
                      "DEATH_EVENT": int(self.y[i]), "time": float(self.time[i])})
            if clips:
                r["echo"] = f"echo/clip_{i:04d}.npz"
            rows.append(r)
        write_jsonl(folder / "cohort.jsonl", rows)
        write_jsonl(folder / "truth.jsonl", [{"id": f"synth-{i}", "ejection_fraction": float(self.ef[i]),
                                              "non_adherent": bool(self.non_adherent[i])}
                                             for i in range(len(self.y))])
        if clips:
            (folder / "echo").mkdir(parents=True, exist_ok=True)
            for i, c in enumerate(self.clips(size=size)):
                with atomic_path(folder / "echo" / f"clip_{i:04d}.npz", suffix=".npz") as tmp:
                    with open(tmp, "wb") as fh:
                        np.savez_compressed(fh, **c.as_npz())


def _z(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / x.std()


def make_cohort(n: int = 1000, seed: int = 0, strength: float = 1.1, prevalence: float = 0.32) -> Cohort:
    import pandas as pd

    from hfassess.synth_notes import make_note, random_regimen

    rng = np.random.default_rng(seed)
    age = rng.uniform(40, 90, n)
    creat = np.exp(rng.normal(np.log(1.2), 0.35, n))
    sodium = rng.normal(136.5, 4.0, n)
    table = pd.DataFrame({"age": age.round(0), "serum_creatinine": creat.round(2), "serum_sodium": sodium.round(0),
                          "diabetes": (rng.random(n) < 0.4).astype(float),
                          "anaemia": (rng.random(n) < 0.4).astype(float)})
    ef = rng.uniform(15, 70, n)
    non_adh = rng.random(n) < 0.3
    parts = {"tabular": _z(_z(age) + _z(np.log(creat)) - _z(sodium)), "echo": _z(-ef),
             "text": _z(non_adh.astype(float))}
    logit = strength * sum(parts.values())
    logit += np.log(prevalence / (1 - prevalence)) - np.median(logit)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    t_death = np.minimum(280.0 * rng.weibull(1.3, n) / 1.5, 284.0)
    time = np.where(y == 1, np.maximum(t_death, 4.0), rng.uniform(30, 285, n)).round(0)
    notes = []
    for i in range(n):
        rec = {"age": age[i], "sex": int(rng.integers(2)), "diabetes": table["diabetes"][i],
               "anaemia": table["anaemia"][i], "medications": random_regimen(rng)}
        notes.append(make_note(rec, rng, non_adherent=bool(non_adh[i]), typo_rate=0.05))
    return Cohort(table, ef, non_adh, notes, y, time, seed, {k: 1 / 3 for k in parts})


def semi_synthetic_uci(level: int = 1, seed: int = 0):
    """UCI with `ejection_fraction` replaced by the calibrated geometric EF of a SYNTHETIC clip
    rendered at the table's EF (plumbing check: the clip carries no new information).

    The geometric calibration is fitted on separate clips with random EFs, never on UCI rows.
    """
    from hfassess.echo import GeometricEF
    from hfassess.records import Dataset, load_data
    from hfassess.synth_echo import make_clips

    ds = load_data("uci-hf")
    calib = make_clips(60, level=level, seed=seed + 7)
    geo = GeometricEF().fit([c.frames for c in calib], np.array([c.ef for c in calib]))
    clips = make_clips(len(ds.y), level=level, seed=seed + 11, efs=ds.X["ejection_fraction"].to_numpy())
    X = ds.X.copy()
    X["ejection_fraction"] = geo.predict([c.frames for c in clips]).round(1)
    return Dataset("uci-semi-synthetic", X, ds.y.copy(), ds.duration.copy(), extra={"synthetic_clip_ef": True})
