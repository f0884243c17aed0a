"""Prompts: Graph-CoT's faithful one, and GLM's short role prompts.

Graph-CoT (code/graph_prompts.py): one user message = instruction with the four signatures,
three full few-shot traces, "(END OF EXAMPLES)", the graph definition, the question, the
scratchpad; re-sent on every Thought and Action call. The traces are produced from three dev
questions by running the oracle trajectory against the embedded graph (not hand-written, and
always consistent with the functions' real observation strings).

GLM: every prompt is laid out [agent prefix][question][notebook, append-only][tail], so each
call of an agent extends the previous one and a prefix cache can reuse it.
"""
from __future__ import annotations

import functools
import re
from typing import Any

SYSTEM = "You are a helpful AI bot."
FEWSHOT_QIDS = ("dev-0000", "dev-0090", "dev-0110")

GRAPHCOT_INSTRUCTION = """Solve a question answering task with interleaving Thought, Interaction with Graph, Feedback from Graph steps. In Thought step, you can think about what further information is needed, and In Interaction step, you can get feedback from graphs with four functions:
(1) RetrieveNode[keyword], which retrieves the related node from the graph according to the corresponding query.
(2) NodeFeature[Node, feature], which returns the detailed attribute information of Node regarding the given "feature" key.
(3) NodeDegree[Node, neighbor_type], which calculates the number of "neighbor_type" neighbors of the node Node in the graph.
(4) NeighbourCheck[Node, neighbor_type], which lists the "neighbor_type" neighbours of the node Node in the graph and returns them.
You may take as many steps as necessary.
Here are some examples:
"""

ACTION_RE = re.compile(r"(\w+)\[(.*?)\]")


def parse_actions(text: str) -> list[tuple[str, str]]:
    """Graph-CoT's `re.findall(r"\\w+\\[.*?\\]")`, split into (name, argument text)."""
    return [(m.group(1), m.group(2)) for m in ACTION_RE.finditer(text)]


def split_args(name: str, argtext: str) -> list[str]:
    if name in ("RetrieveNode", "Finish"):
        return [argtext.strip()]
    return [a.strip().strip("'\"") for a in argtext.split(",")]


def run_trace(graph, retrieve, record: dict[str, Any]) -> str:
    """A full Graph-CoT trace for `record` following the oracle trajectory (no LLM)."""
    from glmcot.oracle import graphcot_plan

    plan = graphcot_plan(record)
    lines = [f"Question: {record['question']}"]
    pair, n = next(plan), 1
    while True:
        thought, action = pair
        lines += [f"Thought {n}: {thought}", f"Action {n}: {action}"]
        obs = []
        for name, arg in parse_actions(action):
            if name == "Finish":
                return "\n".join(lines)
            obs.append(graph.observe(name, split_args(name, arg), retrieve))
            lines.append(f"Observation {n}: {obs[-1]}")
        pair, n = plan.send(obs), n + 1


@functools.lru_cache(maxsize=1)
def default_fewshots() -> str:
    """Three traces from dev questions over the embedded graph (easy, medium, medium)."""
    from glmcot.graph import DEFAULT_QUESTIONS, Graph
    from glmcot.questions import load_questions
    from glmcot.retriever import Retriever

    graph = Graph.load()
    retrieve = Retriever(graph)
    recs = {r["qid"]: r for r in load_questions(DEFAULT_QUESTIONS)}
    return "\n\n".join(run_trace(graph, retrieve, recs[q]) for q in FEWSHOT_QIDS)


def graphcot_static(graph_definition: str, fewshots: str | None) -> str:
    """The part of Graph-CoT's prompt that every call of every question repeats."""
    examples = (fewshots or "") + "\n(END OF EXAMPLES)\n" if fewshots else "(none)\n(END OF EXAMPLES)\n"
    return GRAPHCOT_INSTRUCTION + examples + f"Definition of the graph: {graph_definition}\n"


def graphcot_messages(question: str, scratchpad: str, graph_definition: str, fewshots: str | None) -> list[dict]:
    user = (graphcot_static(graph_definition, fewshots) + f"Question: {question} Please answer by providing node "
            "main feature (e.g., names) rather than node IDs.\n" + scratchpad)
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


# -- GLM role prompts ---------------------------------------------------------------------------
C_PREFIX = """Label a question about a graph.
deterministic: one named node and one direct lookup answer it (a feature, its neighbours, or how many).
non-deterministic: it needs several hops, a comparison, counting over many nodes or a ranking.
Question: Who are the authors of the paper "Deep Graph Learning"? Label: deterministic
Question: How many papers did author Ann Lee write? Label: deterministic
Question: Which paper by author Ann Lee has the most citations? Label: non-deterministic
Question: Who wrote both the paper "A" and the paper "B"? Label: non-deterministic
"""

R_PREFIX = """Answer the question from the notebook of graph facts only.
If the facts answer it, reply {"answer": "..."} using names, not ids; list answers are joined by ", ".
Otherwise reply {"missing": "..."} stating precisely the one fact still needed.
"""

A_PREFIX = """Write one short Python snippet that prints the requested information from a graph.
API: RetrieveNode(text) -> node id; NodeFeature(id, feature) -> value; NeighbourCheck(id, neighbor_type) -> list of ids; NodeDegree(id, neighbor_type) -> int; NodeInfo(id) -> summary text.
Counter is available. No imports. Print names, not ids.
Graph: {graph_definition}
Example task: The organization of author Ann Lee.
print(NodeFeature(RetrieveNode("Ann Lee"), "organization"))
Example task: The co-author who wrote the most papers with Ann Lee.
a = RetrieveNode("Ann Lee")
c = Counter(x for p in NeighbourCheck(a, "paper") for x in NeighbourCheck(p, "author") if x != a)
print("closest collaborator:", NodeFeature(c.most_common(1)[0][0], "name"))
"""


def c_messages(question: str) -> list[dict]:
    return [{"role": "user", "content": C_PREFIX + f"Question: {question} Label:"}]


def r_messages(question: str, notebook: list[str], must_answer: bool = False) -> list[dict]:
    facts = "\n".join(f"- {c}" for c in notebook) if notebook else "(empty)"
    tail = "Reply with {\"answer\": ...} now." if must_answer else "Reply with JSON."
    return [{"role": "user", "content": R_PREFIX + f"Question: {question}\nNotebook:\n{facts}\n{tail}"}]


def a_messages(task: str, graph_definition: str, code: str | None = None, error: str | None = None) -> list[dict]:
    user = A_PREFIX.format(graph_definition=graph_definition) + f"Task: {task}\n"
    if code is not None:
        user += f"This snippet failed:\n{code}\nError: {error}\nWrite a corrected snippet.\n"
    return [{"role": "user", "content": user}]
