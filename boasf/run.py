"""One `tune` run end to end: storage, workers, search, refit, artefacts, summary JSON.

Kept apart from `commands.py` so the benchmark and the tests call the very same path as the CLI.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from papersuite.errors import UserError
from papersuite.io import dumps, write_json
from papersuite.progress import info, table as show_table

from boasf.search import Budget


@dataclass
class RunConfig:
    method: str
    arms: list
    families: list[str]
    budget: Budget
    metric: str = "balanced_accuracy"
    seed: int = 0
    cv: int = 3
    n_jobs: int = 1
    trial_timeout: float = 60.0
    rounds: int = 3
    ucb_c: float = 2.0
    ucb_bonus: str = "log2"
    arm_score: str = "max-ucb"
    temperature: float | str = "paper"
    filtering: bool = True
    allocation: str = "softmax"
    inner: str = "tpe"
    multivariate: bool = False
    storage: str | None = None
    study_name: str = "tune"
    model_format: str = "skops"
    out_dir: Path = Path("tune-out")
    output: str | None = "-"
    refit: bool = True
    join: bool = False
    plot: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def _search(cfg: RunConfig):
    from boasf.bandit import BOASF
    from boasf.joint import JointSearch

    if cfg.method == "boasf":
        return BOASF(cfg.arms, cfg.budget, rounds=cfg.rounds, ucb_c=cfg.ucb_c, ucb_bonus=cfg.ucb_bonus,
                     arm_score=cfg.arm_score, temperature=cfg.temperature, filtering=cfg.filtering,
                     allocation=cfg.allocation, inner=cfg.inner, random_state=cfg.seed)
    return JointSearch(cfg.families, cfg.budget, sampler=cfg.method, multivariate=cfg.multivariate,
                       random_state=cfg.seed)


def run_tune(table, cfg: RunConfig, test_table=None) -> dict[str, Any]:
    """Search, refit the best configuration on all rows, write the artefacts; return the summary."""
    from boasf.evaluate import Evaluator, make_folds, scorer_name
    from boasf.search import Session, open_storage
    from boasf.workers import WorkerPool

    if cfg.join and not cfg.storage:
        db = cfg.out_dir / "study.db"
        if not db.exists():
            raise UserError(f"nothing to join: no {db}; pass the controller's --storage")
        cfg.storage = f"sqlite:///{db}"
    if cfg.storage:
        storage = open_storage(cfg.storage)  # before any output exists: a bad URL leaves nothing behind
        if cfg.join:
            _check_joinable(storage, cfg.study_name)
        cfg.out_dir.mkdir(parents=True, exist_ok=True)
    else:
        cfg.out_dir.mkdir(parents=True, exist_ok=True)
        storage = open_storage(f"sqlite:///{cfg.out_dir / 'study.db'}")
    scorer = scorer_name(cfg.metric, len(table.classes))
    folds = make_folds(table.y, cfg.cv, cfg.seed)
    evaluator = Evaluator(table.X, table.y, folds, scorer, table.num_cols, table.cat_cols, cfg.seed)
    fingerprint = {"data_sha256": table.sha256, "target": table.target, "metric": cfg.metric, "cv": cfg.cv,
                   "seed": cfg.seed}
    method_name = "boasf" if cfg.method == "boasf" else (
        "tpe-mv" if cfg.method == "tpe" and cfg.multivariate else cfg.method)
    from boasf.space import preload

    preload(cfg.families)
    search = _search(cfg)
    interrupted = False
    with WorkerPool(evaluator, cfg.n_jobs, cfg.trial_timeout) as pool:
        session = Session(pool, storage, cfg.study_name, method_name, fingerprint,
                          log_path=cfg.out_dir / "trials.jsonl", on_trial=_progress_line(cfg))
        try:
            search.join(session) if cfg.join else search.run(session)
        except KeyboardInterrupt:
            interrupted = True
        session.search_end_s = session.clock()
    if cfg.join:
        return _join_summary(cfg, session, interrupted)
    summary = write_artifacts(table, cfg, session, search, test_table, interrupted)
    if interrupted:
        raise KeyboardInterrupt
    return summary


def _check_joinable(storage, name: str) -> None:
    """Refuse `--join` unless a BOASF controller is running in this storage (before any output)."""
    try:
        sid = storage.get_study_id_from_name(f"{name}/controller")
        state = storage.get_study_user_attrs(sid).get("boasf")
    except KeyError:
        state = None
    if not state or state.get("done"):
        raise UserError(f"nothing to join: no running BOASF study {name!r} in this storage")


def _join_summary(cfg: RunConfig, session, interrupted: bool) -> dict[str, Any]:
    """A joining process reports only its own trials; the controller refits and writes artefacts."""
    mine = session.records  # a joiner loads no earlier trials: these are all its own
    status = {s: sum(1 for r in mine if r["status"] == s) for s in ("ok", "failed", "timeout")}
    summary = {"joined": cfg.study_name, "method": cfg.method, "trials": {"total": len(mine), **status},
               "session_s": round(session.session_seconds(), 3), "interrupted": interrupted,
               "trials_log": str(cfg.out_dir / "trials.jsonl")}
    if cfg.output:
        write_json(cfg.output, summary) if cfg.output != "-" else print(dumps(summary, indent=2))
    if interrupted:
        raise KeyboardInterrupt
    return summary


def _progress_line(cfg: RunConfig):
    from papersuite.context import options

    seen = [0]

    def on_trial(rec: dict[str, Any]) -> None:
        seen[0] += 1
        if options().verbose:
            score = f"{rec['score']:.4f}" if rec["score"] is not None else rec["status"]
            info(f"trial {seen[0]:4d}  {rec['arm']:<8} round {rec.get('round', 0)}  {score}  "
                 f"{rec['duration_s']:.2f}s")
    return on_trial


def write_artifacts(table, cfg: RunConfig, session, search, test_table, interrupted: bool) -> dict[str, Any]:
    from boasf.artifacts import (best_record, best_so_far, leaderboard, plot_anytime, save_pipeline,
                                 write_leaderboard)
    from boasf.evaluate import refit, score_model

    records = session.records
    state = session.load_state() or {}
    rounds = state.get("rounds", [])
    scores = search.arm_scores(list(dict.fromkeys(r["arm"] for r in records))) if cfg.method == "boasf" else {}
    board = leaderboard(records, state, scores)
    out = cfg.out_dir
    arts = {"trials": str(out / "trials.jsonl"), "leaderboard": str(out / "leaderboard.jsonl")}
    write_leaderboard(out / "leaderboard.jsonl", board)
    if cfg.plot:
        ends = [rd["t_end"] for rd in rounds[:-1]] if cfg.method == "boasf" else []
        plot_anytime(out / "anytime.png", {cfg.method: best_so_far(records)}, ends,
                     title=f"{cfg.method} on {Path(table.name).name} ({cfg.metric})")
        arts["anytime"] = str(out / "anytime.png")
    if not cfg.storage:
        arts["study"] = str(out / "study.db")
    best = best_record(records)
    test_score = None
    if best is not None and cfg.refit and not interrupted:
        model = refit(table, best["family"], best["params"], cfg.seed)
        path = out / f"best_pipeline.{cfg.model_format}"
        if cfg.model_format == "joblib":
            info("warning: joblib files run code when loaded; share best_pipeline.joblib only with people "
                 "who trust you")
        save_pipeline(model, path, cfg.model_format)
        arts["model"] = str(path)
        if test_table is not None:
            test_score = score_model(model, test_table, cfg.metric)
    status = {s: sum(1 for r in records if r["status"] == s) for s in ("ok", "failed", "timeout")}
    summary = {
        "method": cfg.method, "metric": cfg.metric, "data": table.name, "target": table.target,
        "budget": {"kind": cfg.budget.kind, "amount": cfg.budget.amount}, "seed": cfg.seed,
        "best": None if best is None else {
            "arm": best["arm"], "family": best["family"], "params": best["params"], "cv_mean": best["score"],
            "cv_sd": statistics.pstdev(best["fold_scores"]) if best["fold_scores"] else None,
            "fold_scores": best["fold_scores"]},
        "elapsed_s": round(session.search_end_s, 3), "search_s": round(session.search_end_s - session.elapsed_before, 3),
        "refit_and_artifacts_s": round(session.clock() - session.search_end_s, 3),
        "trials": {"total": len(records), **status},
        "overhead_ms_median": round(1000 * statistics.median(session.overhead_s), 3) if session.overhead_s else None,
        "rounds": [{k: rd[k] for k in ("pass", "round", "budget", "survivors", "ucb_after", "keep_probability",
                                      "shares", "used", "dropped")} for rd in rounds],
        "test_score": test_score, "interrupted": interrupted, "artifacts": arts,
    }
    if cfg.output and (not interrupted or cfg.output != "-"):
        write_json(cfg.output, summary) if cfg.output != "-" else print(dumps(summary, indent=2))
    show_table([{k: r[k] for k in ("arm", "trials", "ok", "best", "mean", "ucb", "seconds", "round_dropped")}
                for r in board], title=f"tune: {cfg.method}, {len(records)} trials")
    return summary
