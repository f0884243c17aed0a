import numpy as np
import pytest

from glmcot.graph import GraphError
from glmcot.retriever import Retriever, fold
from glmcot.scoring import normalize_answer, score_one, set_f1, summarise


class FakeEmbedder:
    """Bag-of-letters vectors: enough to test top-1 and the disk cache without MiniLM."""

    name = "fake"

    def __init__(self):
        self.calls = 0

    def encode(self, texts):
        self.calls += 1
        out = np.zeros((len(texts), 26), dtype=np.float32)
        for i, t in enumerate(texts):
            for ch in t.lower():
                if "a" <= ch <= "z":
                    out[i, ord(ch) - 97] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_exact_match_is_case_folded(graph):
    r = Retriever(graph)
    assert r.retrieve('  "ivo BRENNAN" ') == "a0090" and fold('"A  b."') == "a b"
    assert r.stats["exact"] == 1
    r.retrieve("Ivo Brennan")
    assert r.stats["memo"] == 1
    with pytest.raises(GraphError):
        r.retrieve("nobody at all")


def test_embedding_fallback_cached_on_disk(graph, tmp_path):
    emb = FakeEmbedder()
    r = Retriever(graph, lambda: emb, tmp_path)
    nid = r.retrieve("Ivo Brenan")  # a typo: no exact hit
    assert r.stats["embedding"] == 1 and nid in graph.nodes
    assert len(list(tmp_path.glob(f"{graph.digest}-fake.npy"))) == 1
    emb2 = FakeEmbedder()
    r2 = Retriever(graph, lambda: emb2, tmp_path)
    assert r2.retrieve("Ivo Brenan") == nid and emb2.calls == 1  # only the query was embedded


def test_scoring():
    assert normalize_answer("The  Journal, of A.I.!") == "journal of ai"
    assert set_f1(["x", "y"], ["y", "x"]) == 1.0 and set_f1(["x"], ["x", "y"]) == pytest.approx(2 / 3)
    gold = {"answer": "B C, A B", "answer_list": ["A B", "B C"]}
    s = score_one("a b, b c", gold)
    assert s["em"] == 1.0 and s["f1"] == 1.0 and 0 < s["rouge_l"] <= 1
    assert score_one("7", {"answer": "7"})["em"] == 1.0 and score_one("8", {"answer": "7"})["f1"] == 0.0
    summ = summarise([{"system": "glm", "level": "easy", "template": "t", "em": 1.0, "f1": 1.0, "rouge_l": 1.0,
                       "class_ok": 1.0},
                      {"system": "glm", "level": "hard", "template": "u", "em": 0.0, "f1": 0.5, "rouge_l": 0.5}])
    assert summ["glm"]["overall"]["em"] == 0.5 and summ["glm"]["by_level"]["easy"]["class_acc"] == 1.0
