"""Training workloads whose operator sequence can change between steps.

A workload owns a model, its "layers" (the modules a stage is named after), the text it trains on
and the seeded changes that make eager-mode training dynamic: MoE routing (experts without tokens
are skipped), LayerDrop, a sequence-length change at a given step and layers unfrozen at a step.
Every random choice comes from a generator seeded by (seed, step), so a retried step and every
memory method see exactly the same batches and the same dropped layers.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from papersuite.errors import UserError

MODELS = ("gpt", "moe", "smollm")


@dataclass(frozen=True)
class WorkloadConfig:
    """Everything that defines the training job (hyperparameters only; nothing learned)."""

    model: str = "gpt"
    d_model: int = 256
    layers: int = 4
    heads: int = 4
    seq_len: int = 128
    batch: int = 8
    vocab: int = 256
    experts: int = 4
    top_k: int = 1
    layerdrop: float = 0.0
    seq_len_at: tuple[int, int] | None = None
    unfreeze_at: int | None = None
    data: str | None = None
    lr: float = 1e-3
    seed: int = 0
    dtype: str = "float32"

    def as_dict(self) -> dict:
        return asdict(self)


def load_text(path: str | None) -> str:
    """Plain text or JSONL with a `text` field; default: CPython's bundled documentation text."""
    if path is None:
        from pydoc_data.topics import topics

        return "\n".join(topics[k] for k in sorted(topics))
    from papersuite.io import iter_jsonl, open_text

    is_jsonl = str(path).endswith(".jsonl")
    if is_jsonl:
        parts = []
        for i, rec in enumerate(iter_jsonl(path), 1):
            if not isinstance(rec.get("text"), str):
                raise UserError(f"no string field 'text'", where=f"{path}:{i}")
            parts.append(rec["text"])
        text = "\n".join(parts)
    else:
        try:
            with open_text(path) as fh:
                text = fh.read()
        except UnicodeDecodeError as e:
            raise UserError(f"not UTF-8 text ({e.reason})", where=str(path)) from None
    if len(text) < 64:
        raise UserError(f"only {len(text)} characters of text; need at least 64", where=str(path))
    return text


# -- the package's own models ------------------------------------------------------------------


class Attention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.fc = nn.Linear(d, 4 * d)
        self.out = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.gelu(self.fc(x)))


class MoE(nn.Module):
    """Top-k router over MLP experts; an expert that receives no token is not run at all."""

    def __init__(self, d: int, experts: int, top_k: int) -> None:
        super().__init__()
        self.top_k = top_k
        self.router = nn.Linear(d, experts)
        self.experts = nn.ModuleList(MLP(d) for _ in range(experts))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        gates = F.softmax(self.router(flat), dim=-1)
        weight, chosen = gates.topk(self.top_k, dim=-1)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            rows, slot = (chosen == e).nonzero(as_tuple=True)
            if rows.numel() == 0:
                continue  # the operator sequence changes: this expert's ops vanish this step
            y = expert(flat[rows]) * weight[rows, slot].unsqueeze(-1)
            out = out.index_add(0, rows, y)
        return out.view(shape)


class Block(nn.Module):
    def __init__(self, d: int, heads: int, moe: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = Attention(d, heads)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = MoE(d, *moe) if moe else MLP(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """GPT-2-style decoder; `skip` (a set of block indices) implements LayerDrop from outside."""

    def __init__(self, vocab: int, d: int, layers: int, heads: int, max_len: int,
                 moe: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(max_len, d)
        self.blocks = nn.ModuleList(Block(d, heads, moe) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.skip: set[int] = set()

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.tok(idx) + self.pos(pos)
        for i, blk in enumerate(self.blocks):
            if i not in self.skip:
                x = blk(x)
        return self.head(self.ln(x))


# -- the workload ----------------------------------------------------------------------------


@dataclass
class Workload:
    """Model + optimiser + data + seeded per-step changes, identical for every memory method."""

    config: WorkloadConfig
    model: nn.Module
    layers: list[nn.Module]
    tokens: torch.Tensor
    device: str
    optimizer: torch.optim.Optimizer = field(init=False)
    frozen: list[nn.Parameter] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.config.lr)
        if self.config.unfreeze_at is not None and self.config.unfreeze_at > 0:
            self.frozen = self._bottom_half_params()
            for p in self.frozen:
                p.requires_grad_(False)

    def _bottom_half_params(self) -> list[nn.Parameter]:
        emb = [m for m in self.model.modules() if isinstance(m, nn.Embedding)]
        mods = emb + list(self.layers[: len(self.layers) // 2])
        return [p for m in mods for p in m.parameters()]

    def seq_len(self, step: int) -> int:
        at = self.config.seq_len_at
        return at[1] if at is not None and step >= at[0] else self.config.seq_len

    def _gen(self, step: int, salt: int) -> torch.Generator:
        return torch.Generator().manual_seed((self.config.seed * 1_000_003 + step) * 7 + salt)

    def before_step(self, step: int) -> None:
        """Apply the step's seeded changes: unfreezing and the LayerDrop draw."""
        if self.frozen and step == self.config.unfreeze_at:
            for p in self.frozen:
                p.requires_grad_(True)
            self.frozen = []
        if self.config.layerdrop > 0 and hasattr(self.model, "skip"):
            draw = torch.rand(len(self.layers), generator=self._gen(step, 1))
            self.model.skip = {i for i, r in enumerate(draw.tolist()) if r < self.config.layerdrop}

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.seq_len(step)
        n = self.tokens.numel() - t - 1
        if n <= 0:
            raise UserError(f"the text has {self.tokens.numel()} tokens; need more than seq len {t} + 1")
        starts = torch.randint(0, n, (self.config.batch,), generator=self._gen(step, 0))
        rows = torch.stack([self.tokens[s: s + t + 1] for s in starts.tolist()])
        rows = rows.to(self.device)
        return rows[:, :-1], rows[:, 1:]

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.config.model == "smollm":
            logits = self.model(input_ids=x, use_cache=False).logits
        else:
            logits = self.model(x)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))

    def params_sha256(self) -> str:
        """Hash of the final parameters (state_dict order, raw bytes): equal runs, equal hash."""
        h = hashlib.sha256()
        for name, t in self.model.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return h.hexdigest()


def build(config: WorkloadConfig, device: str = "cpu") -> Workload:
    """Build the workload (model seeded by config.seed); bad sizes are UserErrors."""
    if config.model not in MODELS:
        raise UserError(f"unknown --model {config.model!r}; choose {', '.join(MODELS)}")
    if not 0.0 <= config.layerdrop < 1.0:
        raise UserError(f"--layerdrop {config.layerdrop} must be in [0, 1)")
    if config.batch < 1 or config.seq_len < 2 or config.layers < 1:
        raise UserError("--batch, --layers must be >= 1 and --seq-len >= 2")
    torch.manual_seed(config.seed)
    text = load_text(config.data)
    max_len = max(config.seq_len, config.seq_len_at[1] if config.seq_len_at else 0)
    if config.model == "smollm":
        from papersuite.models import load_causal_lm

        model, tok = load_causal_lm(device=device, dtype=getattr(torch, config.dtype))
        model.train()
        tokens = torch.tensor(tok(text[:400_000])["input_ids"], dtype=torch.long)
        layers = list(model.model.layers)
    else:
        if config.d_model % config.heads:
            raise UserError(f"--d-model {config.d_model} is not divisible by --heads {config.heads}")
        moe = (config.experts, config.top_k) if config.model == "moe" else None
        model = GPT(config.vocab, config.d_model, config.layers, config.heads, max_len, moe)
        model = model.to(device=device, dtype=getattr(torch, config.dtype))
        tokens = torch.tensor(list(text.encode("utf-8")), dtype=torch.long) % config.vocab
        layers = list(model.blocks)
    return Workload(config, model, layers, tokens, device)
