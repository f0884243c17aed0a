"""Benchmark harness: warm-up, interleaved repeats, medians, ratios, JSON + Markdown results.

Baseline and contender run interleaved in one process (A B A B ...) so machine load hits both
alike; every result records the load average and thread count beside the figures.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def pin_threads(n: int = 1) -> int:
    """Pin torch/BLAS/OpenMP threads (before heavy work); returns n."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:  # pragma: no cover
        pass
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:  # pragma: no cover
        pass
    return n


def environment() -> dict[str, Any]:
    env: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine(),
                           "cpus": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2)}
    try:
        import torch

        env["torch"] = torch.__version__
        env["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover
        pass
    return env


@dataclass
class Timing:
    name: str
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "median_s": self.median, "min_s": min(self.seconds),
                "max_s": max(self.seconds), "repeats": len(self.seconds)}


def interleaved(contenders: dict[str, Callable[[], Any]], repeats: int = 5, warmup: int = 1,
                sync: Callable[[], None] | None = None,
                before_each: Callable[[], None] | None = None) -> dict[str, Timing]:
    """Time each callable `repeats` times, interleaved, after `warmup` untimed calls each.

    `before_each` runs untimed before every timed call (e.g. flush a cache so that whoever runs
    second does not find the first one's data warm); `sync` waits for a device before each clock read.
    """
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    timings = {name: Timing(name) for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            if before_each:
                before_each()
            if sync:
                sync()
            t0 = time.perf_counter()
            fn()
            if sync:
                sync()
            timings[name].seconds.append(time.perf_counter() - t0)
    return timings


def ratio(baseline: Timing, contender: Timing) -> float:
    """How many times faster the contender is (baseline median / contender median)."""
    return baseline.median / contender.median


def write_results(tool: str, name: str, data: dict[str, Any], markdown: str | None = None) -> Path:
    """Write benchmarks/results/<tool>/<name>.json (+ .md) atomically, with the environment."""
    from papersuite.io import atomic_write

    out = RESULTS / tool
    out.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "environment": environment(),
               "when": time.strftime("%Y-%m-%dT%H:%M:%S"), **data}
    with atomic_write(out / f"{name}.json") as fh:
        json.dump(payload, fh, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
        fh.write("\n")
    if markdown is not None:
        with atomic_write(out / f"{name}.md") as fh:
            fh.write(markdown.rstrip() + "\n")
    return out / f"{name}.json"


def markdown_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    columns = columns or list(rows[0].keys())
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
