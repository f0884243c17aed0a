"""BOASF vs optuna TPE (joint space) vs random search, same folds, same budget, same run.

Protocol (paper notes section 7, scaled to this machine): per data set and seed a stratified 80/20
split; every method searches the 80 % with the same pipeline builder and the same shuffled 3-fold
CV, for the same wall-clock budget, with one worker process pinned to one thread; the winner is
refitted on the 80 % and scored once on the 20 %. Cells run one at a time, and the method order
is rotated per seed (interleaving), so machine load hits every method alike; the load average is
recorded before and after. Cells are appended to `cells-<grid>.jsonl` as they end: a rerun skips
cells already there (resumable).

    python benchmarks/boasf.py            # default grid: 2 sets x 4 methods x 2 seeds x 30 s, 2 cells at a time (~5 min)
    python benchmarks/boasf.py --quick    # the issue's quick grid: 4 sets x 1 seed (30 s, not 20: see GRIDS)
    python benchmarks/boasf.py --ablation # BOASF variants on two sets, seed 0, 30 s
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

DATA = ROOT.parent / "shared" / "data" / "tabular"
OUT = ROOT / "benchmarks" / "results" / "boasf"

METHODS = {  # name -> RunConfig overrides
    "boasf": {"method": "boasf"},
    "boasf-paper": {"method": "boasf", "arm_score": "mean-ucb", "temperature": "paper"},
    "tpe": {"method": "tpe"},
    "random": {"method": "random"},
}
ABLATIONS = {
    "boasf": {"method": "boasf"},
    "paper (mean-ucb)": {"method": "boasf", "arm_score": "mean-ucb"},
    "no filtering": {"method": "boasf", "filtering": False},
    "uniform shares": {"method": "boasf", "allocation": "uniform"},
    "random inside arms": {"method": "boasf", "inner": "random"},
    "temperature 0.5": {"method": "boasf", "temperature": 0.5},
}
GRIDS = {
    # 30 s: the tool's own minimum for 10 arms x 3 rounds x 1 s (the issue's 20 s would be refused)
    "default": {"sets": ["pc1", "blood-transfusion-service-center"], "seeds": [0, 1], "budget": 30.0,
                "methods": METHODS},
    "quick": {"sets": ["pc1", "blood-transfusion-service-center", "credit-g", "diabetes"], "seeds": [0],
              "budget": 30.0, "methods": METHODS},
    "ablation": {"sets": ["pc1", "credit-g"], "seeds": [0], "budget": 30.0, "methods": ABLATIONS},
}


def split_table(table, seed: int):
    """Stratified 80/20 split of a validated table; the test rows never reach the search."""
    from dataclasses import replace

    from sklearn.model_selection import train_test_split

    idx_tr, idx_te = train_test_split(range(len(table.y)), test_size=0.2, stratify=table.y, random_state=seed)
    part = lambda idx, tag: replace(table, X=table.X.iloc[idx].reset_index(drop=True), y=table.y[idx],  # noqa: E731
                                    sha256=f"{table.sha256}:{seed}:{tag}")
    return part(idx_tr, "train"), part(idx_te, "test")


def run_cell(table, test, method: str, overrides: dict, seed: int, budget: float) -> dict:
    from boasf.run import RunConfig, run_tune
    from boasf.search import Budget
    from boasf.space import FAMILIES, family_arms

    keys = list(FAMILIES)
    with tempfile.TemporaryDirectory(prefix="boasf-bench-") as tmp:
        cfg = RunConfig(arms=family_arms(keys), families=keys, budget=Budget("seconds", budget), seed=seed,
                        n_jobs=1, trial_timeout=min(60.0, budget / 5), out_dir=Path(tmp), output=None,
                        plot=False, **overrides)
        t0 = time.perf_counter()
        s = run_tune(table, cfg, test)
        wall = time.perf_counter() - t0
        recs = [json.loads(line) for line in open(Path(tmp) / "trials.jsonl")]
    from boasf.artifacts import best_so_far

    return {"method": method, "seed": seed, "budget_s": budget, "cv_best": s["best"]["cv_mean"] if s["best"] else None,
            "test": s["test_score"], "best_arm": s["best"]["arm"] if s["best"] else None, "trials": s["trials"],
            "overhead_ms": s["overhead_ms_median"], "search_s": s["search_s"], "wall_s": round(wall, 2),
            "curve": best_so_far(recs), "rounds": [r["survivors"] for r in s["rounds"]]}


def _cell_process(conn, d, seed, m, train, test, overrides, budget):
    try:
        conn.send({"data": d, **run_cell(train, test, m, overrides, seed, budget),
                   "loadavg_1m": round(os.getloadavg()[0], 2)})
    except BaseException as e:  # report, do not hang the parent
        conn.send({"error": f"{type(e).__name__}: {e}"})


def run_cells(todo, methods, budget, parallel: int):
    """Run cells `parallel` at a time (two cores: two cells side by side), each in its own process;
    consecutive cells are different methods of the same (set, seed), so they share the load alike."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    running = []
    todo = list(todo)
    while todo or running:
        while todo and len(running) < parallel:
            d, seed, m, train, test = todo.pop(0)
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_cell_process, args=(child, d, seed, m, train, test, methods[m], budget))
            p.start()
            running.append((p, parent))
        ready = mp.connection.wait([c for _, c in running])
        for p, c in list(running):
            if c in ready:
                res = c.recv()
                p.join()
                running.remove((p, c))
                if "error" in res:
                    raise RuntimeError(res["error"])
                yield res


def time_to(curve, target: float, budget: float) -> float:
    """First time the best-so-far reaches `target`; the budget if never (censored)."""
    for t, v in curve:
        if v >= target - 1e-12:
            return t
    return budget


def regret_area(curve, best: float, base: float, budget: float, steps: int = 100) -> float:
    """Mean normalised regret (best - s) / (best - base) over [0, budget], 1 before the first trial."""
    span = max(best - base, 1e-9)
    total = 0.0
    for i in range(steps):
        t = budget * (i + 0.5) / steps
        seen = [v for tt, v in curve if tt <= t]
        total += min(1.0, (best - seen[-1]) / span) if seen else 1.0
    return total / steps


def summarise(cells: list[dict], methods: list[str], budget: float) -> dict:
    """Mean ranks, wins/ties/losses, time to 99 % of the best CV score, regret areas, overheads."""
    import numpy as np
    from scipy import stats

    groups = {}
    for c in cells:  # a method that finished no trial in a cell scores 0 there (and shows it in the cells)
        c = dict(c, test=c["test"] if c["test"] is not None else 0.0,
                 cv_best=c["cv_best"] if c["cv_best"] is not None else 0.0)
        groups.setdefault((c["data"], c["seed"]), {})[c["method"]] = c
    groups = {k: g for k, g in groups.items() if all(m in g for m in methods)}
    sets = sorted({d for d, _ in groups})
    mean_test = {d: {m: statistics.fmean(g[m]["test"] for (dd, _), g in groups.items() if dd == d) for m in methods}
                 for d in sets}
    ranks = {m: [] for m in methods}
    for d in sets:
        r = stats.rankdata([-mean_test[d][m] for m in methods])
        for m, v in zip(methods, r):
            ranks[m].append(float(v))
    ref = methods[0]
    wtl = {}
    for m in methods[1:]:
        diffs = [g[ref]["test"] - g[m]["test"] for g in groups.values()]
        wtl[m] = {"wins": sum(x > 0.002 for x in diffs), "ties": sum(abs(x) <= 0.002 for x in diffs),
                  "losses": sum(x < -0.002 for x in diffs)}
    t99 = {m: [] for m in methods}
    regret = {m: [] for m in methods}
    for g in groups.values():
        best = max(g[m]["cv_best"] for m in methods)
        base = min(g[m]["curve"][0][1] for m in methods if g[m]["curve"])
        for m in methods:
            t99[m].append(time_to(g[m]["curve"], 0.99 * best, budget))
            regret[m].append(regret_area(g[m]["curve"], best, base, budget))
    friedman = None
    if len(methods) > 2 and len(groups) > 2:
        cols = [[g[m]["test"] for g in groups.values()] for m in methods]
        friedman = float(stats.friedmanchisquare(*cols).pvalue)
    rows = []
    for m in methods:
        ov = [c["overhead_ms"] for g in groups.values() for mm, c in g.items() if mm == m and c["overhead_ms"]]
        rows.append({"method": m, "mean_rank": statistics.fmean(ranks[m]) if ranks[m] else float("nan"),
                     "mean_test": statistics.fmean(g[m]["test"] for g in groups.values()),
                     "mean_cv": statistics.fmean(g[m]["cv_best"] for g in groups.values()),
                     "median_t99_s": statistics.median(t99[m]),
                     "t99_ratio_vs_" + ref: statistics.median(t99[m]) / max(statistics.median(t99[ref]), 1e-9),
                     "mean_regret_area": statistics.fmean(regret[m]),
                     "median_trials": statistics.median(g[m]["trials"]["total"] for g in groups.values()),
                     "overhead_ms_median": statistics.median(ov) if ov else None})
    return {"rows": rows, "wins_ties_losses_of_" + ref: wtl, "friedman_p": friedman, "cells": len(groups),
            "mean_test_per_set": mean_test, "median_curve_points": {m: [(round(t, 2), round(v, 4)) for t, v in
                                                                        _median_curve(groups, m, budget)]
                                                                    for m in methods}, "regret_raw": regret,
            "t99_raw": t99}


def _median_curve(groups, m, budget, steps=40):
    """Median over cells of the normalised regret at fixed times (for the anytime figure)."""
    out = []
    for i in range(1, steps + 1):
        t = budget * i / steps
        vals = []
        for g in groups.values():
            best = max(g[mm]["cv_best"] for mm in g)
            base = min(g[mm]["curve"][0][1] for mm in g if g[mm]["curve"])
            seen = [v for tt, v in g[m]["curve"] if tt <= t]
            vals.append(min(1.0, (best - seen[-1]) / max(best - base, 1e-9)) if seen else 1.0)
        out.append((t, statistics.median(vals)))
    return out


def plot(summary: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for m, pts in summary["median_curve_points"].items():
        xs, ys = zip(*pts)
        ax.step(xs, ys, where="post", label=m)
    ax.set_xlabel("seconds")
    ax.set_ylabel("median normalised regret (CV)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="4 sets, 1 seed, 20 s (the issue's make bench grid)")
    g.add_argument("--ablation", action="store_true", help="BOASF variants on pc1")
    ap.add_argument("--budget", type=float, help="override the grid's budget (seconds)")
    ap.add_argument("--sets", help="comma-separated data set stems (override)")
    ap.add_argument("--seeds", help="comma-separated seeds (override)")
    ap.add_argument("--fresh", action="store_true", help="ignore cells already measured")
    ap.add_argument("--parallel", type=int, default=2, help="cells side by side (default 2: one per core)")
    args = ap.parse_args(argv)

    from papersuite.bench import environment, markdown_table, pin_threads, write_results
    from papersuite.context import set_options

    from boasf.data import load_table

    pin_threads(1)
    set_options(quiet=True)
    name = "quick" if args.quick else "ablation" if args.ablation else "default"
    grid = dict(GRIDS[name])
    if args.budget:
        grid["budget"] = args.budget
    if args.sets:
        grid["sets"] = args.sets.split(",")
    if args.seeds:
        grid["seeds"] = [int(s) for s in args.seeds.split(",")]
    methods = grid["methods"]
    budget = grid["budget"]
    OUT.mkdir(parents=True, exist_ok=True)
    cells_path = OUT / f"cells-{name}.jsonl"
    done = [] if args.fresh or not cells_path.exists() else [json.loads(x) for x in open(cells_path)]
    if args.fresh and cells_path.exists():
        cells_path.unlink()
    load_before = os.getloadavg()
    print(f"grid {name}: {grid['sets']} seeds {grid['seeds']} budget {budget:g}s methods {list(methods)}; "
          f"load average {load_before[0]:.2f}", file=sys.stderr)
    cells = [c for c in done if c["budget_s"] == budget and c["method"] in methods]
    todo = []
    for d in grid["sets"]:
        table = load_table(str(DATA / f"{d}.csv"))
        for seed in grid["seeds"]:
            train, test = split_table(table, seed)
            order = list(methods)
            k = seed % len(order)
            order = order[k:] + order[:k]  # rotate: no method always runs first (or last)
            todo += [(d, seed, m, train, test) for m in order
                     if not any(c["data"] == d and c["seed"] == seed and c["method"] == m for c in cells)]
    for cell in run_cells(todo, methods, budget, args.parallel):
        cells.append(cell)
        with open(cells_path, "a") as fh:
            fh.write(json.dumps(cell) + "\n")
        print(f"  {cell['data']:<34} seed {cell['seed']} {cell['method']:<20} cv {cell['cv_best'] or 0:.4f} "
              f"test {cell['test'] or 0:.4f} trials {cell['trials']['total']:4d} overhead {cell['overhead_ms']} ms "
              f"load {cell['loadavg_1m']}", file=sys.stderr)
    cells = [c for c in cells if c["data"] in grid["sets"] and c["seed"] in grid["seeds"]]
    summary = summarise(cells, list(methods), budget)
    load_after = os.getloadavg()
    ref = list(methods)[0]
    cols = ["method", "mean_rank", "mean_test", "mean_cv", "median_t99_s", f"t99_ratio_vs_{ref}",
            "mean_regret_area", "median_trials", "overhead_ms_median"]
    table_md = markdown_table(summary["rows"], cols)
    wtl = summary[f"wins_ties_losses_of_{ref}"]
    lines = [f"# BOASF benchmark: grid `{name}`", "",
             f"Command: `python benchmarks/boasf.py{' --' + name if name != 'default' else ''}`. "
             f"Data: {', '.join(grid['sets'])}; seeds {grid['seeds']}; budget {budget:g} s per method and cell; "
             f"one worker, one thread; balanced accuracy; 80/20 split per seed, 3-fold CV on the 80 %.",
             f"Load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f} on "
             f"{os.cpu_count()} cores.", "",
             table_md, "",
             "mean_rank: rank of each method's mean held-out score per data set, averaged over sets (lower is "
             "better). t99: seconds until the best CV score so far reaches 99 % of the best any method found "
             "in that cell (the budget when never). regret area: mean normalised CV regret over the budget.",
             "", f"{ref} against each peer (held-out score per cell, tie within 0.002): " +
             "; ".join(f"{m}: {v['wins']} wins / {v['ties']} ties / {v['losses']} losses" for m, v in wtl.items()),
             f"Friedman p-value over cells: {summary['friedman_p']}", "", f"![anytime](anytime-{name}.png)"]
    md = "\n".join(lines)
    write_results("boasf", f"bench-{name}", {"grid": {k: (list(v) if k == "methods" else v) for k, v in grid.items()},
                                             "load_before": load_before, "load_after": load_after,
                                             "summary": summary, "cells": cells}, md)
    plot(summary, OUT / f"anytime-{name}.png", f"grid {name}: median normalised regret, {budget:g} s")
    print(md)
    print(f"\nenvironment: {environment()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
