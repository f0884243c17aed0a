"""Online traces and offline batches for co-serving replays, with lengths scaled for a small model.

Online: Azure LLM 2023 conv/code arrivals (or a workload/trace file), lengths scaled (prompts / 8,
outputs / 4, clipped), re-timed to a target fraction of the engine's capacity (from the cost model).
Offline: the Mooncake synthetic trace as a batch whose prompts are token ids (each 512-token hash
id becomes a fixed seeded block of `block_tokens` tokens: equal id, equal tokens), or a
documents x questions batch (few long shared documents, many questions each, interleaved), or
any OpenAI batch file.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from papersuite.errors import UserError
from papersuite.traces import TraceRequest

from echo.jobs import BatchJob

TRACES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "traces"
ONLINE_TRACES = {"azure-conv": "azure_llm_2023/AzureLLMInferenceTrace_conv.csv",
                 "azure-code": "azure_llm_2023/AzureLLMInferenceTrace_code.csv"}
OFFLINE_SETS = ("mooncake-synthetic", "docs-qa")


def traces_dir() -> Path:
    import os

    return Path(os.environ.get("PAPERSUITE_TRACES", TRACES))


def service_seconds(cost_model, prompt: int, output: int, batch: int = 8) -> float:
    """Engine seconds one request costs at a moderate batch: its prefill + its share of decode steps."""
    a, (b, c, d) = cost_model.intercept_, cost_model.coef_
    return a * (1 + output / batch) + b * prompt + output * (c + d * (prompt + output / 2))


def online_requests(name: str, cost_model, load: float, duration: float, seed: int = 0, skip: int = 0,
                    prompt_scale: float = 16, output_scale: float = 8, max_prompt: int = 256,
                    max_output: int = 64) -> list[TraceRequest]:
    """Online requests arriving within `duration` s at `load` x capacity (shape of the trace kept)."""
    from papersuite import traces as tr

    if not 0 < load < 10:
        raise UserError(f"--online-load must be in (0, 10), got {load}")
    if name in ONLINE_TRACES:
        path = traces_dir() / ONLINE_TRACES[name]
        if not path.exists():
            raise UserError(f"{path}: trace not found (set PAPERSUITE_TRACES to the traces folder)")
        reqs = tr.read_trace(path, "azure", limit=skip + 4000)[skip:]
        reqs = tr.scale_lengths(reqs, prompt_scale, output_scale, max_prompt, max_output)
    else:
        if not Path(name).exists():
            raise UserError(f"unknown online trace {name!r}; use {', '.join(ONLINE_TRACES)} or a trace file")
        reqs = tr.read_trace(name)
        if reqs[0].prompt is None:
            reqs = tr.scale_lengths(reqs, prompt_scale, output_scale, max_prompt, max_output)
    if len(reqs) < 2:
        raise UserError(f"{name}: an online trace needs at least 2 requests")
    mean_s = float(np.mean([service_seconds(cost_model, r.prompt_tokens, r.max_tokens) for r in reqs]))
    target = load / mean_s
    if tr.rate(reqs) == float("inf"):
        reqs = tr.with_arrivals(reqs, tr.poisson_arrivals(len(reqs), target, seed))
    else:
        reqs = tr.retime(reqs, target)
    out = [replace(r, id=f"on-{r.id}", ignore_eos=True, tags={"class": "online"})
           for r in reqs if r.arrival < duration]
    if not out:
        raise UserError(f"no online request arrives within --duration {duration}")
    return out


def mooncake_batch(n: int = 400, block_tokens: int = 16, prompt_scale: float = 32, output_scale: float = 4,
                   max_prompt: int = 1024, max_output: int = 64, skip: int = 0, vocab: int = 49152,
                   seed: int = 0) -> list[dict]:
    """Batch input records from the Mooncake synthetic trace; prompts are seeded token blocks."""
    from papersuite import traces as tr
    from papersuite.replay import synthesize_prompt_ids

    path = traces_dir() / "mooncake_fast25" / "synthetic_trace.jsonl"
    if not path.exists():
        raise UserError(f"{path}: trace not found (set PAPERSUITE_TRACES to the traces folder)")
    reqs = tr.read_trace(path, "mooncake", limit=skip + n)[skip:]
    reqs = tr.scale_lengths(reqs, prompt_scale, output_scale, max_prompt, max_output)
    jobs = []
    for r in reqs:
        ids = synthesize_prompt_ids(r, vocab, block_tokens, seed)
        jobs.append({"custom_id": r.id, "url": "/v1/completions",
                     "body": {"prompt": ids, "max_tokens": r.max_tokens, "ignore_eos": True}})
    return jobs


def docs_qa_batch(n_docs: int = 16, questions: int = 24, doc_tokens: int = 384, question_tokens: int = 24,
                  max_output: int = 32, vocab: int = 49152, seed: int = 0) -> list[dict]:
    """Documents x questions: each job = a shared document + its own question, interleaved order."""
    rng = np.random.default_rng([seed, 7])
    docs = [rng.integers(10, vocab, doc_tokens).tolist() for _ in range(n_docs)]
    jobs = []
    for q in range(questions):
        for d in range(n_docs):  # interleaved: doc 0 q0, doc 1 q0, ... so FIFO keeps evicting
            ids = docs[d] + rng.integers(10, vocab, question_tokens).tolist()
            out = int(rng.integers(max(2, max_output // 4), max_output + 1))
            jobs.append({"custom_id": f"doc{d}-q{q}", "url": "/v1/completions",
                         "body": {"prompt": ids, "max_tokens": out, "ignore_eos": True}})
    return jobs


def offline_jobs(spec: str, n: int = 400, seed: int = 0) -> list[BatchJob]:
    """A named offline set or a batch file, as validated `BatchJob`s."""
    from echo.jobs import read_batch

    if spec == "mooncake-synthetic":
        recs = mooncake_batch(n, seed=seed)
    elif spec == "docs-qa":
        recs = docs_qa_batch(seed=seed)
    elif Path(spec).exists():
        return read_batch(spec)
    else:
        raise UserError(f"unknown offline set {spec!r}; use {', '.join(OFFLINE_SETS)} or a batch file")
    return [BatchJob(r["custom_id"], r["url"], r["body"], i + 1) for i, r in enumerate(recs)]


def job_prompt_ids(job: BatchJob, tokenizer=None) -> list[int]:
    """Token ids of a job's prompt: given ids, or text through the tokenizer (chat template for chats)."""
    p = job.prompt
    if isinstance(p, list):
        return list(p)
    if tokenizer is None:
        raise UserError(f"job {job.custom_id!r} has a text prompt; a tokenizer is needed")
    if job.messages is not None:
        if getattr(tokenizer, "chat_template", None):
            ids = tokenizer.apply_chat_template(job.messages, add_generation_prompt=True, tokenize=True)
            return list(ids["input_ids"] if hasattr(ids, "keys") else ids)  # newer transformers: a dict
        p = "\n".join(f"{m['role']}: {m['content']}" for m in job.messages)
    return list(tokenizer(p)["input_ids"])


def offline_requests(jobs: list[BatchJob], prompt_ids: dict[str, list[int]]) -> list[TraceRequest]:
    """The batch as a backlog available at t = 0 (class offline), in file order."""
    return [TraceRequest(j.custom_id, 0.0, len(prompt_ids[j.custom_id]), j.max_tokens,
                         ignore_eos=bool(j.body.get("ignore_eos", False)), tags={"class": "offline"})
            for j in jobs]
