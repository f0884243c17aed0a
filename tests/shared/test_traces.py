"""Trace readers against the shared data's documented statistics, and the transformations."""
from pathlib import Path

import numpy as np
import pytest

from papersuite import traces
from papersuite.errors import UserError

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "traces"
needs_data = pytest.mark.skipif(not DATA.exists(), reason="../shared/data/traces not present")


@needs_data
def test_azure_conv_matches_provenance_stats():
    reqs = traces.read_trace(DATA / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv")
    s = traces.summary(reqs)
    assert s["n"] == 19366
    assert round(s["input"]["mean"]) == 1155 and s["input"]["median"] == 1020
    assert round(s["output"]["mean"]) == 211 and s["output"]["max"] == 1000
    assert 3490 < s["duration_s"] < 3510 and abs(s["rate_per_s"] - 5.53) < 0.02
    assert abs(s["interarrival_cv"] - 1.09) < 0.02
    assert reqs[0].arrival == 0.0 and all(a.arrival <= b.arrival for a, b in zip(reqs, reqs[1:]))


@needs_data
def test_mooncake_conversation_prefix_reuse():
    path = DATA / "mooncake_fast25" / "conversation_trace.jsonl"
    assert traces.detect_format(path) == "mooncake"
    s = traces.summary(traces.read_trace(path))
    assert s["n"] == 12031 and abs(s["prefix_block_reuse"] - 0.366) < 0.001


@needs_data
def test_length_stats_reader_and_limit():
    path = DATA / "length_stats" / "sharegpt_8k_filtered_stats_llama2_tokenizer.csv"
    reqs = traces.read_trace(path, limit=100)
    assert len(reqs) == 100 and (reqs[0].prompt_tokens, reqs[0].max_tokens) == (74, 918)
    assert traces.detect_format(path) == "lengths"


def test_workload_jsonl_and_errors(tmp_path):
    p = tmp_path / "w.jsonl"
    p.write_text('{"id": "a", "arrival": 0.5, "prompt": "hello there", "max_tokens": 8}\n'
                 '{"id": "b", "arrival": 0.1, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}\n')
    reqs = traces.read_trace(p)
    assert [r.id for r in reqs] == ["b", "a"] and reqs[0].messages[0]["content"] == "hi"
    p.write_text('{"id": "a", "prompt": "x", "max_tokens": -3}\n')
    with pytest.raises(UserError, match=r"w.jsonl:1.*max_tokens"):
        traces.read_trace(p)
    p.write_text('{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n')
    with pytest.raises(UserError, match=r"w.jsonl:2.*duplicate id"):
        traces.read_trace(p)
    p.write_text('{"id": "a", "prompt": "x"}\n{"id": "b", "prompt": \n')
    with pytest.raises(UserError, match=r"w.jsonl:2"):
        traces.read_trace(p)


def test_azure_bad_row_names_line(tmp_path):
    p = tmp_path / "az.csv"
    p.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                 "2023-11-16 18:17:03.9799600,10,5\n2023-11-16 18:17:04.0000000,abc,5\n")
    with pytest.raises(UserError, match=r"az.csv:3.*ContextTokens"):
        traces.read_trace(p)
    p.write_text("what,is,this\n1,2,3\n")
    with pytest.raises(UserError, match="unrecognised trace format"):
        traces.read_trace(p)


def test_scale_retime_and_arrivals():
    reqs = [traces.TraceRequest(str(i), float(i), 800, 100) for i in range(11)]
    scaled = traces.scale_lengths(reqs, 8, 4, max_output=20)
    assert (scaled[0].prompt_tokens, scaled[0].max_tokens) == (100, 20)
    assert traces.rate(reqs) == pytest.approx(1.0)
    fast = traces.retime(reqs, 5.0)
    assert traces.rate(fast) == pytest.approx(5.0) and fast[-1].arrival == pytest.approx(2.0)
    a = traces.gamma_arrivals(20000, 4.0, cv=3.0, seed=1)
    gaps = np.diff(a)
    assert gaps.mean() == pytest.approx(0.25, rel=0.05) and gaps.std() / gaps.mean() == pytest.approx(3.0, rel=0.1)
    assert np.array_equal(traces.poisson_arrivals(5, 1.0, seed=3), traces.poisson_arrivals(5, 1.0, seed=3))
    with pytest.raises(UserError):
        traces.retime(reqs, 0)
