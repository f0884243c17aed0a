"""csgnn test helpers: a private structure cache and small graph sets."""
import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("PAPERSUITE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def tiny_records(n_per_class: int = 8):
    """Rings (label "ring") and paths (label "path") of 4-9 nodes: separable only through cycles."""
    recs = []
    for k in range(n_per_class):
        n = 4 + k % 6
        recs.append({"id": f"ring{k}", "num_nodes": n, "edges": [[i, (i + 1) % n] for i in range(n)], "y": "ring"})
        recs.append({"id": f"path{k}", "num_nodes": n, "edges": [[i, i + 1] for i in range(n - 1)], "y": "path"})
    return recs


@pytest.fixture
def tiny_jsonl(tmp_path):
    p = tmp_path / "tiny.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in tiny_records()))
    return p


@pytest.fixture
def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e
