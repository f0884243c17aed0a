"""Reading inputs and writing results the same way in every command.

Paths or `-` (stdin/stdout). A malformed record is a `UserError` naming file:line. Results are
written atomically: to a temporary file in the same folder, fsynced, then renamed, so an
interrupted run never leaves a half-written output behind.
"""
from __future__ import annotations

import contextlib
import csv
import io as _io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, TextIO

from papersuite.errors import UserError

PathLike = str | os.PathLike[str]


def _name(path: PathLike) -> str:
    return "<stdin>" if str(path) == "-" else str(path)


@contextlib.contextmanager
def open_text(path: PathLike) -> Iterator[TextIO]:
    """Open a text input; `-` is stdin. A missing or unreadable file is a UserError."""
    if str(path) == "-":
        yield sys.stdin
        return
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: no such file")
    if p.is_dir():
        raise UserError(f"{p}: is a folder, expected a file")
    try:
        fh = open(p, encoding="utf-8")
    except OSError as e:
        raise UserError(f"{p}: cannot read ({e.strerror})") from None
    with fh:
        try:
            yield fh
        except UnicodeDecodeError as e:
            raise UserError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def iter_jsonl_lines(path: PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, dict) per non-blank line; a malformed line is an error naming file:line.

    The line number lets callers name file:line in their own validation errors too.
    """
    name = _name(path)
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"malformed JSON ({e.msg}, column {e.colno})",
                                where=f"{name}:{lineno}") from None
            if not isinstance(obj, dict):
                raise UserError(f"expected a JSON object, got {type(obj).__name__}",
                                where=f"{name}:{lineno}")
            yield lineno, obj


def iter_jsonl(path: PathLike) -> Iterator[dict[str, Any]]:
    """Yield one dict per non-blank line; a malformed line is an error naming file:line."""
    for _, obj in iter_jsonl_lines(path):
        yield obj


def read_jsonl(path: PathLike) -> list[dict[str, Any]]:
    return list(iter_jsonl(path))


def read_json(path: PathLike) -> Any:
    name = _name(path)
    with open_text(path) as fh:
        text = fh.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"malformed JSON ({e.msg}, column {e.colno})",
                        where=f"{name}:{e.lineno}") from None


def read_csv_rows(path: PathLike, required: Iterable[str] = ()) -> list[dict[str, str]]:
    """Read a CSV with a header into dicts; a row with the wrong field count names file:line."""
    name = _name(path)
    with open_text(path) as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise UserError(f"{name}: empty CSV file") from None
        missing = [c for c in required if c not in header]
        if missing:
            raise UserError(f"missing column(s) {', '.join(missing)}; found {', '.join(header)}",
                            where=f"{name}:1")
        rows = []
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise UserError(f"expected {len(header)} fields, got {len(row)}",
                                where=f"{name}:{reader.line_num}")
            rows.append(dict(zip(header, row)))
    return rows


def read_csv_frame(path: PathLike, required: Iterable[str] = ()):
    """Read a CSV into a pandas DataFrame with file:line errors for malformed rows."""
    import pandas as pd

    name = _name(path)
    with open_text(path) as fh:
        text = fh.read()
    try:
        df = pd.read_csv(_io.StringIO(text))
    except pd.errors.EmptyDataError:
        raise UserError(f"{name}: empty CSV file") from None
    except pd.errors.ParserError as e:
        msg = str(e).strip().splitlines()[-1]
        import re

        m = re.search(r"line (\d+)", msg)
        raise UserError(f"malformed CSV ({msg})", where=f"{name}:{m.group(1)}" if m else name) from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise UserError(f"missing column(s) {', '.join(missing)}; found {', '.join(map(str, df.columns))}",
                        where=f"{name}:1")
    return df


@contextlib.contextmanager
def atomic_path(path: PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            with open(tmp_path, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "w") -> Iterator[TextIO]:
    """Open `path` for writing atomically; `-` writes to stdout."""
    if str(path) == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    with atomic_path(path) as tmp:
        enc = None if "b" in mode else "utf-8"
        with open(tmp, mode, encoding=enc) as fh:
            yield fh
            fh.flush()


def write_json(path: PathLike, obj: Any, *, indent: int | None = 2) -> None:
    with atomic_write(path) as fh:
        json.dump(obj, fh, indent=indent, default=_default)
        fh.write("\n")


def write_jsonl(path: PathLike, records: Iterable[dict[str, Any]]) -> None:
    with atomic_write(path) as fh:
        for r in records:
            fh.write(json.dumps(r, default=_default) + "\n")


def _default(obj: Any) -> Any:
    """JSON for numpy scalars/arrays and paths, so results can be dumped as computed."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps(obj: Any, indent: int | None = None) -> str:
    return json.dumps(obj, indent=indent, default=_default)
