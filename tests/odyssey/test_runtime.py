"""Multi-process DP2 x PP2 runs on gloo: equivalence, faults, recovery, cleanup (hard timeouts)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from cli import app
from odyssey.controller import LocalController, RunConfig
from odyssey.faults import parse_fault
from odyssey.reference import reference_losses

TINY = dict(dp=2, pp=2, layers=4, d_model=32, heads=2, seq_len=16, micro_batches=4, global_batch=8, steps=6,
            dtype="float64", heartbeat_timeout=2.0, deadline_s=60.0)
pytestmark = pytest.mark.slow  # each run is bounded by RunConfig.deadline_s (the controller kills all workers)


def _children():
    return [p for p in psutil.Process().children(recursive=True) if "odyssey.worker" in " ".join(p.cmdline())]


def _run(**kw):
    faults = [parse_fault(s) for s in kw.pop("inject", [])]
    res = LocalController(RunConfig(**{**TINY, **kw}, faults=faults)).run()
    assert not _children(), "a worker outlived the run"
    return res


@pytest.fixture(scope="module")
def reference():
    cfg = RunConfig(**TINY)
    return reference_losses(cfg.gpt(), cfg.steps, cfg.global_batch, cfg.micro_batches)


@pytest.fixture(scope="module")
def failure_free():
    return _run()


def _assert_same(losses, ref, rtol=1e-9):
    assert len(losses) == len(ref)
    for a, b in zip(losses, ref):
        assert a == pytest.approx(b, rel=rtol)


def test_failure_free_matches_single_process(failure_free, reference):
    _assert_same(failure_free["losses"], reference)
    assert failure_free["params_sha256"]


def test_reroute_then_lost_last_copy_falls_back_to_restart(reference):
    res = _run(inject=["kill:2:3", "kill:5:1"], strategy="reroute", ckpt_every=2, ckpt_mode="sync")
    _assert_same(res["losses"], reference)
    first, second = res["failures"]
    assert first["strategy"] == "reroute" and first["lost_steps"] == 0
    assert second["strategy"] == "restart"
    assert {c["strategy"]: c["feasible"] for c in second["candidates"]}["reroute"] is False


def test_hang_detected_and_replanned(reference):
    res = _run(inject=["hang:2:1"], strategy="replan")
    _assert_same(res["losses"], reference)
    (f,) = res["failures"]
    assert f["kind"] == "hang" and f["strategy"] == "replan" and f["lost_steps"] == 0
    assert f["detect_s"] < 2.0 + 1.0


def test_spare_takes_the_slot(reference):
    res = _run(inject=["kill:3:2"], strategy="spare", spares=1)
    _assert_same(res["losses"], reference)
    assert res["failures"][0]["strategy"] == "spare" and res["failures"][0]["lost_steps"] == 0


def test_cli_restart_onto_spare_is_bit_identical(failure_free, tmp_path):
    out = tmp_path / "r.json"
    r = CliRunner().invoke(app, ["--quiet", "train", "odyssey", "run", "--dp", "2", "--pp", "2", "--layers", "4",
                                 "--d-model", "32", "--heads", "2", "--seq-len", "16", "--micro-batches", "4",
                                 "--global-batch", "8", "--steps", "6", "--dtype", "float64", "--spares", "1",
                                 "--strategy", "restart", "--inject", "kill:4:2", "--ckpt-every", "2",
                                 "--ckpt-dir", str(tmp_path / "ck"), "-o", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["failures"][0]["strategy"] == "restart" and res["failures"][0]["lost_steps"] > 0
    assert res["losses"] == failure_free["losses"]
    assert res["params_sha256"] == failure_free["params_sha256"]
    assert any(Path(tmp_path, "ck").glob("step-*/COMPLETE.json"))
    assert not _children()
