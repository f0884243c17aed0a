"""A tiny GPT cut into a list of modules: embedding, L transformer blocks, head.

Module i is built from its own seed, so any rank can construct exactly the module it is assigned
and a re-planned layout or a spare starts from the same initial weights as the reference.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class GPTConfig:
    layers: int = 8
    d_model: int = 128
    heads: int = 4
    seq_len: int = 64
    vocab: int = 256
    dtype: str = "float32"

    @property
    def n_modules(self) -> int:
        """Embedding + blocks + head."""
        return self.layers + 2

    def torch_dtype(self) -> torch.dtype:
        return {"float32": torch.float32, "float64": torch.float64}[self.dtype]

    def to_dict(self) -> dict:
        return asdict(self)


class Embedding(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.tok = nn.Embedding(cfg.vocab, cfg.d_model)
        self.pos = nn.Embedding(cfg.seq_len, cfg.d_model)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        return self.tok(idx) + self.pos(pos)


class Block(nn.Module):
    """Pre-norm causal self-attention + MLP, dropout 0 so runs are deterministic."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.fc = nn.Linear(cfg.d_model, 4 * cfg.d_model)
        self.out = nn.Linear(4 * cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class Head(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(cfg.d_model)
        self.lm = nn.Linear(cfg.d_model, cfg.vocab, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lm(self.ln(x))


def build_module(cfg: GPTConfig, index: int, seed: int) -> nn.Module:
    """Module `index` (0 = embedding, 1..L = blocks, L+1 = head), initialised from (seed, index)."""
    if not 0 <= index < cfg.n_modules:
        raise ValueError(f"module {index} outside 0..{cfg.n_modules - 1}")
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed * 1009 + index)
    try:
        if index == 0:
            mod: nn.Module = Embedding(cfg)
        elif index == cfg.n_modules - 1:
            mod = Head(cfg)
        else:
            mod = Block(cfg)
    finally:
        torch.random.set_rng_state(gen_state)
    return mod.to(cfg.torch_dtype())


def sample_loss_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over samples of each sample's mean token cross-entropy (the unit every rank sums)."""
    per_tok = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    return per_tok.view(targets.shape).mean(dim=1).sum()


class Adam:
    """Plain Adam over named tensors; state is (param, m, v) per tensor plus a step count.

    Hand-written so one module's optimizer state packs into flat tensors for a state transfer
    and a checkpoint, with no optimizer-internal indexing to remap.
    """

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.lr, self.betas, self.eps = lr, betas, eps

    @torch.no_grad()
    def step(self, params: list[torch.Tensor], m: list[torch.Tensor], v: list[torch.Tensor], t: int) -> None:
        b1, b2 = self.betas
        for p, mi, vi in zip(params, m, v):
            g = p.grad
            mi.mul_(b1).add_(g, alpha=1 - b1)
            vi.mul_(b2).addcmul_(g, g, value=1 - b2)
            mhat = mi / (1 - b1 ** t)
            vhat = vi / (1 - b2 ** t)
            p.sub_(self.lr * mhat / (vhat.sqrt() + self.eps))
