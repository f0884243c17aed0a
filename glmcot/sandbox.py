"""Inside the executor's worker process: the restricted namespace and the request loop.

Only `glmcot.executor` starts this (see `_BOOT` there); snippets were vetted by `executor.check`
before they arrive. The namespace holds the five graph functions and a short list of builtins;
`print` writes into a capped buffer so a flood stops at `max_output` characters.
"""
from __future__ import annotations

import builtins
import json
import resource
import sys
from collections import Counter


class OutputLimit(Exception):
    pass


def _namespace(graph, retrieve, out: list, max_output: int) -> dict:
    from glmcot.executor import SAFE_BUILTINS

    size = [0]

    def _print(*args, sep=" ", end="\n"):
        text = sep.join(str(a) for a in args) + end
        size[0] += len(text)
        if size[0] > max_output:
            out.append(text[: max(0, max_output - (size[0] - len(text)))])
            raise OutputLimit(f"output over {max_output} characters")
        out.append(text)

    safe = {n: getattr(builtins, n) for n in SAFE_BUILTINS if hasattr(builtins, n)}
    safe.update(print=_print, Counter=Counter, True_=True)
    safe.pop("True_")
    api = {
        "RetrieveNode": retrieve,
        "NodeFeature": graph.feature,
        "NeighbourCheck": graph.neighbours,
        "NeighborCheck": graph.neighbours,
        "NodeDegree": graph.degree,
        "NodeInfo": lambda nid, k=5: graph.node_info(nid, k),
    }
    return {"__builtins__": safe, **api}


def serve(graph_path: str, schema_path: str | None, memory_bytes: int, max_output: int) -> None:
    from glmcot.graph import Graph, GraphError
    from glmcot.retriever import Retriever, fold

    graph = Graph.load(graph_path, schema_path)
    exact = Retriever(graph)  # exact matches only; the parent resolved the literal queries
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    sys.setrecursionlimit(200)
    stdout = sys.stdout
    stdout.write(json.dumps({"ready": True}) + "\n")
    stdout.flush()
    for line in sys.stdin:
        req = json.loads(line)
        resolved = {fold(k): v for k, v in req.get("resolved", {}).items()}

        def retrieve(text, _resolved=resolved):
            hit = _resolved.get(fold(str(text)))
            return hit if hit is not None else exact.retrieve(str(text))

        out: list[str] = []
        ok, error = True, None
        try:
            code = compile(req["code"], "<snippet>", "exec")
            exec(code, _namespace(graph, retrieve, out, max_output))
        except OutputLimit as e:
            ok, error = False, f"OutputLimit: {e}"
        except MemoryError:
            ok, error = False, "MemoryError: snippet exceeded the memory cap"
        except RecursionError:
            ok, error = False, "RecursionError: too deep"
        except GraphError as e:
            ok, error = False, f"GraphError: {e}"
        except Exception as e:  # the snippet's own bug: reported back for repair
            ok, error = False, f"{type(e).__name__}: {e}"
        out_text = "".join(out)
        out = []
        stdout.write(json.dumps({"ok": ok, "output": out_text, "error": error}) + "\n")
        stdout.flush()
