"""Step memory, measured for real, and an emulated device capacity that really fails.

CPU ("device" = the process's private memory): glibc's mmap threshold is pinned to 64 KiB so
every large tensor is its own mapping, returned to the OS on free; writing 5 to
/proc/self/clear_refs resets the high-water mark, so the step's peak = VmHWM - RSS at step start.
The capacity is RLIMIT_DATA = VmData now + M: torch then raises "can't allocate memory".
CUDA: max_memory_allocated - allocated at step start; capacity by a per-process memory fraction.
"""
from __future__ import annotations

import ctypes
import os
import resource

MIB = 1 << 20
_M_MMAP_THRESHOLD = -3


def _status(*keys: str) -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            k, _, v = line.partition(":")
            if k in keys:
                out[k] = int(v.split()[0]) * 1024
    return out


class CpuMemory:
    """Peak and current step memory of this process (bytes above the step's starting RSS)."""

    device = "cpu"

    def __init__(self) -> None:
        try:
            ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, 64 * 1024)
        except OSError:  # not glibc: peaks will include memory glibc keeps; still monotone
            pass
        self._statm = os.open("/proc/self/statm", os.O_RDONLY)
        self._page = os.sysconf("SC_PAGE_SIZE")
        self.start = self.rss()
        self._can_reset = os.access("/proc/self/clear_refs", os.W_OK)

    def rss(self) -> int:
        return int(os.pread(self._statm, 128, 0).split()[1]) * self._page

    def reset_peak(self) -> None:
        if self._can_reset:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
        self.start = self.rss()

    def current(self) -> int:
        return self.rss() - self.start

    def peak(self) -> int:
        return max(_status("VmHWM")["VmHWM"] - self.start, self.current())

    def set_capacity(self, mib: float) -> int:
        """Cap the data segment at VmData now + mib; returns the limit in bytes."""
        limit = _status("VmData")["VmData"] + int(mib * MIB)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, resource.getrlimit(resource.RLIMIT_DATA)[1]))
        self.limit = limit
        return limit

    def headroom(self) -> int:
        """Bytes left under the capacity now (what a step may still allocate)."""
        return self.limit - _status("VmData")["VmData"]

    def close(self) -> None:
        os.close(self._statm)


class CudaMemory:
    """The same interface on a CUDA device, read from the caching allocator's counters."""

    def __init__(self, device: str = "cuda") -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.start = torch.cuda.memory_allocated(self.device)

    def reset_peak(self) -> None:
        self.torch.cuda.synchronize(self.device)
        self.torch.cuda.reset_peak_memory_stats(self.device)
        self.start = self.torch.cuda.memory_allocated(self.device)

    def current(self) -> int:
        return self.torch.cuda.memory_allocated(self.device) - self.start

    def peak(self) -> int:
        self.torch.cuda.synchronize(self.device)
        return self.torch.cuda.max_memory_allocated(self.device) - self.start

    def set_capacity(self, mib: float) -> int:
        total = self.torch.cuda.get_device_properties(self.device).total_memory
        limit = self.torch.cuda.memory_allocated(self.device) + int(mib * MIB)
        self.torch.cuda.set_per_process_memory_fraction(min(1.0, limit / total), self.device)
        self.limit = limit
        return limit

    def headroom(self) -> int:
        return self.limit - self.torch.cuda.memory_allocated(self.device)

    def close(self) -> None:
        pass


def for_device(device: str):
    return CudaMemory(device) if device.startswith("cuda") else CpuMemory()


def is_oom(exc: BaseException) -> bool:
    """True for an allocator failure on either device (CPU: DefaultCPUAllocator, MemoryError)."""
    if isinstance(exc, MemoryError):
        return True
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):  # pragma: no cover
        pass
    if isinstance(exc, OSError) and exc.errno == 12:
        return True
    msg = str(exc)
    # oneDNN reports a failed scratchpad allocation as "could not create a primitive"
    return isinstance(exc, RuntimeError) and any(
        k in msg for k in ("can't allocate memory", "out of memory", "could not create a primitive"))
