"""The slow tier: where experts live when they are not in the fast tier (emulates host memory + PCIe).

Tiers (`parse_tier`): `cold` reads the per-expert file from disk after
`posix_fadvise(DONTNEED)` drops it from the page cache (the only tier that is I/O bound like real
offloading); `warm` reads the file through the page cache; `ram` copies a resident tensor;
`throttled:GBPS` copies a resident tensor under a token-bucket rate limit of GBPS GB/s, which
sets the I/O/compute ratio for sweeps. Every load is counted (loads, bytes, seconds).
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from specmoeoff.store import expert_file


@dataclass(frozen=True)
class TierSpec:
    kind: str  # cold | warm | ram | throttled
    gbps: float | None = None


def parse_tier(spec: str) -> TierSpec:
    """`cold`, `warm`, `ram` or `throttled:GBPS` (GBPS > 0), else ValueError."""
    if spec in ("cold", "warm", "ram"):
        return TierSpec(spec)
    if spec.startswith("throttled:"):
        try:
            rate = float(spec.split(":", 1)[1])
        except ValueError:
            rate = -1.0
        if rate > 0:
            return TierSpec("throttled", rate)
    raise ValueError(f"bad tier {spec!r}: use cold, warm, ram or throttled:GBPS (GBPS > 0)")


class TokenBucket:
    """Bytes leave at `rate` bytes/s; a burst of at most `burst` bytes is allowed (thread safe)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, time.perf_counter()
        self.lock = threading.Lock()

    def consume(self, n: int) -> None:
        with self.lock:
            now = time.perf_counter()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            self.tokens -= n
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait > 0:
            time.sleep(wait)


def _read_file(path: Path, drop_cache: bool) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        if drop_cache and hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        size = os.fstat(fd).st_size
        chunks, got = [], 0
        while got < size:
            b = os.read(fd, min(size - got, 8 << 20))
            if not b:
                break
            chunks.append(b)
            got += len(b)
        return b"".join(chunks)
    finally:
        os.close(fd)


class ExpertStore:
    """Loads one expert's `(gate_up, down)` from the slow tier into fresh tensors of `dtype`."""

    def __init__(self, root: str | Path, tier: str = "cold", dtype: torch.dtype = torch.float32) -> None:
        self.root, self.tier, self.dtype = Path(root), parse_tier(tier), dtype
        self.loads = 0
        self.bytes_read = 0
        self.seconds = 0.0
        self._lock = threading.Lock()
        self._resident: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}
        self._bucket = None
        if self.tier.kind == "throttled":
            rate = self.tier.gbps * 1e9
            self._bucket = TokenBucket(rate, burst=rate * 0.002)

    def _resident_pair(self, layer: int, expert: int) -> tuple[Tensor, Tensor]:
        key = (layer, expert)
        if key not in self._resident:  # first touch fills "host memory"; not counted as a load
            from specmoeoff.store import load_expert_file

            self._resident[key] = load_expert_file(self.root / expert_file(layer, expert))
        return self._resident[key]

    def preload(self, num_layers: int, num_experts: int) -> None:
        """Fill host memory for the ram/throttled tiers before timing starts."""
        if self.tier.kind in ("ram", "throttled"):
            for i in range(num_layers):
                for e in range(num_experts):
                    self._resident_pair(i, e)

    def load(self, layer: int, expert: int) -> tuple[Tensor, Tensor]:
        t0 = time.perf_counter()
        if self.tier.kind in ("cold", "warm"):
            from safetensors.torch import load as st_load

            data = _read_file(self.root / expert_file(layer, expert), drop_cache=self.tier.kind == "cold")
            t = st_load(data)
            gu, dn, n = t["gate_up"], t["down"], len(data)
        else:
            src_gu, src_dn = self._resident_pair(layer, expert)
            n = src_gu.numel() * src_gu.element_size() + src_dn.numel() * src_dn.element_size()
            if self._bucket is not None:
                self._bucket.consume(n)
            gu, dn = src_gu.clone(), src_dn.clone()
        gu, dn = gu.to(self.dtype), dn.to(self.dtype)
        with self._lock:
            self.loads += 1
            self.bytes_read += n
            self.seconds += time.perf_counter() - t0
        return gu, dn

    def reset_counters(self) -> None:
        with self._lock:
            self.loads, self.bytes_read, self.seconds = 0, 0, 0.0
