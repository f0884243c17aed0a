"""`papersuite serve echo`: replay | plan | profile (Echo-style online/offline co-serving).

Heavy imports stay inside the commands so `papersuite --help` stays fast.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from papersuite.errors import UserError

app = typer.Typer(help="Echo-style co-serving: offline batch jobs in the idle capacity of online serving.",
                  no_args_is_help=True)

DEFAULT_COST_MODEL = Path(__file__).parent / "data" / "costmodel_smollm2_cpu1.json"


def _cost_model(path: Optional[Path]):
    from papersuite.engine.costmodel import StepCostModel

    path = path or DEFAULT_COST_MODEL
    if not path.exists():
        raise UserError(f"{path}: no such cost-model file")
    try:
        return StepCostModel.from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError):
        raise UserError(f"{path}: not a cost-model file (intercept_s and coef expected)") from None


def _floats(text: str, flag: str) -> list[float]:
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{flag} must be a comma-separated list of numbers, got {text!r}") from None
    if not vals:
        raise UserError(f"{flag} is empty")
    return vals


def _tokenizer(model: str):
    from papersuite.models import _quiet_transformers, hf_folder, resolve

    _quiet_transformers()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(hf_folder(resolve(model)))


def _workload(online: str, offline: str, jobs_n: int, load: float, duration: float, cm, seed: int, model: str,
              done: set[str] | None = None):
    from dataclasses import replace

    from echo import workloads as wl
    from echo.jobs import BatchJob

    if duration <= 0:
        raise UserError(f"--duration must be > 0, got {duration}")
    on = wl.online_requests(online, cm, load, duration, seed)
    jobs = wl.offline_jobs(offline, jobs_n, seed)
    tok = None
    if any(not isinstance(j.prompt, list) for j in jobs) or any(r.prompt is not None for r in on):
        tok = _tokenizer(model)
    ids = {j.custom_id: wl.job_prompt_ids(j, tok) for j in jobs}
    for r in on:
        if r.prompt is not None or r.messages is not None:
            job = BatchJob(r.id, "/v1/chat/completions" if r.messages else "/v1/completions",
                           {"messages": list(r.messages)} if r.messages else {"prompt": r.prompt})
            ids[r.id] = wl.job_prompt_ids(job, tok)
            on[on.index(r)] = replace(r, prompt_tokens=len(ids[r.id]))
    todo = [j for j in jobs if not done or j.custom_id not in done]
    off = wl.offline_requests(todo, ids)
    return on, jobs, off, ids, tok


@app.command()
def replay(online: str = typer.Option("azure-conv", "--online", help="azure-conv | azure-code | a trace/workload file."),
           offline: str = typer.Option("mooncake-synthetic", "--offline",
                                       help="mooncake-synthetic | docs-qa | an OpenAI batch JSONL file."),
           policy: str = typer.Option("online-only,priority,slo-budget,echo", "--policy",
                                      help="Comma list of online-only, priority, separate, slo-budget, echo."),
           instances: int = typer.Option(1, "--instances", help="Instances (separate splits them in two pools)."),
           kv_tokens: int = typer.Option(8192, "--kv-tokens", help="KV capacity of one instance, tokens."),
           online_load: float = typer.Option(0.5, "--online-load", help="Online load as a fraction of capacity."),
           duration: float = typer.Option(120.0, "--duration", help="Replay window, virtual seconds."),
           clock: str = typer.Option("model", "--clock", help="model: simulated steps from the cost model; "
                                     "measured: real engine forward passes, timed."),
           tune_peers: bool = typer.Option(False, "--tune-peers", help="Sweep the peers' knobs; keep each one's "
                                           "best setting that meets the online SLO."),
           results: Optional[Path] = typer.Option(None, "--results", help="Folder for <policy>.jsonl batch outputs "
                                                  "(appended, fsynced; a rerun skips done custom_ids)."),
           jobs: int = typer.Option(300, "--jobs", min=1, help="Offline jobs taken from a named offline set."),
           reserve: Optional[int] = typer.Option(None, "--reserve", help="Fixed online reserve in KV blocks "
                                                 "(default: sized from online arrivals)."),
           slo_scale: float = typer.Option(1.0, "--slo-scale", help="Multiply both SLOs (TTFT 5x, TPOT 3x unloaded)."),
           cost_model: Optional[Path] = typer.Option(None, "--cost-model", help="Step-time model JSON "
                                                     "(default: the shipped CPU profile)."),
           model: str = typer.Option("smollm2-135m-instruct", "--model", help="Engine model (measured clock, "
                                     "tokenizer for text prompts)."),
           as_json: bool = typer.Option(False, "--json", help="Print the JSON result to stdout."),
           out: Optional[Path] = typer.Option(None, "-o", "--out", help="Write the JSON result here.")) -> None:
    """Replay an online trace plus an offline batch through each policy on the same clock."""
    from echo import cosim
    from papersuite.context import options
    from papersuite.io import write_json
    from papersuite.progress import info, table

    names = cosim.check_policies([p.strip() for p in policy.split(",") if p.strip()])
    if clock not in ("model", "measured"):
        raise UserError(f"--clock must be model or measured, got {clock!r}")
    if "separate" in names and instances < 2:
        raise UserError("policy 'separate' needs --instances >= 2 (one online and one offline pool)")
    seed = options().seed
    cm = _cost_model(cost_model)
    setup = cosim.Setup(cm, kv_tokens=kv_tokens, instances=instances, slo_scale=slo_scale, reserve=reserve,
                        clock=clock, seed=seed)
    writers = {}
    done_by_policy: dict[str, set[str]] = {}
    if results is not None:
        from echo.jobs import ResultsWriter

        results.mkdir(parents=True, exist_ok=True)
        for n in names:
            if n != "online-only":
                writers[n] = ResultsWriter(results / f"{n}.jsonl")
                done_by_policy[n] = set(writers[n].done)
    on, all_jobs, _, ids, tok = _workload(online, offline, jobs, online_load, duration, cm, seed, model)
    by_id = {j.custom_id: j for j in all_jobs}
    if clock == "measured":
        from papersuite.engine.engine import LLMEngine

        from papersuite.device import resolve_device

        device = resolve_device(options().device)
        setup.engine_factory = lambda pol, kv, nb, ms: LLMEngine(model, device, scheduler=pol, kv_policy=kv,
                                                                 num_blocks=nb, max_num_seqs=ms, seed=seed)
        setup.vocab_size = setup.engine_factory("fcfs", "lru", 8, 1).model.config.vocab_size
    model_name = model

    def writer_for(name):
        w = writers.get(name)
        if w is None:
            return None

        def write(seq):
            from echo.jobs import output_line

            job = by_id[seq.request_id]
            text = tok.decode(seq.output_token_ids) if tok is not None and clock == "measured" else seq.text
            w.write(output_line(job, model_name, text, seq.output_token_ids, seq.num_prompt_tokens,
                                seq.finish_reason or "length",
                                None if clock == "measured" else {"simulated": True}))
        return write

    from echo.workloads import offline_requests

    policies: dict[str, dict] = {}
    try:
        if results is None:
            off = offline_requests(all_jobs, ids)
            policies = cosim.compare(names, on, off, ids, setup, duration, tune_peers,
                                     progress=lambda n: info(f"replayed {n}"))
        else:  # each policy resumes its own results file
            for n in names:
                off = offline_requests([j for j in all_jobs if j.custom_id not in done_by_policy.get(n, set())], ids)
                policies.update(cosim.compare([n], on, off, ids, setup, duration, tune_peers and n != "online-only",
                                              on_finish_for=writer_for, progress=lambda n: info(f"replayed {n}")))
    finally:
        for w in writers.values():
            w.close()
    table([{"policy": k, "offline tok/s": v["offline_tokens_per_s"], "online SLO": v["online_slo_attainment"],
            "hit rate": v["offline_hit_rate"], "preempt": v["preemptions"], "recomputed": v["recomputed_tokens"]}
           for k, v in policies.items()], title=f"echo replay: {online} + {offline}")
    ttft, tpot = setup.slos()
    payload = {"online": online, "offline": offline, "online_requests": len(on), "offline_jobs": len(all_jobs),
               "instances": instances, "kv_tokens": kv_tokens, "online_load": online_load, "duration_s": duration,
               "clock": clock, "slo": {"ttft": "5x unloaded", "tpot": "3x unloaded", "scale": slo_scale},
               "cost_model": cm.to_dict(), "policies": policies}
    if out:
        write_json(out, payload)
    if as_json or not out:
        sys.stdout.write(json.dumps(payload) + "\n")


@app.command()
def plan(online: str = typer.Option("azure-conv", "--online", help="azure-conv | azure-code | a trace file."),
         offline: str = typer.Option("mooncake-synthetic", "--offline", help="mooncake-synthetic | docs-qa | a batch."),
         instances: str = typer.Option("1,2,4", "--instances", help="Instance counts to try."),
         reserve: str = typer.Option("auto", "--reserve", help="Reserves in KV blocks to try ('auto' = sized "
                                     "from arrivals), comma list."),
         slo_scale: str = typer.Option("1", "--slo-scale", help="SLO scales to try, comma list."),
         kv_tokens: int = typer.Option(8192, "--kv-tokens", help="KV capacity of one instance, tokens."),
         online_load: float = typer.Option(0.5, "--online-load", help="Online load per instance (fraction)."),
         duration: float = typer.Option(120.0, "--duration", help="Window, virtual seconds."),
         jobs: int = typer.Option(300, "--jobs", min=1, help="Offline jobs from a named set."),
         cost_model: Optional[Path] = typer.Option(None, "--cost-model", help="Step-time model JSON."),
         model: str = typer.Option("smollm2-135m-instruct", "--model", help="Tokenizer for text prompts."),
         out: Optional[Path] = typer.Option(None, "-o", "--out", help="Write the JSON result here.")) -> None:
    """Estimate offline throughput and online attainment per configuration (cost-model replay)."""
    from echo import cosim
    from echo.workloads import online_requests
    from papersuite.context import options
    from papersuite.io import write_json
    from papersuite.progress import table

    counts = [int(x) for x in _floats(instances, "--instances")]
    if any(c < 1 for c in counts):
        raise UserError("--instances values must be >= 1")
    reserves = [None] if reserve.strip() == "auto" else [int(x) for x in _floats(reserve, "--reserve")]
    scales = _floats(slo_scale, "--slo-scale")
    if any(s <= 0 for s in scales):
        raise UserError("--slo-scale values must be > 0")
    seed = options().seed
    cm = _cost_model(cost_model)
    _, _, off, ids, _ = _workload(online, offline, jobs, online_load, duration, cm, seed, model)
    rows = []
    for n in counts:
        on = online_requests(online, cm, online_load * n, duration, seed)  # online load grows with the fleet
        for r in reserves:
            for s in scales:
                setup = cosim.Setup(cm, kv_tokens=kv_tokens, instances=n, slo_scale=s, reserve=r, seed=seed)
                est = cosim.offline_throughput_estimate(on, off, ids, setup, duration)
                rows.append({"instances": n, "reserve": "auto" if r is None else r, "slo_scale": s, **est})
    table(rows, title="echo plan (cost-model replay)")
    payload = {"online": online, "offline": offline, "duration_s": duration, "configurations": rows}
    if out:
        write_json(out, payload)
    sys.stdout.write(json.dumps(payload) + "\n")


@app.command()
def profile(model: str = typer.Option("smollm2-135m-instruct", "--model", help="Engine model to profile."),
            budget: float = typer.Option(60.0, "--budget", help="Profiling seconds at most."),
            threads: int = typer.Option(1, "--threads", help="Torch threads."),
            out: Optional[Path] = typer.Option(None, "-o", "--out", help="Write the cost model JSON here "
                                               "(usable as --cost-model).")) -> None:
    """Profile engine steps, fit the step-time estimator, report its MAPE on held-out steps."""
    if budget <= 0:
        raise UserError(f"--budget must be > 0, got {budget}")
    from echo.estimator import heldout_mape
    from papersuite.context import options
    from papersuite.device import resolve_device, set_threads
    from papersuite.engine.costmodel import profile_engine
    from papersuite.engine.engine import LLMEngine
    from papersuite.io import write_json
    from papersuite.progress import info

    set_threads(threads)
    engine = LLMEngine(model, resolve_device(options().device), seed=options().seed)
    feats, secs = profile_engine(engine, budget_s=budget, seed=options().seed)
    if len(feats) < 8:
        raise UserError(f"only {len(feats)} steps profiled in {budget} s; raise --budget")
    rep = heldout_mape(feats, secs, random_state=options().seed)
    info(f"step-time estimator: held-out MAPE {rep['heldout_mape']:.3f} on {rep['heldout_steps']} steps")
    from papersuite.engine.costmodel import StepCostModel

    full = StepCostModel().fit(feats, secs)
    payload = full.to_dict() | {"heldout_mape": rep["heldout_mape"], "steps": len(feats), "model": model,
                                "samples": [{"n_prefill": f.n_prefill, "n_decode": f.n_decode, "sum_ctx": f.sum_ctx,
                                             "s": s} for f, s in zip(feats, secs)]}
    if out:
        write_json(out, payload)
    sys.stdout.write(json.dumps({k: v for k, v in payload.items() if k != "samples"}) + "\n")


@app.command()
def api(offline: str = typer.Option("docs-qa", "--offline", help="OpenAI batch JSONL (or docs-qa | "
                                    "mooncake-synthetic) run in the idle capacity."),
        out: Path = typer.Option(Path("echo-results.jsonl"), "-o", "--out", help="Batch output JSONL (appended, "
                                 "fsynced; a rerun skips done custom_ids)."),
        host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (loopback by default)."),
        port: int = typer.Option(8000, "--port", help="TCP port."),
        model: str = typer.Option("smollm2-135m-instruct", "--model", help="Registry name or local HF folder."),
        kv_tokens: int = typer.Option(8192, "--kv-tokens", help="KV capacity, tokens."),
        jobs: int = typer.Option(300, "--jobs", min=1, help="Offline jobs from a named set."),
        slo_scale: float = typer.Option(1.0, "--slo-scale", help="Multiply both SLOs (TTFT 5x, TPOT 3x unloaded)."),
        cost_model: Optional[Path] = typer.Option(None, "--cost-model", help="Step-time model JSON (from `profile`)."),
        threads: Optional[int] = typer.Option(None, "--threads", help="Torch threads.")) -> None:
    """OpenAI-compatible server for online traffic while an offline batch runs in idle capacity."""
    from echo import cosim
    from echo.jobs import ResultsWriter
    from echo.workloads import job_prompt_ids, offline_jobs
    from papersuite.context import options
    from papersuite.device import resolve_device, seed_everything, set_threads
    from papersuite.engine.commands import _check_port
    from papersuite.progress import info

    cm = _cost_model(cost_model)
    setup = cosim.Setup(cm, kv_tokens=kv_tokens, slo_scale=slo_scale)
    batch = offline_jobs(offline, jobs, options().seed)
    _check_port(host, port)
    writer = ResultsWriter(out)
    set_threads(threads)
    seed_everything(options().seed)
    import uvicorn

    from echo.server import build_app
    from papersuite.engine.engine import LLMEngine

    policy, kv, max_seqs = cosim.make_policies("echo", setup, {})
    try:
        engine = LLMEngine(model, resolve_device(options().device), scheduler=policy, kv_policy=kv,
                           num_blocks=setup.num_blocks, max_num_seqs=max_seqs, seed=options().seed)
    except ValueError as e:
        raise UserError(str(e)) from None
    tok = engine.tokenizer
    ids = {j.custom_id: job_prompt_ids(j, tok) for j in batch}
    too_long = [j.custom_id for j in batch if len(ids[j.custom_id]) + j.max_tokens > engine.max_model_len]
    if too_long:
        raise UserError(f"job {too_long[0]!r} is longer than the model's context ({engine.max_model_len} tokens)")
    app_, feeder = build_app(engine, batch, ids, writer)
    info(f"serving {engine.model_name} on http://{host}:{port}/v1; offline: {len(feeder.jobs)} of {len(batch)} "
         f"jobs to run -> {out}")
    import signal

    signal.signal(signal.SIGTERM, lambda signum, frame: None)  # uvicorn drains, then re-raises: return normally
    uvicorn.run(app_, host=host, port=port, log_level="warning")
