"""`papersuite tune DATA.csv`: the BOASF AutoML command (heavy imports stay inside the function)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from papersuite.errors import UserError

METHODS = ("boasf", "tpe", "random")


def _csv_list(text: Optional[str]) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def tune(
    data: Optional[str] = typer.Argument(None, help="Training CSV (`-` = stdin). Default: the embedded "
                                         "breast-cancer table from scikit-learn."),
    target: Optional[str] = typer.Option(None, "--target", "-t", help="Target column (default: the last)."),
    budget: str = typer.Option("60s", "--budget", help="Wall-clock budget: 90, 90s, 2m, 1h."),
    budget_trials: Optional[int] = typer.Option(None, "--budget-trials", min=1,
                                                help="Budget in trials instead of seconds (reproducible)."),
    metric: str = typer.Option("balanced_accuracy", "--metric",
                               help="balanced_accuracy | accuracy | roc_auc | f1_macro | log_loss."),
    method: str = typer.Option("boasf", "--method", help="boasf | tpe (optuna TPE, joint space) | random."),
    models: Optional[str] = typer.Option(None, "--models", help="Families, e.g. lr,rf,svc (default: all): "
                                         "lr sgd svc knn rf et hgb dt gnb lda."),
    hpo_only: Optional[str] = typer.Option(None, "--hpo-only", help="Tune one family; arms = halves of its "
                                           "ranges (orthogonal arms)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed (default: the global --seed)."),
    cv: int = typer.Option(3, "--cv", min=2, help="Stratified folds."),
    n_jobs: Optional[int] = typer.Option(None, "--n-jobs", min=1, help="Worker processes (default: cores)."),
    trial_timeout: Optional[float] = typer.Option(None, "--trial-timeout",
                                                  help="Per-trial cap in seconds (default min(60, budget/5))."),
    rounds: int = typer.Option(3, "--rounds", min=1, help="BOASF rounds."),
    ucb_c: float = typer.Option(2.0, "--ucb-c", help="UCB exploration constant c."),
    ucb_bonus: str = typer.Option("log2", "--ucb-bonus", help="log2 (authors' code) | sqrt (paper)."),
    arm_score: str = typer.Option("max-ucb", "--arm-score", help="max-ucb (best reward) | mean-ucb (paper)."),
    temperature: str = typer.Option("paper", "--temperature",
                                    help="paper (softmax of raw UCBs) or a number (softmax of standardised UCBs / T)."),
    paper: bool = typer.Option(False, "--paper", help="Faithful settings: mean-ucb, paper softmax, log2 bonus."),
    multivariate: bool = typer.Option(False, "--multivariate", help="tpe: multivariate, grouped TPE."),
    storage: Optional[str] = typer.Option(None, "--storage", help="sqlite:///x.db, postgresql://..., journal:PATH "
                                          "(default: sqlite in --out-dir)."),
    study_name: str = typer.Option("tune", "--study-name", help="Study name prefix in the storage."),
    join: bool = typer.Option(False, "--join", help="Run trials for a running BOASF study in --storage (same "
                              "data, seed and options); its first process allocates and filters."),
    test: Optional[str] = typer.Option(None, "--test", help="Held-out CSV scored once by the refitted pick."),
    na_values: Optional[str] = typer.Option(None, "--na-values", help="Extra missing-value tokens, comma-separated."),
    categorical: Optional[str] = typer.Option(None, "--categorical", help="Integer columns to one-hot."),
    model_format: str = typer.Option("skops", "--model-format", help="skops (safe) | joblib."),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Artefacts folder (default: tune-<data>)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Summary JSON path (default: stdout)."),
) -> None:
    """AutoML with BOASF: per-family TPE, UCB filtering of families, softmax time shares."""
    from papersuite.context import options

    from boasf.evaluate import METRICS
    from boasf.search import Budget, parse_budget
    from boasf.space import FAMILIES, family_arms, orthogonal_arms, resolve_models

    seed = options().seed if seed is None else seed
    if method not in METHODS:
        raise UserError(f"unknown --method {method!r}; choose from {', '.join(METHODS)}")
    if metric not in METRICS:
        raise UserError(f"unknown --metric {metric!r}; choose from {', '.join(METRICS)}")
    if ucb_bonus not in ("log2", "sqrt"):
        raise UserError(f"unknown --ucb-bonus {ucb_bonus!r}; choose log2 or sqrt")
    if arm_score not in ("max-ucb", "mean-ucb"):
        raise UserError(f"unknown --arm-score {arm_score!r}; choose max-ucb or mean-ucb")
    if model_format not in ("skops", "joblib"):
        raise UserError(f"unknown --model-format {model_format!r}; choose skops or joblib")
    temp: float | str = "paper"
    if temperature != "paper":
        try:
            temp = float(temperature)
        except ValueError:
            raise UserError(f"--temperature {temperature!r}: write paper or a positive number") from None
        if temp <= 0:
            raise UserError("--temperature must be positive")
    if paper:
        arm_score, temp, ucb_bonus = "mean-ucb", "paper", "log2"
    if hpo_only:
        if hpo_only not in FAMILIES:
            raise UserError(f"unknown --hpo-only model {hpo_only!r}; choose from {', '.join(FAMILIES)}")
        keys = [hpo_only]
        arms = orthogonal_arms(hpo_only)
    else:
        keys = resolve_models(models)
        arms = family_arms(keys)
    n_arms = len(arms) if method == "boasf" else 1
    n_rounds = rounds if method == "boasf" else 1
    if budget_trials is not None:
        bud = Budget("trials", float(budget_trials))
        if budget_trials < n_rounds * n_arms:
            raise UserError(f"--budget-trials {budget_trials} is below the minimum {n_rounds * n_arms} "
                            f"({n_rounds} rounds x {n_arms} arms x 1 trial)")
    else:
        secs = parse_budget(budget)
        if secs < n_rounds * n_arms:
            raise UserError(f"--budget {budget} is below the minimum {n_rounds * n_arms}s "
                            f"({n_rounds} rounds x {n_arms} arms x 1 s)")
        bud = Budget("seconds", secs)
    if join and method != "boasf":
        raise UserError("--join works with --method boasf only")
    cap = trial_timeout if trial_timeout is not None else (min(60.0, bud.amount / 5) if bud.seconds else 60.0)
    if cap <= 0:
        raise UserError("--trial-timeout must be positive")

    from boasf.data import demo_table, load_table
    from boasf.run import RunConfig, run_tune

    nas = _csv_list(na_values)
    cats = _csv_list(categorical)
    table = load_table(data, target, na_values=nas, categorical=cats, cv=cv) if data else demo_table()
    test_table = None
    if test:
        test_table = load_table(test, table.target, na_values=nas, categorical=cats, check_classes=False)
        missing = [c for c in table.X.columns if c not in test_table.X.columns]
        if missing:
            raise UserError(f"--test file lacks column(s) {', '.join(missing)}", where=f"{test}:1")
    if out_dir is None:
        stem = Path(data).stem if data and data != "-" else ("stdin" if data else "demo")
        out_dir = Path(f"tune-{stem}")
    cfg = RunConfig(method=method, arms=arms, families=keys, budget=bud, metric=metric, seed=seed, cv=cv,
                    n_jobs=n_jobs or os.cpu_count() or 1, trial_timeout=cap, rounds=rounds, ucb_c=ucb_c,
                    ucb_bonus=ucb_bonus, arm_score=arm_score, temperature=temp, multivariate=multivariate,
                    storage=storage, study_name=study_name, model_format=model_format, out_dir=out_dir,
                    output=output or "-", join=join)
    run_tune(table, cfg, test_table)
