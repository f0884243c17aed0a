"""Fixtures for glmcot: the embedded graph, and a scripted TextGenerator (a test double)."""
from __future__ import annotations

import pytest

from papersuite.llm import Generation


class ScriptedGenerator:
    """Returns the scripted completions in order and records every prompt it was sent."""

    model_name = "scripted"

    def __init__(self, script):
        self.script = list(script)
        self.prompts = []

    def generate(self, prompts, params=None):
        out = []
        for p in prompts:
            self.prompts.append(p)
            text = self.script.pop(0) if self.script else ""
            out.append(Generation(text, len(str(p)) // 4, len(text) // 4, 0.0))
        return out


@pytest.fixture(scope="session")
def graph():
    from glmcot.graph import Graph

    return Graph.load()


@pytest.fixture(scope="session")
def retriever(graph):
    from glmcot.retriever import Retriever

    return Retriever(graph)


@pytest.fixture(scope="session")
def executor(graph, retriever):
    from glmcot.executor import Executor

    ex = Executor(graph.source, retrieve=retriever, timeout=2.0)
    yield ex
    ex.close()


@pytest.fixture(scope="session")
def dev():
    from glmcot.graph import DEFAULT_QUESTIONS
    from glmcot.questions import load_questions

    return load_questions(DEFAULT_QUESTIONS)


@pytest.fixture
def scripted():
    return ScriptedGenerator
