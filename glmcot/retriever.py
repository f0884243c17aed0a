"""RetrieveNode: exact case-folded match on text keys first, else top-1 by MiniLM embeddings.

Exact match removes GRBench's retrieval noise for names quoted verbatim (a deviation we log).
The embedding index is computed once per graph digest and cached on disk as a `.npy`; a small
LRU memo maps query -> id, as GLM's pipelining does.
"""
from __future__ import annotations

import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable

from glmcot.graph import Graph, GraphError
from papersuite.progress import debug

_PUNCT = re.compile(r"[\s\"'`.?!,;:]+")


def fold(text: str) -> str:
    """Case-fold and trim quotes/punctuation at the ends and collapse spaces."""
    return _PUNCT.sub(" ", text.casefold()).strip()


class Retriever:
    """`retrieve(text) -> id`. `embedder` is created lazily (MiniLM), so exact hits cost nothing."""

    def __init__(self, graph: Graph, embedder_factory: Callable[[], object] | None = None,
                 cache_dir: str | Path | None = None, memo_size: int = 4096):
        self.graph = graph
        self._factory = embedder_factory
        self._cache_dir = Path(cache_dir) if cache_dir else None
        self._exact: dict[str, str] = {}
        for nid in graph.nodes:
            node = graph.nodes[nid]
            for key in graph.schema.node_text_keys.get(node["type"], []):
                v = node["features"].get(key)
                if isinstance(v, str) and v:
                    self._exact.setdefault(fold(v), nid)
        self._memo: OrderedDict[str, str] = OrderedDict()
        self._memo_size = memo_size
        self._lock = threading.Lock()
        self._index = None  # (ids, matrix)
        self._embedder = None
        self.stats = {"exact": 0, "embedding": 0, "memo": 0}

    def __call__(self, text: str) -> str:
        return self.retrieve(text)

    def retrieve(self, text: str) -> str:
        key = fold(str(text))
        if not key:
            raise GraphError("RetrieveNode needs a non-empty text.")
        with self._lock:
            if key in self._memo:
                self._memo.move_to_end(key)
                self.stats["memo"] += 1
                return self._memo[key]
        nid = self._exact.get(key)
        if nid is not None:
            self.stats["exact"] += 1
        else:
            nid = self._embed_top1(str(text))
            self.stats["embedding"] += 1
            debug(f"glm: retrieval fell back to embeddings for {text!r} -> {nid}")
        with self._lock:
            self._memo[key] = nid
            if len(self._memo) > self._memo_size:
                self._memo.popitem(last=False)
        return nid

    # -- embeddings -------------------------------------------------------------------------------
    def _embed_top1(self, text: str) -> str:
        if self._factory is None:
            raise GraphError(f"No node matches {text!r} exactly (no embedding retriever configured).")
        ids, matrix = self.index()
        q = self._embedder.encode([text])[0]
        return ids[int((matrix @ q).argmax())]

    def index(self):
        """(ids, unit-vector matrix) for every node with a text key; cached per graph digest."""
        import numpy as np

        if self._index is not None:
            return self._index
        if self._embedder is None:
            self._embedder = self._factory()
        ids = [nid for nid in self.graph.nodes if self.graph.text_of(nid)]
        path = None
        if self._cache_dir is not None and self.graph.digest:
            name = getattr(self._embedder, "name", "emb")
            path = self._cache_dir / f"{self.graph.digest}-{name}.npy"
            if path.exists():
                matrix = np.load(path)
                if matrix.shape[0] == len(ids):
                    self._index = (ids, matrix)
                    return self._index
        matrix = self._embedder.encode([self.graph.text_of(n) for n in ids]).astype("float32")
        if path is not None:
            from papersuite.io import atomic_path

            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path, suffix=".npy") as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, matrix)
        self._index = (ids, matrix)
        return self._index


def default_retriever(graph: Graph, device: str = "cpu") -> Retriever:
    """MiniLM (the embedded all-MiniLM-L6-v2) with the index cached under $PAPERSUITE_CACHE."""
    from papersuite.models import SentenceEmbedder, cache_root

    return Retriever(graph, lambda: SentenceEmbedder(device=device), cache_root() / "glmcot" / "index")
