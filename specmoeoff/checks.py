"""`check`: the correctness claims, measured on a store (fp32).

- eps0_max_abs_diff: the store's routers with every expert = the dense MLP vs the dense model.
- hf_max_abs_diff: the engine MoE vs transformers' MixtralForCausalLM on an export of the store
  (the first `hf_layers` layers, to keep the check's memory small; same code path).
- greedy_identical: speculative output (k = 1, 3, with the verification backend) vs the
  autoregressive target, token for token.
- verify_attention_max_abs_diff: chunked verification vs SDPA with a bottom-right mask.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from papersuite.engine.model import LlamaModel
from papersuite.engine.moe import MixtralModel, StackedExperts
from specmoeoff.serving import draft_folder
from specmoeoff.speculative import SpeculativeDecoder
from specmoeoff.store import export_hf
from specmoeoff.target import load_target, prefill_logits
from specmoeoff.verify_attention import VerifyAttentionBackend, verify_attend

PROBE = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3717, 411, 3180, 30, 2, 198, 1, 4093, 198,
         1780, 314, 260, 3575, 282, 4649, 47]


def dense_experts(dense: LlamaModel, num_experts: int) -> StackedExperts:
    """Every expert = the dense MLP (what upcycling with eps = 0 produces)."""
    gu = [layer.mlp.gate_up_proj.weight.detach()[None].expand(num_experts, -1, -1) for layer in dense.layers]
    dn = [layer.mlp.down_proj.weight.detach()[None].expand(num_experts, -1, -1) for layer in dense.layers]
    return StackedExperts(gu, dn)


@torch.inference_mode()
def run_checks(store: str | Path, hf_layers: int = 2, tokens: int = 24, tol: float = 1e-4) -> dict:
    store = Path(store)
    cfg = json.loads((store / "config.json").read_text())
    ids = torch.tensor([t % cfg["vocab_size"] for t in PROBE])
    dense = LlamaModel.from_folder(draft_folder(store))
    eps0 = MixtralModel.from_folder(store, provider=dense_experts(dense, cfg["num_local_experts"]),
                                    weights="dense.safetensors")
    a, b = prefill_logits(dense, ids), prefill_logits(eps0, ids)
    eps0_diff = (a - b).abs().max().item()
    eps0_argmax = (a.argmax(-1) == b.argmax(-1)).float().mean().item()
    del eps0

    from transformers import MixtralForCausalLM

    with tempfile.TemporaryDirectory() as tmp:
        export = export_hf(store, tmp, num_layers=hf_layers)
        ref = MixtralForCausalLM.from_pretrained(export, dtype=torch.float32).eval()
        want = ref(ids[None]).logits[0]
        ours = prefill_logits(MixtralModel.from_folder(export), ids)
        hf_diff = (want - ours).abs().max().item()
        del ref

    target = load_target(store)
    prompts = [PROBE[:8], PROBE[10:20]]
    runs = {}
    for k in (0, 1, 3):
        dec = SpeculativeDecoder(target, dense, k=k, num_blocks=64, target_backend=VerifyAttentionBackend())
        runs[k], _ = dec.generate(prompts, max_tokens=tokens)
    greedy = all(runs[k] == runs[0] for k in (1, 3))

    g = torch.Generator().manual_seed(0)
    H, Hkv, D = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    worst = 0.0
    for n in (1, 3, 6, 9):
        L = 300 + n
        q, k, v = torch.randn(n, H, D, generator=g), torch.randn(L, Hkv, D, generator=g), torch.randn(L, Hkv, D, generator=g)
        mask = torch.arange(L)[None, :] <= torch.arange(L - n, L)[:, None]
        ref_o = torch.nn.functional.scaled_dot_product_attention(
            q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), attn_mask=mask, scale=D ** -0.5,
            enable_gqa=True).transpose(0, 1)
        worst = max(worst, (verify_attend(q, k, v, D ** -0.5) - ref_o).abs().max().item())
    ok = eps0_diff <= tol and eps0_argmax == 1.0 and hf_diff <= tol and greedy and worst <= 1e-5
    return {"ok": ok, "eps0_max_abs_diff": eps0_diff, "eps0_argmax_agreement": eps0_argmax,
            "hf_max_abs_diff": hf_diff, "hf_layers": hf_layers, "greedy_identical": greedy,
            "greedy_tokens": tokens * len(prompts), "verify_attention_max_abs_diff": worst}
