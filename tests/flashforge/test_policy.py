"""prefix-group: sharers of a prompt prefix are admitted and kept together; registered by name."""
from types import SimpleNamespace

from flashforge.policy import PrefixGroupPolicy


def _seq(i, prefix, t):
    return SimpleNamespace(seq_id=i, arrival_time=t, prompt_token_ids=prefix + [100 + i])


def test_groups_by_prefix_in_order_of_first_arrival():
    doc_a, doc_b, chat = [1] * 8, [2] * 8, [3, 4]
    waiting = [_seq(0, doc_a, 0.0), _seq(1, chat, 1.0), _seq(2, doc_b, 2.0), _seq(3, doc_a, 3.0),
               _seq(4, doc_b, 4.0), _seq(5, doc_a, 5.0)]
    p = PrefixGroupPolicy(prefix_tokens=8)
    assert [s.seq_id for s in p.order_waiting(waiting)] == [0, 3, 5, 1, 2, 4]
    assert [s.seq_id for s in p.order_running(list(reversed(waiting)))] == [0, 3, 5, 1, 2, 4]
    assert p.select_victim(waiting).seq_id == 4          # newest of the latest group


def test_registered_as_scheduler():
    import cli  # noqa: F401
    from flashforge.registration import register_when_engine_loads
    from papersuite.engine.scheduler import make_scheduling_policy

    register_when_engine_loads()
    assert isinstance(make_scheduling_policy("prefix-group"), PrefixGroupPolicy)
