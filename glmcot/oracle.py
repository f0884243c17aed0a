"""The oracle driver's trajectories: per template, the shortest path in each system's own style.

Used for efficiency only: the oracle supplies each call's completion and the backend
teacher-forces it, so prefill, decode and caching do real work whatever the model's skill.
It reads the question text and `template` (via `questions.public`), never the gold answer: every
answer it gives is computed from observations the loop returned (Graph-CoT) or from the notebook
and printouts (GLM). A wrong oracle answer therefore means a broken loop.

- Graph-CoT: a generator per template yielding `(thought, action)` and receiving the step's
  observations; several actions per step, as in Graph-CoT's few-shot examples.
- GLM: a label, a one-line missing statement, the shortest correct snippet, a short answer.
"""
from __future__ import annotations

import ast
import json
import re
from collections import Counter
from typing import Any, Generator

from glmcot.questions import EASY_TEMPLATES, mentions

Plan = Generator[tuple[str, str], list[str], None]

_ID = re.compile(r"retrieval target node is (\S+?)\.$")
_LIST = re.compile(r"neighbors of \S+ are: (\[.*\])\.$")
_FEAT = re.compile(r"^The \w+ feature of \S+ are: (.*)\.$", re.S)
_DEG = re.compile(r"degree of \S+ are: (\d+)\.$")


class OracleError(RuntimeError):
    """An observation the oracle could not read: the loop returned something unexpected."""


def _match(pat: re.Pattern, obs: str) -> str:
    m = pat.search(obs.strip())
    if m is None:
        raise OracleError(f"unexpected observation: {obs[:200]!r}")
    return m.group(1)


def _id(o: str) -> str:
    return _match(_ID, o)


def _ids(o: str) -> list[str]:
    return list(ast.literal_eval(_match(_LIST, o)))


def _feat(o: str) -> str:
    return _match(_FEAT, o)


def _deg(o: str) -> int:
    return int(_match(_DEG, o))


def _acts(name: str, ids, arg: str) -> str:
    return ", ".join(f"{name}[{i}, {arg}]" for i in ids)


def _argmax(counter: dict) -> Any:
    return max(sorted(counter), key=lambda k: counter[k])


# -- Graph-CoT ---------------------------------------------------------------------------------
def graphcot_plan(record: dict[str, Any]) -> Plan:
    """The shortest Graph-CoT trajectory for a record's template (a generator; see module doc)."""
    t, m = record["template"], mentions(record)
    fn = globals().get(f"_gc_{t}")
    if fn is None:
        raise OracleError(f"no Graph-CoT oracle for template {t!r}")
    return fn(m)


def _gc_authors_of_paper(m) -> Plan:
    o = yield ("I need to find the paper node first.", f"RetrieveNode[{m['title']}]")
    p = _id(o[0])
    o = yield (f"The paper node is {p}. I need to check its author neighbors.", f"NeighbourCheck[{p}, author]")
    o = yield ("Now I need the names of these author nodes.", _acts("NodeFeature", _ids(o[0]), "name"))
    yield ("I have the names of all the authors.", f"Finish[{', '.join(sorted(_feat(x) for x in o))}]")


def _gc_feature_of(m, feature: str, what: str) -> Plan:
    o = yield (f"I need to find the {what} node first.", f"RetrieveNode[{m.get('title') or m['author']}]")
    n = _id(o[0])
    o = yield (f"The node is {n}. I need its {feature} feature.", f"NodeFeature[{n}, {feature}]")
    yield (f"The {feature} is given in the observation.", f"Finish[{_feat(o[0])}]")


def _gc_org_of_author(m) -> Plan:
    return (yield from _gc_feature_of(m, "organization", "author"))


def _gc_year_of_paper(m) -> Plan:
    return (yield from _gc_feature_of(m, "year", "paper"))


def _gc_venue_of_paper(m) -> Plan:
    o = yield ("I need to find the paper node first.", f"RetrieveNode[{m['title']}]")
    p = _id(o[0])
    o = yield (f"The paper node is {p}. I need to check its venue neighbor.", f"NeighbourCheck[{p}, venue]")
    o = yield ("Now I need the name of the venue node.", _acts("NodeFeature", _ids(o[0]), "name"))
    yield ("The venue name is given in the observation.", f"Finish[{_feat(o[0])}]")


def _gc_degree_of(m, ntype: str) -> Plan:
    o = yield ("I need to find the node first.", f"RetrieveNode[{m.get('title') or m['author']}]")
    n = _id(o[0])
    o = yield (f"The node is {n}. I need its number of {ntype} neighbors.", f"NodeDegree[{n}, {ntype}]")
    yield ("The number is given in the observation.", f"Finish[{_deg(o[0])}]")


def _gc_citation_count(m) -> Plan:
    return (yield from _gc_degree_of(m, "cited_by"))


def _gc_reference_count(m) -> Plan:
    return (yield from _gc_degree_of(m, "reference"))


def _gc_paper_count_of_author(m) -> Plan:
    return (yield from _gc_degree_of(m, "paper"))


def _gc_collaborators_on_paper(m) -> Plan:
    o = yield ("I need to find the paper node and the author node first.",
               f"RetrieveNode[{m['title']}], RetrieveNode[{m['author']}]")
    p, a = _id(o[0]), _id(o[1])
    o = yield (f"The paper node is {p} and the author is {a}. I need the paper's authors.",
               f"NeighbourCheck[{p}, author]")
    others = [x for x in _ids(o[0]) if x != a]
    o = yield (f"The other authors besides {a} are {others}. I need their names.", _acts("NodeFeature", others, "name"))
    yield ("I have the names of the collaborators.", f"Finish[{', '.join(sorted(_feat(x) for x in o))}]")


def _gc_wrote_both(m) -> Plan:
    t1, t2 = m["titles"]
    o = yield ("I need to find the two paper nodes first.", f"RetrieveNode[{t1}], RetrieveNode[{t2}]")
    p1, p2 = _id(o[0]), _id(o[1])
    o = yield (f"The papers are {p1} and {p2}. I need the authors of both.",
               f"NeighbourCheck[{p1}, author], NeighbourCheck[{p2}, author]")
    common = sorted(set(_ids(o[0])) & set(_ids(o[1])))
    o = yield (f"The common authors are {common}. I need their names.", _acts("NodeFeature", common, "name"))
    yield ("I have the names of the authors of both papers.", f"Finish[{', '.join(sorted(_feat(x) for x in o))}]")


def _gc_author_papers(m, key: str = "author") -> Generator:
    o = yield ("I need to find the author node first.", f"RetrieveNode[{m[key]}]")
    a = _id(o[0])
    o = yield (f"The author node is {a}. I need the papers of this author.", f"NeighbourCheck[{a}, paper]")
    return a, _ids(o[0])


def _gc_coauthor_counts(a: str, papers: list[str]) -> Generator:
    o = yield ("I need the authors of each of these papers.", _acts("NeighbourCheck", papers, "author"))
    return Counter(x for obs in o for x in _ids(obs) if x != a)


def _gc_closest_collaborator(m) -> Plan:
    a, papers = yield from _gc_author_papers(m)
    counts = yield from _gc_coauthor_counts(a, papers)
    best = _argmax(counts)
    o = yield (f"{best} wrote the most papers with {a} ({counts[best]}). I need the name.", f"NodeFeature[{best}, name]")
    yield ("I have the name of the closest collaborator.", f"Finish[{_feat(o[0])}]")


def _gc_collaborators_in_year(m) -> Plan:
    a, papers = yield from _gc_author_papers(m)
    o = yield (f"I need the year of each paper to keep those from {m['year']}.", _acts("NodeFeature", papers, "year"))
    kept = [p for p, obs in zip(papers, o) if _feat(obs) == str(m["year"])]
    o = yield (f"The papers from {m['year']} are {kept}. I need their authors.", _acts("NeighbourCheck", kept, "author"))
    n = len({x for obs in o for x in _ids(obs) if x != a})
    yield (f"There are {n} distinct collaborators.", f"Finish[{n}]")


def _gc_two_authors(m) -> Generator:
    n1, n2 = m["authors"]
    o = yield ("I need to find the two author nodes first.", f"RetrieveNode[{n1}], RetrieveNode[{n2}]")
    a1, a2 = _id(o[0]), _id(o[1])
    o = yield (f"The authors are {a1} and {a2}. I need the papers of both.",
               f"NeighbourCheck[{a1}, paper], NeighbourCheck[{a2}, paper]")
    return a1, a2, sorted(set(_ids(o[0])) & set(_ids(o[1])))


def _gc_joint_paper_count(m) -> Plan:
    _, _, joint = yield from _gc_two_authors(m)
    yield (f"The papers they wrote together are {joint}.", f"Finish[{len(joint)}]")


def _gc_venue_most_together(m) -> Plan:
    _, _, joint = yield from _gc_two_authors(m)
    o = yield (f"The joint papers are {joint}. I need the venue of each.", _acts("NeighbourCheck", joint, "venue"))
    best = _argmax(Counter(_ids(x)[0] for x in o))
    o = yield (f"Venue {best} has the most joint papers. I need its name.", f"NodeFeature[{best}, name]")
    yield ("I have the venue name.", f"Finish[{_feat(o[0])}]")


def _gc_most_cited_paper(m) -> Plan:
    _, papers = yield from _gc_author_papers(m)
    o = yield ("I need the number of citations of each paper.", _acts("NodeDegree", papers, "cited_by"))
    best = _argmax(dict(zip(papers, (_deg(x) for x in o))))
    o = yield (f"Paper {best} has the most citations. I need its title.", f"NodeFeature[{best}, title]")
    yield ("I have the title of the most cited paper.", f"Finish[{_feat(o[0])}]")


def _gc_top3_keywords(m) -> Plan:
    _, papers = yield from _gc_author_papers(m)
    o = yield ("I need the keywords of each paper.", _acts("NodeFeature", papers, "keywords"))
    counts = Counter(k for x in o for k in _feat(x).split(", "))
    top = sorted(counts, key=lambda k: (-counts[k], k))[:3]
    yield ("I counted the keywords over all papers.", f"Finish[{', '.join(sorted(top))}]")


def _gc_coauthor_distance(m) -> Plan:
    n1, n2 = m["authors"]
    o = yield ("I need to find the two author nodes first.", f"RetrieveNode[{n1}], RetrieveNode[{n2}]")
    a, b = _id(o[0]), _id(o[1])
    seen_a, seen_p, frontier, hops = {a}, set(), [a], 0
    while frontier:
        o = yield (f"I expand the co-authorship frontier at {hops} hops.", _acts("NeighbourCheck", frontier, "paper"))
        papers = sorted({p for x in o for p in _ids(x)} - seen_p)
        seen_p |= set(papers)
        o = yield ("I need the authors of these papers.", _acts("NeighbourCheck", papers, "author"))
        hops += 1
        nxt = {x for obs in o for x in _ids(obs)} - seen_a
        if b in nxt:
            break
        seen_a |= nxt
        frontier = sorted(nxt)
    yield (f"{b} is reached after {hops} co-authorship hops.", f"Finish[{hops}]")


def _gc_venue_of_citers(m) -> Plan:
    o = yield ("I need to find the paper node first.", f"RetrieveNode[{m['title']}]")
    p = _id(o[0])
    o = yield (f"The paper node is {p}. I need the papers citing it.", f"NeighbourCheck[{p}, cited_by]")
    citers = _ids(o[0])
    o = yield ("I need the venue of each citing paper.", _acts("NeighbourCheck", citers, "venue"))
    best = _argmax(Counter(_ids(x)[0] for x in o))
    o = yield (f"Venue {best} published the most citing papers. I need its name.", f"NodeFeature[{best}, name]")
    yield ("I have the venue name.", f"Finish[{_feat(o[0])}]")


def _gc_coauthors(m) -> Generator:
    a, papers = yield from _gc_author_papers(m)
    counts = yield from _gc_coauthor_counts(a, papers)
    return a, sorted(counts)


def _gc_most_cited_coauthor(m) -> Plan:
    _, co = yield from _gc_coauthors(m)
    o = yield (f"The co-authors are {co}. I need the papers of each.", _acts("NeighbourCheck", co, "paper"))
    papers_of = dict(zip(co, (_ids(x) for x in o)))
    allp = sorted({p for ps in papers_of.values() for p in ps})
    o = yield ("I need the number of citations of each of these papers.", _acts("NodeDegree", allp, "cited_by"))
    cites = dict(zip(allp, (_deg(x) for x in o)))
    best = _argmax({c: sum(cites[p] for p in ps) for c, ps in papers_of.items()})
    o = yield (f"{best} has the most citations in total. I need the name.", f"NodeFeature[{best}, name]")
    yield ("I have the name of the most cited co-author.", f"Finish[{_feat(o[0])}]")


def _gc_coauthors_same_org(m) -> Plan:
    a, co = yield from _gc_coauthors(m)
    o = yield (f"I need the organization of {a} and of the co-authors.",
               _acts("NodeFeature", [a] + co, "organization"))
    org = _feat(o[0])
    same = [c for c, x in zip(co, o[1:]) if _feat(x) == org]
    o = yield (f"The co-authors at {org} are {same}. I need their names.", _acts("NodeFeature", same, "name"))
    yield ("I have the names.", f"Finish[{', '.join(sorted(_feat(x) for x in o))}]")


def _gc_recommend_by_coupling(m) -> Plan:
    titles = [m["title"]] + m["candidates"]
    o = yield ("I need to find the source paper and the candidate nodes.", ", ".join(f"RetrieveNode[{t}]" for t in titles))
    ids = [_id(x) for x in o]
    o = yield ("I need the references of each of these papers.", _acts("NeighbourCheck", ids, "reference"))
    refs = [set(_ids(x)) for x in o]
    shared = {t: len(refs[0] & r) for t, r in zip(m["candidates"], refs[1:])}
    yield ("I counted the shared references of each candidate.", f"Finish[{_argmax(shared)}]")


# -- GLM ----------------------------------------------------------------------------------------
def glm_label(record: dict[str, Any]) -> str:
    return "deterministic" if record["template"] in EASY_TEMPLATES else "non-deterministic"


def glm_missing(record: dict[str, Any]) -> str:
    """The R-Agent's one-line statement of what the (empty) notebook lacks."""
    m = mentions(record)
    return {
        "collaborators_on_paper": f"The co-authors of {m.get('author')} on the paper \"{m.get('title')}\".",
        "wrote_both": "The authors who wrote both papers.",
        "closest_collaborator": f"The co-author who wrote the most papers with {m.get('author')}.",
        "collaborators_in_year": f"The number of distinct co-authors of {m.get('author')} in {m.get('year')}.",
        "joint_paper_count": "The number of papers both authors wrote.",
        "most_cited_paper": f"The most cited paper of {m.get('author')}.",
        "venue_most_together": "The venue with the most papers by both authors.",
        "coauthor_distance": "The co-authorship hop distance between the two authors.",
        "top3_keywords": f"The 3 most frequent keywords of {m.get('author')}'s papers.",
        "venue_of_citers": "The venue publishing the most papers that cite the paper.",
        "most_cited_coauthor": f"The co-author of {m.get('author')} with the most total citations.",
        "recommend_by_coupling": "The candidate sharing the most references with the paper.",
        "coauthors_same_org": f"The co-authors of {m.get('author')} in the same organization.",
    }[record["template"]]


def glm_code(record: dict[str, Any]) -> str:
    """The shortest correct snippet for a record (prints the answer, or one 'fact: value' line)."""
    t, m = record["template"], mentions(record)
    q = lambda s: json.dumps(s)  # noqa: E731  - a Python string literal
    a = q(m.get("author") or (m.get("authors") or [""])[0])
    ti = q(m.get("title") or "")
    papers = f"NeighbourCheck(RetrieveNode({a}), \"paper\")"
    if t in ("authors_of_paper",):
        return f'print(", ".join(sorted(NodeFeature(x, "name") for x in NeighbourCheck(RetrieveNode({ti}), "author"))))'
    if t == "org_of_author":
        return f'print(NodeFeature(RetrieveNode({a}), "organization"))'
    if t == "venue_of_paper":
        return f'print(NodeFeature(NeighbourCheck(RetrieveNode({ti}), "venue")[0], "name"))'
    if t == "year_of_paper":
        return f'print(NodeFeature(RetrieveNode({ti}), "year"))'
    if t in ("citation_count", "reference_count"):
        return f'print(NodeDegree(RetrieveNode({ti}), "{"cited_by" if t == "citation_count" else "reference"}"))'
    if t == "paper_count_of_author":
        return f'print(NodeDegree(RetrieveNode({a}), "paper"))'
    coauthors = (f"a = RetrieveNode({a})\n"
                 "co = {x for p in NeighbourCheck(a, \"paper\") for x in NeighbourCheck(p, \"author\") if x != a}\n")
    if t == "collaborators_on_paper":
        return (f"a = RetrieveNode({a})\n"
                f"names = sorted(NodeFeature(x, \"name\") for x in NeighbourCheck(RetrieveNode({ti}), \"author\") if x != a)\n"
                "print(\"collaborators:\", \", \".join(names))")
    if t == "wrote_both":
        t1, t2 = map(q, m["titles"])
        return (f"s = set(NeighbourCheck(RetrieveNode({t1}), \"author\")) & set(NeighbourCheck(RetrieveNode({t2}), \"author\"))\n"
                "print(\"authors of both:\", \", \".join(sorted(NodeFeature(x, \"name\") for x in s)))")
    if t == "closest_collaborator":
        return (f"a = RetrieveNode({a})\n"
                "c = Counter(x for p in NeighbourCheck(a, \"paper\") for x in NeighbourCheck(p, \"author\") if x != a)\n"
                "print(\"closest collaborator:\", NodeFeature(c.most_common(1)[0][0], \"name\"))")
    if t == "collaborators_in_year":
        return (f"a = RetrieveNode({a})\n"
                f"s = {{x for p in NeighbourCheck(a, \"paper\") if NodeFeature(p, \"year\") == {m['year']} "
                "for x in NeighbourCheck(p, \"author\") if x != a}\n"
                "print(\"distinct collaborators:\", len(s))")
    two = (f"s = set({papers}) & set(NeighbourCheck(RetrieveNode({q(m.get('authors', ['', ''])[1])}), \"paper\"))\n"
           if m.get("authors") else "")
    if t == "joint_paper_count":
        return two + "print(\"joint papers:\", len(s))"
    if t == "venue_most_together":
        return two + ("c = Counter(NeighbourCheck(p, \"venue\")[0] for p in s)\n"
                      "print(\"venue:\", NodeFeature(c.most_common(1)[0][0], \"name\"))")
    if t == "most_cited_paper":
        return (f"best = max({papers}, key=lambda p: NodeDegree(p, \"cited_by\"))\n"
                "print(\"most cited paper:\", NodeFeature(best, \"title\"))")
    if t == "coauthor_distance":
        b = q(m["authors"][1])
        return (f"a, b = RetrieveNode({a}), RetrieveNode({b})\n"
                "seen, front, d = {a}, {a}, 0\n"
                "while front and b not in seen:\n"
                "    d += 1\n"
                "    front = {x for y in front for p in NeighbourCheck(y, \"paper\") for x in NeighbourCheck(p, \"author\")} - seen\n"
                "    seen |= front\n"
                "print(\"hops:\", d)")
    if t == "top3_keywords":
        return (f"c = Counter(k for p in {papers} for k in NodeFeature(p, \"keywords\"))\n"
                "print(\"top keywords:\", \", \".join(sorted(k for k, n in c.most_common(3))))")
    if t == "venue_of_citers":
        return (f"c = Counter(NeighbourCheck(p, \"venue\")[0] for p in NeighbourCheck(RetrieveNode({ti}), \"cited_by\"))\n"
                "print(\"venue:\", NodeFeature(c.most_common(1)[0][0], \"name\"))")
    if t == "most_cited_coauthor":
        return (coauthors + "best = max(co, key=lambda x: sum(NodeDegree(p, \"cited_by\") for p in NeighbourCheck(x, \"paper\")))\n"
                "print(\"most cited co-author:\", NodeFeature(best, \"name\"))")
    if t == "recommend_by_coupling":
        cands = "[" + ", ".join(q(c) for c in m["candidates"]) + "]"
        return (f"r = set(NeighbourCheck(RetrieveNode({ti}), \"reference\"))\n"
                f"best = max({cands}, key=lambda c: len(r & set(NeighbourCheck(RetrieveNode(c), \"reference\"))))\n"
                "print(\"best candidate:\", best)")
    if t == "coauthors_same_org":
        return (coauthors + "org = NodeFeature(a, \"organization\")\n"
                "print(\"same organization:\", \", \".join(sorted(NodeFeature(x, \"name\") for x in co "
                "if NodeFeature(x, \"organization\") == org)))")
    raise OracleError(f"no GLM oracle for template {t!r}")


def answer_from_notebook(notebook: list[str]) -> str:
    """The oracle R-Agent's answer: the value of the last 'fact: value' line it was given."""
    for chunk in reversed(notebook):
        if ": " in chunk:
            return chunk.split(": ", 1)[1].strip()
    raise OracleError("the notebook holds no fact to answer from")
