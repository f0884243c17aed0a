"""The A-Agent's sandbox: an `ast` allow-list, then a fresh worker process with caps.

Why two layers: the allow-list refuses what a snippet has no business doing (imports, `_` names
and attributes, `open`/`exec`/`eval`/`getattr`, `str.format`'s `{0.__class__}` side door,
attributes outside the containers' public methods), and the worker confines what slips through
or simply runs away: a 1 GiB address-space cap, no file writes (RLIMIT_FSIZE 0), an output cap,
and a wall-clock timeout after which the worker is killed and replaced. The worker is a fresh
interpreter (not a fork of a process holding torch) and stays up between snippets so a snippet
costs milliseconds, not an interpreter start.

`RetrieveNode("literal")` calls are found statically and resolved in the parent (where the
embedding retriever lives) before the snippet runs; that is also the hook GLM's pipelining uses.
"""
from __future__ import annotations

import ast
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

API_NAMES = ("RetrieveNode", "NodeFeature", "NeighbourCheck", "NodeDegree", "NodeInfo")
SAFE_BUILTINS = ("len", "range", "sorted", "min", "max", "sum", "set", "list", "dict", "tuple", "str", "int",
                 "float", "bool", "enumerate", "zip", "map", "filter", "any", "all", "abs", "round",
                 "reversed", "print", "isinstance", "Counter", "Exception", "ValueError", "KeyError",
                 "IndexError", "TypeError", "True", "False", "None")
FORBIDDEN_NAMES = {"open", "exec", "eval", "getattr", "setattr", "delattr", "compile", "globals", "locals",
                   "vars", "dir", "input", "breakpoint", "help", "type", "object", "super", "memoryview",
                   "format", "classmethod", "staticmethod", "property", "exit", "quit", "id", "hash"}
_ATTR_SOURCES = (list, dict, set, str, tuple, int, float, Counter)
ALLOWED_ATTRS = {a for t in _ATTR_SOURCES for a in dir(t) if not a.startswith("_")} - {"format", "format_map"}
ALLOWED_NODES = (
    ast.Module, ast.Expr, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.For, ast.While, ast.If, ast.Break,
    ast.Continue, ast.Pass, ast.Compare, ast.BoolOp, ast.BinOp, ast.UnaryOp, ast.Call, ast.Name, ast.Load,
    ast.Store, ast.Del, ast.Delete, ast.Constant, ast.List, ast.Tuple, ast.Dict, ast.Set, ast.ListComp,
    ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.comprehension, ast.Lambda, ast.arguments, ast.arg,
    ast.Subscript, ast.Slice, ast.IfExp, ast.Attribute, ast.keyword, ast.Starred, ast.JoinedStr,
    ast.FormattedValue, ast.FunctionDef, ast.Return, ast.Try, ast.ExceptHandler, ast.Raise, ast.Assert,
    ast.operator, ast.boolop, ast.cmpop, ast.unaryop, ast.expr_context,
)
MAX_CODE_CHARS = 8000


class SnippetRefused(Exception):
    """The snippet uses something outside the allow-list."""


def check(code: str) -> ast.Module:
    """Parse and vet a snippet; raise SnippetRefused (with line) or SyntaxError."""
    if len(code) > MAX_CODE_CHARS:
        raise SnippetRefused(f"snippet longer than {MAX_CODE_CHARS} characters")
    tree = ast.parse(code, mode="exec")
    for node in ast.walk(tree):
        line = getattr(node, "lineno", "?")
        if not isinstance(node, ALLOWED_NODES):
            raise SnippetRefused(f"line {line}: {type(node).__name__} is not allowed")
        if isinstance(node, ast.Name) and (node.id.startswith("_") or node.id in FORBIDDEN_NAMES):
            raise SnippetRefused(f"line {line}: name {node.id!r} is not allowed")
        if isinstance(node, ast.Attribute) and node.attr not in ALLOWED_ATTRS:
            raise SnippetRefused(f"line {line}: attribute {node.attr!r} is not allowed")
        if isinstance(node, (ast.FunctionDef, ast.arg)):
            name = node.name if isinstance(node, ast.FunctionDef) else node.arg
            if name.startswith("_") or name in FORBIDDEN_NAMES:
                raise SnippetRefused(f"line {line}: name {name!r} is not allowed")
        if isinstance(node, ast.FunctionDef) and node.decorator_list:
            raise SnippetRefused(f"line {line}: decorators are not allowed")
        if isinstance(node, ast.ExceptHandler) and node.name and node.name.startswith("_"):
            raise SnippetRefused(f"line {line}: name {node.name!r} is not allowed")
    return tree


def literal_retrievals(tree: ast.Module) -> list[str]:
    """The string literals passed to RetrieveNode, in source order (what pipelining can start)."""
    out = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "RetrieveNode"
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            out.append(node.args[0].value)
    return out


@dataclass
class ExecResult:
    ok: bool
    output: str
    error: str | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"ok": self.ok, "output": self.output, "error": self.error}


class Executor:
    """Runs snippets against one graph in a capped worker process. Thread-safe (one at a time)."""

    def __init__(self, graph_path: str | Path, schema_path: str | Path | None = None,
                 retrieve: Callable[[str], str] | None = None, timeout: float = 5.0,
                 memory_bytes: int = 1 << 30, max_output: int = 4000):
        self.graph_path = str(Path(graph_path).resolve())
        self.schema_path = str(Path(schema_path).resolve()) if schema_path else ""
        self.retrieve = retrieve
        self.timeout = timeout
        self.memory_bytes = memory_bytes
        self.max_output = max_output
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    # -- worker life cycle ----------------------------------------------------------------------
    def _start(self) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "HOME")}
        env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parent.parent)]
                                            + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        proc = subprocess.Popen(
            [sys.executable, "-I", "-c", _BOOT, self.graph_path, self.schema_path, str(self.memory_bytes),
             str(self.max_output)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
            cwd="/", bufsize=1)
        ready = self._readline(proc, 60.0)
        if ready is None or json.loads(ready).get("ready") is not True:
            proc.kill()
            raise RuntimeError(f"executor worker did not start: {ready!r}")
        return proc

    @staticmethod
    def _readline(proc: subprocess.Popen, timeout: float) -> str | None:
        r, _, _ = select.select([proc.stdout], [], [], max(timeout, 0.0))
        if not r:
            return None
        line = proc.stdout.readline()
        return line or None

    def close(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    # -- running ----------------------------------------------------------------------------------
    def resolve_retrievals(self, code: str) -> dict[str, str]:
        """Resolve the literal RetrieveNode queries in the parent (embedding fallback lives here)."""
        from glmcot.graph import GraphError

        try:
            tree = check(code)
        except (SnippetRefused, SyntaxError):
            return {}
        out = {}
        for q in literal_retrievals(tree):
            if self.retrieve is not None:
                try:
                    out[q] = self.retrieve(q)
                except GraphError:
                    pass
        return out

    def run(self, code: str, resolved: dict[str, str] | None = None) -> ExecResult:
        t0 = time.perf_counter()
        try:
            check(code)
        except SyntaxError as e:
            return ExecResult(False, "", f"SyntaxError: {e.msg} (line {e.lineno})", time.perf_counter() - t0)
        except SnippetRefused as e:
            return ExecResult(False, "", f"Refused: {e}", time.perf_counter() - t0)
        if resolved is None:
            resolved = self.resolve_retrievals(code)
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._start()
            proc = self._proc
            try:
                proc.stdin.write(json.dumps({"code": code, "resolved": resolved}) + "\n")
                proc.stdin.flush()
            except BrokenPipeError:
                self.close()
                return ExecResult(False, "", "WorkerError: the worker died", time.perf_counter() - t0)
            line = self._readline(proc, self.timeout)
            if line is None:
                died = proc.poll() is not None
                self.close()
                msg = ("WorkerError: the worker died (memory cap?)" if died
                       else f"Timeout: snippet ran longer than {self.timeout:g} s")
                return ExecResult(False, "", msg, time.perf_counter() - t0)
        res = json.loads(line)
        return ExecResult(res["ok"], res["output"], res.get("error"), time.perf_counter() - t0)


# The worker: capped, isolated (-I), loads the graph once, runs one JSON request per line.
_BOOT = r"""
import sys, json, resource
graph_path, schema_path, mem, max_out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, __import__("os").environ.get("PYTHONPATH", "").split(__import__("os").pathsep)[0])
from glmcot.sandbox import serve
resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
serve(graph_path, schema_path or None, mem, max_out)
"""
