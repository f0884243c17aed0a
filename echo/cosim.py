"""Co-serving replay: an online trace plus an offline batch through each policy, same clock, same SLOs.

Each policy runs on fresh instances (the engine's scheduler + block manager; `SimInstance` with
the cost model, or a real `EngineInstance`). The window is `duration` virtual seconds: online
requests arrive within it; the offline backlog is there from t = 0; at the window's end unfinished
offline work is dropped (it counts as pending) and the online requests still running finish.

Peers: `online-only` (no offline work: the SLO reference), `priority`, `separate` (instances
split into an online and an offline pool), `slo-budget`, `echo` (see `echo.scheduler`).
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from papersuite.errors import UserError
from papersuite.replay import EngineInstance, SimInstance, default_slos, replay

from echo.estimator import StepTimeEstimator
from echo.jobs import OFFLINE, is_offline
from echo.kv import EchoEviction, PrefixIndex, ReserveEstimator, prompt_block_hashes
from echo.scheduler import CoServePolicy, echo_policy, priority_policy, slo_budget_policy

POLICIES = ("online-only", "priority", "separate", "slo-budget", "echo")


def check_policies(names: list[str]) -> list[str]:
    bad = [n for n in names if n not in POLICIES]
    if bad or not names:
        raise UserError(f"unknown policy {', '.join(bad) or '(none)'}; choose from {', '.join(POLICIES)}")
    return names


@dataclass
class Setup:
    """One deployment: instances, KV capacity, engine knobs, SLOs and the policy knobs."""

    cost_model: object
    kv_tokens: int = 8192
    instances: int = 1
    block_size: int = 16
    max_num_batched_tokens: int = 512
    max_num_seqs: int = 64
    slo_scale: float = 1.0
    safety: float = 0.9
    reserve: int | None = None  # fixed reserve in blocks; None = sized from online arrivals
    clock: str = "model"
    engine_factory: Callable | None = None  # (scheduler, kv_policy, num_blocks) -> LLMEngine, for real runs
    vocab_size: int = 49152
    seed: int = 0
    knobs: dict = field(default_factory=dict)  # per-policy overrides, e.g. {"priority": {"max_num_seqs": 8}}

    def __post_init__(self) -> None:
        if self.kv_tokens < self.block_size * 4:
            raise UserError(f"--kv-tokens must be >= {self.block_size * 4}, got {self.kv_tokens}")
        if self.instances < 1:
            raise UserError(f"--instances must be >= 1, got {self.instances}")
        if not self.slo_scale > 0:
            raise UserError(f"the SLO scale must be > 0, got {self.slo_scale}")
        if self.reserve is not None and not 0 <= self.reserve < self.num_blocks:
            raise UserError(f"--reserve must be in [0, {self.num_blocks}) blocks (the KV capacity), got {self.reserve}")

    @property
    def num_blocks(self) -> int:
        return self.kv_tokens // self.block_size

    def slos(self):
        return default_slos(self.cost_model, chunk=self.max_num_batched_tokens, scale=self.slo_scale)

    def tpot_slo(self, context: int) -> float:
        return self.slo_scale * 3.0 * self.cost_model.unloaded_tpot(context)

    def ttft_slo(self, prompt: int) -> float:
        return self.slo_scale * 5.0 * self.cost_model.unloaded_ttft(prompt, self.max_num_batched_tokens)

    def ttft_window(self, prompt: int = 128) -> float:
        return self.ttft_slo(prompt)


class _Classed:
    """Mixin: a request's class (tags["class"]) becomes the sequence's priority."""

    def make_sequence(self, req, prompt_ids, params):
        seq = super().make_sequence(req, prompt_ids, params)
        seq.priority = OFFLINE if req.tags.get("class") == "offline" else 0
        return seq

    def drop_offline(self) -> int:
        n = 0
        for seq in [s for s in self.scheduler.running + self.scheduler.waiting if is_offline(s)]:
            self._abort(seq)
            n += 1
        return n


class ClassedSim(_Classed, SimInstance):
    def step(self):
        out = super().step()
        if out.features is None and self.has_unfinished():  # nothing fits (e.g. blocks short): idle tick,
            out.duration = max(out.duration, self.cost_model.intercept_, 1e-3)  # so arrivals still come in
        return out

    def _abort(self, seq) -> None:
        self.scheduler.finish(seq, "abort")


class ClassedEngine(_Classed, EngineInstance):
    def _abort(self, seq) -> None:
        self.engine.abort(seq.request_id)


def make_policies(name: str, setup: Setup, knobs: dict) -> tuple[object, object, int]:
    """(scheduling policy, eviction policy, max_num_seqs) of a peer."""
    est = StepTimeEstimator(setup.cost_model)
    safety = knobs.get("safety", setup.safety)
    max_seqs = knobs.get("max_num_seqs", setup.max_num_seqs)
    if name in ("online-only", "priority", "separate"):
        return priority_policy(), "lru", max_seqs
    if name == "slo-budget":
        return slo_budget_policy(est, setup.tpot_slo, safety, setup.ttft_slo), "lru", max_seqs
    index = PrefixIndex(setup.block_size)
    reserve = knobs.get("reserve", setup.reserve)
    cap = int(0.5 * setup.num_blocks)
    res = (ReserveEstimator(fixed=reserve) if reserve is not None else
           ReserveEstimator(window_s=setup.ttft_window(), every_s=2.0, cap=cap))
    return (echo_policy(est, setup.tpot_slo, safety, res, index, ttft_slo=setup.ttft_slo), EchoEviction(index),
            max_seqs)


def _instances(name: str, setup: Setup, knobs: dict) -> list:
    out = []
    for _ in range(setup.instances):
        policy, kv, max_seqs = make_policies(name, setup, knobs)
        if setup.engine_factory is not None:
            engine = setup.engine_factory(policy, kv, setup.num_blocks, max_seqs)
            cm = setup.cost_model if setup.clock == "model" else None
            out.append(ClassedEngine(engine, setup.clock, cm))
        else:
            out.append(ClassedSim(setup.cost_model, setup.num_blocks, setup.block_size,
                                  knobs.get("max_num_batched_tokens", setup.max_num_batched_tokens), max_seqs,
                                  policy, kv, vocab_size=setup.vocab_size, seed=setup.seed))
    return out


def _placement(name: str, n: int, prompt_ids: dict):
    """Online round-robin; offline by first prompt block (jobs sharing a document stay together).

    `separate`: instances [0, n_on) serve online, the rest offline.
    """
    n_on = max(1, n // 2) if name == "separate" else n
    counter = {"i": -1}

    def place(req, instances):
        if req.tags.get("class") == "offline":
            lo, hi = (n_on, n) if name == "separate" else (0, n)
            ids = prompt_ids[req.id]
            key = zlib.crc32(repr(ids[:16] if len(ids) >= 16 else req.id).encode())  # stable across processes
            return lo + key % (hi - lo)
        counter["i"] = (counter["i"] + 1) % n_on
        return counter["i"]

    return place


def reuse_bound(prompts: list[list[int]], block_size: int) -> float:
    """Fraction of prompt tokens in blocks seen earlier (infinite cache): the hit-rate bound."""
    seen, reused, total = set(), 0, 0
    for ids in prompts:
        total += len(ids)
        for h in prompt_block_hashes(ids[:-1], block_size):  # the last token always runs
            reused += block_size * (h in seen)
            seen.add(h)
    return reused / total if total else 0.0


def run_policy(name: str, online: list, offline: list, prompt_ids: dict, setup: Setup, duration: float,
               on_finish: Callable | None = None, knobs: dict | None = None) -> dict:
    """Replay one policy; returns its metrics (and `_result` with the raw ReplayResult)."""
    from papersuite.llm import SamplingParams

    knobs = {**setup.knobs.get(name, {}), **(knobs or {})}
    if name == "separate" and setup.instances < 2:
        raise UserError("policy 'separate' needs --instances >= 2 (one online and one offline pool)")
    offline = [] if name == "online-only" else offline
    insts = _instances(name, setup, knobs)
    if name == "separate":  # the offline pool keeps the engine's normal batching
        for inst in insts[max(1, setup.instances // 2):]:
            inst.scheduler.max_num_seqs = setup.max_num_seqs
    reqs = list(online) + list(offline)
    state = {"closed": False, "dropped": 0}

    def on_step(i, out, clock):
        for seq in out.finished:
            if is_offline(seq) and on_finish is not None and clock <= duration:
                on_finish(seq)
        if clock >= duration:
            state["dropped"] += insts[i].drop_offline()

    def params_for(req):
        return SamplingParams(max_tokens=req.max_tokens, ignore_eos=req.ignore_eos, temperature=0.0)

    res = replay(reqs, insts, placement=_placement(name, setup.instances, prompt_ids),
                 vocab_size=setup.vocab_size, seed=setup.seed, prompt_ids=prompt_ids, on_step=on_step,
                 params_for=params_for)
    policies = [inst.scheduler.policy for inst in insts]
    return metrics(res, setup, duration, policies, prompt_ids) | {"_result": res, "_instances": insts}


def metrics(res, setup: Setup, duration: float, policies=(), prompt_ids: dict | None = None) -> dict:
    ttft_slo, tpot_slo = setup.slos()
    on = [r for r in res.records if r.request_class != "offline"]
    off = [r for r in res.records if r.request_class == "offline"]
    done = [r for r in off if r.finish is not None and r.finish <= duration + 1e-9]
    ok = [r.finish is not None and r.ttft <= ttft_slo(r) and r.tpot <= tpot_slo(r) for r in on]
    ttfts = [r.ttft for r in on if r.finish is not None]
    tpots = [r.tpot for r in on if r.finish is not None]
    prompt_done = sum(r.prompt_tokens for r in done)
    stats = [getattr(p, "stats", {}) for p in policies]
    lost = sum(s.get("lost_tokens", 0) for s in stats) - sum(s.get("recovered_tokens", 0) for s in stats)
    in_order = sorted(done, key=lambda r: r.first_token)
    bound = reuse_bound([prompt_ids[r.id] for r in in_order], setup.block_size) if prompt_ids else None
    return {
        "offline_tokens_per_s": (prompt_done + sum(r.output_tokens for r in done)) / duration,
        "offline_output_tokens_per_s": sum(r.output_tokens for r in done) / duration,
        "offline_jobs_per_s": len(done) / duration,
        "offline_jobs_done": len(done), "offline_jobs_pending": len(off) - len(done),
        "offline_hit_rate": (sum(r.cached_tokens for r in done) / prompt_done) if prompt_done else 0.0,
        "offline_reuse_bound": bound,
        "recomputed_tokens": max(0, lost),
        "reserve_blocks": max((s.get("reserve_blocks", 0) for s in stats), default=0),
        "preemptions": res.preemptions,
        "online_requests": len(on),
        "online_slo_attainment": float(np.mean(ok)) if ok else 1.0,
        "online_p99_ttft": float(np.percentile(ttfts, 99)) if ttfts else None,
        "online_p99_tpot": float(np.percentile(tpots, 99)) if tpots else None,
    }


def public(m: dict) -> dict:
    return {k: v for k, v in m.items() if not k.startswith("_")}


def meets_slo(m: dict, reference: dict | None, floor: float = 0.99, slack: float = 0.01) -> bool:
    """Online attainment >= `floor`, or within `slack` of online-only when online-only is below it."""
    att = m["online_slo_attainment"]
    ref = reference["online_slo_attainment"] if reference else 1.0
    return att >= min(floor, ref - slack) - 1e-12


TUNE_GRID = {"priority": [{"max_num_seqs": k, "max_num_batched_tokens": t} for k in (2, 8, 32)
                          for t in (16, 32, 64, 256, 512)],
             "slo-budget": [{"safety": s} for s in (0.5, 0.7, 0.9, 1.0)],
             "separate": [{}]}


def compare(names: list[str], online: list, offline: list, prompt_ids: dict, setup: Setup, duration: float,
            tune: bool = False, on_finish_for: Callable | None = None, progress: Callable | None = None) -> dict:
    """Run each policy (online-only first, as the SLO reference); with `tune`, sweep the peers' knobs
    and keep each peer's best setting that meets the online SLO."""
    results: dict[str, dict] = {}
    ref = None
    order = sorted(names, key=lambda n: n != "online-only")
    if tune and "online-only" not in order:
        order = ["online-only"] + order
    for name in order:
        cb = on_finish_for(name) if on_finish_for else None
        if tune and name in TUNE_GRID:
            trials = []
            for knobs in TUNE_GRID[name]:
                m = run_policy(name, online, offline, prompt_ids, setup, duration, None, knobs)
                trials.append((knobs, public(m)))
            good = [t for t in trials if meets_slo(t[1], ref)] or trials
            knobs, best = max(good, key=lambda t: (meets_slo(t[1], ref), t[1]["offline_tokens_per_s"]))
            if cb is not None:  # rerun the chosen setting to write its results
                best = public(run_policy(name, online, offline, prompt_ids, setup, duration, cb, knobs))
            best = best | {"tuned": knobs, "meets_slo": meets_slo(best, ref), "trials": [{"knobs": k, "offline_tokens_per_s": t["offline_tokens_per_s"],
                                                        "online_slo_attainment": t["online_slo_attainment"]}
                                                       for k, t in trials]}
        else:
            best = public(run_policy(name, online, offline, prompt_ids, setup, duration, cb))
            best["meets_slo"] = name == "online-only" or meets_slo(best, ref)
        if name == "online-only":
            ref = best
        if name in names:
            results[name] = best
        if progress:
            progress(name)
    return results


def offline_throughput_estimate(online: list, offline: list, prompt_ids: dict, setup: Setup, duration: float,
                                policy: str = "echo") -> dict:
    """Echo's provisioning estimator: the cost-model replay's offline throughput and attainment."""
    sim = replace(setup, engine_factory=None, clock="model")
    m = run_policy(policy, online, offline, prompt_ids, sim, duration)
    return {k: m[k] for k in ("offline_tokens_per_s", "offline_jobs_per_s", "online_slo_attainment",
                              "offline_hit_rate")}


def isfinite(x) -> bool:
    return x is not None and math.isfinite(x)
