"""GLM's pipelining (paper section 3.3.3): start each RetrieveNode search while the code decodes.

The A-Agent's tokens stream; as soon as a `RetrieveNode("...")` literal is complete in the text
so far, its vector search starts on a worker thread. When decoding ends, the executor gets the
resolved ids (waiting only for searches still running). Without pipelining the same searches run
after decoding, one after another. `delay_s` adds a labelled delay to every search, standing in
for a vector index over a huge graph; `hidden_share` says how much retrieval time decoding hid.
"""
from __future__ import annotations

import re
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

_LITERAL = re.compile(r'RetrieveNode\(\s*"((?:[^"\\\n]|\\.)*)"\s*\)')


class RetrievalPipeline:
    """One per snippet: `on_text` while decoding, then `resolve(code)` before execution."""

    def __init__(self, retrieve: Callable[[str], str], delay_s: float = 0.0, enabled: bool = True,
                 pool: ThreadPoolExecutor | None = None):
        self.retrieve = retrieve
        self.delay_s = delay_s
        self.enabled = enabled
        self._pool = pool
        self._futures: dict[str, Future] = {}
        self._lock = threading.Lock()
        self.search_s = 0.0  # total time spent in searches
        self.wait_s = 0.0  # time the executor waited for them after decoding

    def _search(self, query: str):
        t0 = time.perf_counter()
        if self.delay_s:
            time.sleep(self.delay_s)
        try:
            return self.retrieve(query)
        except Exception:  # no match: the snippet's own RetrieveNode will report it
            return None
        finally:
            with self._lock:
                self.search_s += time.perf_counter() - t0

    def _start(self, query: str) -> None:
        with self._lock:
            if query in self._futures:
                return
            if self._pool is None:
                self._pool = ThreadPoolExecutor(4, thread_name_prefix="glm-retrieve")
            self._futures[query] = self._pool.submit(self._search, query)

    def on_text(self, text: str) -> None:
        """Called with the decoded text so far; starts the searches whose literal is complete."""
        if self.enabled:
            for m in _LITERAL.finditer(text):
                self._start(m.group(1))

    def resolve(self, code: str) -> dict[str, str]:
        """{query: id} for the snippet's literal RetrieveNode calls (starting any not yet started)."""
        t0 = time.perf_counter()
        out = {}
        for m in _LITERAL.finditer(code):
            q = m.group(1)
            if self.enabled:
                self._start(q)
                nid = self._futures[q].result()
            else:
                nid = self._search(q)
            if nid is not None:
                out[q] = nid
        self.wait_s += time.perf_counter() - t0
        return out

    @property
    def hidden_share(self) -> float:
        return max(0.0, 1.0 - self.wait_s / self.search_s) if self.search_s > 0 else 0.0
