"""Question records: loading, validation, and the entity mentions each template names.

The oracle driver reads a question's `template` and its text, never `answer`, `answer_list`,
`anchors` or `expected_class`: `public()` strips those before any driver sees a record.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from papersuite.errors import UserError
from papersuite.io import iter_jsonl

HIDDEN = ("answer", "answer_list", "anchors", "expected_class")
EASY_TEMPLATES = ("authors_of_paper", "org_of_author", "venue_of_paper", "year_of_paper", "citation_count",
                  "reference_count", "paper_count_of_author")

_QUOTED = re.compile(r'"([^"]+)"')
_NAME = r"([A-Z][\w'\-]*(?: [A-Z][\w'\-]*)+)"
_PATTERNS: dict[str, re.Pattern] = {
    "org_of_author": re.compile(rf"researcher {_NAME} affiliated"),
    "paper_count_of_author": re.compile(rf"author {_NAME} write"),
    "collaborators_on_paper": re.compile(rf"author {_NAME} to write"),
    "closest_collaborator": re.compile(rf"collaborator of author {_NAME}\?"),
    "collaborators_in_year": re.compile(rf"author {_NAME} have in (\d{{4}})"),
    "joint_paper_count": re.compile(rf"did {_NAME} and {_NAME} write together"),
    "most_cited_paper": re.compile(rf"by author {_NAME} has"),
    "venue_most_together": re.compile(rf"did {_NAME} and {_NAME} publish"),
    "coauthor_distance": re.compile(rf"from author {_NAME} to author {_NAME}\?"),
    "top3_keywords": re.compile(rf"papers of author {_NAME}\?"),
    "most_cited_coauthor": re.compile(rf"co-authors of {_NAME},"),
    "coauthors_same_org": re.compile(rf"co-authors of {_NAME} are"),
}


def load_questions(path: str | Path = "-", question: str | None = None) -> list[dict[str, Any]]:
    """Records from a JSONL file (qid, question, optional gold), or one record from `question`."""
    if question is not None:
        return [{"qid": "q0", "question": question}]
    records = []
    for i, rec in enumerate(iter_jsonl(path), 1):
        if not isinstance(rec.get("question"), str) or not rec["question"].strip():
            raise UserError(f"{path}: record {i} has no 'question' string")
        rec.setdefault("qid", f"q{i - 1}")
        rec["qid"] = str(rec["qid"])
        records.append(rec)
    if not records:
        raise UserError(f"{path}: no questions")
    return records


def public(record: dict[str, Any]) -> dict[str, Any]:
    """What a driver may see of a record: no gold, no anchors."""
    return {k: v for k, v in record.items() if k not in HIDDEN}


def mentions(record: dict[str, Any]) -> dict[str, Any]:
    """The entity strings the question names, per template (raises ValueError if unparseable)."""
    t, q = record.get("template"), record["question"]
    quoted = _QUOTED.findall(q)
    if t in ("authors_of_paper", "venue_of_paper", "year_of_paper", "citation_count", "reference_count",
             "venue_of_citers"):
        return {"title": quoted[0]}
    if t == "wrote_both":
        return {"titles": quoted[:2]}
    if t == "recommend_by_coupling":
        return {"title": quoted[0], "candidates": quoted[1:]}
    pat = _PATTERNS.get(t)
    if pat is None:
        raise ValueError(f"no oracle for template {t!r}")
    m = pat.search(q)
    if m is None:
        raise ValueError(f"cannot parse a {t} question: {q!r}")
    g = m.groups()
    if t == "collaborators_on_paper":
        return {"author": g[0], "title": quoted[0]}
    if t == "collaborators_in_year":
        return {"author": g[0], "year": int(g[1])}
    if len(g) == 2:
        return {"authors": list(g)}
    return {"author": g[0]}
