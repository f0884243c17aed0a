import pytest

from glmcot.policy import GraphCoTEvictionPolicy, block_class, register
from papersuite.engine.kv_cache import Block


def _block(i, *tags):
    return Block(i, tags=tuple(tags))


def test_classes_take_the_most_protected_tag():
    assert block_class(("P3", "P0"), set()) == 0
    assert block_class(("P1:q1",), set()) == 1 and block_class(("P1:q1",), {"q1"}) == 2
    assert block_class((), set()) == 3


def test_eviction_goes_p3_to_p0_lru_within():
    pol = GraphCoTEvictionPolicy()
    blocks = [_block(0, "P0"), _block(1, "P1:q1"), _block(2, "P3"), _block(3, "P1:q2"), _block(4, "P3"),
              _block(5, "P0")]
    for b in blocks:
        pol.insert(b)
    pol.finish("q2")  # q2's notebook: P1 -> P2
    order = [pol.evict().block_id for _ in range(len(blocks))]
    assert order == [2, 4, 3, 1, 0, 5]
    assert pol.evictions == [2, 1, 1, 2] and len(pol) == 0


def test_remove_and_registry():
    pol = GraphCoTEvictionPolicy()
    b = _block(7, "P3")
    pol.insert(b)
    pol.remove(b)
    assert len(pol) == 0
    register()
    from papersuite.engine.kv_cache import EVICTION_POLICIES, make_eviction_policy

    assert isinstance(make_eviction_policy("graphcot"), GraphCoTEvictionPolicy) and "graphcot" in EVICTION_POLICIES


def test_span_tags_cover_the_prompt():
    from glmcot.backends import TokenCounter
    from glmcot.engine_backend import span_token_tags
    from glmcot.prompts import R_PREFIX, r_messages

    tok = TokenCounter().tokenizer
    msgs = r_messages("Who?", ["fact: 1"])
    ids, tags = span_token_tags(tok, msgs, [(len(R_PREFIX), "P0"), (len(msgs[-1]["content"]), "P1:q")])
    assert tags[0][0] == 0 and tags[-1][1] == len(ids)
    assert [t for *_, t in tags] == ["P0", "P1:q", "P3"]
    assert all(a[1] == b[0] for a, b in zip(tags, tags[1:]))


@pytest.mark.slow
def test_priority_eviction_never_changes_outputs():
    """Greedy outputs under a KV cache too small for the workload: LRU and graphcot agree."""
    from glmcot.engine_backend import span_token_tags
    from glmcot.prompts import R_PREFIX, r_messages
    from papersuite.engine.engine import LLMEngine
    from papersuite.llm import SamplingParams

    outs, evictions = {}, None
    for policy in ("lru", "graphcot"):
        register()
        eng = LLMEngine(kv_policy=policy, num_blocks=12)
        got = []
        for i in range(5):
            msgs = r_messages(f"Question {i}: who wrote paper {i}?", [f"fact {j}: author {j}" for j in range(i % 3)])
            ids, tags = span_token_tags(eng.tokenizer, msgs, [(len(R_PREFIX), "P0"),
                                                              (len(msgs[-1]["content"]), f"P1:q{i}")])
            seq = eng.make_sequence(None, SamplingParams(max_tokens=6), prompt_token_ids=ids, span_tags=tags)
            eng.add_sequence(seq)
            while not seq.is_finished:
                eng.step()
            got.append(seq.output_token_ids)
            if hasattr(eng.block_manager.eviction, "finish"):
                eng.block_manager.eviction.finish(f"q{i}")
        outs[policy] = got
        if policy == "graphcot":
            evictions = eng.block_manager.eviction.evictions
    assert outs["lru"] == outs["graphcot"]
    assert sum(evictions) > 0  # finished notebooks (P2) went first
