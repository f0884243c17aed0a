"""`papersuite train odyssey run | plan | simulate`."""
from __future__ import annotations

import sys
from typing import Optional

import typer

from papersuite.errors import UserError

app = typer.Typer(help="Odyssey: adaptive fault-tolerant DP x PP training (arXiv:2508.21613).",
                  no_args_is_help=True)


def _emit(obj: dict, out: Optional[str], as_json: bool) -> None:
    from papersuite.io import dumps, write_json

    if out:
        write_json(out, obj)
    if as_json or not out:
        sys.stdout.write(dumps(obj, indent=2) + "\n")


@app.command()
def run(
    dp: int = typer.Option(2, "--dp", help="Pipelines (data-parallel degree)."),
    pp: int = typer.Option(2, "--pp", help="Stages per pipeline."),
    layers: int = typer.Option(8, "--layers"),
    d_model: int = typer.Option(128, "--d-model"),
    heads: int = typer.Option(4, "--heads"),
    seq_len: int = typer.Option(64, "--seq-len"),
    micro_batches: int = typer.Option(8, "--micro-batches", help="Micro-batches per step, all pipelines together."),
    global_batch: int = typer.Option(32, "--global-batch", help="Samples per step (B)."),
    steps: int = typer.Option(20, "--steps"),
    lr: float = typer.Option(1e-3, "--lr"),
    dtype: str = typer.Option("float32", "--dtype", help="float32 | float64."),
    data: Optional[str] = typer.Option(None, "--data", help="Text file or - (default: CPython's docs text)."),
    launcher: str = typer.Option("local", "--launcher", help="local (the only launcher in this build)."),
    spares: int = typer.Option(0, "--spares", help="Warm standby workers."),
    inject: list[str] = typer.Option([], "--inject", help="kill:STEP:RANK or hang:STEP:RANK (repeatable)."),
    inject_trace: Optional[str] = typer.Option(None, "--inject-trace", help="File of fault specs, one a line."),
    strategy: str = typer.Option("adaptive", "--strategy", help="adaptive | reroute | replan | spare | restart."),
    window_s: Optional[float] = typer.Option(None, "--window-s", help="Eq. 8 window D (s)."),
    mtbf_s: float = typer.Option(3600.0, "--mtbf-s", help="D when no window and no observed failures."),
    heartbeat_timeout: float = typer.Option(2.0, "--heartbeat-timeout", help="Seconds of silence = hang."),
    ckpt_every: int = typer.Option(0, "--ckpt-every", help="Checkpoint every N steps (0 = never)."),
    ckpt_dir: Optional[str] = typer.Option(None, "--ckpt-dir"),
    ckpt_mode: str = typer.Option("async", "--ckpt-mode", help="async | sync."),
    resume: bool = typer.Option(False, "--resume", help="Start from the latest complete checkpoint."),
    out: Optional[str] = typer.Option(None, "-o", "--output", help="Write the JSON result here."),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON result on stdout."),
    plot: Optional[str] = typer.Option(None, "--plot", help="Loss curve with failures marked (PNG)."),
    profile_out: Optional[str] = typer.Option(None, "--profile-out", help="Measured profile JSON (for plan)."),
) -> None:
    """Train a tiny GPT with DP x PP 1F1B on gloo workers, inject faults, recover adaptively."""
    from papersuite.context import options
    from papersuite.progress import info, progress, table

    from .controller import LocalController, RecoveryImpossible, RunConfig
    from .faults import parse_fault, read_trace

    if launcher != "local":
        raise UserError(f"--launcher {launcher!r}: only 'local' is available in this build")
    if dtype not in ("float32", "float64"):
        raise UserError(f"--dtype {dtype!r}: choose float32 or float64")
    if ckpt_mode not in ("async", "sync"):
        raise UserError(f"--ckpt-mode {ckpt_mode!r}: choose async or sync")
    faults = [parse_fault(s) for s in inject] + (read_trace(inject_trace) if inject_trace else [])
    data_path = data
    if data == "-":
        import tempfile

        fh = tempfile.NamedTemporaryFile(prefix="odyssey-data-", delete=False)
        fh.write(sys.stdin.buffer.read())
        fh.close()
        data_path = fh.name
    elif data is not None:
        from pathlib import Path

        if not Path(data).is_file():
            raise UserError(f"{data}: no such file")
    cfg = RunConfig(dp=dp, pp=pp, layers=layers, d_model=d_model, heads=heads, seq_len=seq_len,
                    micro_batches=micro_batches, global_batch=global_batch, steps=steps, lr=lr, dtype=dtype,
                    seed=options().seed, data=data_path, spares=spares, faults=faults, strategy=strategy,
                    window_s=window_s, mtbf_s=mtbf_s, heartbeat_timeout=heartbeat_timeout, ckpt_every=ckpt_every,
                    ckpt_dir=ckpt_dir, ckpt_mode=ckpt_mode, resume=resume)
    cfg.validate()
    with progress("odyssey steps", total=steps) as task:
        try:
            result = LocalController(cfg, on_step=lambda s, loss: task.advance()).run()
        except RecoveryImpossible as e:
            print(f"papersuite: error: {e}", file=sys.stderr)
            raise typer.Exit(1)
    for f in result["failures"]:
        info(f"{f['kind']} of rank {f['rank']} at step {f['step']}: detected in "
             f"{(f['detect_s'] or 0):.3f}s, chose {f['strategy']}, downtime {f['downtime_s']}, lost {f['lost_steps']}")
        table([{k: c[k] for k in ("strategy", "feasible", "t_step_s", "t_transition_s", "score", "reason")}
               for c in f["candidates"]], title=f"candidates at step {f['step']}")
    if profile_out:
        from papersuite.io import write_json

        write_json(profile_out, result["profile"])
    if plot:
        _plot_losses(result, plot)
    _emit(result, out, as_json)


def _plot_losses(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(len(result["losses"])), result["losses"], marker=".")
    for f in result["failures"]:
        ax.axvline(f["step"], color="red", ls="--", lw=0.8)
        ax.text(f["step"], max(result["losses"]), f" {f['kind']}->{f['strategy']}", fontsize=7, color="red")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


@app.command()
def plan(
    scenario: Optional[str] = typer.Argument(None, help="Scenario JSON file or - (stdin); none: an embedded example."),
    out: Optional[str] = typer.Option(None, "-o", "--output"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Score reroute / replan / spare / restart for a described failure (Eq. 8-14, Algorithm 1)."""
    from papersuite.io import read_json
    from papersuite.progress import table

    from .scenario import evaluate, validate

    if scenario is None:
        sc = EXAMPLE
        where = "example"
    else:
        sc = read_json(scenario)
        where = scenario
    res = evaluate(validate(sc, where))
    table([{k: c[k] for k in ("strategy", "feasible", "t_step_s", "t_transition_s", "score", "reason")}
           for c in res["candidates"]], title=f"chosen: {res['chosen']}")
    _emit(res, out, as_json)


EXAMPLE = {"dp": 2, "pp": 2, "layers": 8, "micro_batches": 8, "global_batch": 32, "t_f": 0.01, "t_b": 0.02,
           "param_bytes": 4e6, "optim_bytes": 8e6, "act_bytes": 1e6, "memory_bytes": 1e9, "failed": [[1, 1]],
           "window_s": 60.0, "spares": 1, "restart_s": 5.0, "steps_since_ckpt": 3, "link_GBps": 1.0,
           "rebuild_s": 0.05}


@app.command()
def simulate(
    gpus: str = typer.Option("32,1024,16384", "--gpus", help="Comma-separated cluster sizes."),
    days: float = typer.Option(7.0, "--days"),
    traces: int = typer.Option(20, "--traces", help="Poisson traces per scale."),
    trace: Optional[str] = typer.Option(None, "--trace", help="Failure times (s), one a line, instead of Poisson."),
    failures_per_day: Optional[float] = typer.Option(None, "--failures-per-day-per-1k",
                                                      help="Override the Llama 3 rate (failures/day per 1,000 GPUs)."),
    params: float = typer.Option(70e9, "--params", help="Model parameters (FLOP model)."),
    tp: int = typer.Option(8, "--tp", help="GPUs per failure unit (a TP group)."),
    restart_s: float = typer.Option(600.0, "--restart-s"),
    ckpt_interval_s: float = typer.Option(1800.0, "--ckpt-interval-s"),
    repair_h: float = typer.Option(4.0, "--repair-h", help="Hours until a failed unit returns."),
    out: Optional[str] = typer.Option(None, "-o", "--output"),
    as_json: bool = typer.Option(False, "--json"),
    plot: Optional[str] = typer.Option(None, "--plot", help="Throughput per strategy and scale (PNG)."),
) -> None:
    """Discrete-event simulation of the strategies on thousands of GPUs (a simulation, labelled so)."""
    from papersuite.context import options
    from papersuite.progress import table

    from .simulator import SimConfig, simulate as sim

    try:
        sizes = [int(x) for x in gpus.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--gpus {gpus!r}: expected comma-separated integers") from None
    if not sizes or min(sizes) < 2 or days <= 0 or traces < 1 or tp < 1:
        raise UserError("need --gpus >= 2 each, --days > 0, --traces >= 1, --tp >= 1")
    cfg = SimConfig(params=params, tp=tp, restart_s=restart_s, ckpt_interval_s=ckpt_interval_s,
                    repair_s=repair_h * 3600)
    if failures_per_day is not None:
        if failures_per_day <= 0:
            raise UserError("--failures-per-day-per-1k must be > 0")
        cfg.rate_per_gpu_s = failures_per_day / 1000 / 86400
    times = None
    if trace:
        from pathlib import Path

        p = Path(trace)
        if not p.is_file():
            raise UserError(f"{trace}: no such file")
        times = []
        for i, line in enumerate(p.read_text().splitlines(), 1):
            if line.strip():
                try:
                    times.append(float(line))
                except ValueError:
                    raise UserError(f"{trace}:{i}: not a number of seconds: {line.strip()!r}") from None
    res = sim(sizes, days, traces, options().seed, cfg, times)
    table([{"gpus": s["gpus"], **{k: round(v, 4) for k, v in s["throughput"].items()},
            "adaptive/best": round(s["throughput"]["adaptive"] / s["throughput"][s["best_fixed"]], 4)}
           for s in res["scales"]], title="simulated samples/s")
    if plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        for k in res["scales"][0]["throughput"]:
            ax.plot([s["gpus"] for s in res["scales"]],
                    [s["throughput"][k] / s["failure_free_throughput"] for s in res["scales"]], marker="o", label=k)
        ax.set_xscale("log")
        ax.set_xlabel("GPUs")
        ax.set_ylabel("throughput / failure-free")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(plot)
        plt.close(fig)
    _emit(res, out, as_json)
