"""Cluster experiments: one trace, several policies, on simulated or real decode instances.

Policies: `rr` and `least-kv` place once and never move; `llumnix` places by least KV and
migrates on current load; `prompt-only`, `ares` and `oracle` place and migrate on current plus
predicted load, fed respectively by the prompt-only predictor's errors, ARES's errors (the
measured error model) and the truth.
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from ares.errormodel import ErrorModel, SimulatedPredictions
from ares.rebalancer import POLICIES, RebalanceConfig, Rebalancer, predictive_placement
from papersuite import replay as rp
from papersuite import traces
from papersuite.errors import UserError

TRACE_FILES = {
    "azure-conv": "azure_llm_2023/AzureLLMInferenceTrace_conv.csv",
    "azure-code": "azure_llm_2023/AzureLLMInferenceTrace_code.csv",
    "mooncake-conv": "mooncake_fast25/conversation_trace.jsonl",
    "mooncake-synth": "mooncake_fast25/synthetic_trace.jsonl",
    "sharegpt": "length_stats/sharegpt_8k_filtered_stats_llama2_tokenizer.csv",
    "arxiv": "length_stats/arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv",
}
HEAVY_TAIL = "heavy-tail"  # azure-conv arrivals with log-normal heavy-tailed outputs (long-CoT-like)
ERROR_MODEL = Path(__file__).resolve().parent / "data" / "error_model.json"


def traces_dir() -> Path:
    env = os.environ.get("PAPERSUITE_TRACES")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent.parent
    for cand in (here.parent / "shared" / "data" / "traces", Path.cwd().parent / "shared" / "data" / "traces"):
        if cand.exists():
            return cand
    return here.parent / "shared" / "data" / "traces"


def load_trace(name: str, n: int | None = None, skip: int = 0, seed: int = 0) -> list[traces.TraceRequest]:
    """A named trace (or a file path); `heavy-tail` is azure-conv with log-normal outputs."""
    if name == HEAVY_TAIL:
        base = load_trace("azure-conv", n, skip, seed)
        rng = np.random.default_rng(seed)
        # median ~ the trace's, sigma 1.2: a few requests run 10-30x longer (stated transform)
        outs = np.exp(rng.normal(np.log(150), 1.2, size=len(base))).round().astype(int).clip(4, 8000)
        return [replace(r, max_tokens=int(o)) for r, o in zip(base, outs)]
    if name in TRACE_FILES:
        path = traces_dir() / TRACE_FILES[name]
        if not path.exists():
            raise UserError(f"trace {name!r} not found at {path}; set PAPERSUITE_TRACES to the traces folder")
    else:
        path = Path(name)
        if not path.exists():
            raise UserError(f"unknown trace {name!r}: not a file, and not one of "
                            f"{', '.join([*TRACE_FILES, HEAVY_TAIL])}")
    reqs = traces.read_trace(path, limit=(skip + n) if n else None)[skip:]
    if reqs and reqs[-1].arrival == reqs[0].arrival:  # length statistics: Poisson arrivals at 1/s
        reqs = traces.with_arrivals(reqs, traces.poisson_arrivals(len(reqs), 1.0, seed))
    return reqs


def fit_to_instances(reqs, kv_tokens: int, prompt_scale: float, output_scale: float, max_output: int):
    """Scale lengths for a small model and clip so a request fits one instance's KV."""
    scaled = traces.scale_lengths(reqs, prompt_scale, output_scale, max_output=max_output)
    limit = kv_tokens // 2
    return [replace(r, prompt_tokens=min(r.prompt_tokens, max(1, limit - r.max_tokens)),
                    max_tokens=min(r.max_tokens, limit - 1)) for r in scaled]


def check_policies(names: list[str]) -> list[str]:
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise UserError(f"unknown policy {', '.join(unknown)}; choose from {', '.join(POLICIES)}")
    return names


def simulate_policy(policy: str, reqs, *, instances: int, kv_tokens: int, cost_model, error_models: dict,
                    block_size: int = 16, max_batched: int = 512, seed: int = 0, k: int = 4,
                    config: RebalanceConfig | None = None):
    """One replay of `reqs` on `instances` simulated decode instances under `policy`."""
    if instances < 1:
        raise UserError(f"--instances must be >= 1, got {instances}")
    num_blocks = kv_tokens // block_size
    insts = [rp.SimInstance(cost_model, num_blocks, block_size, max_batched, seed=seed + i) for i in range(instances)]
    cfg = config or RebalanceConfig()
    rebalancer = None
    on_step = None
    if policy == "rr":
        placement = "rr"
    elif policy == "least-kv":
        placement = "least-kv"
    elif policy == "llumnix":
        placement, rebalancer = "least-kv", Rebalancer(cfg, predictive=False)
    else:
        placement, rebalancer = predictive_placement(cfg), Rebalancer(cfg)
        model = None if policy == "oracle" else error_models[policy]
        on_step = SimulatedPredictions(insts, model, k=k, seed=seed)
    return rp.replay(reqs, insts, placement=placement, rebalancer=rebalancer, on_step=on_step, seed=seed,
                     block_tokens=max(1, 512 // 8))


def load_error_models(policies: list[str], path: Path = ERROR_MODEL) -> dict:
    need = {"ares": "ares", "prompt-only": "prompt-minilm"}
    return {p: ErrorModel.load(path, need[p]) for p in policies if p in need}


ENGINE_POLICIES = ("fcfs", "prompt-only", "ares", "oracle")


def simulate_engine_policy(policy: str, reqs, *, kv_tokens: int, cost_model, error_models: dict,
                           block_size: int = 16, max_batched: int = 512, seed: int = 0, k: int = 4):
    """One memory-tight instance: FCFS with recompute preemption vs the prediction-aware policy."""
    from ares.policy import AresSchedulingPolicy

    if policy not in ENGINE_POLICIES:
        raise UserError(f"unknown engine policy {policy!r}; choose from {', '.join(ENGINE_POLICIES)}")
    num_blocks = kv_tokens // block_size
    sched = "fcfs" if policy == "fcfs" else AresSchedulingPolicy(num_blocks * block_size)
    inst = rp.SimInstance(cost_model, num_blocks, block_size, max_batched, scheduler=sched, seed=seed)
    on_step = None
    if policy != "fcfs":
        sched.attach(inst.scheduler)
        on_step = SimulatedPredictions([inst], None if policy == "oracle" else error_models[policy], k=k, seed=seed)
    return rp.replay(reqs, [inst], on_step=on_step, seed=seed, block_tokens=max(1, 512 // 8))
