"""`papersuite models list | info | generate`: the embedded and local models."""
from __future__ import annotations

import json
import sys

import typer

from papersuite.errors import UserError

app = typer.Typer(help="Embedded and local models: list, inspect, quick generation.", no_args_is_help=True)


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n}"


def _describe(name: str) -> dict:
    from papersuite.models import resolve

    src = resolve(name)
    return {"name": src.name, "kind": src.kind, "path": str(src.path), "format": "gguf" if src.is_gguf else "hf",
            "size_bytes": src.size_bytes(), "cached": src.is_cached,
            "cache_dir": str(src.cache_dir) if src.is_gguf else None,
            "description": src.spec.description if src.spec else "local model",
            "install": src.spec.pip if src.spec else None}


@app.command("list")
def list_models(as_json: bool = typer.Option(False, "--json", help="JSON lines on stdout.")) -> None:
    """List the registered models: name, source, size on disk, cached or not."""
    from papersuite.models import REGISTRY
    from papersuite.progress import table

    rows = []
    for name, spec in REGISTRY.items():
        try:
            d = _describe(name)
            rows.append({"name": name, "kind": d["kind"], "source": spec.package, "size": _human(d["size_bytes"]),
                         "cached": "yes" if d["cached"] else "no", "installed": True})
        except UserError:
            rows.append({"name": name, "kind": spec.kind, "source": spec.package, "size": "-",
                         "cached": "-", "installed": False})
    if as_json:
        for r in rows:
            print(json.dumps(r))
    else:
        table(rows, ["name", "kind", "source", "size", "cached"], title="models")
        if not sys.stderr.isatty():
            for r in rows:
                print(f"{r['name']}\t{r['kind']}\t{r['source']}\t{r['size']}\tcached={r['cached']}")


@app.command("info")
def info(name: str = typer.Argument(..., help="Registry name, local HF folder, or .gguf path.")) -> None:
    """Show where a model lives and whether its fast cache exists (JSON on stdout)."""
    d = _describe(name)
    if d["kind"] == "causal-lm" and (not d["format"] == "gguf" or d["cached"]):
        from papersuite.models import hf_folder, resolve

        cfg = json.loads((hf_folder(resolve(name)) / "config.json").read_text())
        d["config"] = {k: cfg.get(k) for k in ("model_type", "hidden_size", "num_hidden_layers",
                                              "num_attention_heads", "num_key_value_heads", "vocab_size",
                                              "max_position_embeddings")}
    print(json.dumps(d, indent=2))


@app.command("generate")
def generate(name: str = typer.Argument("smollm2-135m-instruct", help="Model name or path."),
             prompt: str = typer.Argument(..., help="The prompt; '-' reads it from stdin."),
             max_tokens: int = typer.Option(128, "--max-tokens", min=1, help="Tokens to generate at most."),
             temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="0 = greedy."),
             chat: bool = typer.Option(True, "--chat/--raw", help="Wrap the prompt in the chat template."),
             as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout.")) -> None:
    """Quick generation with transformers (greedy by default): the answer, token counts, tokens/s."""
    from papersuite.context import options
    from papersuite.device import resolve_device, seed_everything
    from papersuite.llm import SamplingParams, TransformersGenerator

    if prompt == "-":
        prompt = sys.stdin.read()
    opts = options()
    seed_everything(opts.seed)
    gen = TransformersGenerator(name, device=resolve_device(opts.device))
    p = [{"role": "user", "content": prompt}] if chat else prompt
    out = gen.generate([p], SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=opts.seed))[0]
    if as_json:
        print(json.dumps({"model": name, "text": out.text, "prompt_tokens": out.prompt_tokens,
                          "completion_tokens": out.completion_tokens, "latency_s": round(out.latency_s, 4),
                          "tokens_per_s": round(out.tokens_per_s, 2), "finish_reason": out.finish_reason}))
    else:
        print(out.text.strip())
        if not opts.quiet:
            print(f"[{out.prompt_tokens} prompt + {out.completion_tokens} completion tokens, "
                  f"{out.latency_s:.2f}s, {out.tokens_per_s:.1f} tokens/s]", file=sys.stderr)
