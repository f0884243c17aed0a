"""Trace replay on virtual clocks: N serving instances, one event loop, SLO metrics. ARES and Echo.

Each instance keeps its own virtual clock. The loop takes the earliest event: a request arrives
(it is placed on an instance by a placement policy) or the instance with the smallest clock runs
one step, whose duration comes from

- `clock="measured"`: the wall time of a real `LLMEngine.step()` (a real forward pass), or
- `clock="model"`: the fitted step-time cost model applied to the step's scheduled batch.

`SimInstance` is the cost-model runner for cluster scale: the engine's own `Scheduler` and
`BlockManager` (same admission, chunked prefill, preemption and prefix caching), no forward pass,
output lengths taken from the trace. Placement and scheduling policies are plug-ins; papers add
theirs (ARES's rebalancer, Echo's co-serving scheduler).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence as Seq

import numpy as np
import torch

from papersuite.engine.costmodel import StepCostModel, StepFeatures
from papersuite.traces import TraceRequest


@dataclass
class RequestRecord:
    """What happened to one request, in virtual seconds."""

    id: str
    arrival: float
    prompt_tokens: int
    instance: int = -1
    first_token: float | None = None
    finish: float | None = None
    output_tokens: int = 0
    preemptions: int = 0
    cached_tokens: int = 0
    request_class: str = "online"

    @property
    def ttft(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.arrival

    @property
    def tpot(self) -> float | None:
        if self.finish is None or self.first_token is None or self.output_tokens < 2:
            return 0.0 if self.finish is not None else None
        return (self.finish - self.first_token) / (self.output_tokens - 1)


# -- request preparation ------------------------------------------------------------------------

def synthesize_prompt_ids(req: TraceRequest, vocab_size: int, block_tokens: int = 32, seed: int = 0) -> list[int]:
    """Token ids of a trace request's prompt, with its prefix sharing preserved.

    Equal `hash_ids` at equal positions (Mooncake) become equal token blocks of `block_tokens`
    (the trace's 512-token blocks scaled down like the lengths), so the prefix cache sees the
    trace's reuse; requests without hashes get their own random tokens.
    """
    lo = 10  # stay clear of special tokens
    ids: list[int] = []
    for h in req.hash_ids:
        ids.extend(np.random.default_rng([seed, 1, h]).integers(lo, vocab_size, block_tokens).tolist())
        if len(ids) >= req.prompt_tokens:
            break
    if len(ids) < req.prompt_tokens:
        rng = np.random.default_rng([seed, 2, abs(hash(req.id)) % 2**31])
        ids.extend(rng.integers(lo, vocab_size, req.prompt_tokens - len(ids)).tolist())
    return ids[: req.prompt_tokens]


# -- instances ----------------------------------------------------------------------------------

@dataclass
class StepOutcome:
    duration: float
    emitted: list  # sequences that got a token this step
    finished: list  # sequences that finished this step
    features: StepFeatures | None = None
    preempted: int = 0


class Instance(Protocol):
    """One serving instance under replay."""

    def submit(self, seq) -> None: ...

    def step(self) -> StepOutcome: ...

    def has_unfinished(self) -> bool: ...

    def load(self) -> dict: ...


class EngineInstance:
    """A real `LLMEngine`; the step duration is measured or predicted by the cost model."""

    def __init__(self, engine, clock: str = "measured", cost_model: StepCostModel | None = None) -> None:
        if clock not in ("measured", "model"):
            raise ValueError(f"clock must be 'measured' or 'model', got {clock!r}")
        if clock == "model" and cost_model is None:
            raise ValueError("clock='model' needs a cost model")
        self.engine, self.clock, self.cost_model = engine, clock, cost_model
        self._features: list[StepFeatures] = []
        run = engine.runner.run

        def recording_run(batch, _run=run):
            self._features.append(StepFeatures.of(batch))
            return _run(batch)

        engine.runner.run = recording_run

    def make_sequence(self, req: TraceRequest, prompt_ids: list[int], params):
        seq = self.engine.make_sequence(None, params, prompt_token_ids=prompt_ids, request_id=req.id)
        seq.annotations["prompt_text"] = req.prompt or " ".join(str(m["content"]) for m in req.messages or ())
        return seq

    def submit(self, seq) -> None:
        self.engine.add_sequence(seq)

    def step(self) -> StepOutcome:
        self._features.clear()
        before = self.engine.scheduler.num_preemptions
        t0 = time.perf_counter()
        emitted = self.engine.step()
        wall = time.perf_counter() - t0
        feats = self._features[-1] if self._features else None
        duration = wall if self.clock == "measured" or feats is None else self.cost_model.predict_one(feats)
        return StepOutcome(duration, emitted, [s for s in emitted if s.is_finished], feats,
                           self.engine.scheduler.num_preemptions - before)

    def has_unfinished(self) -> bool:
        return self.engine.has_unfinished()

    def load(self) -> dict:
        return _load(self.engine.scheduler, self.engine.block_manager)

    @property
    def scheduler(self):
        return self.engine.scheduler

    @property
    def block_manager(self):
        return self.engine.block_manager

    def export_kv(self, seq) -> list[tuple[torch.Tensor, torch.Tensor]]:
        ids = torch.tensor(seq.block_table, device=self.engine.runner.device)
        return [(k[ids].clone(), v[ids].clone()) for k, v in self.engine.runner.kv_caches]

    def import_kv(self, seq, kv) -> None:
        ids = torch.tensor(seq.block_table, device=self.engine.runner.device)
        for (k, v), (ek, ev) in zip(self.engine.runner.kv_caches, kv):
            k[ids] = ek
            v[ids] = ev

    def kv_bytes_per_token(self) -> int:
        k, _ = self.engine.runner.kv_caches[0]
        per_layer = k[0, 0].numel() * k.element_size() * 2
        return per_layer * len(self.engine.runner.kv_caches)

    def adopt(self, seq) -> None:
        self.engine.requests[seq.request_id] = seq

    def release(self, seq) -> None:
        self.engine.requests.pop(seq.request_id, None)


def _load(sch, bm) -> dict:
    running = sch.running
    return {"running": len(running), "waiting": len(sch.waiting), "kv_usage": bm.usage,
            "tokens": sum(s.num_tokens for s in running + sch.waiting),
            "kv_tokens": sum(s.num_tokens for s in running), "capacity_tokens": bm.num_blocks * bm.block_size}


class SimInstance:
    """The engine's scheduler and block manager with the cost model instead of a forward pass."""

    def __init__(self, cost_model: StepCostModel, num_blocks: int, block_size: int = 16,
                 max_num_batched_tokens: int = 512, max_num_seqs: int = 64, scheduler="fcfs",
                 kv_policy="lru", enable_prefix_caching: bool = True, vocab_size: int = 49152,
                 seed: int = 0, bytes_per_token: int = 30 * 2 * 3 * 64 * 4) -> None:
        from papersuite.engine.kv_cache import BlockManager
        from papersuite.engine.scheduler import Scheduler

        self.cost_model = cost_model
        self.bytes_per_token = bytes_per_token
        self.block_manager = BlockManager(num_blocks, block_size, kv_policy, enable_prefix_caching)
        self.scheduler = Scheduler(self.block_manager, scheduler, max_num_batched_tokens, max_num_seqs)
        self._rng = np.random.default_rng(seed)
        self._vocab = vocab_size

    def make_sequence(self, req: TraceRequest, prompt_ids: list[int], params):
        from papersuite.engine.scheduler import Sequence

        need = self.block_manager.blocks_needed(len(prompt_ids) + params.max_tokens)
        if need > self.block_manager.num_blocks:
            raise ValueError(f"request {req.id} needs {need} KV blocks; the instance has "
                             f"{self.block_manager.num_blocks}")
        return Sequence(prompt_ids, params, request_id=req.id)

    def submit(self, seq) -> None:
        self.scheduler.add(seq)

    def step(self) -> StepOutcome:
        batch = self.scheduler.schedule()
        if batch.is_empty:
            return StepOutcome(0.0, [], [], None, len(batch.preempted))
        feats = StepFeatures.of(batch)
        sampling = [s for s, flag in zip(batch.seqs, batch.samples) if flag]
        self.scheduler.advance(batch)
        finished = []
        for seq in sampling:  # trace-forced output lengths: no EOS, a random token each step
            seq.token_ids.append(int(self._rng.integers(10, self._vocab)))
            if seq.num_output_tokens >= seq.params.max_tokens:
                self.scheduler.finish(seq, "length")
                finished.append(seq)
        return StepOutcome(self.cost_model.predict_one(feats), sampling, finished, feats, len(batch.preempted))

    def has_unfinished(self) -> bool:
        return self.scheduler.has_unfinished()

    def load(self) -> dict:
        return _load(self.scheduler, self.block_manager)

    def export_kv(self, seq):
        return None  # no tensors in the simulator; the copy is charged by its size

    def import_kv(self, seq, kv) -> None:
        pass

    def kv_bytes_per_token(self) -> int:
        return self.bytes_per_token

    def adopt(self, seq) -> None:
        pass

    def release(self, seq) -> None:
        pass


# -- KV migration between instances ------------------------------------------------------------

def can_migrate(seq, dst) -> bool:
    from papersuite.engine.scheduler import SequenceStatus

    return (seq.status is SequenceStatus.RUNNING and seq.num_computed_tokens == seq.num_tokens - 1
            and dst.block_manager.num_free_blocks >= dst.block_manager.blocks_needed(seq.num_tokens + 1))


def migrate(seq, src, dst) -> int:
    """Move a decoding request with its KV blocks, tokens and sampling RNG from `src` to `dst`.

    Llumnix-style stop-and-copy between steps: the KV rows of its blocks are copied into freshly
    allocated blocks at the destination, the source's references are dropped (a shared prefix stays
    cached there), and the `Sequence` object itself (tokens, generator state, annotations) moves.
    Returns the bytes copied. The caller checked `can_migrate`.
    """
    from papersuite.engine.scheduler import SequenceStatus

    computed = seq.num_computed_tokens
    kv = src.export_kv(seq)
    src.scheduler.running.remove(seq)
    src.block_manager.free(seq)
    src.release(seq)
    seq.num_computed_tokens = 0
    if not dst.block_manager.append_slots(seq, computed):
        raise RuntimeError("destination ran out of blocks during migration")
    dst.import_kv(seq, kv)
    seq.num_computed_tokens = computed
    dst.block_manager.commit(seq)
    seq.status = SequenceStatus.RUNNING
    dst.scheduler.running.append(seq)
    dst.adopt(seq)
    seq.annotations["migrations"] = seq.annotations.get("migrations", 0) + 1
    return computed * src.kv_bytes_per_token()


# -- placement ----------------------------------------------------------------------------------

Placement = Callable[[TraceRequest, Seq[Instance]], int]


def round_robin() -> Placement:
    counter = {"i": -1}

    def place(req, instances):
        counter["i"] = (counter["i"] + 1) % len(instances)
        return counter["i"]

    return place


def least_kv(req, instances) -> int:
    """The instance with the fewest tokens resident or queued (current load only)."""
    return min(range(len(instances)), key=lambda i: (instances[i].load()["tokens"], i))


PLACEMENTS: dict[str, Callable[[], Placement]] = {"rr": round_robin, "least-kv": lambda: least_kv}


class Rebalancer(Protocol):
    """Called every `rebalance_every` cluster steps; returns migrations `(seq, src, dst)` to make."""

    def __call__(self, instances: Seq, clocks: list[float]) -> list[tuple]: ...


# -- the event loop -----------------------------------------------------------------------------

@dataclass
class ReplayResult:
    records: list[RequestRecord]
    steps: int
    preemptions: int
    makespan: float
    computed_tokens: int  # tokens run through forward passes (prefill + decode, recomputation included)
    instance_tokens: list[int] = field(default_factory=list)
    migrations: int = 0
    migrated_bytes: int = 0
    outputs: list = field(default_factory=list)  # (request id, output token ids), sorted by id

    def metrics(self, slo_ttft: float | Callable[[RequestRecord], float],
                slo_tpot: float | Callable[[RequestRecord], float]) -> dict:
        return summarize(self, slo_ttft, slo_tpot)


def replay(requests: Seq[TraceRequest], instances: Seq, *, placement: str | Placement = "rr",
           vocab_size: int = 49152, block_tokens: int = 32, seed: int = 0,
           prompt_ids: dict[str, list[int]] | None = None, max_steps: int | None = None,
           on_step: Callable[[int, StepOutcome, float], None] | None = None,
           rebalancer: "Rebalancer | None" = None, rebalance_every: int = 16,
           net_bytes_per_s: float = 2e9, migration_fixed_s: float = 1e-3,
           params_for: Callable[[TraceRequest], object] | None = None) -> ReplayResult:
    """Replay `requests` (sorted by arrival) over `instances`; returns per-request records.

    Output lengths are the trace's (`max_tokens`, EOS ignored when the request says so).
    `prompt_ids` supplies real token ids (e.g. tokenized workload prompts) by request id.
    """
    from papersuite.llm import SamplingParams

    place = PLACEMENTS[placement]() if isinstance(placement, str) else placement
    reqs = sorted(requests, key=lambda r: r.arrival)
    clocks = [0.0] * len(instances)
    records: dict[str, RequestRecord] = {}
    seq_record: dict[int, RequestRecord] = {}
    inst_tokens = [0] * len(instances)
    steps = preemptions = computed = migrations = migrated_bytes = 0
    outputs: list[tuple[str, list[int]]] = []
    nxt = 0
    while True:
        busy = [i for i, inst in enumerate(instances) if inst.has_unfinished()]
        t_step = min((clocks[i] for i in busy), default=math.inf)
        if nxt < len(reqs) and reqs[nxt].arrival <= t_step:
            req = reqs[nxt]
            nxt += 1
            i = place(req, instances)
            ids = (prompt_ids or {}).get(req.id) or synthesize_prompt_ids(req, vocab_size, block_tokens, seed)
            params = (params_for(req) if params_for else
                      SamplingParams(max_tokens=req.max_tokens, ignore_eos=req.ignore_eos))
            seq = instances[i].make_sequence(req, ids, params)
            seq.arrival_time = req.arrival
            rec = RequestRecord(req.id, req.arrival, len(ids), i, request_class=req.tags.get("class", "online"))
            records[req.id] = rec
            seq_record[id(seq)] = rec
            clocks[i] = max(clocks[i], req.arrival)
            instances[i].submit(seq)
            continue
        if not busy:
            break
        i = min(busy, key=lambda j: clocks[j])
        out = instances[i].step()
        clocks[i] += out.duration
        steps += 1
        preemptions += out.preempted
        if out.features is not None:
            n = out.features.n_prefill + out.features.n_decode
            computed += n
            inst_tokens[i] += n
        for seq in out.emitted:
            rec = seq_record[id(seq)]
            if rec.first_token is None:
                rec.first_token = clocks[i]
                rec.cached_tokens = seq.num_cached_tokens
        for seq in out.finished:
            rec = seq_record[id(seq)]
            rec.finish = clocks[i]
            rec.output_tokens = seq.num_output_tokens - (1 if seq.finish_reason == "stop" else 0)
            rec.preemptions = seq.num_preemptions
            outputs.append((rec.id, list(seq.output_token_ids)))
        if on_step is not None:
            on_step(i, out, clocks[i])
        if rebalancer is not None and steps % rebalance_every == 0:
            for seq, src, dst in rebalancer(instances, clocks):
                if not can_migrate(seq, instances[dst]):
                    continue
                nbytes = migrate(seq, instances[src], instances[dst])
                stall = nbytes / net_bytes_per_s + migration_fixed_s
                # the destination cannot decode the request before its KV has arrived
                clocks[dst] = max(clocks[dst], clocks[src] + stall)
                migrations += 1
                migrated_bytes += nbytes
                seq_record[id(seq)].instance = dst
        if max_steps is not None and steps >= max_steps:
            break
    recs = [records[r.id] for r in reqs if r.id in records]
    return ReplayResult(recs, steps, preemptions, max(clocks, default=0.0), computed, inst_tokens,
                        migrations, migrated_bytes, sorted(outputs))


# -- metrics ------------------------------------------------------------------------------------

def output_digest(result: ReplayResult) -> str:
    """sha256 of the sorted request ids and their output token ids: equal digests, equal outputs."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(result.outputs).encode()).hexdigest()


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def summarize(result: ReplayResult, slo_ttft, slo_tpot) -> dict:
    """TTFT/TPOT means and P50/P99, SLO attainment, throughput, preemptions, imbalance.

    An SLO is seconds, or a callable giving each request's own bound (e.g. 5x its unloaded TTFT).
    A request that did not finish misses its SLO.
    """
    recs = result.records
    done = [r for r in recs if r.finish is not None]
    ttfts = [r.ttft for r in done]
    tpots = [r.tpot for r in done]
    bound = lambda slo, r: slo(r) if callable(slo) else slo  # noqa: E731
    ok = [r.finish is not None and r.ttft <= bound(slo_ttft, r) and r.tpot <= bound(slo_tpot, r) for r in recs]
    out_tokens = sum(r.output_tokens for r in done)
    mean_load = np.mean(result.instance_tokens) if result.instance_tokens else 0
    return {
        "requests": len(recs), "finished": len(done),
        "ttft_mean_s": float(np.mean(ttfts)) if ttfts else None, "ttft_p50_s": _pct(ttfts, 50),
        "ttft_p99_s": _pct(ttfts, 99),
        "tpot_mean_s": float(np.mean(tpots)) if tpots else None, "tpot_p50_s": _pct(tpots, 50),
        "tpot_p99_s": _pct(tpots, 99),
        "slo_attainment": float(np.mean(ok)) if ok else 0.0,
        "output_tokens_per_s": out_tokens / result.makespan if result.makespan > 0 else None,
        "makespan_s": result.makespan, "steps": result.steps, "preemptions": result.preemptions,
        "recomputed_tokens": max(0, result.computed_tokens - sum(r.prompt_tokens - r.cached_tokens + r.output_tokens
                                                                 for r in done)),
        "imbalance": float(max(result.instance_tokens) / mean_load) if mean_load else 1.0,
        "migrations": result.migrations, "migrated_bytes": result.migrated_bytes,
    }


def default_slos(cost_model: StepCostModel, chunk: int = 512, ttft_x: float = 5.0, tpot_x: float = 3.0,
                 scale: float = 1.0) -> tuple[Callable[[RequestRecord], float], Callable[[RequestRecord], float]]:
    """Per-request SLOs: TTFT <= 5x and TPOT <= 3x the cost model's unloaded values (times `scale`)."""
    def ttft(r: RequestRecord) -> float:
        return scale * ttft_x * cost_model.unloaded_ttft(r.prompt_tokens, chunk)

    def tpot(r: RequestRecord) -> float:
        return scale * tpot_x * cost_model.unloaded_tpot(r.prompt_tokens + max(r.output_tokens, 1))

    return ttft, tpot


def goodput(attainment_at: Callable[[float], float], lo: float, hi: float, target: float = 0.9,
            iters: int = 8) -> float:
    """The highest arrival rate whose SLO attainment is >= `target`, by bisection on [lo, hi].

    `attainment_at(rate)` replays the trace re-timed to `rate` and returns its attainment. Returns
    0.0 when even `lo` misses the target, and `hi` when `hi` meets it.
    """
    if attainment_at(lo) < target:
        return 0.0
    if attainment_at(hi) >= target:
        return hi
    for _ in range(iters):
        mid = math.sqrt(lo * hi)  # rates span orders of magnitude: bisect geometrically
        if attainment_at(mid) >= target:
            lo = mid
        else:
            hi = mid
    return lo
