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
