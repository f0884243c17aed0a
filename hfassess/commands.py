"""`papersuite hf-assess`: train | evaluate | assess | explain | synth (research use only).

Heavy imports live inside the commands so `papersuite --help` stays fast.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from papersuite.errors import UserError

HELP = ("Heart-failure assessment after M-PRTM (arXiv 2502.16548): leak-free risk models on UCI data, "
        "survival, explanations, synthetic echo/notes, and a GDMT guideline rule engine. "
        "RESEARCH SOFTWARE: research use only, not medical advice, not a medical device.")
app = typer.Typer(help=HELP, no_args_is_help=True)

EXAMPLES = Path(__file__).resolve().parent / "data" / "example_cases.jsonl"


def _seed(seed: Optional[int]) -> int:
    from papersuite.context import options

    return options().seed if seed is None else seed


def _emit(obj, out: Optional[str]) -> None:
    from papersuite.io import dumps, write_json

    if out and out != "-":
        write_json(out, obj)
    else:
        print(dumps(obj, indent=2))


def _read_records(path: str):
    """Validate every record first, so a bad line writes nothing."""
    from hfassess.records import validate

    name = "<stdin>" if path == "-" else path
    recs = []
    for k, (line, obj) in enumerate(_jsonl_with_lines(path), 1):
        recs.append(validate(obj, f"{name}:{line}", default_id=f"record-{k}"))
    if not recs:
        raise UserError(f"{name}: no records")
    return recs


def _jsonl_with_lines(path: str):
    """(line number, object) pairs; blank lines skipped, malformed lines name file:line."""
    from papersuite.io import iter_jsonl_lines

    return iter_jsonl_lines(path)


@app.command()
def train(
    data: str = typer.Option("uci-hf", "--data", help="uci-hf | cleveland | synthetic | CSV with the UCI header."),
    survival: str = typer.Option("rsf", "--survival", help="Survival model: rsf | cox | gbsa | none."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed (default: the global --seed)."),
    out: str = typer.Option("hfassess-model", "-o", "--out", help="Output model folder."),
) -> None:
    """Train the default tabular model (calibrated LR+RF+GBM soft vote) and a survival model."""
    from papersuite.progress import info

    from hfassess import store
    from hfassess.records import load_data

    if survival not in ("rsf", "cox", "gbsa", "none"):
        raise UserError(f"--survival {survival!r}: choose rsf, cox, gbsa or none")
    s = _seed(seed)
    ds = load_data(data, seed=s)
    model = store.train(ds, seed=s, survival="" if survival == "none" else survival, data_name=data)
    store.save(model, out)
    info(f"trained on {len(ds.y)} rows ({int(ds.y.sum())} events), features {', '.join(ds.features)}; "
         f"saved to {out} (research use only)")


@app.command()
def evaluate(
    data: str = typer.Option("uci-hf", "--data", help="uci-hf | cleveland | synthetic | CSV path."),
    folds: int = typer.Option(5, "--folds", min=2),
    repeats: int = typer.Option(10, "--repeats", min=1),
    n_boot: int = typer.Option(1000, "--n-boot", min=50, help="Bootstrap resamples for the CIs."),
    leaky: bool = typer.Option(True, "--leaky/--no-leaky", help="Add the paper's leaky protocols for contrast."),
    ablation: bool = typer.Option(False, "--ablation", help="Modality subsets x fusion on the synthetic cohort."),
    modalities: str = typer.Option("tabular", "--modalities",
                                   help="Comma list of tabular,echo,text (echo/text: SYNTHETIC cohort only)."),
    fusion: str = typer.Option("early", "--fusion", help="early | late | attention | fixed (multi-modal runs)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="fixed fusion weights, e.g. tabular=1,echo=1,text=2."),
    plots: Optional[str] = typer.Option(None, "--plots", help="Folder for ROC and reliability plots."),
    seed: Optional[int] = typer.Option(None, "--seed"),
    out: Optional[str] = typer.Option(None, "-o", "--out", help="JSON output (default stdout)."),
) -> None:
    """Repeated stratified CV: the default model beside majority/LR/GBM/RF on the same folds."""
    from hfassess.report import run_evaluation

    s = _seed(seed)
    mods = [m.strip() for m in modalities.split(",") if m.strip()]
    bad = [m for m in mods if m not in ("tabular", "echo", "text")]
    if bad or not mods:
        raise UserError(f"--modalities {modalities!r}: use a comma list of tabular, echo, text")
    if fusion not in ("early", "late", "attention", "fixed"):
        raise UserError(f"--fusion {fusion!r}: choose early, late, attention or fixed")
    w = _weights(weights, mods) if weights else None
    if mods != ["tabular"] or fusion != "early" or w:
        if data != "synthetic":
            raise UserError(f"--modalities {modalities} --fusion {fusion}: echo and text exist only in the "
                            "SYNTHETIC cohort; add --data synthetic")
        from hfassess.report import run_fusion_evaluation

        result = run_fusion_evaluation(mods, fusion, folds=folds, repeats=repeats, n_boot=n_boot, seed=s, weights=w)
    else:
        result = run_evaluation(data, folds=folds, repeats=repeats, n_boot=n_boot, leaky=leaky, seed=s,
                                plots=plots, ablation=ablation)
    _emit(result, out)


def _weights(text: str, mods: list[str]) -> dict[str, float]:
    out = {}
    for part in text.split(","):
        k, _, v = part.partition("=")
        try:
            out[k.strip()] = float(v)
        except ValueError:
            raise UserError(f"--weights {text!r}: expected name=number pairs") from None
        if k.strip() not in mods:
            raise UserError(f"--weights: {k.strip()!r} is not among --modalities {','.join(mods)}")
    return out


@app.command()
def assess(
    records: str = typer.Argument(str(EXAMPLES), help="JSONL records (notes section 6) or '-'."),
    model: Optional[str] = typer.Option(None, "--model", help="Model folder from `train` (default: cached UCI model)."),
    out: Optional[str] = typer.Option(None, "-o", "--out", help="JSONL output (default stdout)."),
    seed: Optional[int] = typer.Option(None, "--seed"),
) -> None:
    """Risk, survival timeline, attributions and GDMT pillars for each record."""
    from papersuite.io import write_jsonl

    from hfassess import store
    from hfassess.assess import assess_records

    recs = _read_records(records)
    m = store.load(model) if model else store.default_model(_seed(seed))
    write_jsonl(out or "-", assess_records(recs, m))


@app.command()
def explain(
    records: Optional[str] = typer.Argument(None, help="Optional JSONL records for local explanations."),
    model: Optional[str] = typer.Option(None, "--model", help="Model folder (default: cached UCI model)."),
    data: str = typer.Option("uci-hf", "--data", help="Data for global importance (same features as the model)."),
    method: str = typer.Option("permutation", "--method", help="permutation | shap | modality."),
    folds: int = typer.Option(5, "--folds", min=2),
    seed: Optional[int] = typer.Option(None, "--seed"),
    out: Optional[str] = typer.Option(None, "-o", "--out"),
) -> None:
    """Global feature importance (held-out permutation, sampled Shapley) or modality Shapley."""
    from hfassess.report import run_explain

    _emit(run_explain(records, model, data, method, folds, _seed(seed)), out)


@app.command()
def synth(
    kind: str = typer.Argument("cohort", help="cohort | echo | notes"),
    n: int = typer.Option(100, "--n", min=1),
    level: int = typer.Option(1, "--level", min=0, max=3, help="Echo difficulty 0-3."),
    size: int = typer.Option(64, "--size", help="Echo frame size (64 or 112)."),
    seed: Optional[int] = typer.Option(None, "--seed"),
    out: str = typer.Option("hfassess-synth", "-o", "--out", help="Output folder."),
) -> None:
    """Write SYNTHETIC data (labelled so): a planted cohort, echo clips (.npz + PNG), or notes."""
    from hfassess.report import run_synth

    if kind not in ("cohort", "echo", "notes"):
        raise UserError(f"synth {kind!r}: choose cohort, echo or notes")
    run_synth(kind, n, level, size, _seed(seed), out)
