"""`papersuite serve flashforge check | bench`: exactness against float64, and same-run timings."""
from __future__ import annotations

from typing import Optional

import typer

from papersuite.errors import UserError

app = typer.Typer(help="FlashForge: shared-prefix decode attention (check exactness, benchmark).",
                  no_args_is_help=True)

QUICK = ["2level-b64-p4096", "2level-b16-p1024", "binary-d5", "no-sharing"]
IMPLS = ("auto", "reference", "torch", "triton", "all")
DTYPES = ("fp32", "fp16", "bf16")


def _emit(rows: list[dict], as_json: bool, out: Optional[str]) -> None:
    from papersuite.io import dumps, write_jsonl

    if out:
        write_jsonl(out, rows)
    if as_json:
        for r in rows:
            print(dumps(r))


def _device() -> str:
    from papersuite.context import options
    from papersuite.device import resolve_device

    return resolve_device(options().device)


def _threads(n: Optional[int]) -> int:
    from papersuite.bench import pin_threads

    return pin_threads(n or 1)


@app.command("check")
def check(
    trees: Optional[str] = typer.Argument(None, help="JSONL batches {block_size, block_tables, seq_lens} or -; "
                                                     "default: the built-in trees."),
    impl: str = typer.Option("all", "--impl", help="auto | reference | torch | triton | all."),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32 | fp16 | bf16."),
    quick: bool = typer.Option(False, "--quick", help="Four small trees only."),
    engine: bool = typer.Option(True, "--engine/--no-engine",
                                help="Also SmolLM2 greedy decoding: default vs forced-shared backend."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the random q/KV (default: global --seed)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Torch threads (default 1)."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines on stdout."),
    out: Optional[str] = typer.Option(None, "-o", "--output", help="Write JSON lines here (atomic)."),
) -> None:
    """Each executor vs float64 reference_decode: rows {case, impl, dtype, max_abs_err, tol, ok}.
    Exit 0 when all are ok, 1 otherwise."""
    if impl not in IMPLS:
        raise UserError(f"unknown --impl {impl!r}; choose one of {', '.join(IMPLS)}")
    if dtype not in DTYPES:
        raise UserError(f"unknown --dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    from flashforge.attention import triton_available

    has_triton = triton_available()
    if impl == "triton" and not has_triton:
        raise UserError("--impl triton needs the triton package: pip install triton==3.9.0")
    from flashforge.check import builtin_cases, read_cases, run_case
    from papersuite.context import options
    from papersuite.device import seed_everything
    from papersuite.progress import info, table, track

    cases = read_cases(trees) if trees else builtin_cases(quick)
    seed = options().seed if seed is None else seed
    seed_everything(seed)
    _threads(threads)
    device = _device()
    impls = ["reference", "torch", "auto"] + (["triton"] if has_triton else []) if impl == "all" else [impl]
    if impl == "all" and not has_triton:
        info("triton is not installed: the triton executor is not checked (pip install triton==3.9.0)")
    rows = [run_case(c, i, dtype, seed, device) for c in track(cases, "check") for i in impls]
    if engine:
        rows.append(_engine_row(device))
    table(rows, ["case", "impl", "dtype", "max_abs_err", "tol", "ok"], title="flashforge check")
    _emit(rows, as_json, out)
    raise typer.Exit(0 if all(r["ok"] for r in rows) else 1)


def _engine_row(device: str) -> dict:
    """SmolLM2, 4 prompts sharing ~200 tokens + 1 unrelated, 16 greedy tokens."""
    from flashforge.backend import forced_shared
    from flashforge.engine_check import greedy_compare, shared_prompts
    from papersuite.engine.engine import LLMEngine

    eng = LLMEngine("smollm2-135m-instruct", device=device)
    r = greedy_compare(eng, forced_shared(), shared_prompts(4, 200), max_tokens=16)
    tol = 1e-4 if device == "cpu" else 5e-2
    return {"case": "engine-greedy", "impl": "torch", "dtype": "fp32" if device == "cpu" else "bf16",
            "max_abs_err": r["max_logit_diff"], "tol": tol, "ok": r["tokens_equal"] and r["max_logit_diff"] <= tol,
            "tokens_equal": r["tokens_equal"], "max_logit_diff": r["max_logit_diff"], "plans": r["plans"],
            "steps": r["steps"]}


@app.command("bench")
def bench(
    trees: Optional[str] = typer.Argument(None, help="JSONL batches to time (else the scenarios)."),
    quick: bool = typer.Option(False, "--quick", help=f"The four quick scenarios: {', '.join(QUICK)}."),
    scenario: list[str] = typer.Option([], "--scenario", help="2level-bB-pP[-sS], binary-dD, kary-kK-dD, "
                                                              "chain-N, no-sharing, identical-bB, fraction-F, mooncake."),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32 | fp16 | bf16."),
    repeats: int = typer.Option(10, "--repeats", min=1),
    warmup: int = typer.Option(3, "--warmup", min=0),
    threads: Optional[int] = typer.Option(None, "--threads", help="Torch threads (default 1)."),
    e2e: bool = typer.Option(False, "--e2e", help="Also the SmolLM2 engine: 32 requests sharing a document."),
    seed: Optional[int] = typer.Option(None, "--seed"),
    as_json: bool = typer.Option(False, "--json", help="JSON lines on stdout."),
    out: Optional[str] = typer.Option(None, "-o", "--output", help="Write JSON lines here (atomic)."),
) -> None:
    """Default paged decode, dense SDPA, two-level cascade and FlashForge, one layer (SmolLM2 shapes),
    timed interleaved in the same run; rows {scenario, ..., ms, vs_default, vs_sdpa, vs_cascade2}."""
    if dtype not in DTYPES:
        raise UserError(f"unknown --dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    from flashforge.benchmark import SUMMARY_COLUMNS, flat, run_workload
    from flashforge.check import read_cases
    from flashforge.workloads import Workload, mooncake_windows
    from flashforge.workloads import scenario as make_scenario
    from papersuite.context import options
    from papersuite.progress import info, table, track

    seed = options().seed if seed is None else seed
    if trees:
        from flashforge.plan import _as_table

        loads = []
        for c in read_cases(trees):
            t, n = _as_table(c.block_tables, c.seq_lens, c.block_size)
            loads.append(Workload(c.name, t, n, c.block_size, {}))
    else:
        names = scenario or QUICK
        loads = []
        for name in names:
            loads.extend(mooncake_windows(32, 3) if name == "mooncake" else [make_scenario(name)])
    n_threads = _threads(threads)
    device = _device()
    from flashforge.cost import cpu_flags

    info(f"threads={n_threads} device={device} cpu_flags: "
         + " ".join(f for f in cpu_flags().split() if f.startswith(("avx", "amx", "fma"))))
    rows = []
    for w in track(loads, "bench"):
        row = run_workload(w, dtype=dtype, repeats=repeats, warmup=warmup, device=device, seed=seed)
        row["threads"] = n_threads
        rows.append(row)
    table([flat(r) for r in rows], SUMMARY_COLUMNS, title="flashforge bench (ms per layer)")
    if e2e:
        rows.extend(_e2e_rows(device))
    _emit(rows, as_json, out)


def _e2e_rows(device: str) -> list[dict]:
    from flashforge.backend import FlashForgeBackend
    from flashforge.engine_check import e2e
    from papersuite.engine.engine import LLMEngine
    from papersuite.progress import table

    eng = LLMEngine("smollm2-135m-instruct", device=device, max_num_seqs=64, max_num_batched_tokens=2048)
    rows = e2e(eng, FlashForgeBackend)
    table([{"workload": r["workload"], "tpot_default_ms": r["tpot_ms"]["default"],
            "tpot_flashforge_ms": r["tpot_ms"]["flashforge"], "gain": r["tpot_gain"],
            "tokens_equal": r["tokens_equal"]} for r in rows], title="flashforge e2e (SmolLM2)")
    return [{"scenario": f"e2e-{r['workload']}", **r} for r in rows]

