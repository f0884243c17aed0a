"""`serve echo api`: the shared OpenAI server for online traffic, an offline batch in its idle capacity.

The engine runs the Echo scheduling policy and `EchoEviction`. Online requests arrive over HTTP
(class 0, or offline with `"priority": 1`); the batch's jobs are submitted as offline sequences
(priority 1) by a feeder thread through the engine's public async front, and each finished job is
appended to the results file (fsynced) at once. On SIGTERM the queued offline jobs are aborted
first, so the drain waits only for online requests; a rerun skips the `custom_id`s already done.
`/metrics` adds offline progress, the reserve and the offline prefix-cache hit rate.
"""
from __future__ import annotations

import asyncio
import threading

from echo.jobs import OFFLINE, BatchJob, ResultsWriter, output_line


class OfflineFeeder:
    """Submits batch jobs as offline sequences and writes each result as it finishes."""

    def __init__(self, async_engine, jobs: list[BatchJob], prompt_ids: dict[str, list[int]],
                 writer: ResultsWriter, model_name: str) -> None:
        self.async_engine, self.writer, self.model_name = async_engine, writer, model_name
        self.jobs = [j for j in jobs if j.custom_id not in writer.done]
        self.prompt_ids = prompt_ids
        self.total, self.done_before = len(jobs), len(writer.done)
        self.completed = 0
        self.cached_tokens = self.prompt_tokens = 0
        self._ids: set[str] = set()
        self._stopping = False
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._feed()), name="echo-offline", daemon=True)

    def start(self) -> "OfflineFeeder":
        self.thread.start()
        return self

    async def _one(self, job: BatchJob) -> None:
        from papersuite.llm import SamplingParams

        body = job.body
        params = SamplingParams(max_tokens=job.max_tokens, temperature=float(body.get("temperature", 0.0)),
                                ignore_eos=bool(body.get("ignore_eos", False)))
        seq = self.async_engine.submit(None, params, prompt_token_ids=self.prompt_ids[job.custom_id],
                                       priority=OFFLINE, request_id=f"offline-{job.custom_id}")
        self._ids.add(seq.request_id)
        last = None
        async for delta in self.async_engine.stream(seq):
            last = delta
        if last is None or last.error or not seq.is_finished or seq.finish_reason == "abort" or self._stopping:
            return
        with self._lock:
            self.writer.write(output_line(job, self.model_name, seq.text, list(seq.output_token_ids),
                                          seq.num_prompt_tokens, seq.finish_reason or "length"))
            self.completed += 1
            self.cached_tokens += seq.num_cached_tokens
            self.prompt_tokens += seq.num_prompt_tokens

    async def _feed(self) -> None:
        await asyncio.gather(*(self._one(j) for j in self.jobs), return_exceptions=True)

    def stop(self) -> None:
        """Abort queued and running offline jobs (their results are simply not written)."""
        self._stopping = True
        for rid in list(self._ids):
            self.async_engine.abort(rid)

    @property
    def finished(self) -> bool:
        return self.completed >= len(self.jobs)

    def render(self, policy) -> str:
        stats = getattr(policy, "stats", {})
        hit = self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0
        rows = [("echo_offline_jobs_total", "Offline jobs in the batch.", self.total),
                ("echo_offline_jobs_done", "Offline jobs with a result line (this run and before).",
                 self.done_before + self.completed),
                ("echo_offline_prefix_hit_rate", "Offline prompt tokens served from the prefix cache.", hit),
                ("echo_reserve_blocks", "KV blocks kept free for online bursts.", stats.get("reserve_blocks", 0)),
                ("echo_online_preemptions_total", "Offline preemptions made for online arrivals.",
                 stats.get("online_preemptions", 0))]
        lines = []
        for name, help_, v in rows:
            lines += [f"# HELP {name} {help_}", f"# TYPE {name} gauge", f"{name} {v}"]
        return "\n".join(lines) + "\n"


def build_app(engine, jobs: list[BatchJob], prompt_ids: dict, writer: ResultsWriter, model_name: str | None = None):
    """The shared server's app plus the offline feeder and the extended /metrics."""
    from fastapi.responses import PlainTextResponse

    from papersuite.engine.engine import AsyncLLMEngine
    from papersuite.engine.server import create_app

    async_engine = AsyncLLMEngine(engine).start()
    app = create_app(async_engine, model_name)
    feeder = OfflineFeeder(async_engine, jobs, prompt_ids, writer, model_name or engine.model_name)
    shutdown = async_engine.shutdown

    def shutdown_offline_first(drain_timeout: float = 30.0) -> None:
        feeder.stop()
        shutdown(drain_timeout)
        writer.close()

    async_engine.shutdown = shutdown_offline_first

    @app.middleware("http")
    async def echo_metrics(request, call_next):
        response = await call_next(request)
        if request.url.path != "/metrics":
            return response
        body = b"".join([chunk async for chunk in response.body_iterator]).decode()
        return PlainTextResponse(body + feeder.render(engine.scheduler.policy),
                                 media_type="text/plain; version=0.0.4")

    feeder.start()
    return app, feeder
