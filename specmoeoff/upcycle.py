"""Sparse upcycling (Komatsuzaki et al., without continued training) of a dense Llama into a MoE.

Each layer's MLP is copied into E experts, expert j's matrices perturbed by
`eps * std(W) * N(0, 1)` (seeded per layer and expert). The router is top-k of E with the
Mixtral convention; its weights are k-means centroids of the MLP inputs seen during a few
calibration generations (realistic routing locality) or N(0, 0.02). With eps = 0 every expert is
the dense MLP and the top-k weights sum to 1, so the MoE computes exactly the dense function.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

CALIBRATION_PROMPTS = (
    "Explain why the sky is blue in two sentences.",
    "Write a short Python function that reverses a string.",
    "List three facts about the Moon.",
    "Summarise the plot of a detective story in one paragraph.",
)


def expert_seed(seed: int, layer: int, expert: int) -> int:
    """A distinct, reproducible generator seed for every (layer, expert)."""
    return (int(seed) * 1_000_003 + layer * 1_009 + expert) % (2**63 - 1)


def perturb(w: Tensor, eps: float, gen: torch.Generator) -> Tensor:
    """`w + eps * std(w) * N(0, 1)` in fp32 (eps = 0 returns an exact copy)."""
    w = w.float()
    if eps == 0:
        return w.clone()
    return w + eps * w.std() * torch.randn(w.shape, generator=gen)


class Upcycler:
    """Hyperparameters of the upcycling; `fit` learns the routers (`routers_`, one `[E, H]` per layer).

    `router`: "kmeans" (centroids of MLP inputs, L2-normalised: cosine routing) or "random".
    """

    def __init__(self, num_experts: int = 8, top_k: int = 2, noise: float = 0.1, router: str = "kmeans",
                 calib_tokens: int = 16, random_state: int = 0) -> None:
        self.num_experts, self.top_k, self.noise = num_experts, top_k, noise
        self.router, self.calib_tokens, self.random_state = router, calib_tokens, random_state

    def _validate(self) -> None:
        if self.num_experts < 1 or not 1 <= self.top_k <= self.num_experts:
            raise ValueError(f"need 1 <= top_k <= num_experts, got top_k={self.top_k}, experts={self.num_experts}")
        if self.noise < 0:
            raise ValueError(f"noise must be >= 0, got {self.noise}")
        if self.router not in ("kmeans", "random"):
            raise ValueError(f"router must be kmeans or random, got {self.router!r}")

    def fit(self, dense_folder: str | Path) -> "Upcycler":
        """Learn the routers. Runs on one thread: float reductions then do not depend on the
        machine's thread count, so the same seed gives the same store byte for byte."""
        self._validate()
        from threadpoolctl import threadpool_limits

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with threadpool_limits(1):
                return self._fit(dense_folder)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, dense_folder: str | Path) -> "Upcycler":
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(dense_folder)
        L, H, E = cfg.num_hidden_layers, cfg.hidden_size, self.num_experts
        if self.router == "random":
            gen = torch.Generator().manual_seed(expert_seed(self.random_state, L, E))
            self.routers_ = [torch.randn(E, H, generator=gen) * 0.02 for _ in range(L)]
            return self
        from sklearn.cluster import KMeans

        inputs = collect_mlp_inputs(dense_folder, self.calib_tokens)
        self.routers_ = []
        for i in range(L):
            x = inputs[i]
            x = x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-6)
            km = KMeans(n_clusters=E, n_init=3, random_state=self.random_state).fit(x)
            c = torch.from_numpy(km.cluster_centers_).float()
            self.routers_.append(c / c.norm(dim=1, keepdim=True).clamp(min=1e-6))
        return self

    def experts(self, layer: int, gate: Tensor, up: Tensor, down: Tensor):
        """Yield `(expert, gate_up [2I, H], down [H, I])` for one layer, fp32."""
        for e in range(self.num_experts):
            gen = torch.Generator().manual_seed(expert_seed(self.random_state, layer, e))
            yield e, torch.cat([perturb(gate, self.noise, gen), perturb(up, self.noise, gen)]), perturb(down, self.noise, gen)


@torch.inference_mode()
def collect_mlp_inputs(dense_folder: str | Path, new_tokens: int) -> list[np.ndarray]:
    """MLP inputs of every layer over a few greedy calibration generations (fp32 numpy per layer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(dense_folder)
    model = AutoModelForCausalLM.from_pretrained(dense_folder, dtype=torch.float32).eval()
    rows: list[list[Tensor]] = [[] for _ in model.model.layers]
    hooks = [layer.mlp.register_forward_pre_hook(lambda m, a, i=i: rows[i].append(a[0].reshape(-1, a[0].shape[-1])))
             for i, layer in enumerate(model.model.layers)]
    try:
        for prompt in CALIBRATION_PROMPTS:
            ids = tok(prompt, return_tensors="pt").input_ids
            model.generate(ids, max_new_tokens=new_tokens, do_sample=False, pad_token_id=tok.eos_token_id)
    finally:
        for h in hooks:
            h.remove()
    return [torch.cat(r).float().numpy() for r in rows]
