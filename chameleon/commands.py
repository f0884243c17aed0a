"""`papersuite train chameleon run | compare | capacity`.

Heavy imports (torch) live inside the command bodies so `papersuite --help` stays fast.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Optional

import typer

from papersuite.errors import UserError

# Spinning OpenMP workers waste the shared cores; set before torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

app = typer.Typer(help="Chameleon: swap-based activation memory for eager-mode training "
                       "(arXiv:2509.11076, a.k.a. SmartSwap; not the fault-tolerance paper, see "
                       "`train odyssey`).", no_args_is_help=True)

METHODS = ("none", "checkpoint", "selective", "save-on-cpu", "offload-all", "static", "chameleon")

# -- shared option definitions -------------------------------------------------------------------
MODEL = typer.Option("gpt", "--model", help="gpt | moe | smollm (SmolLM2-135M-Instruct).")
D_MODEL = typer.Option(256, "--d-model", help="Width of the package's GPT/MoE.")
LAYERS = typer.Option(4, "--layers", help="Transformer blocks.")
HEADS = typer.Option(4, "--heads", help="Attention heads.")
SEQ = typer.Option(128, "--seq-len", help="Tokens per sequence.")
BATCH = typer.Option(8, "--batch", help="Sequences per step.")
EXPERTS = typer.Option(4, "--experts", help="MoE experts per block (--model moe).")
LAYERDROP = typer.Option(0.0, "--layerdrop", help="Probability a block is skipped in a step.")
SEQ_AT = typer.Option(None, "--seq-len-at", help="STEP:LEN, change the sequence length at STEP.")
UNFREEZE = typer.Option(None, "--unfreeze-at", help="Embeddings + bottom half frozen until STEP.")
DATA = typer.Option(None, "--data", help="Text file or JSONL with `text` (default: CPython docs).")
STEPS = typer.Option(20, "--steps", help="Training steps.")
BUDGET = typer.Option(None, "--budget-mib", help="Peak step memory budget in MiB.")
FRAC = typer.Option(None, "--budget-frac", help="Budget = F x the first unswapped step's peak.")
CAPACITY = typer.Option(None, "--device-memory-mib", help="Real capacity: RLIMIT_DATA (CPU) or a "
                                                          "CUDA memory fraction, MiB above the model.")
HOST_DIR = typer.Option(None, "--host-dir", help="Folder of the host-tier file (default: $TMPDIR).")
THREADS = typer.Option(2, "--threads", help="CPU threads.")
SEED = typer.Option(None, "--seed", help="Seed (default: the global --seed).")
OUT = typer.Option(None, "-o", "--output", help="Write the JSON result here.")
JSON_OUT = typer.Option(False, "--json", help="Print the JSON result on stdout.")


def parse_step_len(text: str | None) -> tuple[int, int] | None:
    """`STEP:LEN` -> (step, len); a malformed value is a UserError naming the flag."""
    if text is None or text == "":
        return None
    try:
        step, length = (int(v) for v in text.split(":"))
    except ValueError:
        raise UserError(f"--seq-len-at {text!r}: expected STEP:LEN, e.g. 10:256") from None
    if step < 0 or length < 2:
        raise UserError(f"--seq-len-at {text!r}: STEP must be >= 0 and LEN >= 2")
    return step, length


def _workload(model, d_model, layers, heads, seq_len, batch, experts, layerdrop, seq_len_at,
              unfreeze_at, data, seed):
    """Validate the workload flags (before torch is imported, so bad input fails fast)."""
    step_len = parse_step_len(seq_len_at)
    if data is not None and data != "-" and not os.path.exists(data):
        raise UserError(f"{data}: no such file (--data)")
    if data == "-":  # read once here, hand the text on as a file the workers can open
        import tempfile

        text = sys.stdin.read()
        fd, data = tempfile.mkstemp(prefix="chameleon-data-", suffix=".txt")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
    from papersuite.context import options

    from chameleon.workloads import WorkloadConfig

    return WorkloadConfig(model=model, d_model=d_model, layers=layers, heads=heads, seq_len=seq_len,
                          batch=batch, experts=experts, layerdrop=layerdrop,
                          seq_len_at=step_len, unfreeze_at=unfreeze_at, data=data,
                          seed=options().seed if seed is None else seed)


def _device() -> str:
    from papersuite.context import options
    from papersuite.device import resolve_device

    return resolve_device(options().device)


def _check(method: str, budget_mib, budget_frac, steps: int) -> None:
    if method not in METHODS:
        raise UserError(f"unknown --method {method!r}; choose {', '.join(METHODS)}")
    if budget_mib is not None and budget_frac is not None:
        raise UserError("give --budget-mib or --budget-frac, not both")
    if budget_mib is not None and budget_mib <= 0:
        raise UserError(f"--budget-mib {budget_mib} must be > 0")
    if budget_frac is not None and not 0 < budget_frac <= 1:
        raise UserError(f"--budget-frac {budget_frac} must be in (0, 1]")
    if steps < 1:
        raise UserError("--steps must be >= 1")


def _emit(doc: dict, output: Optional[str], as_json: bool) -> None:
    from papersuite.io import dumps, write_json

    if output:
        write_json(output, doc)
    if as_json:
        print(dumps(doc, indent=2))


def _summary_row(name: str, doc: dict, base: dict | None) -> dict:
    s = doc["summary"]
    row = {"method": name, "peak_MiB": s["peak_bytes"] / 2**20, "step_cpu_s": s["step_cpu_s"],
           "mean_cpu_s": s["mean_cpu_s"], "violations": s["budget_violations"], "ooms": s["ooms"],
           "changes": s["sequence_changes"], "regens": s["policy_regenerations"],
           "match": s["match_rate"] if s["match_rate"] is not None else "-"}
    if base is not None:
        row["peak_x"] = s["peak_bytes"] / base["summary"]["peak_bytes"]
        row["cpu_x"] = s["step_cpu_s"] / base["summary"]["step_cpu_s"]
    return row


def _plot_steps(doc: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from papersuite.io import atomic_path

    steps = doc["steps"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot([s["step"] for s in steps], [s["peak_bytes"] / 2**20 for s in steps], marker="o",
            label=f"{doc['method']} peak")
    if doc.get("budget_bytes"):
        ax.axhline(doc["budget_bytes"] / 2**20, color="red", ls="--", label="budget")
    ax.set_xlabel("step")
    ax.set_ylabel("peak step memory (MiB)")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


@app.command()
def run(
    method: str = typer.Option("chameleon", "--method", help=" | ".join(METHODS)),
    model: str = MODEL, d_model: int = D_MODEL, layers: int = LAYERS, heads: int = HEADS,
    seq_len: int = SEQ, batch: int = BATCH, experts: int = EXPERTS, layerdrop: float = LAYERDROP,
    seq_len_at: Optional[str] = SEQ_AT, unfreeze_at: Optional[int] = UNFREEZE,
    data: Optional[str] = DATA, steps: int = STEPS, budget_mib: Optional[float] = BUDGET,
    budget_frac: Optional[float] = FRAC, device_memory_mib: Optional[float] = CAPACITY,
    host_dir: Optional[str] = HOST_DIR, threads: int = THREADS, seed: Optional[int] = SEED,
    warmup_steps: int = typer.Option(2, "--warmup-steps", help="Similar steps before SEARCH."),
    stable_steps: int = typer.Option(3, "--stable-steps", help="SEARCH steps before STABLE."),
    change_threshold: float = typer.Option(0.05, "--change-threshold", help="Relative op-count change "
                                                                           "that means a new sequence."),
    min_bytes_mib: float = typer.Option(1.0, "--min-bytes-mib", help="Smallest storage worth swapping."),
    output: Optional[str] = OUT, as_json: bool = JSON_OUT,
    trace: Optional[str] = typer.Option(None, "--trace", help="Write per-step records (JSONL)."),
    plot: Optional[str] = typer.Option(None, "--plot", help="Write a peak-per-step plot (PNG)."),
) -> None:
    """Train with one memory method; per-step peak, time, swaps, phases; summary and params hash."""
    _check(method, budget_mib, budget_frac, steps)
    wcfg = _workload(model, d_model, layers, heads, seq_len, batch, experts, layerdrop, seq_len_at,
                     unfreeze_at, data, seed)
    from papersuite.device import set_threads
    from papersuite.io import write_jsonl
    from papersuite.progress import progress, table

    from chameleon.manager import BudgetError
    from chameleon.trainer import RunConfig, TrainingOOM, train

    set_threads(threads)
    if budget_mib is None and budget_frac is None and device_memory_mib is None:
        budget_frac = 0.5
    rcfg = RunConfig(method=method, steps=steps, budget_mib=budget_mib, budget_frac=budget_frac,
                     device_memory_mib=device_memory_mib, host_dir=host_dir, device=_device(),
                     warmup_steps=warmup_steps, stable_steps=stable_steps,
                     change_threshold=change_threshold, min_bytes_mib=min_bytes_mib)
    try:
        with progress(f"chameleon run ({method})", total=steps) as task:
            doc = train(wcfg, rcfg, on_step=lambda rec: task.advance())
    except BudgetError as e:
        raise UserError(str(e)) from None
    except TrainingOOM as e:
        print(f"papersuite: out of memory: {e}", file=sys.stderr)
        raise typer.Exit(1)
    table([_summary_row(method, doc, None)], title="chameleon run")
    if trace:
        write_jsonl(trace, doc["steps"])
    if plot:
        _plot_steps(doc, plot)
    _emit(doc, output, as_json)


def _spawn(wcfg, rcfg, threads: int, timeout: float = 1800) -> tuple[int, dict]:
    """Run one configuration in a fresh process (python -m chameleon.worker)."""
    spec = json.dumps({"workload": wcfg.as_dict(), "run": rcfg.as_dict(), "threads": threads})
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_WAIT_POLICY="PASSIVE")
    p = subprocess.run([sys.executable, "-m", "chameleon.worker", spec], capture_output=True,
                       text=True, env=env, timeout=timeout)
    try:
        return p.returncode, json.loads(p.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
        return p.returncode or 1, {"error": "crash", "message": tail[:300]}


@app.command()
def compare(
    methods: str = typer.Option("none,checkpoint,offload-all,chameleon", "--methods",
                                help="Comma-separated methods, each in a fresh process."),
    model: str = MODEL, d_model: int = D_MODEL, layers: int = LAYERS, heads: int = HEADS,
    seq_len: int = SEQ, batch: int = BATCH, experts: int = EXPERTS, layerdrop: float = LAYERDROP,
    seq_len_at: Optional[str] = SEQ_AT, unfreeze_at: Optional[int] = UNFREEZE,
    data: Optional[str] = DATA, steps: int = typer.Option(10, "--steps", help="Training steps."),
    budget_mib: Optional[float] = BUDGET, budget_frac: Optional[float] = FRAC,
    device_memory_mib: Optional[float] = CAPACITY, host_dir: Optional[str] = HOST_DIR,
    threads: int = THREADS, seed: Optional[int] = SEED, output: Optional[str] = OUT,
    as_json: bool = JSON_OUT,
    plot: Optional[str] = typer.Option(None, "--plot", help="Peak-vs-time plot (PNG)."),
) -> None:
    """Run several methods on the same job (same batches and seed), table of peak and time ratios."""
    names = [m.strip() for m in methods.split(",") if m.strip()]
    if not names:
        raise UserError("--methods is empty")
    for m in names:
        _check(m, budget_mib, budget_frac, steps)
    wcfg = _workload(model, d_model, layers, heads, seq_len, batch, experts, layerdrop, seq_len_at,
                     unfreeze_at, data, seed)
    from papersuite.progress import table, track

    from chameleon.trainer import RunConfig

    if budget_mib is None and budget_frac is None and device_memory_mib is None:
        budget_frac = 0.5
    runs: dict[str, dict] = {}
    for m in track(names, "chameleon compare"):
        rcfg = RunConfig(method=m, steps=steps, budget_mib=budget_mib, budget_frac=budget_frac,
                         device_memory_mib=device_memory_mib, host_dir=host_dir, device=_device())
        code, doc = _spawn(wcfg, rcfg, threads)
        if code == 2:
            raise UserError(doc.get("message", "bad input"))
        runs[m] = doc
    base = runs.get("none") if "error" not in runs.get("none", {"error": 1}) else None
    ok = {m: d for m, d in runs.items() if "error" not in d}
    rows = [_summary_row(m, d, base) for m, d in ok.items()]
    rows += [{"method": m, "peak_MiB": "-", "step_cpu_s": d["error"]} for m, d in runs.items() if m not in ok]
    table(rows, title="chameleon compare")
    ref_sha = base["params_sha256"] if base else None
    doc = {"config": wcfg.as_dict(), "rows": rows, "runs": runs,
           "identical_params": {m: d["params_sha256"] == ref_sha for m, d in ok.items()} if ref_sha else {}}
    if plot and ok:
        _plot_compare(ok, plot)
    _emit(doc, output, as_json)


def _plot_compare(runs: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from papersuite.io import atomic_path

    fig, ax = plt.subplots(figsize=(6, 4))
    for m, d in runs.items():
        s = d["summary"]
        ax.scatter(s["step_cpu_s"], s["peak_bytes"] / 2**20, s=40)
        ax.annotate(m, (s["step_cpu_s"], s["peak_bytes"] / 2**20), fontsize=8)
    ax.set_xlabel("median CPU seconds per step")
    ax.set_ylabel("peak step memory (MiB)")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def largest(trains, start: int, limit: int, tol: float = 0.0) -> tuple[int, list[tuple[int, bool]]]:
    """Largest size in [1, limit] for which `trains(size)` holds, by doubling then bisection.

    Bisection stops once the bracket is within `tol` x the lower end (0: exact)."""
    tried: list[tuple[int, bool]] = []

    def ok(n: int) -> bool:
        r = trains(n)
        tried.append((n, r))
        return r

    lo, hi = 0, None
    n = max(1, start)
    while n <= limit:
        if ok(n):
            lo, n = n, n * 2
        else:
            hi = n
            break
    if lo == 0:
        return 0, tried
    hi = hi if hi is not None else min(limit + 1, lo * 2)
    while hi - lo > max(1, int(lo * tol)) and lo < limit:
        mid = (lo + hi) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo, tried


@app.command()
def capacity(
    grow: str = typer.Option("batch", "--grow", help="batch | layers"),
    device_memory_mib: float = typer.Option(256, "--device-memory-mib", help="Emulated capacity (MiB)."),
    methods: str = typer.Option("none,checkpoint,chameleon", "--methods", help="Methods to size."),
    model: str = MODEL, d_model: int = D_MODEL, layers: int = LAYERS, heads: int = HEADS,
    seq_len: int = SEQ, batch: int = BATCH, data: Optional[str] = DATA,
    max_size: int = typer.Option(256, "--max-size", help="Largest size tried."),
    threads: int = THREADS, seed: Optional[int] = SEED, output: Optional[str] = OUT,
    as_json: bool = JSON_OUT,
) -> None:
    """Largest batch (or layer count) that trains 3 steps under a real memory capacity, per method."""
    if grow not in ("batch", "layers"):
        raise UserError(f"--grow {grow!r}: choose batch or layers")
    if device_memory_mib <= 0:
        raise UserError("--device-memory-mib must be > 0")
    names = [m.strip() for m in methods.split(",") if m.strip()]
    for m in names:
        _check(m, None, None, 3)
    wcfg = _workload(model, d_model, layers, heads, seq_len, batch, 4, 0.0, None, None, data, seed)
    from dataclasses import replace

    from papersuite.progress import info, table

    from chameleon.trainer import RunConfig

    start = wcfg.batch if grow == "batch" else wcfg.layers
    result: dict[str, dict] = {}
    for m in names:
        rcfg = RunConfig(method=m, steps=3, device_memory_mib=device_memory_mib, device=_device())

        def trains(n: int, m=m, rcfg=rcfg) -> bool:
            code, doc = _spawn(replace(wcfg, **{grow: n}), rcfg, threads)
            info(f"capacity {m} {grow}={n}: {'ok' if code == 0 else doc.get('error')}")
            if code == 2 and doc.get("error") == "input" and "floor" not in doc.get("message", ""):
                raise UserError(doc["message"])
            return code == 0

        size, tried = largest(trains, 1 if grow == "batch" else 1, max_size)
        result[m] = {"largest": size, "tried": tried}
    base = result.get("none", {}).get("largest")
    rows = [{"method": m, f"largest_{grow}": r["largest"],
             "x_none": (r["largest"] / base) if base else "-"} for m, r in result.items()]
    table(rows, title=f"chameleon capacity ({device_memory_mib:g} MiB)")
    _emit({"grow": grow, "device_memory_mib": device_memory_mib, "config": wcfg.as_dict(),
           "methods": result, "rows": rows}, output, as_json)
