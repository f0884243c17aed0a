"""Device choice, seeding and thread counts: the three things every numeric command sets first."""
from __future__ import annotations

import os
import random

from papersuite.errors import UserError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> str:
    """`auto` picks cuda when a GPU is visible, else cpu; asking for cuda without one is a UserError."""
    if name not in DEVICES and not name.startswith("cuda:"):
        raise UserError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    import torch

    has_cuda = torch.cuda.is_available()
    if name == "auto":
        return "cuda" if has_cuda else "cpu"
    if name.startswith("cuda") and not has_cuda:
        raise UserError(f"--device {name} asked for, but no CUDA device is visible")
    return name


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) so a run repeats exactly."""
    random.seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover
        pass


def set_threads(n: int | None = None) -> int:
    """Pin torch's and BLAS's thread counts (default: all cores); returns the count used."""
    n = n or os.cpu_count() or 1
    import torch

    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:  # pragma: no cover
        pass
    return n
