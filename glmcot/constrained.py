"""Constrained decoding for the embedded model: every action, label, JSON and snippet parses.

The 135M model cannot follow the agents' formats unaided (paper notes, section 6), so the
live driver decodes under a grammar with xgrammar's logits processor on Hugging Face `generate`:
Graph-CoT actions under a regex built from the schema, the C-Agent under a two-label choice,
the R-Agent under a JSON schema, the A-Agent under an EBNF of the executor's subset. Compiled
grammars are memoised (the same grammar recurs on every call). An endpoint gets no grammar here:
its output is parsed and, when malformed, counted and repaired by the loops.
"""
from __future__ import annotations

import json
import re
import time
from typing import Any

from papersuite.llm import Generation, SamplingParams, TransformersGenerator, apply_stop


class ConstrainedGenerator(TransformersGenerator):
    """A TransformersGenerator that can also decode one prompt under a grammar."""

    def __init__(self, model: str = "smollm2-135m-instruct", device: str = "cpu"):
        super().__init__(model, device)
        self._compiler = None
        self._compiled: dict[str, Any] = {}

    def _compile(self, grammar: tuple[str, Any]):
        import xgrammar as xgr

        kind, spec = grammar
        key = kind + ":" + (spec if isinstance(spec, str) else json.dumps(spec, sort_keys=True))
        if key in self._compiled:
            return self._compiled[key]
        if self._compiler is None:
            info = xgr.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=self.model.config.vocab_size,
                                                      stop_token_ids=[self.tokenizer.eos_token_id])
            self._compiler = xgr.GrammarCompiler(info)
        if kind == "regex":
            compiled = self._compiler.compile_regex(spec)
        elif kind == "choice":
            compiled = self._compiler.compile_regex("(" + "|".join(re.escape(c) for c in spec) + ")")
        elif kind == "json":
            compiled = self._compiler.compile_json_schema(json.dumps(spec), any_whitespace=False)
        elif kind == "ebnf":
            compiled = self._compiler.compile_grammar(spec)
        else:
            raise ValueError(f"unknown grammar kind {kind!r}")
        self._compiled[key] = compiled
        return compiled

    def generate_constrained(self, prompt, params: SamplingParams, grammar: tuple[str, Any]) -> Generation:
        import torch
        import xgrammar as xgr

        processor = xgr.contrib.hf.LogitsProcessor(self._compile(grammar))
        ids = self.encode(prompt)
        x = torch.tensor([ids], device=self.device)
        kwargs: dict[str, Any] = dict(max_new_tokens=params.max_tokens, pad_token_id=self.tokenizer.pad_token_id,
                                      logits_processor=[processor], attention_mask=torch.ones_like(x))
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p,
                          top_k=params.top_k or None)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(input_ids=x, **kwargs)
        row = out[0, len(ids):].tolist()
        eos = self.tokenizer.eos_token_id
        finish = "length"
        if eos in row:
            row, finish = row[: row.index(eos)], "stop"
        text, stopped = apply_stop(self.tokenizer.decode(row, skip_special_tokens=True), params.stop)
        return Generation(text, len(ids), len(row), time.perf_counter() - t0, None,
                          "stop" if stopped else finish, row)
