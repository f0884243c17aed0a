"""Records for length prediction: hidden states of the serving model, labelled with remaining length.

A `HiddenStateRecorder` (an engine `StepHook`) stores, for every request, the final-norm hidden
state of the newest token at prompt end (t = 0) and every `every` generated tokens, plus the running
mean of the hidden states generated so far. When a request ends with L generated tokens (EOS
counted; L = cap when capped) each of its records gets the label r = L - t.

On disk (a folder): `shard-NNNNN.safetensors` (h, hmean, t, r, req), `requests.jsonl` (one line a
finished request) and `meta.json` (model, hidden size, every, cap, sampling). Shards are written
after each batch of requests, so an interrupted collect keeps every finished request and a rerun
resumes where it stopped.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from papersuite.errors import UserError


class HiddenStateRecorder:
    """StepHook: records (h_t, mean(h_1..h_t), t) of each sampling row every `every` tokens."""

    def __init__(self, every: int = 4) -> None:
        if every < 1:
            raise UserError(f"--every must be >= 1, got {every}")
        self.every = every
        self.records: dict[str, list[tuple[int, torch.Tensor, torch.Tensor]]] = {}
        self._sum: dict[str, torch.Tensor] = {}
        self._count: dict[str, int] = {}
        self._seen: dict[str, set[int]] = {}

    def __call__(self, batch, hidden_states: torch.Tensor) -> None:
        for i, (seq, flag) in enumerate(zip(batch.seqs, batch.samples)):
            if not flag:
                continue
            rid, t = seq.request_id, seq.num_output_tokens  # tokens generated before this one
            h = hidden_states[i].detach().float().cpu()
            seen = self._seen.setdefault(rid, set())
            if t in seen:  # a recomputation after preemption revisits positions
                continue
            seen.add(t)
            if t > 0:  # h_1..h_t: states after each generated token
                self._sum[rid] = self._sum.get(rid, torch.zeros_like(h)) + h
                self._count[rid] = self._count.get(rid, 0) + 1
            if t % self.every == 0:
                mean = self._sum[rid] / self._count[rid] if t > 0 else h
                self.records.setdefault(rid, []).append((t, h.clone(), mean.clone()))

    def pop(self, request_id: str) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
        self._sum.pop(request_id, None)
        self._count.pop(request_id, None)
        self._seen.pop(request_id, None)
        return self.records.pop(request_id, [])


@dataclass
class Records:
    """All records of a data folder, as arrays; `req` indexes `requests`."""

    h: np.ndarray  # [N, d]
    hmean: np.ndarray  # [N, d]
    t: np.ndarray  # [N]
    r: np.ndarray  # [N] remaining tokens
    req: np.ndarray  # [N]
    requests: list[dict]
    meta: dict

    @property
    def hidden_size(self) -> int:
        return int(self.h.shape[1])

    def subset(self, mask: np.ndarray) -> "Records":
        return Records(self.h[mask], self.hmean[mask], self.t[mask], self.r[mask], self.req[mask], self.requests,
                       self.meta)

    @property
    def prompts(self) -> list[str]:
        return [self.requests[i]["prompt"] for i in self.req]

    @property
    def lengths(self) -> np.ndarray:
        return self.t + self.r


def collect(out_dir: str | Path, prompts: Sequence[str], *, model: str = "smollm2-135m-instruct",
            max_tokens: int = 512, every: int = 4, temperature: float = 0.7, top_p: float = 0.9,
            seed: int = 0, batch_size: int = 16, device: str = "cpu", engine=None,
            on_batch: Callable[[int, int], None] | None = None, deadline_s: float | None = None,
            store_dtype: str = "float32", dtype: str | None = None, **engine_kwargs) -> Path:
    """Generate with the engine, record hidden states, write shards; resumes a partial folder.

    `deadline_s` stops admitting new requests after that many seconds (the running ones finish),
    so a time-boxed run ends with whole requests; a rerun continues. `store_dtype="float16"`
    halves the shards (hidden states are cast back to float32 on load).
    """
    from safetensors.torch import save_file

    from papersuite.engine.engine import LLMEngine
    from papersuite.io import atomic_path, atomic_write
    from papersuite.llm import SamplingParams

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta_path, req_path = out / "meta.json", out / "requests.jsonl"
    recorder = HiddenStateRecorder(every)
    engine = engine or LLMEngine(model, device=device, step_hooks=[recorder], seed=seed, dtype=dtype,
                                 max_num_seqs=max(batch_size, 1), **engine_kwargs)
    if engine is not None and recorder not in engine.runner.hooks:
        engine.runner.hooks = [*engine.runner.hooks, recorder]
    meta = {"model": engine.model_name, "hidden_size": int(engine.model.config.hidden_size), "every": every,
            "cap": max_tokens, "temperature": temperature, "top_p": top_p, "seed": seed,
            "hidden": "final-norm state of the newest token (the one whose logits pick the next token)"}
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        keys = ("model", "hidden_size", "every", "cap", "temperature", "top_p", "seed")
        diff = [k for k in keys if old.get(k) != meta[k]]
        if diff:
            raise UserError(f"{out} holds records collected with other settings ({', '.join(diff)}); "
                            f"use another folder")
    else:
        with atomic_write(meta_path) as fh:
            json.dump(meta, fh, indent=2)
    done = {r["id"] for r in _read_requests(req_path)} if req_path.exists() else set()
    todo = [(f"p{i:05d}", p) for i, p in enumerate(prompts) if f"p{i:05d}" not in done]
    shard = len(list(out.glob("shard-*.safetensors")))
    t_end = time.monotonic() + deadline_s if deadline_s else None
    store = getattr(torch, store_dtype)
    pending, running, finished, completed = list(todo), [], [], 0

    def flush() -> None:
        nonlocal shard, finished
        if not finished:
            return
        hs, hms, ts, rs, reqs, lines = [], [], [], [], [], []
        for rid, prompt, seq in finished:
            L = seq.num_output_tokens  # EOS counted: it is a decode step too
            recs = recorder.pop(rid)
            for t, h, hm in recs:
                hs.append(h)
                hms.append(hm)
                ts.append(t)
                rs.append(L - t)
                reqs.append(int(rid[1:]))
            lines.append({"id": rid, "prompt": prompt, "output_tokens": L, "capped": seq.finish_reason == "length",
                          "prompt_tokens": seq.num_prompt_tokens, "text": seq.text, "records": len(recs),
                          "token_ids": seq.token_ids})
        tensors = {"h": torch.stack(hs).to(store), "hmean": torch.stack(hms).to(store),
                   "t": torch.tensor(ts, dtype=torch.int64), "r": torch.tensor(rs, dtype=torch.int64),
                   "req": torch.tensor(reqs, dtype=torch.int64)}
        with atomic_path(out / f"shard-{shard:05d}.safetensors") as tmp:
            save_file(tensors, str(tmp))
        with open(req_path, "a", encoding="utf-8") as fh:  # after the shard: a request is done once listed
            for line in lines:
                fh.write(json.dumps(line) + "\n")
            fh.flush()
        shard += 1
        finished = []

    # continuous batching: keep `batch_size` requests running, write a shard per `batch_size` finished
    while pending or running:
        while pending and len(running) < batch_size and not (t_end and time.monotonic() > t_end):
            rid, prompt = pending.pop(0)
            params = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                                    seed=(seed * 1_000_003 + int(rid[1:])) % 2**31)
            seq = engine.make_sequence([{"role": "user", "content": prompt}], params, request_id=rid)
            running.append((rid, prompt, engine.add_sequence(seq)))
        if not running:
            break
        engine.step()
        for item in [x for x in running if x[2].is_finished]:
            running.remove(item)
            finished.append(item)
            completed += 1
            if on_batch:
                on_batch(completed, len(todo))
        if len(finished) >= batch_size:
            flush()
    flush()
    return out


def _read_requests(path: Path) -> list[dict]:
    from papersuite.io import read_jsonl

    return read_jsonl(path)


def load_records(data_dir: str | Path) -> Records:
    """Read a collected folder; shards whose requests are not listed (an interrupted batch) are skipped."""
    from safetensors.torch import load_file

    d = Path(data_dir)
    if not d.is_dir():
        raise UserError(f"{d}: no such data folder (run `papersuite serve ares collect -o {d}` first)")
    if not (d / "meta.json").exists() or not (d / "requests.jsonl").exists():
        raise UserError(f"{d}: not an ARES data folder (meta.json and requests.jsonl missing)")
    meta = json.loads((d / "meta.json").read_text())
    listed = _read_requests(d / "requests.jsonl")
    if not listed:
        raise UserError(f"{d}: the data folder has no finished requests")
    index = {int(r["id"][1:]): r for r in listed}
    parts = {k: [] for k in ("h", "hmean", "t", "r", "req")}
    for shard in sorted(d.glob("shard-*.safetensors")):
        tensors = load_file(str(shard))
        keep = torch.tensor([int(q) in index for q in tensors["req"]], dtype=torch.bool)
        for k in parts:
            parts[k].append(tensors[k][keep].numpy())
    if not parts["h"]:
        raise UserError(f"{d}: no record shards")
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    ids = sorted(index)
    pos = {q: i for i, q in enumerate(ids)}
    requests = [index[q] for q in ids]
    req = np.array([pos[int(q)] for q in arrays["req"]], dtype=np.int64)
    return Records(arrays["h"].astype(np.float32), arrays["hmean"].astype(np.float32), arrays["t"],
                   arrays["r"], req, requests, meta)
