"""Who decides each LLM call's completion: the model (`live`) or the oracle (`oracle`).

Both loops talk to a per-question `Session` with `complete(Call) -> Completion`; they never know
which driver they run under. A `Call` carries the role, the chat messages, sampling parameters,
an optional grammar (for constrained decoding) and the context the oracle may read (what the
loop has observed so far; never the gold answer).

- `LiveDriver(generator)`: any `papersuite.llm.TextGenerator`; if the generator also offers
  `generate_constrained(prompt, params, grammar)` (glmcot.constrained), grammars are enforced.
- `OracleDriver(backend)`: the oracle supplies the text, `backend.force(messages, text)`
  teacher-forces it (or only counts tokens), so billed tokens and compute are real.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from papersuite.llm import SamplingParams


@dataclass
class Call:
    role: str  # thought | action | classify | reason | act
    messages: list[dict]
    params: SamplingParams
    grammar: tuple[str, Any] | None = None  # ("regex"|"choice"|"json"|"ebnf", spec)
    context: dict[str, Any] = field(default_factory=dict)
    spans: list[tuple[int, str]] = field(default_factory=list)  # (end char in the last message, tag)


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    prefill_computed: int = 0
    prefill_cached: int = 0


class Session(Protocol):
    def complete(self, call: Call) -> Completion:
        ...


class LiveDriver:
    """The LLM decides. `model` names what answered, for the records."""

    name = "live"

    def __init__(self, generator, constrained: bool = True):
        self.generator = generator
        self.model = getattr(generator, "model_name", "?")
        self.constrained = constrained and hasattr(generator, "generate_constrained")

    def session(self, record: dict[str, Any], system: str) -> "LiveDriver":
        return self

    def complete(self, call: Call) -> Completion:
        t0 = time.perf_counter()
        on_text = call.context.get("on_text")
        if self.constrained and call.grammar is not None:
            g = self.generator.generate_constrained(call.messages, call.params, call.grammar)
        else:
            g = self.generator.generate([call.messages], call.params)[0]
        if on_text is not None:  # not streamed: the whole completion at once
            on_text(g.text)
        cached = int(getattr(g, "cached_tokens", 0) or 0)
        return Completion(g.text, g.prompt_tokens, g.completion_tokens, time.perf_counter() - t0,
                          g.prompt_tokens - cached, cached)


class ForcedBackend(Protocol):
    model_name: str

    def force(self, messages: list[dict], completion: str, spans: list[tuple[int, str]] | None = None,
              on_text=None) -> Completion:
        """Teacher-force `completion`; call `on_text(text so far)` as it decodes, if streaming."""
        ...


class OracleDriver:
    """The oracle decides; the backend teacher-forces (or counts) its completions."""

    name = "oracle"

    def __init__(self, backend: ForcedBackend):
        self.backend = backend
        self.model = backend.model_name

    def session(self, record: dict[str, Any], system: str) -> "OracleSession":
        return OracleSession(record, system, self.backend)


class OracleSession:
    def __init__(self, record: dict[str, Any], system: str, backend: ForcedBackend):
        from glmcot.questions import public

        self.record = public(record)
        self.system = system
        self.backend = backend
        self._plan = None
        self._pair: tuple[str, str] | None = None

    def complete(self, call: Call) -> Completion:
        return self.backend.force(call.messages, self.text_for(call), call.spans, call.context.get("on_text"))

    def text_for(self, call: Call) -> str:
        from glmcot import oracle

        if call.role == "thought":
            if self._plan is None:
                self._plan = oracle.graphcot_plan(self.record)
                self._pair = next(self._plan)
            else:
                self._pair = self._plan.send(call.context.get("observations", []))
            return self._pair[0]
        if call.role == "action":
            return self._pair[1]
        if call.role == "classify":
            return oracle.glm_label(self.record)
        if call.role == "act":
            return oracle.glm_code(self.record)
        if call.role == "reason":
            notebook = call.context.get("notebook") or []
            if not notebook:
                return json.dumps({"missing": oracle.glm_missing(self.record)})
            return json.dumps({"answer": oracle.answer_from_notebook(notebook)})
        raise ValueError(f"unknown role {call.role!r}")
