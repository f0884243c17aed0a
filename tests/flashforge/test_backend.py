"""FlashForgeBackend: one plan per step, exact against paged decode; SmolLM2 greedy identity."""
import pytest
import torch

from flashforge.backend import FlashForgeBackend, forced_shared
from flashforge.workloads import make_tensors, two_level
from papersuite.engine.attention import AttentionMetadata, paged_decode


def _meta(w, extra_rows=0):
    B = len(w.seq_lens)
    table = torch.as_tensor(w.block_tables)
    lens = torch.as_tensor(w.seq_lens)
    return AttentionMetadata(positions=lens - 1, slot_mapping=torch.zeros(B, dtype=torch.long),
                             query_start_loc=torch.arange(B + 1), seq_lens=lens, block_tables=table,
                             num_decodes=B - extra_rows, query_lens_list=[1] * B,
                             seq_lens_list=[int(x) for x in w.seq_lens])


@pytest.mark.parametrize("backend", [forced_shared(), FlashForgeBackend("auto")])
def test_one_plan_per_step_reused_by_layers(backend):
    w = two_level(8, 512, 40)
    q, k, v = make_tensors(w, 9, 3, 64, seed=0)
    table, lens = torch.as_tensor(w.block_tables), torch.as_tensor(w.seq_lens)
    for step in range(2):
        backend.prepare(_meta(w))
        for layer in range(3):
            out = backend.decode(q, k, v, table, lens, 0.125)
            ref = paged_decode(q, k, v, table, lens, 0.125)
            assert (out - ref).abs().max() < 1e-5
        assert backend.plans_built_ == step + 1
    assert backend.plan_.stats["shared_nodes"] == 1
    assert sum(backend.paths_.values()) == 6


def test_registered_by_name():
    import cli  # noqa: F401  (runs the registration)
    from flashforge.registration import register_when_engine_loads
    from papersuite.engine.attention import make_backend

    register_when_engine_loads()
    assert isinstance(make_backend("flashforge"), FlashForgeBackend)


@pytest.mark.slow
def test_smollm2_greedy_same_tokens_under_preemption():
    """SmolLM2 fp32, shared path forced: same greedy tokens and logits within 1e-4 as the default
    backend, on a KV cache small enough that requests are preempted; one plan per decode step."""
    from flashforge.engine_check import greedy_compare, shared_prompts
    from papersuite.engine.engine import LLMEngine

    eng = LLMEngine("smollm2-135m-instruct", device="cpu", num_blocks=36, max_num_seqs=5)
    fb = forced_shared()
    r = greedy_compare(eng, fb, shared_prompts(4, 200), max_tokens=8)
    assert r["tokens_equal"] and r["max_logit_diff"] <= 1e-4
    assert r["preemptions"] >= 1
    assert fb.plans_built_ == r["steps_with_decodes"] and fb.shared_plans_ >= 1
    assert fb.paths_["torch"] == fb.plans_built_ * eng.model.config.num_hidden_layers
