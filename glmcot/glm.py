"""GLM's multi-agent pipeline (arXiv:2511.01633, section 3): classify, reason, act, notebook.

Each agent sees only its own context:
- C-Agent: the question -> deterministic | non-deterministic;
- R-Agent: question + notebook of facts -> {"answer": ...} or {"missing": ...};
- A-Agent: the missing statement (the question on the deterministic path) + API -> one snippet;
- the executor runs the snippet; only what it prints enters the notebook, one chunk a line.

A failing snippet goes back to the A-Agent with its error, at most `max_repairs` times. A
deterministic question whose snippet still fails falls back to the reasoning loop.
"""
from __future__ import annotations

import ast
import json
import re
import time
from typing import Any

from glmcot.drivers import Call
from glmcot.executor import Executor
from glmcot.graph import Graph
from glmcot.pipeline import RetrievalPipeline
from glmcot.prompts import A_PREFIX, C_PREFIX, R_PREFIX, a_messages, c_messages, r_messages
from glmcot.result import QuestionResult
from papersuite.llm import SamplingParams

LABELS = ("deterministic", "non-deterministic")
_ANSWER = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
           "additionalProperties": False}
_MISSING = {"type": "object", "properties": {"missing": {"type": "string"}}, "required": ["missing"],
            "additionalProperties": False}
R_SCHEMA = {"anyOf": [_ANSWER, _MISSING]}
# With an empty notebook there is nothing to answer from, and with the last call nothing left to
# ask for: the grammar then admits only the one key that makes sense.
R_SCHEMA_EMPTY, R_SCHEMA_FINAL = _MISSING, _ANSWER


def parse_label(text: str) -> str | None:
    t = text.strip().lower()
    if t.startswith("non") or "non-determin" in t or "nondetermin" in t:
        return "non-deterministic"
    if "determin" in t:
        return "deterministic"
    return None


def parse_reason(text: str) -> tuple[str, str] | None:
    """('answer', x) or ('missing', x) from the R-Agent's JSON; None if unreadable."""
    m = re.search(r"\{.*\}", text, re.S)
    if m:
        try:
            obj = json.loads(m.group(0))
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            for key in ("answer", "missing"):
                if isinstance(obj.get(key), (str, int, float)) and str(obj[key]).strip():
                    return key, str(obj[key]).strip()
    return None


def extract_code(text: str) -> str:
    m = re.search(r"```(?:python)?\n(.*?)(```|$)", text, re.S)
    return (m.group(1) if m else text).strip()


def answer_from_output(output: str) -> str:
    """A printout as an answer: list literals and several lines become 'a, b, c'."""
    lines = [ln.strip() for ln in output.strip().splitlines() if ln.strip()]
    if len(lines) == 1 and lines[0].startswith("[") and lines[0].endswith("]"):
        try:
            return ", ".join(map(str, ast.literal_eval(lines[0])))
        except (ValueError, SyntaxError):
            pass
    return ", ".join(lines)


def ebnf_grammar(graph: Graph) -> str:
    """The A-Agent's output language: a few assignments, then one print, over the graph API.

    Variable names come from a fixed list so that no Python keyword (`def`, `import`) can be one.
    """
    feats = " | ".join(f'"\\"{f}\\""' for f in graph.schema.feature_names)
    neigh = " | ".join(f'"\\"{n}\\""' for n in graph.schema.neighbour_types)
    return rf'''root ::= (assign "\n"){{0,3}} "print(" expr ")"
assign ::= var " = " expr
expr ::= api | var | "len(" expr ")" | "sorted(" expr ")" | "set(" expr ")" | "[NodeFeature(x, " feat ") for x in " expr "]" | "[NodeDegree(x, " neigh ") for x in " expr "]"
api ::= "RetrieveNode(" str ")" | "NodeFeature(" expr ", " feat ")" | "NeighbourCheck(" expr ", " neigh ")" | "NodeDegree(" expr ", " neigh ")" | "NodeInfo(" expr ")"
str ::= "\"" [^"\n\\]{{1,150}} "\""
var ::= "a" | "b" | "p" | "q" | "v" | "ids" | "papers" | "authors" | "names" | "counts"
feat ::= {feats}
neigh ::= {neigh}
'''


def _spans(messages: list[dict], prefix_len: int, rest: str) -> list[tuple[int, str]]:
    """[agent prefix: P0][the rest of the prompt: `rest`] over the last message."""
    return [(prefix_len, "P0"), (len(messages[-1]["content"]), rest)]


class GLM:
    """`run(record, session) -> QuestionResult`."""

    def __init__(self, graph: Graph, executor: Executor, max_iterations: int = 4, max_repairs: int = 2,
                 code_tokens: int = 192, use_classifier: bool = True, constrained: bool = True,
                 retrieve=None, pipeline: bool = True, retrieval_delay_s: float = 0.0):
        self.graph = graph
        self.executor = executor
        self.max_iterations = max_iterations
        self.max_repairs = max_repairs
        self.code_tokens = code_tokens
        self.use_classifier = use_classifier
        self.constrained = constrained
        self._ebnf = ebnf_grammar(graph)
        self.retrieve = retrieve
        self.pipeline = pipeline
        self.retrieval_delay_s = retrieval_delay_s
        self._a_prefix_len = len(A_PREFIX.format(graph_definition=graph.schema.graph_definition))

    def _grammar(self, kind: str, spec: Any):
        return (kind, spec) if self.constrained else None

    def run(self, record: dict[str, Any], session, driver: str = "live", model: str = "?") -> QuestionResult:
        res = QuestionResult(str(record["qid"]), "glm", driver, model)
        t0 = time.perf_counter()
        q = record["question"]
        label = "non-deterministic"
        if self.use_classifier:
            msgs = c_messages(q)
            c = session.complete(Call("classify", msgs, SamplingParams(max_tokens=8, stop=("\n",)),
                                      self._grammar("choice", LABELS), context={},
                                      spans=_spans(msgs, len(C_PREFIX), "P3")))
            res.add("classify", c)
            label = parse_label(c.text)
            if label is None:
                res.parse_errors += 1
                label = "non-deterministic"
        res.cls = label
        if label == "deterministic":
            res.steps = 1
            out = self._act(q, session, res)
            if out is not None and out.strip():
                res.answer = answer_from_output(out)
                res.latency_s = time.perf_counter() - t0
                return res
        notebook: list[str] = []
        for i in range(self.max_iterations):
            res.steps += 1
            r = self._reason(q, notebook, session, res, must_answer=False)
            if r[0] == "answer":
                res.answer = r[1]
                res.latency_s = time.perf_counter() - t0
                return res
            out = self._act(r[1], session, res)
            for line in (out or "").splitlines():
                line = line.strip()
                if line and line not in notebook:
                    notebook.append(line)
        r = self._reason(q, notebook, session, res, must_answer=True)
        res.answer = r[1] if r[0] == "answer" else ""
        res.halt = None if res.answer else "iterations"
        res.latency_s = time.perf_counter() - t0
        return res

    def _reason(self, q: str, notebook: list[str], session, res: QuestionResult, must_answer: bool):
        schema = R_SCHEMA_FINAL if must_answer else (R_SCHEMA if notebook else R_SCHEMA_EMPTY)
        msgs = r_messages(q, notebook, must_answer)
        c = session.complete(Call("reason", msgs, SamplingParams(max_tokens=96), self._grammar("json", schema),
                                  context={"notebook": list(notebook)},
                                  spans=_spans(msgs, len(R_PREFIX), f"P1:{res.qid}")))
        res.add("reason", c)
        parsed = parse_reason(c.text)
        if parsed is None:
            res.parse_errors += 1
            return ("answer", c.text.strip()) if must_answer else ("missing", q)
        return parsed

    def _act(self, task: str, session, res: QuestionResult) -> str | None:
        """Write and run a snippet, repairing on error; the printout, or None if all failed."""
        code, error = None, None
        for attempt in range(self.max_repairs + 1):
            msgs = a_messages(task, self.graph.schema.graph_definition, code, error)
            pipe = (RetrievalPipeline(self.retrieve, self.retrieval_delay_s, self.pipeline)
                    if self.retrieve is not None else None)
            c = session.complete(Call("act", msgs, SamplingParams(max_tokens=self.code_tokens),
                                      self._grammar("ebnf", self._ebnf),
                                      context={"task": task, "error": error,
                                               "on_text": pipe.on_text if pipe else None},
                                      spans=_spans(msgs, self._a_prefix_len, "P3")))
            res.add("act", c)
            if attempt:
                res.repairs += 1
            code = extract_code(c.text)
            resolved = pipe.resolve(code) if pipe else None
            if pipe:
                res.retrieval_s += pipe.search_s
                res.retrieval_wait_s += pipe.wait_s
            out = self.executor.run(code, resolved)
            res.trace.append({"role": "exec", "code": code, **out.as_dict()})
            if out.ok:
                return out.output
            res.exec_errors += 1
            if out.error and (out.error.startswith("SyntaxError") or out.error.startswith("Refused")):
                res.parse_errors += 1
            error = out.error
        return None
