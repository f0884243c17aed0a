"""One question's outcome, the same record for both systems (the `ask` JSONL line)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from glmcot.drivers import Completion


@dataclass
class QuestionResult:
    qid: str
    system: str
    driver: str
    model: str
    answer: str = ""
    cls: str | None = None
    calls: int = 0
    steps: int = 0
    tokens_prompt: int = 0
    tokens_completion: int = 0
    prefill_computed: int = 0
    prefill_cached: int = 0
    parse_errors: int = 0
    exec_errors: int = 0
    repairs: int = 0
    halt: str | None = None  # None (answered) | "steps" | "tokens" | "iterations" | "error"
    latency_s: float = 0.0
    retrieval_s: float = 0.0  # GLM: time spent in RetrieveNode searches
    retrieval_wait_s: float = 0.0  # ... of which the executor waited for after decoding
    trace: list[dict[str, Any]] = field(default_factory=list)

    def add(self, role: str, c: Completion, prompt_text: str | None = None) -> None:
        """Account one LLM call (and keep it for --trace-dir)."""
        self.calls += 1
        self.tokens_prompt += c.prompt_tokens
        self.tokens_completion += c.completion_tokens
        self.prefill_computed += c.prefill_computed
        self.prefill_cached += c.prefill_cached
        self.trace.append({"role": role, "completion": c.text, "prompt_tokens": c.prompt_tokens,
                           "completion_tokens": c.completion_tokens, "latency_s": round(c.latency_s, 4)})

    @property
    def tokens(self) -> int:
        return self.tokens_prompt + self.tokens_completion

    def record(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("trace")
        d["class"] = d.pop("cls")
        for k in ("latency_s", "retrieval_s", "retrieval_wait_s"):
            d[k] = round(d[k], 4)
        return d
