"""The work behind `evaluate`, `explain` and `synth`: kept out of commands.py so tests and the
benchmark call the same code the CLI runs."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from papersuite.errors import UserError

from hfassess.records import DISCLAIMER

BASELINES = ("majority", "lr", "gbm", "rf")


def run_evaluation(data: str = "uci-hf", *, folds: int = 5, repeats: int = 10, n_boot: int = 1000,
                   leaky: bool = True, seed: int = 0, plots: Optional[str] = None,
                   ablation: bool = False, models=("hfassess",) + BASELINES) -> dict[str, Any]:
    """All models on identical folds; survival when a duration exists; leaky rows for contrast."""
    from papersuite.progress import progress, table

    from hfassess.evaluation import (PUBLISHED, cross_val_oof, leaky_oversample_then_split,
                                     leaky_time_feature, paired_auroc_diff, repeated_folds, summarise)
    from hfassess.records import load_data
    from hfassess.tabular import baseline

    ds = load_data(data, seed=seed)
    fl = repeated_folds(ds.y, folds, repeats, seed)
    res: dict[str, Any] = {"data": data, "n": int(len(ds.y)), "events": int(ds.y.sum()),
                           "features": ds.features, "target": ds.target, "duration": ds.duration_name,
                           "protocol": f"{repeats}x{folds} repeated stratified K-fold on the event, same folds "
                                       "for every model; imputation/scaling/calibration inside training "
                                       f"folds; 95% CI = patient bootstrap ({n_boot}) of repeat-averaged OOF",
                           "models": {}}
    oofs = {}
    with progress("cross-validating", total=len(fl) * len(models)) as task:
        for name in models:
            oofs[name] = cross_val_oof(lambda: baseline(name, seed), ds.X, ds.y, fl, on_fold=task.advance)
            res["models"][name] = summarise(ds.y, oofs[name], n_boot, seed)
    res["majority_accuracy"] = round(float(max(ds.y.mean(), 1 - ds.y.mean())), 4)
    if "hfassess" in oofs:
        p_main = oofs["hfassess"].proba.mean(0)
        res["paired_auroc_vs_hfassess"] = {
            b: paired_auroc_diff(ds.y, p_main, oofs[b].proba.mean(0), n_boot, seed)
            for b in oofs if b != "hfassess"}
    if ds.duration is not None:
        from hfassess.survival import evaluate_survival

        surv = evaluate_survival(ds.X, ds.y, ds.duration, fl, seed=seed, n_boot=n_boot)
        res["survival"] = {k: {m: v[m] for m in ("c_index", "ibs")} for k, v in surv.items()}
        if leaky:
            res["leakage"] = {
                "time_as_feature_rf": leaky_time_feature(ds.X, ds.y, ds.duration, fl, seed),
                "oversample_then_split_rf": leaky_oversample_then_split(ds.X, ds.y, repeats, seed),
                "note": "LEAKY protocols reproduced for contrast only; never use them to choose a model",
            }
    if data in ("uci-hf", "uci"):
        res["published"] = PUBLISHED
    if ablation:
        from hfassess.fusion import run_ablation

        res["ablation"] = run_ablation(n=600, folds=folds, repeats=max(1, min(repeats, 2)), seed=seed)
    if plots:
        _plots(Path(plots), ds.y, {k: v.proba.mean(0) for k, v in oofs.items()})
        res["plots"] = plots
    rows = [{"model": k, **{m: fmt_ci(v[m]) for m in ("auroc", "brier", "mcc", "calibration_slope")}}
            for k, v in res["models"].items()]
    table(rows, title=f"hf-assess evaluate on {data} (research use only)")
    res["disclaimer"] = DISCLAIMER
    return res


def fmt_ci(stat: dict[str, Any]) -> str:
    """'0.780 [0.726, 0.838]'; undefined values (e.g. the majority's calibration slope) as 'n/a'."""
    f = lambda x: "n/a" if x is None or not np.isfinite(x) else f"{x:.3f}"  # noqa: E731
    lo, hi = stat.get("ci95") or [None, None]
    return f"{f(stat['mean'])} [{f(lo)}, {f(hi)}]"


def run_fusion_evaluation(modalities: list[str], fusion: str, *, n: int = 600, folds: int = 5, repeats: int = 1,
                          n_boot: int = 1000, seed: int = 0, weights: dict | None = None) -> dict[str, Any]:
    """One modality subset x fusion strategy on the SYNTHETIC cohort, beside the tabular-only LR."""
    from threadpoolctl import threadpool_limits

    from hfassess.evaluation import OOF, paired_auroc_diff, repeated_folds, summarise
    from hfassess.fusion import FusionClassifier, modality_features
    from hfassess.synth_cohort import make_cohort

    cohort = make_cohort(n=n, seed=seed)
    feats = modality_features(cohort, which=modalities)
    y = cohort.y
    fl = repeated_folds(y, folds, repeats, seed)
    res: dict[str, Any] = {"data": f"SYNTHETIC cohort n={n}", "modalities": modalities, "fusion": fusion, "models": {}}
    oofs = {}
    with threadpool_limits(1):
        for name, mods, strat in ((f"{fusion}:{'+'.join(modalities)}", modalities, fusion),
                                  ("early:tabular", ["tabular"], "early")):
            proba = np.zeros((repeats, n))
            label = np.zeros((repeats, n), dtype=int)
            for f in fl:
                m = FusionClassifier(strat, mods, weights=weights, random_state=seed).fit(
                    {k: feats[k][f.train] for k in mods}, y[f.train])
                p = m.predict_proba({k: feats[k][f.test] for k in mods})[:, 1]
                proba[f.repeat, f.test] = p
                label[f.repeat, f.test] = (p > y[f.train].mean()).astype(int)
            oofs[name] = OOF(proba, label)
            res["models"][name] = summarise(y, oofs[name], n_boot, seed)
    a, b = list(oofs)
    res["paired_auroc_vs_tabular"] = paired_auroc_diff(y, oofs[a].proba.mean(0), oofs[b].proba.mean(0), n_boot, seed)
    res["disclaimer"] = DISCLAIMER
    return res


def _plots(folder: Path, y: np.ndarray, probs: dict[str, np.ndarray]) -> None:
    """ROC curves and a reliability diagram (10 quantile bins) of repeat-averaged OOF outputs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import roc_curve

    from papersuite.io import atomic_path

    folder.mkdir(parents=True, exist_ok=True)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.5))
    for name, p in probs.items():
        fpr, tpr, _ = roc_curve(y, p)
        a.plot(fpr, tpr, label=name)
        if name != "majority":
            fy, fx = calibration_curve(y, p, n_bins=10, strategy="quantile")
            b.plot(fx, fy, marker="o", label=name)
    a.plot([0, 1], [0, 1], "k:")
    b.plot([0, 1], [0, 1], "k:")
    a.set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC (OOF)")
    b.set(xlabel="predicted risk", ylabel="observed rate", title="reliability (OOF)")
    a.legend()
    b.legend()
    fig.suptitle("hf-assess, research use only")
    with atomic_path(folder / "roc_reliability.png", suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def run_explain(records: Optional[str], model_dir: Optional[str], data: str, method: str, folds: int,
                seed: int) -> dict[str, Any]:
    from hfassess import store
    from hfassess.evaluation import repeated_folds
    from hfassess.explain import permutation_global, shap_global, shap_local
    from hfassess.records import load_data
    from hfassess.tabular import HFRiskModel

    if method not in ("permutation", "shap", "modality"):
        raise UserError(f"--method {method!r}: choose permutation, shap or modality")
    out: dict[str, Any] = {"method": method}
    if method == "modality":
        from hfassess.fusion import run_ablation

        abl = run_ablation(n=600, folds=folds, repeats=1, seed=seed, strategies=("early",))
        out["global"] = [{"feature": m, "importance": v, "ci95": None}
                         for m, v in sorted(abl["shapley"]["early"].items(), key=lambda kv: -kv[1])]
        out["data"] = "synthetic cohort (planted equal thirds)"
        out["disclaimer"] = DISCLAIMER
        return out
    m = store.load(model_dir) if model_dir else store.default_model(seed)
    ds = load_data(data, seed=seed)
    missing = [f for f in m.features if f not in ds.features]
    if missing:
        raise UserError(f"--data {data}: lacks the model's features {', '.join(missing)}")
    X = ds.X[m.features]
    if method == "permutation":
        fl = repeated_folds(ds.y, folds, 1, seed)
        out["global"] = permutation_global(lambda: HFRiskModel(random_state=seed), X, ds.y, fl, seed=seed)
        out["scale"] = "AUROC lost on held-out folds when the feature is shuffled"
    else:
        out["global"], _ = shap_global(m.classifier, X, seed=seed)
        out["scale"] = "mean |Shapley value|, probability units (permutation-sampled, interventional)"
    if records:
        from hfassess.commands import _read_records

        recs = _read_records(records)
        ready = [r for r in recs if all(f in r.inputs for f in m.features)]
        rows = [[r.inputs[f] for f in m.features] for r in ready]
        local = shap_local(m.classifier, X.sample(min(100, len(X)), random_state=seed), rows, seed=seed)
        out["local"] = [{"id": r.id, "shapley": loc} for r, loc in zip(ready, local)]
        out["local"] += [{"id": r.id, "status": "needs_data",
                          "missing": [f for f in m.features if f not in r.inputs]} for r in recs if r not in ready]
    out["disclaimer"] = DISCLAIMER
    return out


def run_synth(kind: str, n: int, level: int, size: int, seed: int, out: str) -> Path:
    from papersuite.io import write_json, write_jsonl
    from papersuite.progress import info

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "notes":
        from hfassess.synth_notes import make_notes

        write_jsonl(folder / "notes.jsonl", make_notes(n, seed))
    elif kind == "echo":
        from hfassess.synth_echo import write_clips

        write_clips(folder, n, level=level, size=size, seed=seed)
    else:
        from hfassess.synth_cohort import make_cohort

        cohort = make_cohort(n=n, seed=seed)
        cohort.write(folder, clips=True, size=size)
    write_json(folder / "SYNTHETIC.json", {"synthetic": True, "kind": kind, "n": n, "seed": seed,
                                           "level": level if kind == "echo" else None,
                                           "note": "generated by hf-assess; not patient data",
                                           "disclaimer": DISCLAIMER})
    info(f"wrote {n} synthetic {kind} item(s) to {folder}")
    return folder
