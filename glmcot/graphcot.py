"""The baseline: Graph-CoT's ReAct loop (PeterGriffinJin/Graph-CoT, code/GraphAgent.py), faithful.

Per step n, two LLM calls, each re-sending the whole prompt plus the scratchpad:
`Thought n:` (stop at newline), then `Action n:`; every `Name[args]` in the action runs, its
observation is appended; `Finish[x]` returns x. The loop halts after `max_steps` or once the
prompt exceeds `max_prompt_tokens` (Graph-CoT: 10,000 tiktoken tokens; here the model's
tokenizer). Unknown or malformed actions become "Invalid Action" observations, as upstream.
"""
from __future__ import annotations

import re
import time
from typing import Any, Callable

from glmcot.drivers import Call
from glmcot.graph import Graph
from glmcot.prompts import graphcot_messages, graphcot_static, parse_actions, split_args
from glmcot.result import QuestionResult
from papersuite.llm import SamplingParams

FUNCTIONS = ("RetrieveNode", "NodeFeature", "NeighbourCheck", "NodeDegree", "Finish")


def action_regex(graph: Graph) -> str:
    """The Graph-CoT action language for this schema: one or more actions, comma-separated."""
    feats = "|".join(re.escape(f) for f in graph.schema.feature_names)
    neigh = "|".join(re.escape(n) for n in graph.schema.neighbour_types)
    nid = r"[A-Za-z0-9_.:\-]{1,40}"
    one = (rf"(RetrieveNode\[[^\[\]\n]{{1,200}}\]|NodeFeature\[{nid}, ({feats})\]|"
           rf"NeighbourCheck\[{nid}, ({neigh})\]|NodeDegree\[{nid}, ({neigh})\]|Finish\[[^\[\]\n]{{1,300}}\])")
    return rf"{one}(, {one}){{0,7}}"


class GraphCoT:
    """`run(record, session) -> QuestionResult`; hyperparameters as in Graph-CoT's run.py."""

    def __init__(self, graph: Graph, retrieve: Callable[[str], str], count_tokens: Callable[[list], int],
                 fewshots: str | None = None, max_steps: int = 10, max_prompt_tokens: int = 10_000,
                 max_tokens: int = 128, constrained: bool = True):
        self.graph = graph
        self.retrieve = retrieve
        self.count_tokens = count_tokens
        self.fewshots = fewshots
        self.max_steps = max_steps
        self.max_prompt_tokens = max_prompt_tokens
        self.max_tokens = max_tokens
        self.grammar = ("regex", action_regex(graph)) if constrained else None
        self._static_len = len(graphcot_static(graph.schema.graph_definition, fewshots))

    def spans(self, messages: list[dict], qid: str) -> list[tuple[int, str]]:
        """P0: instruction, examples, definition; P1: this question and its scratchpad."""
        return [(self._static_len, "P0"), (len(messages[-1]["content"]), f"P1:{qid}")]

    def messages(self, question: str, scratchpad: str) -> list[dict]:
        return graphcot_messages(question, scratchpad, self.graph.schema.graph_definition, self.fewshots)

    def run(self, record: dict[str, Any], session, driver: str = "live", model: str = "?") -> QuestionResult:
        res = QuestionResult(str(record["qid"]), "graphcot", driver, model)
        t0 = time.perf_counter()
        q = record["question"]
        scratchpad, observations = "", []
        thought_params = SamplingParams(max_tokens=self.max_tokens, stop=("\n",))
        for n in range(1, self.max_steps + 1):
            res.steps = n
            scratchpad += f"Thought {n}:"
            msgs = self.messages(q, scratchpad)
            c = session.complete(Call("thought", msgs, thought_params,
                                      context={"step": n, "observations": observations},
                                      spans=self.spans(msgs, res.qid)))
            res.add("thought", c)
            scratchpad += " " + c.text.strip().split("\n")[0] + f"\nAction {n}:"
            msgs = self.messages(q, scratchpad)
            c = session.complete(Call("action", msgs, thought_params, self.grammar, context={"step": n},
                                      spans=self.spans(msgs, res.qid)))
            res.add("action", c)
            action = c.text.strip().split("\n")[0]
            scratchpad += " " + action + "\n"
            actions = parse_actions(action)
            observations = []
            if not actions:
                res.parse_errors += 1
                obs = self.graph.observe("", [])
                observations.append(obs)
                scratchpad += f"Observation {n}: {obs}\n"
            for name, arg in actions:
                if name == "Finish":
                    res.answer = arg.strip()
                    res.latency_s = time.perf_counter() - t0
                    return res
                if name not in FUNCTIONS:
                    res.parse_errors += 1
                obs = self.graph.observe(name, split_args(name, arg), self.retrieve)
                observations.append(obs)
                scratchpad += f"Observation {n}: {obs}\n"
            if self.count_tokens(self.messages(q, scratchpad)) > self.max_prompt_tokens:
                res.halt = "tokens"
                break
        else:
            res.halt = "steps"
        res.latency_s = time.perf_counter() - t0
        return res
