"""LLM-serving request traces: read, scale, re-time. Shared by ARES and Echo.

Formats (auto-detected from the header / first record, or named with `fmt=`):

- `azure`: Azure LLM inference trace 2023 CSV, `TIMESTAMP,ContextTokens,GeneratedTokens`.
- `mooncake`: Mooncake FAST'25 JSONL, `timestamp` (ms), `input_length`, `output_length`,
  optional `hash_ids` (prefix-block hashes, 512-token blocks).
- `lengths`: length-statistics CSV (`num_prefill_tokens,num_decode_tokens,...`): no arrivals, pair
  with `poisson_arrivals` / `gamma_arrivals`.
- `workload`: JSONL with `id`, `arrival` (s), `prompt` or `messages`, `max_tokens`, optional
  `ignore_eos` (a prompt file is the same without `arrival`).

Every reader returns `TraceRequest`s sorted by arrival, arrivals relative to the first (seconds).
A malformed row is a UserError naming file:line.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from papersuite.errors import UserError
from papersuite.io import open_text

FORMATS = ("azure", "mooncake", "lengths", "workload")
MOONCAKE_BLOCK_TOKENS = 512


@dataclass(frozen=True)
class TraceRequest:
    """One request of a trace. Lengths are tokens; `prompt`/`messages` only in workload files."""

    id: str
    arrival: float
    prompt_tokens: int
    max_tokens: int
    prompt: str | None = None
    messages: tuple | None = None
    hash_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    tags: dict = field(default_factory=dict, compare=False)


def _where(path, line: int) -> str:
    return f"{'<stdin>' if str(path) == '-' else path}:{line}"


def detect_format(path: str | Path) -> str:
    """Guess the format from the first line."""
    with open_text(path) as fh:
        first = fh.readline().strip()
    if first.startswith("{"):
        try:
            rec = json.loads(first)
        except json.JSONDecodeError:
            raise UserError("malformed JSON", where=_where(path, 1)) from None
        if "input_length" in rec:
            return "mooncake"
        return "workload"
    header = [h.strip() for h in first.split(",")]
    if "ContextTokens" in header and "GeneratedTokens" in header:
        return "azure"
    if "num_prefill_tokens" in header and "num_decode_tokens" in header:
        return "lengths"
    raise UserError(f"unrecognised trace format (first line {first[:80]!r}); expected one of {', '.join(FORMATS)}",
                    where=_where(path, 1))


def read_trace(path: str | Path, fmt: str | None = None, limit: int | None = None) -> list[TraceRequest]:
    """Read any supported trace; `limit` keeps the first N requests (in file order)."""
    fmt = fmt or detect_format(path)
    readers = {"azure": _read_azure, "mooncake": _read_mooncake, "lengths": _read_lengths,
               "workload": _read_workload}
    if fmt not in readers:
        raise UserError(f"unknown trace format {fmt!r}; choose one of {', '.join(FORMATS)}")
    reqs = readers[fmt](path, limit)
    if not reqs:
        raise UserError(f"{path}: the trace has no requests")
    return sorted(reqs, key=lambda r: r.arrival)


def _int(value: str, name: str, where: str, minimum: int = 0) -> int:
    try:
        v = int(float(value))
    except (TypeError, ValueError):
        raise UserError(f"{name} must be an integer, got {value!r}", where=where) from None
    if v < minimum:
        raise UserError(f"{name} must be >= {minimum}, got {v}", where=where)
    return v


def _csv_rows(path, required: Sequence[str], limit: int | None):
    with open_text(path) as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"missing column(s) {', '.join(missing)}", where=_where(path, 1))
        for i, row in enumerate(reader):
            if limit is not None and i >= limit:
                break
            yield reader.line_num, row


def _read_azure(path, limit):
    out, t0 = [], None
    for line, row in _csv_rows(path, ("TIMESTAMP", "ContextTokens", "GeneratedTokens"), limit):
        where = _where(path, line)
        stamp = (row["TIMESTAMP"] or "").strip()
        try:
            t = datetime.strptime(stamp[:26], "%Y-%m-%d %H:%M:%S.%f").timestamp()
        except ValueError:
            raise UserError(f"bad TIMESTAMP {stamp!r} (expected YYYY-MM-DD HH:MM:SS.fffffff)", where=where) from None
        t0 = t if t0 is None else t0
        out.append(TraceRequest(f"azure-{len(out)}", t - t0, _int(row["ContextTokens"], "ContextTokens", where, 1),
                                _int(row["GeneratedTokens"], "GeneratedTokens", where, 1), ignore_eos=True))
    return out


def _read_lengths(path, limit):
    out = []
    for line, row in _csv_rows(path, ("num_prefill_tokens", "num_decode_tokens"), limit):
        where = _where(path, line)
        out.append(TraceRequest(f"len-{len(out)}", 0.0, _int(row["num_prefill_tokens"], "num_prefill_tokens", where, 1),
                                _int(row["num_decode_tokens"], "num_decode_tokens", where, 1), ignore_eos=True))
    return out


def _jsonl(path, limit):
    from papersuite.io import iter_jsonl_lines

    for n, (line, rec) in enumerate(iter_jsonl_lines(path)):
        if limit is not None and n >= limit:
            break
        yield line, rec


def _read_mooncake(path, limit):
    out = []
    for line, rec in _jsonl(path, limit):
        where = _where(path, line)
        for key in ("timestamp", "input_length", "output_length"):
            if key not in rec:
                raise UserError(f"missing field {key!r}", where=where)
        hashes = rec.get("hash_ids") or []
        if not isinstance(hashes, list) or not all(isinstance(h, int) for h in hashes):
            raise UserError("hash_ids must be a list of integers", where=where)
        ts = rec["timestamp"]
        if not isinstance(ts, (int, float)) or ts < 0:
            raise UserError(f"timestamp must be a number of ms >= 0, got {ts!r}", where=where)
        out.append(TraceRequest(f"mooncake-{len(out)}", ts / 1000.0,
                                _int(rec["input_length"], "input_length", where, 1),
                                _int(rec["output_length"], "output_length", where, 1),
                                hash_ids=tuple(hashes), ignore_eos=True))
    if out:
        t0 = min(r.arrival for r in out)
        out = [replace(r, arrival=r.arrival - t0) for r in out]
    return out


def _read_workload(path, limit):
    out, seen = [], set()
    for line, rec in _jsonl(path, limit):
        where = _where(path, line)
        rid = str(rec.get("id", f"req-{len(out)}"))
        if rid in seen:
            raise UserError(f"duplicate id {rid!r}", where=where)
        seen.add(rid)
        prompt, messages = rec.get("prompt"), rec.get("messages")
        if (prompt is None) == (messages is None):
            raise UserError("each record needs exactly one of 'prompt' or 'messages'", where=where)
        if prompt is not None and not isinstance(prompt, str):
            raise UserError("'prompt' must be a string", where=where)
        if messages is not None and (not isinstance(messages, list) or not messages or not all(
                isinstance(m, dict) and "role" in m and "content" in m for m in messages)):
            raise UserError("'messages' must be a non-empty list of {role, content}", where=where)
        arrival = rec.get("arrival", 0.0)
        if not isinstance(arrival, (int, float)) or arrival < 0 or math.isnan(arrival):
            raise UserError(f"'arrival' must be seconds >= 0, got {arrival!r}", where=where)
        max_tokens = rec.get("max_tokens", 128)
        if not isinstance(max_tokens, int) or not 1 <= max_tokens <= 1_000_000:
            raise UserError(f"'max_tokens' must be an integer in [1, 1000000], got {max_tokens!r}", where=where)
        text = prompt if prompt is not None else " ".join(str(m["content"]) for m in messages)
        approx_tokens = max(1, len(text) // 4)  # replaced by the tokenizer's count at replay time
        out.append(TraceRequest(rid, float(arrival), approx_tokens, max_tokens, prompt,
                                tuple(messages) if messages else None, ignore_eos=bool(rec.get("ignore_eos", False))))
    return out


# -- transformations ---------------------------------------------------------------------------

def scale_lengths(reqs: Iterable[TraceRequest], prompt_scale: float = 1.0, output_scale: float = 1.0,
                  max_prompt: int | None = None, max_output: int | None = None) -> list[TraceRequest]:
    """Divide lengths by the scales (a 135M model on CPU needs e.g. /8 prompts, /4 outputs) and clip."""
    if prompt_scale <= 0 or output_scale <= 0:
        raise UserError("length scales must be > 0")
    out = []
    for r in reqs:
        p = max(1, round(r.prompt_tokens / prompt_scale))
        o = max(1, round(r.max_tokens / output_scale))
        if max_prompt:
            p = min(p, max_prompt)
        if max_output:
            o = min(o, max_output)
        out.append(replace(r, prompt_tokens=p, max_tokens=o))
    return out


def rate(reqs: Sequence[TraceRequest]) -> float:
    """Mean arrival rate (requests/s) over the trace's span."""
    span = reqs[-1].arrival - reqs[0].arrival if len(reqs) > 1 else 0.0
    return (len(reqs) - 1) / span if span > 0 else float("inf")


def retime(reqs: Sequence[TraceRequest], target_rate: float) -> list[TraceRequest]:
    """Compress or stretch arrival times so the mean rate becomes `target_rate` (shape kept)."""
    if target_rate <= 0:
        raise UserError(f"target rate must be > 0, got {target_rate}")
    current = rate(reqs)
    if not math.isfinite(current):
        raise UserError("the trace has no arrival spread; use poisson_arrivals or gamma_arrivals")
    factor = current / target_rate
    t0 = reqs[0].arrival
    return [replace(r, arrival=(r.arrival - t0) * factor) for r in reqs]


def gamma_arrivals(n: int, rate_per_s: float, cv: float = 1.0, seed: int = 0) -> np.ndarray:
    """Arrival times with Gamma inter-arrivals of mean 1/rate and coefficient of variation `cv`.

    cv = 1 is a Poisson process; cv > 1 is bursty (BurstGPT models arrivals this way).
    """
    if rate_per_s <= 0 or cv <= 0 or n < 1:
        raise UserError("need n >= 1, rate > 0 and cv > 0 for arrivals")
    shape = 1.0 / cv**2
    gaps = np.random.default_rng(seed).gamma(shape, 1.0 / (rate_per_s * shape), size=n)
    gaps[0] = 0.0
    return np.cumsum(gaps)


def poisson_arrivals(n: int, rate_per_s: float, seed: int = 0) -> np.ndarray:
    return gamma_arrivals(n, rate_per_s, 1.0, seed)


def with_arrivals(reqs: Sequence[TraceRequest], arrivals: Sequence[float]) -> list[TraceRequest]:
    if len(arrivals) < len(reqs):
        raise UserError(f"{len(arrivals)} arrival times for {len(reqs)} requests")
    return [replace(r, arrival=float(a)) for r, a in zip(reqs, arrivals)]


def summary(reqs: Sequence[TraceRequest]) -> dict:
    """Length and arrival statistics, the table PROVENANCE.md prints for each trace."""
    p = np.array([r.prompt_tokens for r in reqs])
    o = np.array([r.max_tokens for r in reqs])
    a = np.array([r.arrival for r in reqs])
    gaps = np.diff(a)
    stats = {"n": len(reqs)}
    for name, v in (("input", p), ("output", o)):
        stats[name] = {"mean": float(v.mean()), "median": float(np.median(v)),
                       "p90": float(np.percentile(v, 90)), "p99": float(np.percentile(v, 99)),
                       "max": int(v.max())}
    stats["duration_s"] = float(a[-1] - a[0]) if len(a) else 0.0
    stats["rate_per_s"] = rate(reqs) if len(reqs) > 1 else None
    stats["interarrival_cv"] = float(gaps.std() / gaps.mean()) if len(gaps) and gaps.mean() > 0 else None
    if any(r.hash_ids for r in reqs):
        seen, reused, total = set(), 0, 0
        for r in reqs:
            for h in r.hash_ids:
                total += 1
                reused += h in seen
                seen.add(h)
        stats["prefix_block_reuse"] = reused / total if total else 0.0
    return stats
