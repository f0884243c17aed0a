"""Request classes and offline batch jobs in the OpenAI batch format, with resumable results.

A request's class is its engine priority: 0/None is online, >= 1 is offline (the shared server
already reads `"priority": 1` from a request body). Offline jobs come as OpenAI batch input JSONL
(`custom_id`, `method`, `url`, `body`), the format vLLM's batch runner and the OpenAI Batch API
read, so the same file runs anywhere. Results are appended in the batch output format one line
per finished job and fsynced, so an interrupted run leaves only complete lines; a rerun skips
the `custom_id`s already done.
"""
from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from papersuite.errors import UserError

ONLINE, OFFLINE = 0, 1
URLS = ("/v1/chat/completions", "/v1/completions")


def is_offline(seq) -> bool:
    """Offline = priority class >= 1 (works on `Sequence` and `Block`)."""
    return (getattr(seq, "priority", None) or 0) >= OFFLINE


def class_name(seq) -> str:
    return "offline" if is_offline(seq) else "online"


@dataclass(frozen=True)
class BatchJob:
    """One line of a batch input file. `prompt` is text or a list of token ids (completions)."""

    custom_id: str
    url: str
    body: dict
    line: int = 0

    @property
    def max_tokens(self) -> int:
        return int(self.body.get("max_tokens") or self.body.get("max_completion_tokens") or 16)

    @property
    def messages(self) -> list[dict] | None:
        return self.body.get("messages")

    @property
    def prompt(self) -> str | list[int] | None:
        return self.body.get("prompt")


def _check_body(body: Any, url: str, where: str) -> None:
    if not isinstance(body, dict):
        raise UserError(f"{where}: 'body' must be a JSON object")
    if url == "/v1/chat/completions":
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs or not all(
                isinstance(m, dict) and "role" in m and isinstance(m.get("content"), str) for m in msgs):
            raise UserError(f"{where}: a chat job's body needs 'messages', a non-empty list of {{role, content}}")
    else:
        p = body.get("prompt")
        ok = (isinstance(p, str) and p) or (isinstance(p, list) and p and all(isinstance(t, int) and t >= 0 for t in p))
        if not ok:
            raise UserError(f"{where}: a completions job's body needs 'prompt', a string or a list of token ids")
    mt = body.get("max_tokens", body.get("max_completion_tokens", 16))
    if not isinstance(mt, int) or isinstance(mt, bool) or not 1 <= mt <= 1_000_000:
        raise UserError(f"{where}: 'max_tokens' must be an integer in [1, 1000000], got {mt!r}")


def read_batch(path: str | Path) -> list[BatchJob]:
    """Parse and validate a batch input file; any bad line is a UserError naming file:line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such batch file")
    jobs, seen = [], {}
    with open(path, encoding="utf-8") as fh:
        for i, text in enumerate(fh, 1):
            if not text.strip():
                continue
            where = f"{path}:{i}"
            try:
                rec = json.loads(text)
            except json.JSONDecodeError as e:
                raise UserError(f"{where}: malformed JSON ({e.msg})") from None
            if not isinstance(rec, dict):
                raise UserError(f"{where}: expected a JSON object")
            cid = rec.get("custom_id")
            if not isinstance(cid, str) or not cid:
                raise UserError(f"{where}: 'custom_id' must be a non-empty string")
            if cid in seen:
                raise UserError(f"{where}: duplicate custom_id {cid!r} (first on line {seen[cid]})")
            seen[cid] = i
            method = rec.get("method", "POST")
            if method != "POST":
                raise UserError(f"{where}: unsupported method {method!r}; only POST")
            url = rec.get("url")
            if url not in URLS:
                raise UserError(f"{where}: unsupported url {url!r}; supported: {', '.join(URLS)}")
            _check_body(rec.get("body"), url, where)
            jobs.append(BatchJob(cid, url, rec["body"], i))
    if not jobs:
        raise UserError(f"{path}: the batch file has no jobs")
    return jobs


def write_batch(path: str | Path, jobs: list[dict]) -> None:
    """Write batch input lines (`custom_id`, `body`, optional `url`) atomically."""
    from papersuite.io import write_jsonl

    write_jsonl(path, [{"custom_id": j["custom_id"], "method": "POST",
                        "url": j.get("url", "/v1/completions"), "body": j["body"]} for j in jobs])


def output_line(job: BatchJob, model: str, text: str, token_ids: list[int], prompt_tokens: int,
                finish_reason: str, extra: dict | None = None) -> dict:
    """One batch output record (`id`, `custom_id`, `response{status_code, request_id, body}`, `error`)."""
    rid = f"req-{uuid.uuid4().hex[:16]}"
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(token_ids),
             "total_tokens": prompt_tokens + len(token_ids)}
    if job.url == "/v1/chat/completions":
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "finish_reason": finish_reason}
        obj = "text_completion"
    body = {"id": rid, "object": obj, "model": model, "choices": [choice], "usage": usage,
            "token_ids": list(token_ids)} | (extra or {})
    return {"id": f"batch_{rid}", "custom_id": job.custom_id,
            "response": {"status_code": 200, "request_id": rid, "body": body}, "error": None}


class ResultsWriter:
    """Append-only batch output file: one fsynced line per finished job; resumable.

    On open, complete lines are read to learn which `custom_id`s are done, and a torn last line
    (a run killed mid-write) is cut off, so the file only ever holds complete records.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.done: set[str] = set()
        if self.path.exists():
            self._recover()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")

    def _recover(self) -> None:
        raw = self.path.read_bytes()
        keep = raw.rfind(b"\n") + 1  # everything after the last newline is a torn write
        for n, line in enumerate(raw[:keep].splitlines(), 1):
            try:
                cid = json.loads(line)["custom_id"]
            except (ValueError, KeyError, TypeError):
                raise UserError(f"{self.path}:{n}: not a batch output line; refusing to append to it") from None
            self.done.add(cid)
        if keep < len(raw):
            with open(self.path, "r+b") as fh:
                fh.truncate(keep)
                os.fsync(fh.fileno())

    def write(self, record: dict) -> None:
        if record["custom_id"] in self.done:
            return
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.done.add(record["custom_id"])

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "ResultsWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
