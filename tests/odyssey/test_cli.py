"""CLI smoke: plan and simulate through CliRunner, the error path through the installed executable."""
import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from cli import app

EXE = Path(sys.executable).parent / "papersuite"
runner = CliRunner()


def test_plan_default_and_scenario(tmp_path):
    r = runner.invoke(app, ["--quiet", "train", "odyssey", "plan", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    scored = [c for c in res["candidates"] if c["score"] is not None]
    assert res["chosen"] == max(scored, key=lambda c: c["score"])["strategy"]
    # held-out scenario: Eq. 9 / 12 / restart formula by hand
    sc = {"dp": 3, "pp": 2, "layers": 4, "micro_batches": 6, "global_batch": 12, "t_f": 0.5, "t_b": 1.0,
          "param_bytes": 1e6, "optim_bytes": 2e6, "act_bytes": 1e5, "memory_bytes": 1e12, "failed": [[0, 1]],
          "window_s": 100.0, "spares": 0, "restart_s": 7.0, "steps_since_ckpt": 2}
    p = tmp_path / "sc.json"
    p.write_text(json.dumps(sc))
    r = runner.invoke(app, ["--quiet", "train", "odyssey", "plan", str(p), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    t_ff = (2 + 2 - 1) * (2 * 0.5 + 2 * 1.0)
    assert res["failure_free_t_step_s"] == t_ff
    c = {x["strategy"]: x for x in res["candidates"]}
    assert c["reroute"]["t_step_s"] == (2 + 2 - 1 + 2 * 1 / (3 - 1)) * 3.0
    assert c["restart"]["t_transition_s"] == 7.0 + 2 * t_ff
    assert c["reroute"]["score"] == 12 / c["reroute"]["t_step_s"]


def test_simulate_small(tmp_path):
    out = tmp_path / "s.json"
    r = runner.invoke(app, ["--quiet", "train", "odyssey", "simulate", "--gpus", "32,4096", "--traces", "2",
                            "-o", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    for s in res["scales"]:
        best = max(v for k, v in s["throughput"].items() if k != "adaptive")
        assert s["throughput"]["adaptive"] >= 0.99 * best


def test_bad_inputs_exit_2(tmp_path):
    p = subprocess.run([str(EXE), "train", "odyssey", "run", "--inject", "kill:1:9"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "outside the 2x2 layout" in p.stderr
    for args in (["run", "--dp", "0"], ["run", "--inject", "boom"], ["simulate", "--gpus", "x"]):
        r = runner.invoke(app, ["train", "odyssey", *args])
        assert r.exit_code == 2, r.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"dp": 2}))
    r = runner.invoke(app, ["train", "odyssey", "plan", str(bad)])
    assert r.exit_code == 2 and "missing" in " ".join(r.output.split())
