"""`papersuite serve ares`: collect, train, evaluate, predict, replay, simulate, profile."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from papersuite.errors import UserError

app = typer.Typer(help="ARES-style remaining-length prediction from hidden states, prediction-aware "
                       "scheduling and decode rebalancing (arXiv 2510.13668).", no_args_is_help=True)


def _cache() -> Path:
    from papersuite.models import cache_root

    return cache_root() / "ares"


def _default_data() -> Path:
    return _cache() / "data"


def _default_predictor(name: str) -> Path:
    return _cache() / f"predictor-{name}.pt"


def _read_prompts(path: str) -> list[str]:
    """A prompt file: JSONL with `prompt` (or `messages`), or plain text one prompt a line."""
    from papersuite.io import open_text

    prompts = []
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            if line.startswith("{"):
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise UserError(f"malformed JSON ({e.msg})", where=f"{path}:{lineno}") from None
                text = rec.get("prompt") or " ".join(m.get("content", "") for m in rec.get("messages", []))
                if not text:
                    raise UserError("record has no 'prompt' or 'messages'", where=f"{path}:{lineno}")
                prompts.append(text)
            else:
                prompts.append(line)
    if not prompts:
        raise UserError(f"{path}: no prompts")
    return prompts


@app.command()
def collect(prompts: Optional[str] = typer.Option(None, "--prompts", help="Prompt file (JSONL or text) or '-'; "
                                                   "default: the embedded template x topic set."),
            n: int = typer.Option(300, "--n", min=1, help="Prompts to take from the embedded set."),
            max_tokens: int = typer.Option(512, "--max-tokens", min=1, help="Serving cap on output tokens."),
            every: int = typer.Option(4, "--every", help="Record a hidden state every N generated tokens."),
            temperature: float = typer.Option(0.7, "--temperature", min=0.0),
            top_p: float = typer.Option(0.9, "--top-p"),
            batch_size: int = typer.Option(16, "--batch-size", min=1, help="Requests per engine batch (and shard)."),
            model: str = typer.Option("smollm2-135m-instruct", "--model"),
            out: Optional[Path] = typer.Option(None, "-o", "--out", help="Data folder (default: the cache).")) -> None:
    """Generate with the engine and record (hidden state, remaining length) pairs; resumable."""
    from ares.collect import collect as run_collect
    from ares.prompts import prompt_set
    from papersuite.context import options
    from papersuite.device import resolve_device
    from papersuite.progress import progress

    if every < 1:
        raise UserError(f"--every must be >= 1, got {every}")
    texts = _read_prompts(prompts) if prompts else None
    if texts is None:
        try:
            texts = prompt_set(n, seed=options().seed)
        except ValueError as e:
            raise UserError(str(e)) from None
    out = out or _default_data()
    with progress("collecting", total=len(texts)) as bar:
        def on_batch(done, total):
            bar.advance(done - bar.done)

        run_collect(out, texts, model=model, max_tokens=max_tokens, every=every, temperature=temperature,
                    top_p=top_p, seed=options().seed, batch_size=batch_size,
                    device=resolve_device(options().device), on_batch=on_batch)
    from ares.collect import load_records

    rec = load_records(out)
    capped = sum(r["capped"] for r in rec.requests) / len(rec.requests)
    print(json.dumps({"data": str(out), "requests": len(rec.requests), "records": int(len(rec.t)),
                      "capped_fraction": round(capped, 4),
                      "mean_output_tokens": float(rec.lengths[rec.t == 0].mean())}))


@app.command()
def train(data: Optional[Path] = typer.Argument(None, help="Data folder from `collect` (default: the cache)."),
          predictor: str = typer.Option("ares", "--predictor", help="ares | ares-literal | prompt-minilm | "
                                        "prompt-bucket | prompt-tfidf | elapsed-median | constant"),
          epochs: int = typer.Option(100, "--epochs", min=1),
          out: Optional[Path] = typer.Option(None, "-o", "--out", help="Predictor file (default: the cache).")) -> None:
    """Train one predictor on the 70 % training split (15 % validation for early stopping)."""
    import numpy as np

    from ares.collect import load_records
    from ares.evaluate import split
    from ares.predictor import make_predictor
    from papersuite.context import options

    pred = make_predictor(predictor, epochs=epochs, random_state=options().seed)
    rec = load_records(data or _default_data())
    train_set, val, test = split(rec, options().seed)
    pred.fit(train_set, val)
    out = out or _default_predictor(predictor)
    out.parent.mkdir(parents=True, exist_ok=True)
    pred.save(out)
    mae = float(np.abs(pred.predict(test) - test.r).mean())
    print(json.dumps({"predictor": predictor, "file": str(out), "test_mae": round(mae, 3),
                      "params": pred.n_params, "train_requests": int(len(set(train_set.req.tolist())))}))


@app.command()
def evaluate(data: Optional[Path] = typer.Argument(None, help="Data folder (default: the cache)."),
             predictors: str = typer.Option("all", "--predictors", help="Comma list or 'all'."),
             seeds: str = typer.Option("0,1,2", "--seeds", help="Comma list of split seeds."),
             epochs: int = typer.Option(100, "--epochs", min=1),
             out: Optional[Path] = typer.Option(None, "-o", "--out", help="Write the JSON here (atomic).")) -> None:
    """MAE, MAE by progress bin, Kendall tau, parameters and us/call for each predictor."""
    from ares.collect import load_records
    from ares.evaluate import evaluate as run_eval
    from ares.predictor import PREDICTORS
    from papersuite.io import write_json
    from papersuite.progress import table

    names = list(PREDICTORS) if predictors == "all" else [p.strip() for p in predictors.split(",") if p.strip()]
    unknown = [p for p in names if p not in PREDICTORS]
    if unknown:
        raise UserError(f"unknown predictor(s) {', '.join(unknown)}; choose from {', '.join(PREDICTORS)}")
    try:
        seed_list = [int(s) for s in seeds.split(",")]
    except ValueError:
        raise UserError(f"--seeds must be comma-separated integers, got {seeds!r}") from None
    rec = load_records(data or _default_data())
    res = run_eval(rec, names, seed_list, epochs=epochs)
    table([{"predictor": k, "mae": v["mae"], "kendall_tau": v["kendall_tau"], "params": v["params"],
            "us_per_call": v["us_per_call"]} for k, v in res.items()], title="remaining-length predictors")
    payload = {"requests": len(rec.requests), "records": int(len(rec.t)), "predictors": res}
    if out:
        write_json(out, payload)
    print(json.dumps(payload))


@app.command()
def predict(prompt: Optional[str] = typer.Argument(None, help="A prompt (or use --prompts)."),
            prompts: Optional[str] = typer.Option(None, "--prompts", help="Prompt file or '-'."),
            predictor_file: Optional[Path] = typer.Option(None, "--predictor", help="Trained predictor file "
                                                          "(default: the cached `ares`)."),
            k: int = typer.Option(4, "--k", min=1, help="Re-predict every k tokens."),
            max_tokens: int = typer.Option(256, "--max-tokens", min=1),
            temperature: float = typer.Option(0.7, "--temperature", min=0.0),
            model: str = typer.Option("smollm2-135m-instruct", "--model")) -> None:
    """Generate and print, per request, the remaining-length predictions made while decoding (JSONL)."""
    from ares.hook import RemainingLengthHook
    from ares.predictor import load_predictor
    from papersuite.context import options
    from papersuite.device import resolve_device
    from papersuite.engine.engine import LLMEngine
    from papersuite.llm import SamplingParams

    if (prompt is None) == (prompts is None):
        raise UserError("give one PROMPT argument or --prompts FILE")
    texts = [prompt] if prompt is not None else _read_prompts(prompts)
    path = predictor_file or _default_predictor("ares")
    if not path.exists():
        raise UserError(f"{path}: no predictor; train one with `papersuite serve ares train`")
    pred = load_predictor(path)
    hook = RemainingLengthHook(pred, k=k, keep_history=True)
    engine = LLMEngine(model, device=resolve_device(options().device), step_hooks=[hook], seed=options().seed)
    if pred.hidden_size is not None and pred.hidden_size != engine.model.config.hidden_size:
        raise UserError(f"{path}: trained for hidden size {pred.hidden_size}; {model} has "
                        f"{engine.model.config.hidden_size}")
    seqs = []
    for i, text in enumerate(texts):
        seq = engine.make_sequence([{"role": "user", "content": text}],
                                   SamplingParams(max_tokens=max_tokens, temperature=temperature,
                                                  seed=options().seed + i))
        seq.annotations["prompt_text"] = text
        seqs.append(engine.add_sequence(seq))
    while any(not s.is_finished for s in seqs):
        engine.step()
    for text, seq in zip(texts, seqs):
        sys.stdout.write(json.dumps({"prompt": text, "text": seq.text, "output_tokens": seq.num_output_tokens,
                                     "predictions": seq.annotations.get("r_hat_history", [])}) + "\n")


def _cost_model(path: Optional[Path], model: str, budget: float):
    import json as _json

    from papersuite.engine.costmodel import StepCostModel, fitted_cost_model

    if path is not None:
        if not path.exists():
            raise UserError(f"{path}: no such cost-model file")
        try:
            return StepCostModel.from_dict(_json.loads(path.read_text()))
        except (ValueError, KeyError):
            raise UserError(f"{path}: not a cost-model file (intercept_s and coef expected)") from None
    from papersuite.engine.engine import LLMEngine

    return fitted_cost_model(LLMEngine(model), budget_s=budget)


def _slos(cost_model, chunk: int, slo_scale: float, slo_ttft: Optional[float], slo_tpot: Optional[float]):
    from papersuite.replay import default_slos

    ttft, tpot = default_slos(cost_model, chunk=chunk, scale=slo_scale)
    return (slo_ttft if slo_ttft is not None else ttft), (slo_tpot if slo_tpot is not None else tpot)


def _policy_metrics(result, ttft, tpot) -> dict:
    m = result.metrics(ttft, tpot)
    return {"p99_tpot": m["tpot_p99_s"], "mean_tpot": m["tpot_mean_s"], "p99_ttft": m["ttft_p99_s"],
            "mean_ttft": m["ttft_mean_s"], "slo_attainment": m["slo_attainment"], "migrations": m["migrations"],
            "preemptions": m["preemptions"], "recomputed_tokens": m["recomputed_tokens"],
            "imbalance": m["imbalance"], "output_tokens_per_s": m["output_tokens_per_s"]}


@app.command()
def simulate(trace: str = typer.Option("heavy-tail", "--trace", help="azure-conv | azure-code | mooncake-conv | "
                                       "mooncake-synth | sharegpt | arxiv | heavy-tail | a trace file"),
             n: int = typer.Option(700, "--n", min=1, help="Requests taken from the trace."),
             skip: int = typer.Option(0, "--skip", min=0, help="Skip this many requests first (held-out slices)."),
             instances: int = typer.Option(8, "--instances", help="Simulated decode instances."),
             kv_tokens: int = typer.Option(6000, "--kv-tokens", min=64, help="KV capacity of one instance, tokens."),
             rate: Optional[float] = typer.Option(None, "--rate", help="Arrival rate (req/s); default: the trace's."),
             length_scale: float = typer.Option(4.0, "--length-scale", help="Divide output lengths by S "
                                                "(prompts by 2S) for a 135M model."),
             max_output: int = typer.Option(1024, "--max-output", min=1, help="Output cap after scaling."),
             policy: str = typer.Option("rr,least-kv,llumnix,prompt-only,ares,oracle", "--policy"),
             goodput: bool = typer.Option(False, "--goodput", help="Also search each policy's goodput."),
             cost_model_file: Optional[Path] = typer.Option(None, "--cost-model", help="Step-time model JSON "
                                                            "(default: profile the engine once, cached)."),
             error_model_file: Optional[Path] = typer.Option(None, "--error-model", help="Measured predictor "
                                                             "errors (default: the shipped one)."),
             slo_scale: float = typer.Option(1.0, "--slo-scale", min=0.01),
             slo_ttft: Optional[float] = typer.Option(None, "--slo-ttft", help="TTFT SLO in seconds."),
             slo_tpot: Optional[float] = typer.Option(None, "--slo-tpot", help="TPOT SLO in seconds."),
             model: str = typer.Option("smollm2-135m-instruct", "--model"),
             out: Optional[Path] = typer.Option(None, "-o", "--out")) -> None:
    """Cluster-scale replay on simulated instances (the engine's scheduler, cost-model steps)."""
    from ares import cluster
    from papersuite import traces as tr
    from papersuite.context import options
    from papersuite.io import write_json
    from papersuite.progress import progress, table
    from papersuite.replay import goodput as search_goodput

    names = cluster.check_policies([p.strip() for p in policy.split(",") if p.strip()])
    if instances < 1:
        raise UserError(f"--instances must be >= 1, got {instances}")
    if length_scale <= 0:
        raise UserError(f"--length-scale must be > 0, got {length_scale}")
    seed = options().seed
    errors = cluster.load_error_models(names, error_model_file or cluster.ERROR_MODEL)
    cm = _cost_model(cost_model_file, model, 60.0)
    reqs = cluster.fit_to_instances(cluster.load_trace(trace, n, skip, seed), kv_tokens, 2 * length_scale,
                                    length_scale, max_output)
    base_rate = rate or tr.rate(reqs)
    reqs = tr.retime(reqs, base_rate)
    ttft, tpot = _slos(cm, 512, slo_scale, slo_ttft, slo_tpot)
    results = {}
    with progress("policies", total=len(names)) as bar:
        for name in names:
            run = lambda rs: cluster.simulate_policy(name, rs, instances=instances, kv_tokens=kv_tokens,  # noqa: E731
                                                     cost_model=cm, error_models=errors, seed=seed)
            res = _policy_metrics(run(reqs), ttft, tpot)
            if goodput:
                att = lambda r: run(tr.retime(reqs, r)).metrics(ttft, tpot)["slo_attainment"]  # noqa: E731
                res["goodput"] = search_goodput(att, base_rate / 8, base_rate * 8, iters=6)
            results[name] = res
            bar.advance()
    table([{"policy": k, **{m: v[m] for m in ("p99_tpot", "slo_attainment", "migrations", "preemptions")},
            **({"goodput": v["goodput"]} if goodput else {})} for k, v in results.items()], title=f"simulate {trace}")
    payload = {"trace": trace, "requests": len(reqs), "instances": instances, "kv_tokens": kv_tokens,
               "rate": base_rate, "length_scale": length_scale,
               "slo": {"ttft": "5x unloaded" if slo_ttft is None else slo_ttft,
                       "tpot": "3x unloaded" if slo_tpot is None else slo_tpot, "scale": slo_scale},
               "cost_model": cm.to_dict(), "policies": results}
    if out:
        write_json(out, payload)
    print(json.dumps(payload))


@app.command()
def profile(budget: float = typer.Option(60.0, "--budget", min=1.0, help="Seconds of profiling at most."),
            refresh: bool = typer.Option(False, "--refresh", help="Profile again even if cached."),
            model: str = typer.Option("smollm2-135m-instruct", "--model"),
            out: Optional[Path] = typer.Option(None, "-o", "--out", help="Also write the model JSON here.")) -> None:
    """Fit the step-time cost model T = a + b*n_prefill + c*n_decode + d*sum_ctx on this machine (cached)."""
    import torch

    from papersuite.context import options
    from papersuite.device import resolve_device
    from papersuite.engine.costmodel import cache_key, fitted_cost_model
    from papersuite.engine.engine import LLMEngine
    from papersuite.io import write_json
    from papersuite.models import cache_root

    engine = LLMEngine(model, device=resolve_device(options().device))
    cm = fitted_cost_model(engine, budget_s=budget, seed=options().seed, refresh=refresh)
    cached = json.loads((cache_root() / "costmodel" / f"{cache_key(engine)}.json").read_text())
    payload = {**cm.to_dict(), "heldout_mape": cached.get("heldout_mape"), "steps": cached.get("steps"),
               "threads": torch.get_num_threads(), "model": engine.model_name}
    if out:
        write_json(out, payload)
    print(json.dumps(payload))


def _workload(workload: Optional[str], n: int, rate: float, max_tokens: int, seed: int):
    """Workload JSONL, or the embedded prompts with Poisson arrivals at `rate`."""
    from ares.prompts import prompt_set
    from papersuite import traces as tr

    if workload:
        reqs = tr.read_trace(workload, fmt="workload")
    else:
        arrivals = tr.poisson_arrivals(n, rate, seed)
        reqs = [tr.TraceRequest(f"w{i:04d}", float(a), 0, max_tokens, prompt=p)
                for i, (p, a) in enumerate(zip(prompt_set(n, seed=seed + 7), arrivals))]
    return reqs


class _OracleHook:
    """StepHook with the true remaining length of each request (lengths from a reference run)."""

    def __init__(self, lengths: dict[str, int]) -> None:
        self.lengths = lengths

    def __call__(self, batch, hidden_states) -> None:
        for seq, flag in zip(batch.seqs, batch.samples):
            if flag and seq.request_id in self.lengths:
                seq.annotations["r_hat"] = float(max(1, self.lengths[seq.request_id] - seq.num_output_tokens))


@app.command()
def replay(workload: Optional[str] = typer.Option(None, "--workload", help="Workload JSONL (id, arrival, prompt "
                                                  "or messages, max_tokens); default: embedded prompts."),
           n: int = typer.Option(24, "--n", min=1, help="Embedded workload: requests."),
           rate: float = typer.Option(2.0, "--rate", min=0.001, help="Embedded workload: arrivals per second."),
           max_tokens: int = typer.Option(128, "--max-tokens", min=1, help="Embedded workload: output cap."),
           instances: int = typer.Option(2, "--instances", help="Real engine instances."),
           kv_tokens: int = typer.Option(4096, "--kv-tokens", min=64, help="KV capacity of one instance, tokens."),
           policy: str = typer.Option("rr,llumnix,ares,oracle", "--policy"),
           placement: Optional[str] = typer.Option(None, "--placement", help="rr | least-kv: override placement."),
           clock: str = typer.Option("measured", "--clock", help="measured | model (cost-model step times)."),
           temperature: float = typer.Option(0.7, "--temperature", min=0.0),
           k: int = typer.Option(4, "--k", min=1, help="Re-predict every k tokens."),
           predictor_file: Optional[Path] = typer.Option(None, "--predictor", help="ares predictor file."),
           cost_model_file: Optional[Path] = typer.Option(None, "--cost-model"),
           model: str = typer.Option("smollm2-135m-instruct", "--model"),
           out: Optional[Path] = typer.Option(None, "-o", "--out")) -> None:
    """Replay a workload on real engine instances (virtual clocks) under each policy, natural lengths."""
    from ares import cluster
    from ares.hook import RemainingLengthHook
    from ares.predictor import load_predictor
    from ares.rebalancer import RebalanceConfig, Rebalancer, predictive_placement
    from papersuite import replay as rp
    from papersuite.context import options
    from papersuite.engine.engine import LLMEngine
    from papersuite.io import write_json
    from papersuite.llm import SamplingParams
    from papersuite.progress import progress, table

    names = cluster.check_policies([p.strip() for p in policy.split(",") if p.strip()])
    if instances < 1:
        raise UserError(f"--instances must be >= 1, got {instances}")
    if clock not in ("measured", "model"):
        raise UserError(f"--clock must be measured or model, got {clock!r}")
    if placement not in (None, "rr", "least-kv"):
        raise UserError(f"--placement must be rr or least-kv, got {placement!r}")
    seed = options().seed
    predictors = {}
    for name, pname in (("ares", "ares"), ("prompt-only", "prompt-minilm")):
        if name in names:
            path = (predictor_file if name == "ares" and predictor_file else _default_predictor(pname))
            if not path.exists():
                raise UserError(f"{path}: no {pname} predictor; train one with "
                                f"`papersuite serve ares train --predictor {pname}`")
            predictors[name] = load_predictor(path)
    cm = _cost_model(cost_model_file, model, 60.0)  # the model clock and the SLOs' unloaded values
    reqs = _workload(workload, n, rate, max_tokens, seed)
    tokenizer_engine = LLMEngine(model, num_blocks=64)
    prompt_ids = {r.id: tokenizer_engine.encode(list(r.messages) if r.messages else
                                                [{"role": "user", "content": r.prompt}]) for r in reqs}
    for r in reqs:
        if len(prompt_ids[r.id]) + r.max_tokens > kv_tokens:
            raise UserError(f"request {r.id}: prompt + max_tokens exceeds --kv-tokens {kv_tokens}")
    params_for = lambda r: SamplingParams(max_tokens=r.max_tokens, temperature=temperature,  # noqa: E731
                                          seed=seed + int("".join(c for c in r.id if c.isdigit()) or 0),
                                          ignore_eos=r.ignore_eos)
    cfg = RebalanceConfig(k_min=8, horizon=max_tokens)
    lengths: dict[str, int] = {}
    results = {}
    order = sorted(names, key=lambda p: p == "oracle")  # oracle needs the lengths of an earlier run
    if "oracle" in names and len(order) == 1:
        order = ["rr", "oracle"]
    with progress("policies", total=len(order)) as bar:
        for name in order:
            hooks_for = lambda: ([RemainingLengthHook(predictors[name], k=k)] if name in predictors  # noqa: E731
                                 else [_OracleHook(lengths)] if name == "oracle" else [])
            insts = [rp.EngineInstance(LLMEngine(model, num_blocks=kv_tokens // 16, step_hooks=hooks_for(),
                                                 seed=seed, max_num_seqs=64), clock=clock,
                                     cost_model=cm if clock == "model" else None)
                     for _ in range(instances)]
            if name in ("rr", "least-kv"):
                place, rebalancer = name, None
            elif name == "llumnix":
                place, rebalancer = "least-kv", Rebalancer(cfg, predictive=False)
            else:
                place, rebalancer = predictive_placement(cfg), Rebalancer(cfg)
            res = rp.replay(reqs, insts, placement=placement or place, rebalancer=rebalancer, rebalance_every=4,
                            prompt_ids=prompt_ids, params_for=params_for, seed=seed)
            if not lengths:
                lengths = {rid: len(toks) for rid, toks in res.outputs}
            ttft, tpot = _slos(cm, 512, 1.0, None, None)
            if name in names:
                results[name] = {**_policy_metrics(res, ttft, tpot), "output_digest": rp.output_digest(res)}
            bar.advance()
    table([{"policy": p, **{m: v[m] for m in ("p99_tpot", "p99_ttft", "migrations", "preemptions")},
            "digest": v["output_digest"][:12]} for p, v in results.items()], title="replay")
    payload = {"requests": len(reqs), "instances": instances, "kv_tokens": kv_tokens, "clock": clock,
               "temperature": temperature, "slo": {"ttft": "5x unloaded", "tpot": "3x unloaded"}, "policies": results}
    if out:
        write_json(out, payload)
    print(json.dumps(payload))

