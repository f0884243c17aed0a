"""CSGNN benchmark: expressivity (pairs, wl), BREC ceilings, TU cross-validation, cost.

    .venv/bin/python benchmarks/csgnn.py            # quick (default, < 5 min on an idle 2-core box)
    .venv/bin/python benchmarks/csgnn.py --full     # the issue's protocol (hours on CPU)
    .venv/bin/python benchmarks/csgnn.py --sections tu --datasets MUTAG --folds 10 --epochs 100

Every model sees the same folds; GIN is measured in the same run as CSGNN (epoch timings
interleaved, medians). Results: benchmarks/results/csgnn/<name>.json and .md.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from papersuite.bench import environment, interleaved, markdown_table, pin_threads, write_results  # noqa: E402

BREC_TABLE2 = {"3-WL": (60, 50, 100, 60, 270), "KP-GNN": (60, 106, 98, 11, 275), "I2-GNN": (60, 100, 100, 21, 281),
               "GSN": (60, 99, 95, 0, 254), "PPGN": (60, 50, 100, 23, 233), "GIN/1-WL": (0, 0, 0, 0, 0)}
CIN_XU = {"MUTAG": 92.7, "PTC_MR": 68.2, "PROTEINS": 77.0, "NCI1": 83.6, "IMDB-BINARY": 75.6}


def _structs(gset, cfg, cache=None, workers=1):
    from csgnn.inputs import build_structures

    return build_structures(gset.graphs, cfg, workers=workers, cache_dir=cache)


def expressivity(args) -> tuple[list[dict], list[dict]]:
    """Untrained pair tests and their wl ceilings on the synthetic sets."""
    from csgnn import data
    from csgnn.expressivity import pair_test, wl_test
    from csgnn.inputs import ModelConfig

    sets = [("EXP", 8), ("SR25", 8), ("CSL", 8), ("sr16622", 6), ("sr261034", 6), ("sr281264", 6),
            ("sr291467", 6), ("sr401224", 6)]
    if args.full:
        sets += [("CEXP", 8), ("sr361446", 6), ("sr351899", 6), ("sr351668", 6)]
    if args.expr_sets:
        sets = [(s.split(":")[0], int(s.split(":")[1]) if ":" in s else 8) for s in args.expr_sets.split(",")]
    rows, raw = [], []
    for name, L in sets:
        gset = data.load(name)
        for model, faithful in (("csgnn", False), ("csgnn", True), ("gin", False)):
            if faithful and not args.full and name not in ("EXP", "SR25", "CSL", "CEXP"):
                continue
            cfg = ModelConfig(model=model, cycle_len=L, faithful=faithful, hidden=16 if faithful else 32,
                              layers=max(4, L // 2 + 1) if faithful else 4)
            t0 = time.perf_counter()
            structs, stats = _structs(gset, cfg, args.cache)
            pre = time.perf_counter() - t0
            t0 = time.perf_counter()
            p = pair_test(gset, structs, cfg, seeds=args.seeds)
            tp = time.perf_counter() - t0
            w = wl_test(gset, structs, cfg) if not faithful else None
            label = "csgnn-faithful" if faithful else model
            rows.append({"set": name, "L": L, "model": label, "pairs": p["pairs_total"],
                         "distinguished": p["distinguished"], "wl_ceiling": w["distinguished"] if w else "",
                         "reliability_failures": p["reliability_failures"], "fallbacks": stats.fallbacks,
                         "preprocess_s": round(pre, 2), "pairs_s": round(tp, 2)})
            print(f"  {name} L={L} {label}: {p['distinguished']}/{p['pairs_total']} "
                  f"(wl {w['distinguished'] if w else '-'}), reliability failures {p['reliability_failures']}",
                  file=sys.stderr, flush=True)
    return rows, raw


def brec(args) -> list[dict]:
    """BREC: exact ceilings (wl) of the chordless relations per category, next to Table 2."""
    from csgnn import data
    from csgnn.expressivity import wl_test
    from csgnn.inputs import ModelConfig

    cats = None if args.full else ["Basic", "Regular", "Strongly_Regular", "Extension"]
    settings = [(6, False), (8, False), (6, True)] if args.full else [(6, False)]
    gset = data.load("BREC", categories=cats)
    rows = []
    for L, comp in settings:
        cfg = ModelConfig(model="csgnn", cycle_len=L, complement=comp)
        t0 = time.perf_counter()
        structs, stats = _structs(gset, cfg, args.cache, workers=args.workers)
        w = wl_test(gset, structs, cfg)
        g = w["by_group"]
        row = {"setting": f"wl L<={L}" + (" +complement" if comp else ""),
               **{k: f"{v['distinguished']}/{v['total']}" for k, v in g.items()},
               "total": w["distinguished"],
               "regular (simple/SR/4-vtx/DR)": "/".join(str(w["by_category"].get(c, {}).get("distinguished", "-"))
                                                        for c in ("Regular", "Strongly_Regular", "4-Vertex_Condition",
                                                                  "Distance_Regular")), "pairs": w["pairs_total"], "fallbacks": stats.fallbacks,
               "seconds": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        print(f"  BREC {row['setting']}: {w['distinguished']}/{w['pairs_total']}", file=sys.stderr, flush=True)
    gin = ModelConfig(model="gin")
    w = wl_test(gset, [None] * len(gset), gin)
    rows.append({"setting": "1-WL (gin inputs)", **{k: f"{v['distinguished']}/{v['total']}" for k, v in w["by_group"].items()},
                 "total": w["distinguished"], "regular (simple/SR/4-vtx/DR)": "", "pairs": w["pairs_total"],
                 "fallbacks": 0, "seconds": 0})
    return rows


def tu(args) -> list[dict]:
    """Stratified CV (selection on validation) for every model on the same folds; xu from the same runs."""
    from csgnn import data
    from csgnn.experiment import class_indices, evaluate_protocol
    from csgnn.inputs import ModelConfig
    from csgnn.training import TrainConfig, make_folds

    rows = []
    for name in args.datasets:
        gset = data.load(name)
        folds = make_folds(class_indices(gset), args.folds, 0.1, args.seed)
        models = list(args.models)
        if args.full and name in ("MUTAG", "PTC_MR", "PROTEINS", "ENZYMES"):
            models += [m for m in ("gin-cycles", "csgnn-chords", "gcn") if m not in models]
        for model in models:
            cfg = ModelConfig(model=model, cycle_len=args.cycle_len)
            structs, stats = _structs(gset, cfg, args.cache, workers=args.workers)
            t0 = time.perf_counter()
            r = evaluate_protocol(gset, structs, cfg, TrainConfig(args.epochs, 1e-3, 32, args.seed, args.device),
                                  folds, "cv", jobs=args.jobs)
            rows.append({"dataset": name, "model": model, "folds": args.folds, "epochs": args.epochs,
                         "cv_acc": round(100 * r["accuracy_mean"], 1), "cv_std": round(100 * r["accuracy_std"], 1),
                         "xu_acc (optimistic)": round(100 * r["xu_optimistic"]["accuracy_mean"], 1),
                         "epoch_s": round(r["epoch_seconds"], 4), "fallbacks": stats.fallbacks,
                         "train_s": round(time.perf_counter() - t0, 1)})
            print(f"  {name} {model}: cv {rows[-1]['cv_acc']} ± {rows[-1]['cv_std']}  "
                  f"xu {rows[-1]['xu_acc (optimistic)']}", file=sys.stderr, flush=True)
    return rows


def cost(args) -> tuple[list[dict], list[dict]]:
    """Chordless vs simple cycles (count, relation pairs per edge, seconds), cache, epoch time."""
    import torch

    from csgnn import data
    from csgnn.features import FeatureSpec
    from csgnn.inputs import ModelConfig, label_map, to_data
    from torch_geometric.loader import DataLoader

    rows = []
    lengths = (6, 8, 10) if args.full else (6, 8)
    for name in args.cost_datasets:
        gset = data.load(name)
        n_edges = 2 * sum(len(g.edges) for g in gset.graphs)
        for L in lengths:
            row = {"dataset": name, "L": L}
            for model in ("csgnn", "csgnn-chords"):
                cfg = ModelConfig(model=model, cycle_len=L)
                t0 = time.perf_counter()
                _, st = _structs(gset, cfg, None, workers=args.workers)
                kind = "chordless" if model == "csgnn" else "simple"
                row[f"{kind}_cycles"] = st.cycles
                row[f"{kind}_pairs_per_edge"] = round(st.relation_pairs / max(1, n_edges), 2)
                row[f"{kind}_s"] = round(time.perf_counter() - t0, 2)
                row[f"{kind}_fallbacks"] = st.fallbacks
            row["cycle_ratio"] = round(row["simple_cycles"] / max(1, row["chordless_cycles"]), 2)
            rows.append(row)
            print(f"  cost {name} L={L}: {row}", file=sys.stderr, flush=True)
    # cache: first preprocessing vs a cached rerun, in a fresh cache folder
    timing = []
    with tempfile.TemporaryDirectory() as tmp:
        gset = data.load(args.cost_datasets[0])
        cfg = ModelConfig(model="csgnn", cycle_len=8)
        t0 = time.perf_counter()
        _structs(gset, cfg, tmp)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, st = _structs(gset, cfg, tmp)
        again = time.perf_counter() - t0
        timing.append({"what": f"cached rerun / first preprocessing ({gset.name}, L=8)",
                       "first_s": round(first, 3), "cached_s": round(again, 3),
                       "ratio": round(again / first, 3), "computed_graphs": st.computed_graphs})
    # epoch time csgnn vs gin, interleaved, medians (same batches for both)
    gset = data.load("MUTAG")
    index, classes = label_map(gset.graphs)
    spec = FeatureSpec.fit(gset.graphs)
    fns = {}
    for model in ("gin", "csgnn"):
        cfg = ModelConfig(model=model, cycle_len=8)
        structs, _ = _structs(gset, cfg, args.cache)
        batches = list(DataLoader(to_data(gset.graphs, structs, spec, cfg, index), batch_size=32, shuffle=True,
                                  generator=torch.Generator().manual_seed(0)))
        torch.manual_seed(0)
        net = cfg.build(spec.dim, len(classes))
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)

        def epoch(net=net, opt=opt, batches=batches):
            net.train()
            for b in batches:
                opt.zero_grad()
                torch.nn.functional.cross_entropy(net(b), b.y).backward()
                opt.step()
        fns[model] = epoch
    t = interleaved(fns, repeats=args.repeats, warmup=1)
    timing.append({"what": "MUTAG training epoch, csgnn / gin (L=8, hidden 64, 4 layers, batch 32)",
                   "gin_median_s": round(t["gin"].median, 4), "csgnn_median_s": round(t["csgnn"].median, 4),
                   "ratio": round(t["csgnn"].median / t["gin"].median, 2)})
    return rows, timing


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="the issue's full protocol (hours on CPU)")
    ap.add_argument("--quick", action="store_true", help="the default: MUTAG and PTC_MR, 3 folds, 30 epochs")
    ap.add_argument("--sections", default="expressivity,brec,tu,cost")
    ap.add_argument("--datasets", default=None, help="TU sets for the tu section (comma list)")
    ap.add_argument("--models", default="csgnn,gin")
    ap.add_argument("--expr-sets", default=None, help="expressivity sets as NAME:L (comma list)")
    ap.add_argument("--cost-datasets", default=None, help="sets for the cost section (comma list)")
    ap.add_argument("--folds", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--cycle-len", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1, help="folds in parallel processes")
    ap.add_argument("--workers", type=int, default=1, help="enumeration worker processes")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--name", default=None, help="results file name [quick | full | custom]")
    ap.add_argument("--cache", default=None, help="structure cache folder [default: a fresh temporary one]")
    args = ap.parse_args()
    pin_threads(1)
    full = args.full
    args.datasets = args.datasets.split(",") if args.datasets else (
        ["MUTAG", "PTC_MR", "PROTEINS", "NCI1", "IMDB-BINARY", "ENZYMES"] if full else ["MUTAG", "PTC_MR"])
    args.models = args.models.split(",")
    args.folds = args.folds or (10 if full else 3)
    args.epochs = args.epochs or (200 if full else 30)
    args.seeds = args.seeds or (5 if full else 2)
    args.cost_datasets = args.cost_datasets.split(",") if args.cost_datasets else (
        ["MUTAG", "PTC_MR", "PROTEINS", "NCI1", "IMDB-BINARY", "ENZYMES"] if full else ["MUTAG", "PTC_MR"])
    tmp = tempfile.TemporaryDirectory()
    args.cache = args.cache or tmp.name
    sections = args.sections.split(",")
    name = args.name or ("full" if full else "quick")
    t_start = time.perf_counter()
    out: dict = {"args": {k: v for k, v in vars(args).items() if k != "cache"}}
    md = [f"# CSGNN benchmark ({name})", "",
          f"`{' '.join(['benchmarks/csgnn.py'] + sys.argv[1:])}`; load average at start "
          f"{environment()['loadavg_1m']}, 1 torch thread per process.", ""]
    if "expressivity" in sections:
        print("expressivity (untrained pairs, float64; wl = exact ceiling)", file=sys.stderr)
        rows, _ = expressivity(args)
        out["expressivity"] = rows
        md += ["## Expressivity (pairs distinguished; untrained, float64, every seed)", "", markdown_table(rows), ""]
    if "brec" in sections:
        print("BREC ceilings", file=sys.stderr)
        rows = brec(args)
        out["brec"] = rows
        ref = [{"setting": k, "Basic": v[0], "Regular": v[1], "Extension": v[2], "CFI": v[3], "total": v[4]}
               for k, v in BREC_TABLE2.items()]
        md += ["## BREC: exact colour-refinement ceilings of the model inputs", "", markdown_table(rows), "",
               "BREC Table 2 (Wang & Zhang 2024), RPC-tested models, for reference:", "", markdown_table(ref), ""]
    if "tu" in sections:
        print("TU cross-validation", file=sys.stderr)
        rows = tu(args)
        out["tu"] = rows
        md += ["## TU classification: stratified CV, epoch picked on validation (honest)", "",
               "`xu_acc` picks the epoch on the mean test curve of the same runs: optimistic, comparison only. "
               f"CIN (Xu protocol, published): {CIN_XU}.", "", markdown_table(rows), ""]
    if "cost" in sections:
        print("cost", file=sys.stderr)
        rows, timing = cost(args)
        out["cost"], out["timing"] = rows, timing
        md += ["## Cost: chordless vs simple cycles", "", markdown_table(rows), "", markdown_table(timing), ""]
    out["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    md += [f"Wall time: {out['wall_seconds']} s."]
    path = write_results("csgnn", name, out, "\n".join(md))
    print(f"wrote {path} ({out['wall_seconds']} s)", file=sys.stderr)
    tmp.cleanup()


if __name__ == "__main__":
    main()
