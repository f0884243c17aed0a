"""Progress bars and tables on stderr, so stdout stays clean for JSON in pipelines.

Silent with --quiet; when stderr is not a terminal a bar prints one summary line at the end.
"""
from __future__ import annotations

import contextlib
import sys
import time
from typing import Any, Iterable, Iterator, Sequence

from papersuite.context import options


def console():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def info(message: str) -> None:
    """A status line on stderr unless --quiet."""
    if not options().quiet:
        print(message, file=sys.stderr, flush=True)


def debug(message: str) -> None:
    if options().verbose and not options().quiet:
        print(message, file=sys.stderr, flush=True)


class _Task:
    def __init__(self, progress, task_id, total):
        self._progress, self._id, self.total, self.done = progress, task_id, total, 0

    def advance(self, n: float = 1, **fields: Any) -> None:
        self.done += n
        if self._progress is not None:
            self._progress.update(self._id, advance=n, **fields)


@contextlib.contextmanager
def progress(description: str, total: float | None = None) -> Iterator[_Task]:
    """`with progress("training", total=10) as task: task.advance()`."""
    quiet = options().quiet
    if quiet or not sys.stderr.isatty():
        t0 = time.perf_counter()
        task = _Task(None, None, total)
        yield task
        if not quiet:
            shown = f"{task.done:g}" + (f"/{total:g}" if total else "")
            print(f"{description}: {shown} done in {time.perf_counter() - t0:.1f}s",
                  file=sys.stderr, flush=True)
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console(),
                  transient=False) as prog:
        tid = prog.add_task(description, total=total)
        yield _Task(prog, tid, total)


def track(items: Iterable, description: str, total: int | None = None) -> Iterator:
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress(description, total) as task:
        for item in items:
            yield item
            task.advance()


def table(rows: Sequence[dict[str, Any]] | Sequence[Sequence[Any]], columns: Sequence[str] | None = None,
          title: str | None = None) -> None:
    """Print a table on stderr (skipped with --quiet)."""
    if options().quiet:
        return
    from rich.table import Table

    if rows and isinstance(rows[0], dict):
        columns = columns or list(rows[0].keys())
        rows = [[r.get(c, "") for c in columns] for r in rows]  # type: ignore[union-attr]
    t = Table(title=title)
    for c in columns or []:
        t.add_column(str(c))
    for r in rows:
        t.add_row(*[_fmt(v) for v in r])
    console().print(t)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
