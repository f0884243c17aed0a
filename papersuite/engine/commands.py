"""`papersuite serve api`: the OpenAI-compatible server on the shared engine.

Plug-ins are chosen by registry name (`--attention`, `--kv-policy`, `--scheduler`); packages add
theirs to `ATTENTION_BACKENDS`, `EVICTION_POLICIES` and `SCHEDULING_POLICIES` (cli.py wires them).
Heavy imports stay inside the command so `papersuite --help` stays fast.
"""
from __future__ import annotations

import socket

import typer

from papersuite.errors import UserError


def _check_port(host: str, port: int) -> None:
    if not 0 < port < 65536:
        raise UserError(f"--port must be in 1..65535, got {port}")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            raise UserError(f"cannot listen on {host}:{port} ({e.strerror})") from None


def api(
    model: str = typer.Option("smollm2-135m-instruct", "--model", help="Registry name or local HF folder."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (loopback by default)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    api_key: str = typer.Option(None, "--api-key", envvar="PAPERSUITE_API_KEY",
                                help="Require 'Authorization: Bearer KEY' on /v1 routes."),
    served_model_name: str = typer.Option(None, "--served-model-name", help="Model id clients use (default: the model's)."),
    attention: str = typer.Option("paged", "--attention", help="Attention backend by name."),
    kv_policy: str = typer.Option("lru", "--kv-policy", help="KV eviction policy by name."),
    scheduler: str = typer.Option("fcfs", "--scheduler", help="Scheduling policy by name (fcfs, priority, ...)."),
    block_size: int = typer.Option(16, "--block-size", help="Tokens per KV block."),
    num_blocks: int = typer.Option(None, "--num-blocks", help="KV budget in blocks (overrides --kv-cache-mb)."),
    kv_cache_mb: int = typer.Option(256, "--kv-cache-mb", help="KV budget in MiB."),
    max_num_batched_tokens: int = typer.Option(512, "--max-num-batched-tokens", help="Token budget per step."),
    max_num_seqs: int = typer.Option(64, "--max-num-seqs", help="Most sequences running at once."),
    max_model_len: int = typer.Option(None, "--max-model-len", help="Context limit (default: the model's)."),
    no_prefix_caching: bool = typer.Option(False, "--no-prefix-caching", help="Turn automatic prefix caching off."),
    threads: int = typer.Option(None, "--threads", help="Torch threads (default: all cores)."),
) -> None:
    """Serve /v1/completions, /v1/chat/completions (SSE), /v1/models, /health and /metrics."""
    import importlib

    from papersuite.context import options
    from papersuite.device import resolve_device, seed_everything, set_threads
    from papersuite.progress import info

    # torch-free registries first, so a typo fails fast; attention.py imports torch
    for flag, value, module, registry in (("--kv-policy", kv_policy, "kv_cache", "EVICTION_POLICIES"),
                                          ("--scheduler", scheduler, "scheduler", "SCHEDULING_POLICIES"),
                                          ("--attention", attention, "attention", "ATTENTION_BACKENDS")):
        known = getattr(importlib.import_module(f"papersuite.engine.{module}"), registry)
        if value not in known:
            raise UserError(f"unknown {flag} {value!r}; choose one of {', '.join(known)}")
    for flag, value in (("--block-size", block_size), ("--kv-cache-mb", kv_cache_mb),
                        ("--max-num-batched-tokens", max_num_batched_tokens), ("--max-num-seqs", max_num_seqs)):
        if value < 1:
            raise UserError(f"{flag} must be >= 1, got {value}")
    _check_port(host, port)
    from papersuite.models import resolve

    if resolve(model).kind != "causal-lm":  # an unknown name fails here, before torch loads
        raise UserError(f"{model!r} is not a text-generation model")
    opts = options()
    device = resolve_device(opts.device)
    set_threads(threads)
    seed_everything(opts.seed)

    from papersuite.engine.engine import LLMEngine
    from papersuite.engine.server import serve

    try:
        engine = LLMEngine(model, device, attention=attention, kv_policy=kv_policy, scheduler=scheduler,
                           block_size=block_size, num_blocks=num_blocks, kv_cache_bytes=kv_cache_mb * 2**20,
                           max_num_batched_tokens=max_num_batched_tokens, max_num_seqs=max_num_seqs,
                           max_model_len=max_model_len, enable_prefix_caching=not no_prefix_caching, seed=opts.seed)
    except ValueError as e:
        raise UserError(str(e)) from None
    info(f"serving {engine.model_name} on http://{host}:{port}/v1 ({engine.block_manager.num_blocks} KV blocks "
         f"of {block_size} tokens, attention={attention}, kv-policy={kv_policy}, scheduler={scheduler})")
    serve(engine, host=host, port=port, api_key=api_key, model_name=served_model_name)
