"""A trained model folder: `model.joblib` (classifier + survival model) and `manifest.json`.

Why a manifest: `assess` must know which inputs the model needs (to answer `needs_data` instead
of imputing), the training ranges (to warn about extrapolation) and that `time` was the duration,
not a feature. The default tabular model is trained once on UCI and cached under
`$PAPERSUITE_CACHE/hfassess/`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from papersuite.errors import UserError
from papersuite.io import atomic_path, write_json

from hfassess.records import DISCLAIMER, UCI_DURATION, Dataset, assert_no_leak

VERSION = 1


@dataclass
class TrainedModel:
    classifier: Any
    survival: Any | None
    manifest: dict[str, Any]

    @property
    def features(self) -> list[str]:
        return list(self.manifest["features"])


def train(ds: Dataset, *, seed: int = 0, modalities: list[str] | None = None, fusion: str = "early",
          survival: str = "rsf", data_name: str = "uci-hf") -> TrainedModel:
    """Fit the default classifier (and a survival model when a duration exists) on all rows."""
    from threadpoolctl import threadpool_limits

    from hfassess.survival import make_survival, surv_y
    from hfassess.tabular import HFRiskModel

    assert_no_leak(ds.features)
    with threadpool_limits(1):
        clf = HFRiskModel(random_state=seed).fit(ds.X, ds.y)
        surv = None
        if ds.duration is not None and survival:
            surv = make_survival(survival, seed).fit(ds.X, surv_y(ds.y, ds.duration))
    ranges = {c: [float(ds.X[c].min()), float(ds.X[c].max())] for c in ds.features}
    manifest = {
        "version": VERSION, "data": data_name, "n": int(len(ds.y)), "events": int(ds.y.sum()),
        "features": ds.features, "target": ds.target,
        "duration": ds.duration_name if ds.duration is not None else None,
        "modalities": modalities or ["tabular"], "fusion": fusion,
        "classifier": "soft vote of LR (log labs) + RF + GBM, Platt-calibrated by 3-fold inner CV",
        "survival": survival if surv is not None else None,
        "training_ranges": ranges, "seed": seed, "disclaimer": DISCLAIMER,
    }
    return TrainedModel(clf, surv, manifest)


def save(model: TrainedModel, out: str | Path) -> Path:
    import joblib

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "model.joblib") as tmp:
        joblib.dump({"classifier": model.classifier, "survival": model.survival}, tmp)
    write_json(out / "manifest.json", model.manifest)
    return out


def load(path: str | Path) -> TrainedModel:
    """Load a folder written by `save` (joblib: only load folders you trained yourself)."""
    import joblib

    p = Path(path)
    if not (p / "manifest.json").exists() or not (p / "model.joblib").exists():
        raise UserError(f"{p}: not a hf-assess model folder (needs manifest.json and model.joblib)")
    manifest = json.loads((p / "manifest.json").read_text())
    if UCI_DURATION in manifest.get("features", []):
        raise UserError(f"{p}/manifest.json: `time` is listed as a feature; refusing a leaky model")
    blob = joblib.load(p / "model.joblib")
    return TrainedModel(blob["classifier"], blob["survival"], manifest)


def default_model(seed: int = 0) -> TrainedModel:
    """The UCI tabular model, trained once and cached."""
    from papersuite.models import cache_root
    from papersuite.progress import info

    from hfassess.records import load_data

    folder = cache_root() / "hfassess" / f"default-uci-v{VERSION}-seed{seed}"
    if (folder / "manifest.json").exists():
        return load(folder)
    info(f"training the default UCI model once (cached in {folder})")
    model = train(load_data("uci-hf"), seed=seed)
    save(model, folder)
    return model
