"""`serve flashforge check`: every executor against float64 `reference_decode`, on built-in trees
or on batches given as JSONL (`{"block_size": 16, "block_tables": [[...]], "seq_lens": [...]}`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from papersuite.errors import UserError

TOLS = {"fp32": 1e-5, "fp16": 2e-3, "bf16": 2e-2}


@dataclass
class Case:
    name: str
    block_tables: Any
    seq_lens: Any
    block_size: int
    heads: int = 9
    kv_heads: int = 3
    head_dim: int = 64


def builtin_cases(quick: bool = False) -> list[Case]:
    """Two-level, binary, k-ary, chain, no sharing, identical, B = 1, partial blocks, shuffled,
    D 64/128 and G 1/3/4: small enough for the Triton interpreter."""
    from flashforge import workloads as wl

    def case(name, w, H=9, Hkv=3, D=64):
        return Case(name, w.block_tables, w.seq_lens, w.block_size, H, Hkv, D)

    cases = [
        case("two-level", wl.two_level(8, 512, 48)),
        case("binary-d4", wl.kary(2, 4, tokens=128)),
        case("shuffled-partial", wl.two_level(6, 256, 37, scatter=True, seed=7)),
        case("no-sharing", wl.no_sharing(4, 200)),
    ]
    if quick:
        return cases
    return cases + [
        case("kary-k3-d3", wl.kary(3, 3, tokens=64)),
        case("chain-4", wl.chain(4, tokens=96)),
        case("identical-b6", wl.identical(6, 300)),
        case("b1", wl.two_level(1, 256, 20)),
        case("partial-blocks", wl.from_tree("partial", (64, [(5, []), (5, []), (31, [])]), 16)),
        case("d128-g4", wl.two_level(4, 256, 40), H=8, Hkv=2, D=128),
        case("g1", wl.kary(2, 3, tokens=64), H=4, Hkv=4, D=64),
    ]


def read_cases(path: str) -> list[Case]:
    """Batches from a TREES JSONL file; a bad line is a UserError naming file:line."""
    from papersuite.io import iter_jsonl
    from flashforge.plan import _as_table

    name = "<stdin>" if path == "-" else path
    out = []
    lineno = 0
    for lineno, rec in _numbered(iter_jsonl(path), path):
        where = f"{name}:{lineno}"
        missing = [k for k in ("block_tables", "seq_lens") if k not in rec]
        if missing:
            raise UserError(f"missing key {missing[0]!r}", where=where)
        bs = rec.get("block_size", 16)
        if not isinstance(bs, int) or bs < 1:
            raise UserError(f"block_size must be a positive integer, got {bs!r}", where=where)
        tables, lens = rec["block_tables"], rec["seq_lens"]
        if not (isinstance(tables, list) and all(isinstance(r, list) and all(isinstance(b, int) for b in r)
                                                 for r in tables)):
            raise UserError("block_tables must be a list of lists of integers", where=where)
        if not (isinstance(lens, list) and all(isinstance(n, int) for n in lens)):
            raise UserError("seq_lens must be a list of integers", where=where)
        try:
            _as_table(tables, lens, bs)
        except UserError as e:
            raise UserError(str(e), where=where) from None
        out.append(Case(rec.get("name", f"line{lineno}"), tables, lens, bs))
    if not out:
        raise UserError(f"{name}: no batches")
    return out


def _numbered(records: Iterator[dict], path: str) -> Iterator[tuple[int, dict]]:
    """Line numbers for iter_jsonl's records (it skips blank lines, so count them here)."""
    if path == "-":
        yield from enumerate(records, 1)
        return
    with open(path, encoding="utf-8") as fh:
        numbers = [i for i, line in enumerate(fh, 1) if line.strip()]
    yield from zip(numbers, records)


def run_case(case: Case, impl: str, dtype: str, seed: int, device: str = "cpu") -> dict[str, Any]:
    """One row {case, impl, dtype, max_abs_err, tol, ok}: the impl vs float64 on random q/KV."""
    import torch

    from flashforge.attention import shared_prefix_decode
    from flashforge.plan import build_plan
    from flashforge.reference import reference_decode
    from flashforge.workloads import Workload, make_tensors

    tdt = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    plan = build_plan(case.block_tables, case.seq_lens, case.block_size, min_shared_tokens=0,
                      kv_chunk=256, q_tile=4)
    w = Workload(case.name, plan.block_tables, plan.seq_lens, case.block_size, {})
    q, k, v = make_tensors(w, case.heads, case.kv_heads, case.head_dim, dtype=tdt, seed=seed, device=device)
    ref = reference_decode(q, k, v, plan.block_tables, plan.seq_lens)
    out = shared_prefix_decode(q, k, v, plan, impl=impl)
    err = float((out.double() - ref).abs().max())
    tol = TOLS[dtype]
    return {"case": case.name, "impl": impl, "dtype": dtype, "max_abs_err": err, "tol": tol,
            "ok": bool(np.isfinite(err) and err <= tol)}
