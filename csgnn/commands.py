"""`papersuite graph-classify`: datasets | train | evaluate | predict.

Heavy imports (torch, torch_geometric, networkx) happen inside the commands so that
`papersuite --help` stays fast. Results are JSON on stdout or in `-o PATH` (atomic); tables and
progress go to stderr.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from papersuite.errors import UserError

app = typer.Typer(help="CSGNN: chordless-cycle GNNs for graph classification and expressivity tests.",
                  no_args_is_help=True)

PROTOCOLS = ("auto", "cv", "xu", "pairs", "wl")

# -- shared options ------------------------------------------------------------------------------
DataDir = typer.Option(None, "--data-dir", help="Folder of named datasets [default: $PAPERSUITE_GRAPHS or ../shared/data/graphs].")
CycleLen = typer.Option(8, "--cycle-len", help="Longest cycle enumerated (3-24; never unbounded).")
MaxCycles = typer.Option(100_000, "--max-cycles", help="Cycle budget per graph; over it, retry with L-1, L-2, ...")
Complement = typer.Option(False, "--complement", help="Add the relations of the complement graph.")
Faithful = typer.Option(False, "--faithful", help="CSGNN with the authors' layer schedule (notes §2.4).")
RelWeights = typer.Option("diag", "--relation-weights", help="CSGNN relation weights: diag (per-channel) or full (matrix).")
TimeLimit = typer.Option(60.0, "--time-limit", help="Hard seconds per graph for enumeration (in worker processes).")
Workers = typer.Option(1, "--workers", help="Enumeration worker processes (0: in-process, no hard time limit).")
CacheDir = typer.Option(None, "--cache-dir", help="Structure cache [default: $PAPERSUITE_CACHE/csgnn].")
NoCache = typer.Option(False, "--no-cache", help="Do not read or write the structure cache.")
Hidden = typer.Option(64, "--hidden", help="Hidden width.")
Layers = typer.Option(4, "--layers", help="Message-passing layers.")
Dropout = typer.Option(0.5, "--dropout", help="Dropout before the readout heads.")
Epochs = typer.Option(200, "--epochs", help="Training epochs.")
Lr = typer.Option(1e-3, "--lr", help="Adam learning rate.")
BatchSize = typer.Option(32, "--batch-size", help="Graphs per batch.")
Threads = typer.Option(1, "--threads", help="torch threads per process (1 is fastest on a busy machine).")
Jobs = typer.Option(1, "--jobs", help="Folds trained in parallel processes (cv, xu).")
Seed = typer.Option(None, "--seed", help="Seed [default: the global --seed].")
Output = typer.Option(None, "-o", "--output", help="Write the JSON result here (atomic) instead of stdout.")


def _seed(seed: Optional[int]) -> int:
    from papersuite.context import options

    return options().seed if seed is None else seed


def _cache(cache_dir: Optional[Path], no_cache: bool) -> Optional[Path]:
    from csgnn.chordless import default_cache_dir

    return None if no_cache else (cache_dir or default_cache_dir())


def _config(model: str, cycle_len: int, complement: bool, max_cycles: int, time_limit: float, hidden: int,
            layers: int, dropout: float, faithful: bool, relation_weights: str):
    from csgnn.inputs import ModelConfig

    if model == "csgnn-faithful":
        model, faithful = "csgnn", True
    return ModelConfig(model=model, cycle_len=cycle_len, complement=complement, max_cycles=max_cycles,
                       time_limit=time_limit, hidden=hidden, layers=layers, dropout=dropout, faithful=faithful,
                       relation_weights=relation_weights)


def _structures(gset, cfg, workers: int, cache: Optional[Path]):
    from csgnn.inputs import build_structures
    from papersuite.progress import info, progress

    if cfg.cycle_options() is None:
        return [None] * len(gset), {"seconds": 0.0, "computed_graphs": 0, "cached_graphs": 0, "cycles": 0,
                                     "relation_pairs": 0, "fallbacks": 0, "fallback_graphs": []}
    kind = "simple" if cfg.model == "csgnn-chords" else "chordless"
    with progress(f"{kind} cycles <= {cfg.cycle_len} ({gset.name})", total=len(gset)) as task:
        structs, stats = build_structures(gset.graphs, cfg, workers=workers, cache_dir=cache,
                                          on_progress=task.advance)
    if stats.fallbacks:
        info(f"warning: {stats.fallbacks} graph(s) of {gset.name} fell back to a shorter cycle bound "
             f"(budget {cfg.max_cycles} cycles / {cfg.time_limit:g} s); see preprocess.fallback_graphs")
    return structs, stats.as_dict()


def _emit(result: Any, output: Optional[Path]) -> None:
    from papersuite.io import write_json

    if output is None:
        typer.echo(json.dumps(result, indent=2, default=_jsonable))
    else:
        write_json(output, result)


def _jsonable(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(type(o).__name__)


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, n))


def _device() -> str:
    from papersuite.context import options
    from papersuite.device import resolve_device

    return resolve_device(options().device)


# -- datasets --------------------------------------------------------------------------------------
@app.command("datasets")
def datasets(
    name: Optional[str] = typer.Argument(None, help="A dataset name, TU folder, .jsonl or .g6 file; none: list all."),
    export: bool = typer.Option(False, "--export", help="Write the graphs as JSONL (one graph a line)."),
    cycle_len: int = typer.Option(6, "--cycle-len", help="Cycle bound for the statistics."),
    max_cycles: int = MaxCycles,
    workers: int = Workers,
    cache_dir: Optional[Path] = CacheDir,
    no_cache: bool = NoCache,
    data_dir: Optional[Path] = DataDir,
    output: Optional[Path] = Output,
) -> None:
    """List the datasets; with NAME, its statistics incl. chordless cycles; with --export, JSONL."""
    from csgnn import data
    from papersuite.progress import table

    if name is None:
        root = Path(data_dir) if data_dir else data.default_data_dir()
        rows = []
        for n in data.KNOWN:
            kind = ("classification" if n in data.TU_NAMES + ("CSL",) else
                    "pairs" if n in data.PAIR_NAMES else "family")
            folder = {"graph8c": "SR25", **{s: "SRG_families" for s in data.SRG_NAMES}}.get(n, n)
            rows.append({"name": n, "kind": kind,
                         "available": n == "CSL" or (root / folder).exists()})
        table(rows, title=f"datasets under {root}")
        _emit({"data_dir": str(root), "datasets": rows}, output)
        return
    gset = data.load(name, data_dir)
    if export:
        from papersuite.io import write_jsonl

        write_jsonl(output if output is not None else "-", data.iter_records(gset.graphs))
        return
    import numpy as np

    cfg = _config("csgnn", cycle_len, False, max_cycles, 60.0, 64, 4, 0.5, False, "diag")
    structs, pre = _structures(gset, cfg, workers, _cache(cache_dir, no_cache))
    nodes = np.array([g.num_nodes for g in gset.graphs])
    edges = np.array([len(g.edges) for g in gset.graphs])
    by_len = np.sum([s.counts.sum(0) for s in structs], 0)
    lens = range(3, cycle_len + 1)
    stats: dict[str, Any] = {
        "dataset": gset.name, "kind": gset.kind, "source": gset.source, "graphs": len(gset),
        "nodes": {"mean": float(nodes.mean()), "min": int(nodes.min()), "max": int(nodes.max())},
        "edges": {"mean": float(edges.mean()), "min": int(edges.min()), "max": int(edges.max())},
        "node_labels": any(g.node_labels is not None for g in gset.graphs),
        "node_attributes": max((g.x.shape[1] for g in gset.graphs if g.x is not None), default=0),
        "cycle_len": cycle_len,
        "chordless_cycles": int(sum(s.num_cycles for s in structs)),
        "cycles_by_length": {str(m): int(by_len[m - 3] // m) for m in lens},
        "relation_pairs_per_edge": float(pre["relation_pairs"] / max(1, 2 * edges.sum())),
        "preprocess": pre,
    }
    if all(g.y is not None for g in gset.graphs):
        from collections import Counter

        stats["classes"] = {json.dumps(k) if not isinstance(k, str) else k: v
                            for k, v in sorted(Counter(json.dumps(g.y) for g in gset.graphs).items())}
    if gset.kind != "classification" or gset.name == "CSL":
        a, _, _, _ = gset.pair_arrays()
        stats["pairs"] = int(len(a))
    table([{"field": k, "value": v if not isinstance(v, dict) else json.dumps(v)} for k, v in stats.items()
           if k != "preprocess"], title=gset.name)
    _emit(stats, output)


# -- train -----------------------------------------------------------------------------------------
@app.command("train")
def train(
    dataset: str = typer.Argument("MUTAG", help="Dataset name, TU folder, JSONL file or - (graphs need y)."),
    model: str = typer.Option("csgnn", "--model", help="csgnn | csgnn-chords | csgnn-faithful | gin-cycles | gin | gcn."),
    output: Path = typer.Option(Path("model.pt"), "-o", "--output", help="Checkpoint to write (atomic)."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Stratified validation split that picks the epoch."),
    epochs: int = Epochs, lr: float = Lr, batch_size: int = BatchSize, hidden: int = Hidden, layers: int = Layers,
    dropout: float = Dropout, cycle_len: int = CycleLen, max_cycles: int = MaxCycles,
    complement: bool = Complement, faithful: bool = Faithful, relation_weights: str = RelWeights,
    time_limit: float = TimeLimit, workers: int = Workers, cache_dir: Optional[Path] = CacheDir,
    no_cache: bool = NoCache, threads: int = Threads, seed: Optional[int] = Seed,
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Train one model; the epoch with the best validation accuracy is kept (ties: lower loss).

    The checkpoint holds the configuration, the label map and the feature spec; a JSON summary
    goes to stdout.
    """
    from csgnn import data
    from csgnn.experiment import GraphClassifier
    from csgnn.training import TrainConfig
    from papersuite.progress import progress

    if not 0 < val_fraction < 1:
        raise UserError(f"--val-fraction must be in (0, 1), got {val_fraction}")
    cfg = _config(model, cycle_len, complement, max_cycles, time_limit, hidden, layers, dropout, faithful,
                  relation_weights)
    _threads(threads)
    gset = data.load(dataset, data_dir)
    from csgnn.inputs import label_map

    label_map(gset.graphs)  # a graph without y is an error before any work
    structs, pre = _structures(gset, cfg, workers, _cache(cache_dir, no_cache))
    est = GraphClassifier(cfg, TrainConfig(epochs, lr, batch_size, _seed(seed), _device()), val_fraction)
    with progress(f"training {cfg.model} on {gset.name}", total=epochs) as task:
        est.fit(gset, structs, on_epoch=lambda e: task.advance())
    est.save(output)
    h = est.history_
    _emit({"dataset": gset.name, "checkpoint": str(output), "config": cfg.as_dict(), "classes": est.classes_,
           "selected_epoch": est.selected_epoch_, "val_accuracy": h.val_acc[est.selected_epoch_ - 1],
           "epoch_seconds": sum(h.epoch_seconds) / len(h.epoch_seconds), "preprocess": pre}, None)


# -- predict ---------------------------------------------------------------------------------------
@app.command("predict")
def predict(
    checkpoint: Path = typer.Argument(..., help="A checkpoint written by `graph-classify train`."),
    source: str = typer.Argument("MUTAG", help="Dataset name, TU folder, JSONL file or - (stdin)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="JSONL output [default: stdout]."),
    workers: int = Workers, cache_dir: Optional[Path] = CacheDir, no_cache: bool = NoCache,
    threads: int = Threads, data_dir: Optional[Path] = DataDir,
) -> None:
    """One JSONL line per graph: {"id", "pred", "probs"}, with the original label values."""
    from csgnn import data
    from csgnn.experiment import GraphClassifier
    from papersuite.io import write_jsonl

    _threads(threads)
    est = GraphClassifier.load(checkpoint)
    gset = data.load(source, data_dir)
    structs, _ = _structures(gset, est.config, workers, _cache(cache_dir, no_cache))
    probs = est.predict_proba(gset, structs, device=_device())
    recs = [{"id": g.id, "pred": est.classes_[int(p.argmax())],
             "probs": {str(c): round(float(q), 6) for c, q in zip(est.classes_, p)}}
            for g, p in zip(gset.graphs, probs)]
    write_jsonl(output if output is not None else "-", recs)


# -- evaluate --------------------------------------------------------------------------------------
@app.command("evaluate")
def evaluate(
    dataset: str = typer.Argument("MUTAG", help="Dataset name, TU folder, JSONL or .g6 file."),
    models: str = typer.Option("csgnn,gin", "--models", help="Comma list: csgnn, csgnn-chords, csgnn-faithful, gin-cycles, gin, gcn."),
    protocol: str = typer.Option("auto", "--protocol", help="auto | cv | xu | pairs | wl (auto: cv for labelled sets, pairs otherwise)."),
    folds: int = typer.Option(10, "--folds", help="Stratified folds (cv, xu)."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Validation split inside each training fold."),
    splits: Optional[Path] = typer.Option(None, "--splits", help='Reuse folds: {"folds":[{"train","val","test"}]} (or a result JSON).'),
    seeds: int = typer.Option(5, "--seeds", help="Random weight draws (pairs)."),
    tol: float = typer.Option(1e-6, "--tol", help="Relative L2 distance above which a pair is distinguished (pairs)."),
    categories: Optional[str] = typer.Option(None, "--categories", help="BREC categories, comma list (e.g. Basic,Regular,CFI)."),
    epochs: int = Epochs, lr: float = Lr, batch_size: int = BatchSize, hidden: int = Hidden, layers: int = Layers,
    dropout: float = Dropout, cycle_len: int = CycleLen, max_cycles: int = MaxCycles,
    complement: bool = Complement, faithful: bool = Faithful, relation_weights: str = RelWeights,
    time_limit: float = TimeLimit, workers: int = Workers, cache_dir: Optional[Path] = CacheDir,
    no_cache: bool = NoCache, threads: int = Threads, jobs: int = Jobs, seed: Optional[int] = Seed,
    data_dir: Optional[Path] = DataDir, output: Optional[Path] = Output,
) -> None:
    """Compare models under one protocol; every model sees the same folds or pairs."""
    from csgnn import data
    from papersuite.progress import table

    if protocol not in PROTOCOLS:
        raise UserError(f"unknown --protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    names = [m.strip() for m in models.split(",") if m.strip()]
    if not names:
        raise UserError("--models is empty")
    cfgs = {m: _config(m, cycle_len, complement, max_cycles, time_limit, hidden, layers, dropout, faithful,
                       relation_weights) for m in names}
    _threads(threads)
    seed = _seed(seed)
    cats = [c.strip() for c in categories.split(",")] if categories else None
    gset = data.load(dataset, data_dir, categories=cats)
    if protocol == "auto":
        protocol = "cv" if gset.kind == "classification" and gset.name != "CSL" else "pairs"
    cache = _cache(cache_dir, no_cache)
    result: dict[str, Any] = {"dataset": gset.name, "protocol": protocol, "splits": None, "models": {}}
    if protocol in ("cv", "xu"):
        from csgnn.experiment import class_indices
        from csgnn.training import check_splits, make_folds

        y = class_indices(gset)
        if splits is not None:
            from papersuite.io import read_json

            blob = read_json(splits)
            if isinstance(blob, dict) and isinstance(blob.get("splits"), dict):
                blob = blob["splits"]
            fold_list = check_splits(blob, len(gset), str(splits))
            result["splits"] = {"source": str(splits), "folds": fold_list}
        else:
            fold_list = make_folds(y, folds, val_fraction, seed)
            result["splits"] = {"source": "generated", "seed": seed, "folds_count": folds,
                                "val_fraction": val_fraction, "folds": fold_list}
    else:
        result["pairs_seeds"] = seeds if protocol == "pairs" else None
        result["tol"] = tol if protocol == "pairs" else None
    rows = []
    for name, cfg in cfgs.items():
        structs, pre = _structures(gset, cfg, workers, cache)
        entry: dict[str, Any] = {"config": cfg.as_dict(), "preprocess": pre}
        if protocol in ("cv", "xu"):
            from csgnn.experiment import evaluate_protocol
            from csgnn.training import TrainConfig
            from papersuite.progress import progress

            tcfg = TrainConfig(epochs, lr, batch_size, seed, _device())
            with progress(f"{protocol} {name} on {gset.name} (folds)", total=len(fold_list)) as task:
                entry.update(evaluate_protocol(gset, structs, cfg, tcfg, fold_list, protocol,
                                               on_fold=task.advance, jobs=jobs))
            rows.append({"model": name, "accuracy": f"{entry['accuracy_mean']:.3f} ± {entry['accuracy_std']:.3f}",
                         "epoch_s": entry["epoch_seconds"], "preprocess_s": pre["seconds"]})
        else:
            from csgnn.expressivity import pair_test, wl_test

            entry.update(pair_test(gset, structs, cfg, seeds, tol, seed) if protocol == "pairs"
                         else wl_test(gset, structs, cfg, seed))
            rows.append({"model": name, "distinguished": f"{entry['distinguished']}/{entry['pairs_total']}",
                         "reliability_failures": entry["reliability_failures"], "preprocess_s": pre["seconds"]})
        result["models"][name] = entry
    table(rows, title=f"{gset.name}: {protocol}")
    _emit(result, output)
