"""GRBench's metrics: normalised exact match, order-free set-F1 for lists, ROUGE-L F.

`normalize_answer` is GRBench's (SQuAD's): lower-case, drop punctuation and the articles
a/an/the, collapse spaces. List answers (`answer_list` present) are compared as sets of
normalised items split on ", "; other answers' F1 equals their EM.
"""
from __future__ import annotations

import re
import string
from collections import defaultdict
from typing import Any, Iterable

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(s: Any) -> str:
    s = str(s).lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def set_f1(pred: Iterable[str], gold: Iterable[str]) -> float:
    p = {normalize_answer(x) for x in pred if normalize_answer(x)}
    g = {normalize_answer(x) for x in gold if normalize_answer(x)}
    if not p or not g:
        return float(p == g)
    tp = len(p & g)
    if tp == 0:
        return 0.0
    prec, rec = tp / len(p), tp / len(g)
    return 2 * prec * rec / (prec + rec)


_rouge = None


def rouge_l(pred: str, gold: str) -> float:
    global _rouge
    if _rouge is None:
        from rouge_score import rouge_scorer

        _rouge = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return _rouge.score(str(gold), str(pred))["rougeL"].fmeasure


def score_one(pred: str, gold: dict[str, Any]) -> dict[str, float]:
    """em, f1, rouge_l of one prediction against a gold record (answer, optional answer_list)."""
    em = float(normalize_answer(pred) == normalize_answer(gold["answer"]))
    if gold.get("answer_list"):
        f1 = set_f1(str(pred).split(", "), gold["answer_list"])
        em = max(em, float(f1 == 1.0))
    else:
        f1 = em
    return {"em": em, "f1": f1, "rouge_l": rouge_l(pred, gold["answer"])}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over rows (each: system, level, template, em, f1, rouge_l, class_ok?)."""
    def mean(xs):
        xs = [x for x in xs if x is not None]
        return round(sum(xs) / len(xs), 4) if xs else None

    def block(rs):
        return {"n": len(rs), "em": mean(r["em"] for r in rs), "f1": mean(r["f1"] for r in rs),
                "rouge_l": mean(r["rouge_l"] for r in rs),
                "class_acc": mean(r.get("class_ok") for r in rs)}

    out: dict[str, Any] = {}
    by_sys = defaultdict(list)
    for r in rows:
        by_sys[r["system"]].append(r)
    for system, rs in sorted(by_sys.items()):
        levels, templates = defaultdict(list), defaultdict(list)
        for r in rs:
            levels[r.get("level") or "?"].append(r)
            templates[r.get("template") or "?"].append(r)
        out[system] = {"overall": block(rs), "by_level": {k: block(v) for k, v in sorted(levels.items())},
                       "by_template": {k: block(v) for k, v in sorted(templates.items())}}
    return out
