import random

import numpy as np
import pytest
import torch

from papersuite.device import resolve_device, seed_everything, set_threads
from papersuite.errors import UserError, require
from papersuite.llm import SamplingParams, apply_stop


def _draw():
    return random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()


def test_seeding_reproduces():
    seed_everything(123)
    a = _draw()
    seed_everything(123)
    b = _draw()
    seed_everything(124)
    c = _draw()
    assert a == b
    assert a != c


def test_resolve_device():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda")
    with pytest.raises(UserError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA"):
            resolve_device("cuda")


def test_set_threads():
    before = torch.get_num_threads()
    assert set_threads(1) == 1 and torch.get_num_threads() == 1
    set_threads(before)


def test_user_error_is_one_line_with_exit_code_2():
    e = UserError("bad\nthing", where="f.jsonl:3")
    assert str(e) == "f.jsonl:3: bad thing"
    assert e.exit_code == 2
    with pytest.raises(UserError, match="nope"):
        require(False, "nope")
    require(True, "never raised")


def test_sampling_params_validate():
    with pytest.raises(UserError):
        SamplingParams(max_tokens=0)
    with pytest.raises(UserError):
        SamplingParams(temperature=-1)
    assert SamplingParams(stop="x").stop == ("x",)


def test_apply_stop():
    assert apply_stop("abc STOP def", ["STOP"]) == ("abc ", True)
    assert apply_stop("abc", ["zz"]) == ("abc", False)
    assert apply_stop("a;b.c", [".", ";"]) == ("a", True)
