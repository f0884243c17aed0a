"""`papersuite serve specmoeoff build | generate | tune | bench | check` (heavy imports inside).

Every command takes `--model DIR` (a store from `build`); without it the default store (SmolLM2
upcycled to 8 experts, eps 0.1, k-means router, seed 0) is built into the cache on first use.
Bad input is checked before any model is built or loaded.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from papersuite.errors import UserError

app = typer.Typer(help="SpecMoEOff: speculative decoding hiding expert-offloading latency (upcycled SmolLM2 MoE).",
                  no_args_is_help=True)

DEFAULT_PROMPTS = ("What is the capital of France?", "Write a haiku about autumn.", "Explain gravity simply.",
                   "Give three tips for better sleep.", "What is 12 times 13?", "Name a famous painter and one work.",
                   "Describe a cat to a child.", "Why do we dream?")
MODEL_HELP = "Store folder from `build` (default: the default store in the cache, built on first use)."


def _default_store() -> Path:
    from papersuite.models import cache_root

    return cache_root() / "specmoeoff" / "smollm2-e8-top2-eps0.1-kmeans-s0"


def _store(model: Optional[Path], verify: bool = True) -> Path:
    """The store to use: `--model`, else the default (built now if missing); sha256-checked."""
    from specmoeoff.store import read_manifest, verify_store

    if model is None:
        path = _default_store()
        if not (path / "manifest.json").exists():
            _build(path, 8, 2, 0.1, "kmeans", 0, "bfloat16", None)
    else:
        path = Path(model)
        if not path.is_dir():
            raise UserError(f"{path}: no such store folder")
    try:
        read_manifest(path)
        if verify:
            verify_store(path)
    except ValueError as e:
        raise UserError(str(e)) from None
    return path


def _num_experts(model: Optional[Path]) -> int:
    path = Path(model) if model is not None else _default_store()
    try:
        return int(json.loads((path / "config.json").read_text())["num_local_experts"])
    except (OSError, KeyError, ValueError):
        if model is not None:
            raise UserError(f"{path}: not a specmoeoff store (no readable config.json); build one with "
                            "`serve specmoeoff build -o DIR`") from None
        return 8


def _check_common(k: Optional[str], slots: Optional[int], tier: Optional[str], model: Optional[Path]) -> None:
    from specmoeoff.expert_store import parse_tier

    if k is not None and k != "auto":
        try:
            kv = int(k)
        except ValueError:
            raise UserError(f"--k must be auto or an integer in 0..16, got {k!r}") from None
        if not 0 <= kv <= 16:
            raise UserError(f"--k must be in 0..16, got {kv}")
    if tier is not None:
        try:
            parse_tier(tier)
        except ValueError as e:
            raise UserError(f"--tier: {e}") from None
    if slots is not None:
        E = _num_experts(model)
        if not 1 <= slots <= E:
            raise UserError(f"--cache-slots must be in 1..{E} (experts per layer), got {slots}")


def _build(out: Path, experts: int, top_k: int, noise: float, router: str, seed: int, store_dtype: str,
           source: Optional[str]) -> dict:
    from papersuite.device import set_threads
    from papersuite.models import hf_folder, resolve
    from papersuite.progress import info
    from specmoeoff.store import build_store
    from specmoeoff.upcycle import Upcycler

    set_threads(None)
    src = hf_folder(resolve(source or "smollm2-135m-instruct"))
    info(f"upcycling {src.name}: {experts} experts, top-{top_k}, eps {noise}, {router} router, seed {seed} -> {out}")
    up = Upcycler(num_experts=experts, top_k=top_k, noise=noise, router=router, random_state=seed).fit(src)
    build_store(src, out, up, store_dtype=store_dtype)
    manifest = json.loads((out / "manifest.json").read_text())
    return {"store": str(out), "files": len(manifest["files"]), "build": manifest["build"]}


def _emit(result: dict, output: Optional[str], as_json: bool) -> None:
    from papersuite.io import dumps, write_json

    if output:
        write_json(output, result)
    elif as_json:
        typer.echo(dumps(result, indent=None))
    else:
        typer.echo(dumps(result, indent=2))


@app.command("build")
def build(
    experts: int = typer.Option(8, "--experts", help="Experts per layer (E)."),
    top_k: int = typer.Option(2, "--top-k", help="Experts per token."),
    noise: float = typer.Option(0.1, "--noise", help="eps: expert j = W + eps*std(W)*N(0,1)."),
    router: str = typer.Option("kmeans", "--router", help="kmeans (centroids of MLP inputs) | random."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed (default: the global --seed)."),
    store_dtype: str = typer.Option("bfloat16", "--store-dtype", help="Expert file dtype: bfloat16 | float32."),
    source: Optional[str] = typer.Option(None, "--source", help="Dense model name or HF folder (default SmolLM2-135M-Instruct)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Store folder (default: the cache's default store)."),
    as_json: bool = typer.Option(False, "--json", help="One-line JSON on stdout."),
) -> None:
    """Sparse-upcycle the dense model into an offloadable MoE store (sha256 manifest)."""
    from papersuite.context import options

    if noise < 0:
        raise UserError(f"--noise must be >= 0, got {noise}")
    if experts < 1 or not 1 <= top_k <= experts:
        raise UserError(f"need --experts >= 1 and 1 <= --top-k <= --experts, got {experts}, {top_k}")
    if router not in ("kmeans", "random"):
        raise UserError(f"--router must be kmeans or random, got {router!r}")
    if store_dtype not in ("bfloat16", "float32"):
        raise UserError(f"--store-dtype must be bfloat16 or float32, got {store_dtype!r}")
    if source is not None and not Path(source).exists() and "/" in source:
        raise UserError(f"{source}: no such model folder")
    seed = options().seed if seed is None else seed
    out = output or _default_store()
    if output is not None and out.exists() and any(out.iterdir()) and not (out / "manifest.json").exists():
        raise UserError(f"{out}: exists, is not empty and is not a store; choose another -o")
    try:
        result = _build(out, experts, top_k, noise, router, seed, store_dtype, source)
    except (ValueError, KeyError) as e:
        raise UserError(f"build: {e}") from None
    _emit(result, None, as_json)


def _read_prompts(prompt: Optional[str], prompts: Optional[str]) -> list[dict]:
    from papersuite.io import iter_jsonl

    if prompt is not None and prompts is not None:
        raise UserError("give PROMPT or --prompts, not both")
    if prompt is not None:
        return [{"id": "0", "prompt": prompt}]
    if prompts is None:
        return [{"id": str(i), "prompt": p} for i, p in enumerate(DEFAULT_PROMPTS)]
    if prompts != "-" and not Path(prompts).exists():
        raise UserError(f"{prompts}: no such file")
    records = []
    for n, r in enumerate(iter_jsonl(prompts), 1):
        if not isinstance(r, dict) or not (isinstance(r.get("prompt"), str) or isinstance(r.get("messages"), list)):
            raise UserError(f"{prompts}:{n}: each line needs a string `prompt` or a `messages` list")
        records.append({"id": str(r.get("id", n - 1)), **r})
    if not records:
        raise UserError(f"{prompts}: no prompts")
    return records


def _dtype(name: str):
    import torch

    if name not in ("float32", "bfloat16"):
        raise UserError(f"--compute-dtype must be float32 or bfloat16, got {name!r}")
    return getattr(torch, name)


@app.command("generate")
def generate(
    prompt: Optional[str] = typer.Argument(None, help="One prompt (default: 8 embedded prompts)."),
    prompts: Optional[str] = typer.Option(None, "--prompts", help="JSONL with id and prompt or messages (`-` = stdin)."),
    model: Optional[Path] = typer.Option(None, "--model", help=MODEL_HELP),
    system: str = typer.Option("specmoeoff", "--system", help="specmoeoff | plain | prefetch | lightning."),
    k: str = typer.Option("auto", "--k", help="Draft length 0..16 or auto (optimizer); 0 = autoregressive."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Requests decoded together."),
    cache_slots: int = typer.Option(2, "--cache-slots", help="Fast-tier expert slots per layer (1..E)."),
    tier: str = typer.Option("cold", "--tier", help="Slow tier: cold | warm | ram | throttled:GBPS."),
    compute_dtype: str = typer.Option("float32", "--compute-dtype", help="float32 | bfloat16."),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="0 = greedy (exact acceptance)."),
    max_tokens: int = typer.Option(64, "--max-tokens", min=1, help="New tokens per request."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Sampling seed (default: the global --seed)."),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="Write the JSON result here."),
    as_json: bool = typer.Option(False, "--json", help="One-line JSON on stdout."),
) -> None:
    """Generate with the offloaded MoE target: outputs and stats (tokens/s, acceptance, loads/token)."""
    from papersuite.context import options

    from specmoeoff.system import SYSTEMS

    _check_common(k, cache_slots, tier, model)
    if system not in SYSTEMS:
        raise UserError(f"--system must be one of {', '.join(SYSTEMS)}, got {system!r}")
    dtype = _dtype(compute_dtype)
    records = _read_prompts(prompt, prompts)
    store = _store(model)
    seed = options().seed if seed is None else seed

    from papersuite.device import set_threads
    from specmoeoff.serving import encode_prompts, run_system

    set_threads(None)
    ids = encode_prompts(store, records)
    eos = json.loads((store / "config.json").read_text()).get("eos_token_id")
    eos = eos if isinstance(eos, list) else ([eos] if eos is not None else [])
    outs, stats = run_system(store, ids, system=system, k=k if k == "auto" else int(k), batch_size=batch_size,
                             slots=cache_slots, tier=tier, dtype=dtype, temperature=temperature,
                             max_tokens=max_tokens, seed=seed, eos=eos)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(store)
    result = {"outputs": [{"id": r["id"], "text": tok.decode(o, skip_special_tokens=True), "token_ids": o}
                          for r, o in zip(records, outs)],
              "stats": {key: stats[key] for key in ("tokens_per_s", "tokens_per_iteration", "acceptance", "k",
                                                    "k_mean", "expert_loads_per_token", "bytes_per_token", "hit_rate",
                                                    "io_wait_s", "system", "tier", "cache_slots", "batch_size")}}
    _emit(result, output, as_json)


@app.command("check")
def check(
    model: Optional[Path] = typer.Option(None, "--model", help=MODEL_HELP),
    as_json: bool = typer.Option(False, "--json", help="One-line JSON on stdout."),
) -> None:
    """Correctness on the store: eps-0 equals dense, engine equals MixtralForCausalLM, greedy SD identical."""
    store = _store(model)
    from papersuite.device import set_threads
    from specmoeoff.checks import run_checks

    set_threads(None)
    result = run_checks(store)
    _emit(result, None, as_json)
    if not result["ok"]:
        raise typer.Exit(1)


def _bench_prompts(prompts: Optional[str], n: int) -> list[dict]:
    records = _read_prompts(None, prompts)
    return [records[i % len(records)] for i in range(n)] if prompts is None else records


@app.command("bench")
def bench(
    model: Optional[Path] = typer.Option(None, "--model", help=MODEL_HELP),
    systems: str = typer.Option("plain,prefetch,lightning,specmoeoff", "--systems",
                                help="Comma-separated: plain, prefetch, lightning, specmoeoff."),
    prompts: Optional[str] = typer.Option(None, "--prompts", help="JSONL prompts (default: embedded, batch-size many)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Requests decoded together."),
    cache_slots: int = typer.Option(2, "--cache-slots", help="Fast-tier slots per layer (1..E)."),
    tier: str = typer.Option("throttled:1", "--tier", help="cold | warm | ram | throttled:GBPS."),
    k: str = typer.Option("auto", "--k", help="specmoeoff's draft length (0..16 or auto)."),
    max_tokens: int = typer.Option(16, "--max-tokens", min=1, help="New tokens per request (EOS ignored)."),
    repeats: int = typer.Option(1, "--repeats", min=1, help="Interleaved repeats (median)."),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="Write the JSON result here."),
    as_json: bool = typer.Option(False, "--json", help="One-line JSON on stdout."),
) -> None:
    """Decode tokens/s of every system on the same store, slot budget, batch and prompts."""
    from specmoeoff.system import SYSTEMS

    _check_common(k, cache_slots, tier, model)
    names = [s.strip() for s in systems.split(",") if s.strip()]
    bad = [s for s in names if s not in SYSTEMS]
    if bad or not names:
        raise UserError(f"--systems: unknown {', '.join(bad) or '(none)'}; known: {', '.join(SYSTEMS)}")
    records = _bench_prompts(prompts, batch_size)
    store = _store(model)
    from papersuite.bench import environment, pin_threads
    from papersuite.progress import table
    from specmoeoff.serving import encode_prompts
    from specmoeoff.tuning import compare

    pin_threads(1)
    ids = encode_prompts(store, records)
    res = compare(store, ids, names, repeats=repeats, k=k if k == "auto" else int(k), batch_size=batch_size,
                  slots=cache_slots, tier=tier, max_tokens=max_tokens)
    res["environment"] = environment()
    table([{"system": s, "tok/s": round(d["tokens_per_s"], 2), "loads/tok": round(d["expert_loads_per_token"], 2),
             "hit": round(d["hit_rate"], 3), "tok/iter": round(d["tokens_per_iteration"], 2)}
           for s, d in res["systems"].items()])
    _emit(res, output, as_json)


@app.command("tune")
def tune(
    model: Optional[Path] = typer.Option(None, "--model", help=MODEL_HELP),
    prompts: Optional[str] = typer.Option(None, "--prompts", help="JSONL prompts (default: embedded)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Requests decoded together."),
    cache_slots: int = typer.Option(2, "--cache-slots", help="Fast-tier slots per layer (1..E)."),
    tier: str = typer.Option("throttled:1", "--tier", help="cold | warm | ram | throttled:GBPS."),
    ks: str = typer.Option("0,1,2,3,4,6", "--ks", help="Draft lengths to sweep (comma-separated, 0..16)."),
    max_tokens: int = typer.Option(16, "--max-tokens", min=1, help="New tokens per request."),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="Write the JSON result here."),
    as_json: bool = typer.Option(False, "--json", help="One-line JSON on stdout."),
) -> None:
    """k*, tau(k), estimated vs measured iteration time, and the optimizer's regret vs a k sweep."""
    try:
        k_list = sorted({int(x) for x in ks.split(",") if x.strip()})
    except ValueError:
        raise UserError(f"--ks must be comma-separated integers, got {ks!r}") from None
    if not k_list or k_list[0] < 0 or k_list[-1] > 16:
        raise UserError(f"--ks values must be in 0..16, got {ks!r}")
    _check_common(None, cache_slots, tier, model)
    records = _bench_prompts(prompts, batch_size)
    store = _store(model)
    from papersuite.bench import pin_threads
    from specmoeoff.serving import encode_prompts
    from specmoeoff.tuning import sweep_k

    pin_threads(1)
    ids = encode_prompts(store, records)
    res = sweep_k(store, ids, ks=tuple(k_list), batch_size=batch_size, slots=cache_slots, tier=tier,
                  max_tokens=max_tokens)
    _emit(res, output, as_json)
