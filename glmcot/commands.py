"""`papersuite serve glm`: ask | exec | check-graph | score, and (no verb) the demo.

Heavy imports (torch, transformers, xgrammar) happen inside the commands.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from papersuite.errors import UserError

app = typer.Typer(help="GLM (multi-agent Graph-CoT) and its baseline Graph-CoT over any GRBench-layout graph.",
                  invoke_without_command=True)

_GRAPH = typer.Option(None, "--graph", help="GRBench-layout graph.json (default: the embedded synthetic academic graph).")
_SCHEMA = typer.Option(None, "--schema", help="schema.json (default: the embedded one, or inferred).")


def _graph_path(graph: Optional[Path]) -> str:
    from glmcot.graph import DEFAULT_GRAPH

    return str(graph or DEFAULT_GRAPH)


def _pin(threads: int) -> None:
    """One thread by default: on shared cores an oversubscribed torch pool is several times slower."""
    from papersuite.bench import pin_threads

    pin_threads(threads)


@app.callback()
def demo(ctx: typer.Context,
         n: int = typer.Option(5, "--n", help="How many dev questions the demo runs."),
         backend: str = typer.Option("count", "--oracle-backend",
                                     help="count (tokens and calls, seconds) | engine (also time them on "
                                          "LLMEngine; minutes on a small CPU).")) -> None:
    """Demo (no verb): 5 dev questions, GLM and Graph-CoT, oracle driver (efficiency)."""
    if ctx.invoked_subcommand is not None:
        return
    from glmcot.graph import DEFAULT_QUESTIONS
    from glmcot.questions import load_questions
    from glmcot.runner import RunConfig, Runner, full_record
    from papersuite.progress import info, table

    _pin(1)
    recs = load_questions(DEFAULT_QUESTIONS)
    picks = [recs[i] for i in (0, 60, 90, 110, 150, 30, 120, 160, 10, 70)[: max(1, n)]]
    info(f"glm demo: {len(picks)} dev questions, GLM and Graph-CoT, oracle trajectories ({backend} backend, "
         "SmolLM2-135M tokens); accuracy needs `ask --driver live --llm URL` with a capable model")
    runner = Runner(RunConfig(driver="oracle", backend=backend, embeddings=False))
    rows = []
    try:
        for rec, res in runner.run(picks):
            r = full_record(rec, res)
            rows.append(r)
            print(json.dumps(r))
    finally:
        runner.close()
    table([{k: r[k] for k in ("qid", "template", "system", "answer", "em", "calls", "tokens_prompt",
                                "tokens_completion", "latency_s")} for r in rows], title="glm demo")
    _ratio_lines(rows, timed=backend != "count")


def _ratio_lines(rows: list[dict], timed: bool = True) -> None:
    from papersuite.progress import info

    def tot(system, key):
        return sum(r[key] for r in rows if r["system"] == system)

    if {"glm", "graphcot"} <= {r["system"] for r in rows}:
        tok = lambda s: tot(s, "tokens_prompt") + tot(s, "tokens_completion")  # noqa: E731
        lat = (f", latency {tot('graphcot', 'latency_s') / max(1e-9, tot('glm', 'latency_s')):.1f}x" if timed
               else " (count-only backend: no latency)")
        info(f"Graph-CoT / GLM: tokens {tok('graphcot') / max(1, tok('glm')):.1f}x, "
             f"calls {tot('graphcot', 'calls') / max(1, tot('glm', 'calls')):.1f}x" + lat)


@app.command("ask")
def ask(
    file: Optional[str] = typer.Argument(None, help="Questions JSONL (qid, question[, answer, answer_list, level, "
                                                    "template]) or '-'. Default: 5 embedded dev questions."),
    question: Optional[str] = typer.Option(None, "--question", help="Ask one question instead of a file."),
    graph: Optional[Path] = _GRAPH,
    schema: Optional[Path] = _SCHEMA,
    system: str = typer.Option("both", "--system", help="glm | graphcot | both."),
    driver: str = typer.Option("live", "--driver", help="live (the LLM decides) | oracle (efficiency: per-template "
                                                        "shortest trajectories, teacher-forced)."),
    llm: str = typer.Option("smollm2-135m-instruct", "--llm", help="Model NAME or PATH, or an OpenAI-compatible URL "
                                                                  "(model name from $GLM_MODEL)."),
    backend: str = typer.Option("engine", "--oracle-backend", help="oracle only: engine (papersuite's LLMEngine) | "
                                                                   "forced (transformers) | count (tokens only)."),
    kv_policy: str = typer.Option("lru", "--kv-policy", help="engine KV eviction: lru | graphcot (GLM's priorities)."),
    kv_blocks: Optional[int] = typer.Option(None, "--kv-blocks", help="engine KV blocks (16 tokens each)."),
    concurrency: int = typer.Option(1, "--concurrency", min=1, help="Questions in flight."),
    max_steps: int = typer.Option(10, "--max-steps", min=1, help="Graph-CoT step limit."),
    max_iterations: int = typer.Option(4, "--max-iterations", min=1, help="GLM reason/act rounds."),
    max_prompt_tokens: int = typer.Option(10_000, "--max-prompt-tokens", help="Graph-CoT halts past this prompt size."),
    zero_shot: bool = typer.Option(False, "--zero-shot", help="Graph-CoT without its three few-shot traces."),
    no_classifier: bool = typer.Option(False, "--no-classifier", help="GLM ablation: skip the C-Agent."),
    no_grammar: bool = typer.Option(False, "--no-grammar", help="Live: decode without grammars (parse and repair)."),
    no_embeddings: bool = typer.Option(False, "--no-embeddings", help="RetrieveNode by exact match only."),
    timeout: float = typer.Option(5.0, "--timeout", help="Executor wall-clock cap per snippet (s)."),
    no_pipeline: bool = typer.Option(False, "--no-pipeline", help="GLM: run RetrieveNode searches after decoding, "
                                                                  "not while the code streams."),
    retrieval_delay_ms: float = typer.Option(0.0, "--retrieval-delay-ms", min=0.0,
                                             help="Labelled delay added to every RetrieveNode search."),
    limit: int = typer.Option(0, "--limit", help="Only the first N questions (0: all)."),
    trace_dir: Optional[Path] = typer.Option(None, "--trace-dir", help="Write each question's full call trace here."),
    threads: int = typer.Option(1, "--threads", min=1, help="torch threads."),
    output: str = typer.Option("-", "-o", "--output", help="JSONL records (default stdout)."),
    as_json: bool = typer.Option(True, "--json/--no-json", help="JSONL on stdout when no -o."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed (default: the global --seed)."),
) -> None:
    """Answer questions with GLM and/or Graph-CoT; one JSONL record per question and system."""
    from glmcot.graph import DEFAULT_QUESTIONS
    from glmcot.questions import load_questions
    from glmcot.runner import RunConfig, Runner, full_record, write_traces
    from papersuite.context import options
    from papersuite.device import seed_everything
    from papersuite.io import atomic_write
    from papersuite.progress import progress, table

    _pin(threads)
    seed_everything(options().seed if seed is None else seed)
    if file is None and question is None:
        records = load_questions(DEFAULT_QUESTIONS)[:5] if not limit else load_questions(DEFAULT_QUESTIONS)
    else:
        records = load_questions(file or "-", question)
    if limit:
        records = records[:limit]
    cfg = RunConfig(graph=_graph_path(graph), schema=str(schema) if schema else None, system=system, driver=driver,
                    llm=llm, backend=backend, concurrency=concurrency, max_steps=max_steps,
                    max_iterations=max_iterations, max_prompt_tokens=max_prompt_tokens, zero_shot=zero_shot,
                    timeout=timeout, constrained=not no_grammar, use_classifier=not no_classifier,
                    embeddings=not no_embeddings, kv_policy=kv_policy, kv_blocks=kv_blocks,
                    pipeline=not no_pipeline, retrieval_delay_ms=retrieval_delay_ms)
    cfg.systems()
    runner = Runner(cfg)
    rows = []
    try:
        with progress("glm ask", total=len(records) * len(cfg.systems())) as task:
            for rec, res in runner.run(records):
                rows.append(full_record(rec, res))
                if trace_dir is not None:
                    write_traces(trace_dir, res)
                task.advance()
    finally:
        runner.close()
    if output != "-" or as_json:
        with atomic_write(output) as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")
    table([{k: r.get(k, "") for k in ("qid", "system", "answer", "em", "calls", "tokens_prompt", "parse_errors",
                                       "exec_errors", "halt", "latency_s")} for r in rows], title="glm ask")
    _ratio_lines(rows, timed=not (driver == "oracle" and backend == "count"))


@app.command("exec")
def exec_cmd(
    file: Optional[str] = typer.Argument(None, help="A .py snippet, a JSONL of {id, code}, or '-' (a snippet). "
                                                    "Default: a built-in example snippet."),
    graph: Optional[Path] = _GRAPH,
    schema: Optional[Path] = _SCHEMA,
    timeout: float = typer.Option(5.0, "--timeout", help="Wall-clock cap per snippet (s)."),
    output: str = typer.Option("-", "-o", "--output", help="JSONL records (default stdout)."),
) -> None:
    """Run snippets in the sandbox over the graph API; one record (id, ok, output, error) each."""
    from glmcot.executor import Executor
    from glmcot.graph import Graph
    from glmcot.retriever import Retriever
    from papersuite.io import atomic_write, iter_jsonl, open_text

    if file is None:
        snippets = [{"id": "example", "code": 'p = RetrieveNode("Efficient Control-Flow Integrity for Supply-Chain '
                                              'Security")\nprint(NodeInfo(p))\nprint([NodeFeature(a, "name") for a '
                                              'in NeighbourCheck(p, "author")])'}]
    elif file.endswith(".jsonl"):
        snippets = []
        for i, rec in enumerate(iter_jsonl(file), 1):
            if not isinstance(rec.get("code"), str):
                raise UserError(f"{file}: record {i} has no 'code' string")
            snippets.append({"id": str(rec.get("id", i)), "code": rec["code"]})
    else:
        with open_text(file) as fh:
            snippets = [{"id": "-" if file == "-" else Path(file).name, "code": fh.read()}]
    g = Graph.load(_graph_path(graph), schema)
    with Executor(g.source, schema, retrieve=Retriever(g), timeout=timeout) as ex:
        results = [{"id": s["id"], **ex.run(s["code"]).as_dict()} for s in snippets]
    with atomic_write(output) as fh:
        for r in results:
            fh.write(json.dumps(r) + "\n")


@app.command("check-graph")
def check_graph(
    path: Optional[Path] = typer.Argument(None, help="graph.json (default: the embedded graph)."),
    schema: Optional[Path] = _SCHEMA,
    output: str = typer.Option("-", "-o", "--output", help="JSON report (default stdout)."),
) -> None:
    """Validate a graph: JSON with node counts per type, dangling neighbour ids, the schema in use."""
    from glmcot.graph import Graph
    from papersuite.io import write_json

    g = Graph.load(_graph_path(path), schema)
    by_type: dict[str, int] = {}
    for node in g.nodes.values():
        by_type[node["type"]] = by_type.get(node["type"], 0) + 1
    dangling, examples = g.dangling()
    edges = sum(len(ids) for n in g.nodes.values() for ids in n["neighbors"].values())
    write_json(output, {"graph": g.source, "digest": g.digest, "nodes": len(g.nodes), "nodes_by_type": by_type,
                        "neighbor_entries": edges, "dangling": dangling, "dangling_examples": examples,
                        "schema": g.schema.as_dict()})


@app.command("score")
def score(
    pred: str = typer.Argument(..., help="ask's JSONL output (qid, system, answer[, class])."),
    gold: Optional[str] = typer.Argument(None, help="Gold JSONL (qid, answer[, answer_list, level, template, "
                                                     "expected_class]). Default: the embedded dev questions."),
    output: str = typer.Option("-", "-o", "--output", help="JSON summary (default stdout)."),
) -> None:
    """EM, set-F1, ROUGE-L and C-Agent accuracy, overall, per level and per template."""
    from glmcot.graph import DEFAULT_QUESTIONS
    from glmcot.scoring import score_one, summarise
    from papersuite.io import iter_jsonl, write_json
    from papersuite.progress import table

    gold_path = gold or str(DEFAULT_QUESTIONS)
    golds = {}
    for i, g in enumerate(iter_jsonl(gold_path), 1):
        if "qid" not in g or "answer" not in g:
            raise UserError(f"{gold_path}: record {i} needs 'qid' and 'answer'")
        golds[str(g["qid"])] = g
    rows = []
    for i, p in enumerate(iter_jsonl(pred), 1):
        if "qid" not in p or "answer" not in p:
            raise UserError(f"{pred}: record {i} needs 'qid' and 'answer'")
        g = golds.get(str(p["qid"]))
        if g is None:
            raise UserError(f"{pred}: record {i}: qid {p['qid']!r} is not in {gold_path}")
        s = score_one(str(p["answer"]), g)
        cls = p.get("class")
        rows.append({"system": p.get("system", "?"), "level": g.get("level"), "template": g.get("template"), **s,
                     "class_ok": (float(cls == g["expected_class"]) if cls and g.get("expected_class") else None)})
    if not rows:
        raise UserError(f"{pred}: no predictions")
    summary = summarise(rows)
    write_json(output, summary)
    table([{"system": s, **v["overall"]} for s, v in summary.items()], title="glm score")

