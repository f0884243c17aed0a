"""Host tiers: where swapped-out storages live until backward needs them.

`FileTier` (CPU): one preallocated file, written with os.pwritev and read with os.preadv. The bytes
land in the page cache, outside the process's private memory, so the saving shows in RSS (an
mmap'd file would not: touched pages count). The file is unlinked right after it is opened, so it
disappears on exit, Ctrl-C or crash.

`CudaTier` (GPU): pinned host buffers from a caching pool, copies on a side stream ordered by
events, prefetch ahead of use, and the device block kept alive until its copy out has finished
(free deferred to the copy's event).

Both move whole storages as flat uint8 tensors; executors rebuild views (size, stride, offset).
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch


@dataclass
class Slot:
    """One swapped storage: where its bytes are and whether a copy is still in flight."""

    nbytes: int
    offset: int = 0
    host: Any = None
    dev: Any = None
    out_event: Any = None
    in_event: Any = None


class Tier(Protocol):
    bandwidth: tuple[float, float]

    def put(self, base: torch.Tensor) -> Slot: ...
    def prefetch(self, slot: Slot) -> None: ...
    def get(self, slot: Slot) -> torch.Tensor: ...
    def release(self, slot: Slot) -> None: ...
    def reset(self) -> None: ...
    def close(self) -> None: ...


def as_bytes(t: torch.Tensor) -> torch.Tensor:
    """The whole storage behind `t` as a flat uint8 tensor (no copy)."""
    return torch.empty(0, dtype=torch.uint8, device=t.device).set_(t.untyped_storage())


class FileTier:
    """A file in `directory` used as a bump-allocated arena, reset at the end of every step."""

    def __init__(self, directory: str | None = None, initial_bytes: int = 64 << 20) -> None:
        if directory is not None:
            os.makedirs(directory, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix="chameleon-tier-", suffix=".bin", dir=directory)
        os.unlink(path)  # the open descriptor keeps it; nothing is left behind on any exit
        self.fd, self.path, self.size, self.top = fd, path, 0, 0
        self._grow(initial_bytes)
        self.bytes_out = self.bytes_in = 0
        self.bandwidth = (5e9, 5e9)

    def _grow(self, need: int) -> None:
        if need > self.size:
            self.size = max(need, 2 * self.size)
            os.ftruncate(self.fd, self.size)

    def put(self, base: torch.Tensor) -> Slot:
        n = base.numel()
        off = (self.top + 4095) & ~4095
        self._grow(off + n)
        if n:
            written = os.pwritev(self.fd, [base.numpy()], off)
            if written != n:
                raise OSError(f"short write to the host tier ({written} of {n} bytes)")
        self.top = off + n
        self.bytes_out += n
        return Slot(nbytes=n, offset=off)

    def prefetch(self, slot: Slot) -> None:
        if slot.dev is None:
            buf = torch.empty(slot.nbytes, dtype=torch.uint8)
            if slot.nbytes:
                got = os.preadv(self.fd, [buf.numpy()], slot.offset)
                if got != slot.nbytes:
                    raise OSError(f"short read from the host tier ({got} of {slot.nbytes} bytes)")
            self.bytes_in += slot.nbytes
            slot.dev = buf

    def get(self, slot: Slot) -> torch.Tensor:
        self.prefetch(slot)
        return slot.dev

    def release(self, slot: Slot) -> None:
        slot.dev = None

    def reset(self) -> None:
        self.top = 0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def calibrate(self, nbytes: int = 8 << 20) -> tuple[float, float]:
        """Measure write and read bandwidth (bytes/s) on this tier; used by the simulator."""
        buf = torch.ones(nbytes, dtype=torch.uint8)
        t0 = time.perf_counter()
        slot = self.put(buf)
        t1 = time.perf_counter()
        self.get(slot)
        t2 = time.perf_counter()
        self.release(slot)
        self.reset()
        self.bytes_out = self.bytes_in = 0
        self.bandwidth = (nbytes / max(t1 - t0, 1e-6), nbytes / max(t2 - t1, 1e-6))
        return self.bandwidth


@dataclass
class CudaTier:
    """Pinned host pool + side stream; every cross-stream use is ordered by an event."""

    device: str = "cuda"
    pool: dict[int, list[torch.Tensor]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.stream = torch.cuda.Stream(torch.device(self.device))
        self.pending_out: list[tuple[Any, torch.Tensor]] = []
        self.pending_host: list[tuple[Any, torch.Tensor]] = []
        self.bytes_out = self.bytes_in = 0
        self.bandwidth = (25.6e9, 25.6e9)

    def _pinned(self, n: int) -> torch.Tensor:
        free = self.pool.get(n)
        return free.pop() if free else torch.empty(n, dtype=torch.uint8, pin_memory=True)

    def collect(self) -> None:
        """Free device blocks and recycle host buffers whose copies have completed."""
        self.pending_out = [(e, t) for e, t in self.pending_out if not e.query()]
        still = []
        for e, host in self.pending_host:
            if e is None or e.query():
                self.pool.setdefault(host.numel(), []).append(host)
            else:
                still.append((e, host))
        self.pending_host = still

    def put(self, base: torch.Tensor) -> Slot:
        n = base.numel()
        host = self._pinned(n)
        ready = torch.cuda.current_stream(base.device).record_event()
        with torch.cuda.stream(self.stream):
            self.stream.wait_event(ready)
            host.copy_(base, non_blocking=True)
            done = self.stream.record_event()
        self.pending_out.append((done, base))  # the device block lives until the copy is done
        self.bytes_out += n
        self.collect()
        return Slot(nbytes=n, host=host, out_event=done)

    def prefetch(self, slot: Slot) -> None:
        if slot.dev is not None:
            return
        with torch.cuda.stream(self.stream):
            self.stream.wait_event(slot.out_event)
            dev = torch.empty(slot.nbytes, dtype=torch.uint8, device=self.device)
            dev.copy_(slot.host, non_blocking=True)
            slot.in_event = self.stream.record_event()
        slot.dev = dev
        self.bytes_in += slot.nbytes

    def get(self, slot: Slot) -> torch.Tensor:
        self.prefetch(slot)
        current = torch.cuda.current_stream(slot.dev.device)
        current.wait_event(slot.in_event)  # never use a block before its copy in has landed
        slot.dev.record_stream(current)
        return slot.dev

    def release(self, slot: Slot) -> None:
        if slot.host is not None:
            self.pending_host.append((slot.in_event or slot.out_event, slot.host))
            slot.host = None
        slot.dev = None
        self.collect()

    def reset(self) -> None:
        self.stream.synchronize()
        self.collect()

    def close(self) -> None:
        self.stream.synchronize()
        self.pending_out.clear()
        self.pending_host.clear()
        self.pool.clear()

    def calibrate(self, nbytes: int = 64 << 20) -> tuple[float, float]:
        src = torch.ones(nbytes, dtype=torch.uint8, device=self.device)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        slot = self.put(src)
        self.stream.synchronize()
        t1 = time.perf_counter()
        self.get(slot)
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        self.release(slot)
        self.reset()
        self.bytes_out = self.bytes_in = 0
        self.bandwidth = (nbytes / max(t1 - t0, 1e-9), nbytes / max(t2 - t1, 1e-9))
        return self.bandwidth


def for_device(device: str, host_dir: str | None = None):
    return CudaTier(device) if device.startswith("cuda") else FileTier(host_dir)
