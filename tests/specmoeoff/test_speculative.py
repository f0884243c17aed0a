"""Speculative decoding: greedy output identical to the autoregressive target; KV rollback is clean."""
import collections

import pytest
import torch

from papersuite.engine.model import LlamaModel
from specmoeoff.speculative import SpeculativeDecoder
from specmoeoff.target import load_target

PROMPTS = [[1, 504, 3102, 30], [1, 2120, 314, 253, 1789, 42], [1, 900], [1, 11, 7, 88, 1000, 77, 5],
           [1, 4, 4, 4], [1, 31000, 12], [1, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76],
           [1, 12345]]


@pytest.fixture(scope="module")
def models(tiny_llama, tiny_store):
    return load_target(tiny_store), LlamaModel.from_folder(tiny_llama)


def run(models, k, **kw):
    target, draft = models
    dec = SpeculativeDecoder(target, draft, k=k, num_blocks=128, block_size=4, **kw)
    outs, stats = dec.generate(PROMPTS, max_tokens=48)
    return dec, outs, stats


def test_greedy_speculation_equals_autoregressive(models):
    _, ref, ref_stats = run(models, 0)
    assert all(len(o) == 48 for o in ref) and ref_stats.iterations == 47  # the first token comes from prefill
    for k in (1, 3):
        dec, outs, stats = run(models, k)
        assert outs == ref, f"k={k} diverged from the autoregressive target"
        assert stats.iterations < 47  # drafts were accepted (eps 0.1 target, dense draft)
        assert 0 < stats.accepted <= stats.proposed


def test_rollback_leaves_no_orphan_blocks(models):
    dec, _, _ = run(models, 3)
    for paged in (dec.target, dec.draft):
        assert paged.blocks.num_free_blocks == paged.blocks.num_blocks
        assert all(b.ref_count == 0 for b in paged.blocks.blocks)


def test_rollback_truncates_mid_run(models):
    """After each iteration the target holds exactly the accepted tokens minus the pending one."""
    target, draft = models
    dec = SpeculativeDecoder(target, draft, k=4, num_blocks=128, block_size=4)
    seen = []

    def check(stats):
        used = dec.target.blocks.num_blocks - dec.target.blocks.num_free_blocks
        seen.append(used)

    outs, _ = dec.generate(PROMPTS[:1], max_tokens=30, on_iteration=check)
    # blocks held after an iteration = blocks for (prompt + outputs - 1) tokens, never the rejected tail
    assert seen[-1] == 0
    assert max(seen) <= -(-(len(PROMPTS[0]) + 30) // 4)


def test_rejection_sampling_keeps_target_distribution():
    """Toy vocabulary: accepted-then-corrected first tokens follow the target's p (chi-square)."""
    from scipy.stats import chisquare

    from specmoeoff.speculative import SpeculativeDecoder

    p = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05])
    q = torch.tensor([0.1, 0.4, 0.1, 0.2, 0.2])
    dec = SpeculativeDecoder.__new__(SpeculativeDecoder)
    dec.temperature, dec.gen = 1.0, torch.Generator().manual_seed(0)
    counts = collections.Counter()
    n = 6000
    for _ in range(n):
        d = int(torch.multinomial(q, 1, generator=dec.gen))
        logits = torch.log(torch.stack([p, p]))
        first = dec._accept([d], logits, [q])[0]
        counts[first] += 1
    observed = [counts[i] for i in range(5)]
    assert chisquare(observed, (p * n).tolist()).pvalue > 0.001


def test_bad_k():
    with pytest.raises(ValueError):
        SpeculativeDecoder(None, None, k=17)


def test_auto_k_equals_autoregressive(models):
    """k chosen by the optimizer (a synthetic profile where speculation pays) keeps the output."""
    from specmoeoff.optimizer import KOptimizer
    from specmoeoff.profiler import Profile

    prof = Profile(num_layers=2, num_experts=4, top_k=2, slots=2, load=5e-3, ffn_ab=(1e-4, 1e-6),
                   dense_ab=(2e-4, 1e-5), draft_ab=(1e-4, 1e-5))
    _, ref, _ = run(models, 0)
    opt = KOptimizer(prof, k_max=6, every=4)
    _, outs, stats = run(models, opt)
    assert outs == ref
    assert any(k > 0 for k in stats.ks) and len(opt.history_) > 1


def test_block_manager_truncate_releases_and_unhashes():
    from papersuite.engine.kv_cache import BlockManager
    from papersuite.engine.scheduler import Sequence

    bm = BlockManager(num_blocks=8, block_size=4)
    seq = Sequence(list(range(14)), params=None)
    bm.allocate(seq)
    bm.append_slots(seq, 14)
    seq.num_computed_tokens = 14
    bm.commit(seq)  # 3 full blocks hashed
    assert len(seq.block_hashes) == 3 and bm.num_free_blocks == 4
    bm.truncate(seq, 6)  # keep 2 blocks; block 1 becomes partial and must lose its hash
    assert len(seq.block_table) == 2 and seq.num_computed_tokens == 6 and len(seq.block_hashes) == 1
    assert bm.blocks[seq.block_table[1]].hash is None
    assert bm.num_free_blocks == 6
    bm.free(seq)
    assert bm.num_free_blocks == 8 and all(b.ref_count == 0 for b in bm.blocks)
