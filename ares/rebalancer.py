"""Decode rebalancing across instances on current plus predicted load (ARES, notes section 3).

For instance i with KV capacity cap_i (tokens) and running set R_i:
  C_i = sum (prompt + generated)                      (KV held now)
  P_i = sum (prompt + generated + min(r_hat, H))      (predicted peak over a horizon H)
  W_i = a * C_i / cap_i + (1 - a) * P_i / cap_i
Every call (the replay loop calls every Δ cluster steps) the most loaded instance gives its most
beneficial request to the instance that ends up least loaded, when the imbalance exceeds 1 + θ or
the source's predicted peak exceeds its capacity. Requests predicted to finish within k_min
tokens, or moved within the cooldown, stay put. `llumnix` is the same loop on current load only
(a = 1); `oracle` feeds true remaining lengths; `prompt-only` the prompt-level predictor's.
"""
from __future__ import annotations

from dataclasses import dataclass

POLICIES = ("rr", "least-kv", "llumnix", "prompt-only", "ares", "oracle")
MIGRATING = ("llumnix", "prompt-only", "ares", "oracle")


@dataclass(frozen=True)
class RebalanceConfig:
    a: float = 0.5
    horizon: int = 256
    theta: float = 0.2
    k_min: int = 32
    cooldown: int = 64  # rebalancer calls between two moves of one request
    min_gap: float = 0.1  # W_src - min W must exceed this share of capacity (a copy costs something)
    default_remaining: float = 128.0  # before a request's first prediction (the training median)


def remaining(seq, cfg: RebalanceConfig) -> float:
    return float(seq.annotations.get("r_hat", cfg.default_remaining))


def _decoding(inst):
    return [s for s in inst.scheduler.running if s.num_computed_tokens == s.num_tokens - 1]


def totals(inst, cfg: RebalanceConfig) -> tuple[float, float, float]:
    """(C, P, cap) of one instance: KV tokens held now, predicted peak, capacity in tokens."""
    seqs = inst.scheduler.running + inst.scheduler.waiting
    C = float(sum(s.num_tokens for s in seqs))
    P = C + sum(min(remaining(s, cfg), cfg.horizon) for s in seqs)
    bm = inst.block_manager
    return C, P, float(max(bm.num_blocks * bm.block_size, 1))


def scores(instances, cfg: RebalanceConfig, extra: dict[int, tuple[float, float]] | None = None) -> list[float]:
    """W_i for each instance; `extra[i] = (dC, dP)` adds a hypothetical request's load."""
    out = []
    for i, inst in enumerate(instances):
        C, P, cap = totals(inst, cfg)
        if extra and i in extra:
            C, P = C + extra[i][0], P + extra[i][1]
        out.append(cfg.a * C / cap + (1 - cfg.a) * P / cap)
    return out


class Rebalancer:
    """The replay loop's rebalancer; `predictive=False` gives Llumnix (current load only)."""

    def __init__(self, config: RebalanceConfig | None = None, predictive: bool = True) -> None:
        cfg = config or RebalanceConfig()
        self.cfg = cfg if predictive else RebalanceConfig(**{**cfg.__dict__, "a": 1.0})
        self.predictive = predictive
        self.calls = 0

    def __call__(self, instances, clocks) -> list[tuple]:
        self.calls += 1
        if len(instances) < 2:
            return []
        cfg = self.cfg
        W = scores(instances, cfg)
        mean = sum(W) / len(W)
        src = max(range(len(W)), key=lambda i: W[i])
        _, P_src, cap_src = totals(instances[src], cfg)
        over = self.predictive and P_src > cap_src
        imbalanced = W[src] / mean > 1 + cfg.theta and W[src] - min(W) > cfg.min_gap if mean > 0 else False
        if not (imbalanced or over):
            return []
        candidates = sorted(_decoding(instances[src]), key=lambda s: -remaining(s, cfg))
        for seq in candidates:
            r = remaining(seq, cfg)
            if self.predictive and r < cfg.k_min:
                continue
            if self.calls - seq.annotations.get("moved_at", -10**9) < cfg.cooldown:
                continue
            dC, dP = seq.num_tokens, seq.num_tokens + min(r, cfg.horizon)
            best = None
            for dst in range(len(instances)):
                if dst == src:
                    continue
                after = scores(instances, cfg, {src: (-dC, -dP), dst: (dC, dP)})
                if after[dst] < after[src] and (best is None or after[dst] < best[0]):
                    best = (after[dst], dst)
            if best is not None:
                seq.annotations["moved_at"] = self.calls
                return [(seq, src, best[1])]
        return []


def predictive_placement(config: RebalanceConfig | None = None):
    """Place an arriving request where W (with its prompt and the median remaining) stays lowest."""
    cfg = config or RebalanceConfig()

    def place(req, instances) -> int:
        dC = req.prompt_tokens
        dP = dC + min(cfg.default_remaining, cfg.horizon)
        return min(range(len(instances)), key=lambda i: (scores(instances, cfg, {i: (dC, dP)})[i], i))

    return place
