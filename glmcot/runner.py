"""Wiring: graph + retriever + executor + driver + both systems, run over question records.

`ask`, the demo and the benchmark all go through `Runner.run`, so what the benchmark measures
is what users run. Concurrency is a thread pool over questions; an in-process model is called
under a lock (its forward passes are not re-entrant), an HTTP endpoint is called in parallel.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from glmcot.graph import DEFAULT_GRAPH, Graph
from glmcot.result import QuestionResult
from papersuite.errors import UserError

SYSTEMS = ("glm", "graphcot")


@dataclass
class RunConfig:
    graph: str = str(DEFAULT_GRAPH)
    schema: str | None = None
    system: str = "both"
    driver: str = "oracle"
    llm: str = "smollm2-135m-instruct"
    backend: str = "engine"  # oracle only: engine | forced (HF, own prefix cache) | count (tokens only)
    kv_policy: str = "lru"
    kv_blocks: int | None = None
    concurrency: int = 1
    max_steps: int = 10
    max_iterations: int = 4
    max_prompt_tokens: int = 10_000
    zero_shot: bool = False
    timeout: float = 5.0
    constrained: bool = True
    use_classifier: bool = True
    embeddings: bool = True
    device: str = "cpu"
    pipeline: bool = True
    retrieval_delay_ms: float = 0.0

    def systems(self) -> tuple[str, ...]:
        if self.system == "both":
            return SYSTEMS
        if self.system not in SYSTEMS:
            raise UserError(f"unknown --system {self.system!r}; choose glm, graphcot or both")
        return (self.system,)


class _Locked:
    """Serialises calls into a session whose backend is an in-process model."""

    def __init__(self, session, lock: threading.Lock):
        self._s, self._lock = session, lock

    def complete(self, call):
        with self._lock:
            return self._s.complete(call)


class Runner:
    def __init__(self, cfg: RunConfig, driver=None, counter=None):
        from glmcot.backends import TokenCounter
        from glmcot.executor import Executor
        from glmcot.glm import GLM
        from glmcot.graphcot import GraphCoT
        from glmcot.prompts import default_fewshots
        from glmcot.retriever import Retriever, default_retriever

        self.cfg = cfg
        if cfg.driver not in ("live", "oracle"):
            raise UserError(f"unknown --driver {cfg.driver!r}; choose live or oracle")
        self.graph = Graph.load(cfg.graph, cfg.schema)
        self.retriever = default_retriever(self.graph, cfg.device) if cfg.embeddings else Retriever(self.graph)
        self.counter = counter or TokenCounter()
        self.driver = driver or self._make_driver()
        self.executor = Executor(self.graph.source, cfg.schema, retrieve=self.retriever, timeout=cfg.timeout)
        self._lock = threading.Lock()
        # the engine front and HTTP endpoints take concurrent calls; a transformers model does not
        self._in_process = not cfg.llm.startswith(("http://", "https://")) and not (
            cfg.driver == "oracle" and cfg.backend in ("engine", "count"))
        self.systems = {
            "graphcot": GraphCoT(self.graph, self.retriever, self.counter,
                                 None if cfg.zero_shot else default_fewshots(), cfg.max_steps,
                                 cfg.max_prompt_tokens, constrained=cfg.constrained),
            "glm": GLM(self.graph, self.executor, cfg.max_iterations, use_classifier=cfg.use_classifier,
                       constrained=cfg.constrained, retrieve=self.retriever, pipeline=cfg.pipeline,
                       retrieval_delay_s=cfg.retrieval_delay_ms / 1000.0),
        }

    def _make_driver(self):
        from glmcot.drivers import LiveDriver, OracleDriver

        cfg = self.cfg
        if cfg.driver == "oracle":
            from glmcot.backends import CountingBackend, TransformersForcedBackend

            if cfg.backend == "count":
                return OracleDriver(CountingBackend(self.counter))
            if cfg.llm.startswith(("http://", "https://")):
                raise UserError("--driver oracle teacher-forces an in-process model; give --llm NAME|PATH")
            if cfg.backend == "engine":
                from glmcot.engine_backend import EngineForcedBackend

                return OracleDriver(EngineForcedBackend(cfg.llm, cfg.device, kv_policy=cfg.kv_policy,
                                                        num_blocks=cfg.kv_blocks))
            if cfg.backend != "forced":
                raise UserError(f"unknown --oracle-backend {cfg.backend!r}; choose engine, forced or count")
            return OracleDriver(TransformersForcedBackend(cfg.llm, cfg.device, counter=None))
        if cfg.llm.startswith(("http://", "https://")):
            import os

            from papersuite.llm import OpenAIGenerator

            model = os.environ.get("GLM_MODEL") or served_model(cfg.llm)
            return LiveDriver(OpenAIGenerator(model, base_url=cfg.llm), constrained=False)
        if cfg.backend == "forced":  # transformers' generate instead of the engine
            from glmcot.constrained import ConstrainedGenerator

            return LiveDriver(ConstrainedGenerator(cfg.llm, cfg.device), constrained=cfg.constrained)
        from glmcot.constrained import EngineGrammarGenerator

        return LiveDriver(EngineGrammarGenerator(cfg.llm, cfg.device, cfg.kv_policy), constrained=cfg.constrained)

    def close(self) -> None:
        self.executor.close()
        backend = getattr(self.driver, "backend", None)
        if hasattr(backend, "close"):
            backend.close()

    def run_one(self, record: dict[str, Any], system: str) -> QuestionResult:
        session = self.driver.session(record, system)
        if self._in_process:
            session = _Locked(session, self._lock)
        try:
            res = self.systems[system].run(record, session, self.driver.name, self.driver.model)
        except Exception as e:  # the oracle cannot read an observation: a broken loop, recorded
            from glmcot.oracle import OracleError

            if not isinstance(e, (OracleError, ValueError)):
                raise
            res = QuestionResult(str(record["qid"]), system, self.driver.name, self.driver.model, halt="error")
            res.trace.append({"role": "error", "error": str(e)})
        backend = getattr(self.driver, "backend", None)
        if hasattr(backend, "finish_question"):
            backend.finish_question(res.qid)
        return res

    def run(self, records: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], QuestionResult]]:
        """Yield (record, result) per question and system, interleaving the systems."""
        jobs = [(r, s) for r in records for s in self.cfg.systems()]
        if self.cfg.concurrency <= 1:
            for r, s in jobs:
                yield r, self.run_one(r, s)
            return
        with ThreadPoolExecutor(self.cfg.concurrency) as pool:
            futures = [(r, pool.submit(self.run_one, r, s)) for r, s in jobs]
            for r, f in futures:
                yield r, f.result()


def served_model(url: str) -> str:
    """The first model id an OpenAI-compatible server lists at /v1/models."""
    import json
    import urllib.error
    import urllib.request

    base = url.rstrip("/")
    base = base if base.endswith("/v1") else base + "/v1"
    try:
        with urllib.request.urlopen(f"{base}/models", timeout=30) as resp:
            data = json.loads(resp.read())
        return data["data"][0]["id"]
    except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError) as e:
        raise UserError(f"{base}/models: cannot list the served models ({e}); set $GLM_MODEL") from None


def full_record(record: dict[str, Any], res: QuestionResult) -> dict[str, Any]:
    """The `ask` output line: the result, plus em/f1 when the record carries gold."""
    from glmcot.scoring import score_one

    out = res.record()
    for k in ("level", "template"):
        if k in record:
            out[k] = record[k]
    if "answer" in record:
        s = score_one(res.answer, record)
        out["em"], out["f1"] = s["em"], s["f1"]
        if res.cls is not None and record.get("expected_class"):
            out["class_ok"] = float(res.cls == record["expected_class"])
    return out


def write_traces(folder: str | Path, res: QuestionResult) -> None:
    from papersuite.io import write_json

    Path(folder).mkdir(parents=True, exist_ok=True)
    write_json(Path(folder) / f"{res.qid}.{res.system}.json", {"record": res.record(), "trace": res.trace})
