"""Fault specs (`kill:STEP:RANK`, `hang:STEP:RANK`) and the injector every launcher shares.

A worker fires a fault in STEP's backward, before the gradient all-reduce: SIGKILL (a crash) or
SIGSTOP (a hang: the process lives but stops heartbeating). Each fault fires once, even across
restarts, through an O_EXCL marker file in the run folder.
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from papersuite.errors import UserError


@dataclass(frozen=True)
class Fault:
    kind: str  # "kill" | "hang"
    step: int
    rank: int

    def spec(self) -> str:
        return f"{self.kind}:{self.step}:{self.rank}"


def parse_fault(spec: str, where: str = "--inject") -> Fault:
    parts = spec.strip().split(":")
    if len(parts) != 3 or parts[0] not in ("kill", "hang"):
        raise UserError(f"{where}: {spec!r} is not kill:STEP:RANK or hang:STEP:RANK")
    try:
        step, rank = int(parts[1]), int(parts[2])
    except ValueError:
        raise UserError(f"{where}: {spec!r}: STEP and RANK must be integers") from None
    if step < 0 or rank < 0:
        raise UserError(f"{where}: {spec!r}: STEP and RANK must be >= 0")
    return Fault(parts[0], step, rank)


def read_trace(path: str) -> list[Fault]:
    """One spec per line (`#` comments allowed); errors name file:line."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such file")
    out = []
    for i, line in enumerate(p.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(parse_fault(line, where=f"{p}:{i}"))
    return out


class Injector:
    """Fires this rank's faults at the right step, once per run folder."""

    def __init__(self, faults: list[Fault], rank: int, run_dir: str) -> None:
        self.faults = [(i, f) for i, f in enumerate(faults) if f.rank == rank]
        self.run_dir = run_dir

    def maybe_fire(self, step: int, on_fire=None) -> None:
        for i, f in self.faults:
            if f.step != step:
                continue
            try:
                fd = os.open(os.path.join(self.run_dir, f"fault-{i}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                continue
            os.write(fd, f"{time.time()!r}".encode())
            os.close(fd)
            if on_fire:
                on_fire(f)
            os.kill(os.getpid(), signal.SIGKILL if f.kind == "kill" else signal.SIGSTOP)
