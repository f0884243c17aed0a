"""Constrained decoding for the embedded model: every action, label, JSON and snippet parses.

The 135M model cannot follow the agents' formats unaided (paper notes, section 6), so the
live driver decodes under a grammar with xgrammar: through the engine's per-request
logits-processor hook (`EngineGrammarGenerator`, the default) or transformers' `generate`
(`ConstrainedGenerator`):
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


class _Compiler:
    """Memoised xgrammar compilation for one tokenizer."""

    def __init__(self, tokenizer, vocab_size: int):
        self.tokenizer, self.vocab_size = tokenizer, vocab_size
        self._compiler = None
        self._compiled: dict[str, Any] = {}

    def __call__(self, grammar: tuple[str, Any]):
        import xgrammar as xgr

        kind, spec = grammar
        key = kind + ":" + (spec if isinstance(spec, str) else json.dumps(spec, sort_keys=True))
        if key not in self._compiled:
            if self._compiler is None:
                info = xgr.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=self.vocab_size,
                                                          stop_token_ids=[self.tokenizer.eos_token_id])
                self._compiler = xgr.GrammarCompiler(info)
            c = self._compiler
            if kind == "regex":
                self._compiled[key] = c.compile_regex(spec)
            elif kind == "choice":
                self._compiled[key] = c.compile_regex("(" + "|".join(re.escape(x) for x in spec) + ")")
            elif kind == "json":
                self._compiled[key] = c.compile_json_schema(json.dumps(spec), any_whitespace=False)
            elif kind == "ebnf":
                self._compiled[key] = c.compile_grammar(spec)
            else:
                raise ValueError(f"unknown grammar kind {kind!r}")
        return self._compiled[key]


class GrammarLogitsProcessor:
    """The engine's per-request hook `(output_ids, logits_row) -> logits_row` over an xgrammar matcher."""

    def __init__(self, compiled, vocab_size: int, eos_id: int):
        import xgrammar as xgr

        self.matcher = xgr.GrammarMatcher(compiled)
        self.bitmask = xgr.allocate_token_bitmask(1, vocab_size)
        self.eos_id = eos_id
        self.seen = 0

    def __call__(self, output_ids, row):
        import torch
        import xgrammar as xgr

        for t in output_ids[self.seen:]:
            self.matcher.accept_token(int(t))
        self.seen = len(output_ids)
        if self.matcher.is_terminated():
            keep = row[self.eos_id].clone()
            row.fill_(-torch.inf)
            row[self.eos_id] = keep if torch.isfinite(keep) else 0.0
            return row
        self.matcher.fill_next_token_bitmask(self.bitmask)
        view = row.view(1, -1)
        xgr.apply_token_bitmask_inplace(view, self.bitmask.to(row.device))
        return row


class EngineGrammarGenerator:
    """papersuite's LLMEngine as the live generator, grammars through its logits-processor hook."""

    def __init__(self, model: str = "smollm2-135m-instruct", device: str = "cpu", kv_policy: str = "lru"):
        from glmcot.policy import register
        from papersuite.engine.engine import LLMEngine

        register()
        self.engine = LLMEngine(model, device, kv_policy=kv_policy, max_model_len=16384)
        self.model_name = self.engine.model_name
        self._vocab = self.engine.model.config.vocab_size
        self._compile = _Compiler(self.engine.tokenizer, self._vocab)

    def generate(self, prompts, params: SamplingParams | None = None):
        return self.engine.generate(list(prompts), params)

    def generate_constrained(self, prompt, params: SamplingParams, grammar: tuple[str, Any]):
        from dataclasses import replace

        proc = GrammarLogitsProcessor(self._compile(grammar), self._vocab, self.engine.tokenizer.eos_token_id)
        return self.engine.generate([prompt], replace(params, logits_processor=proc))[0]


class ConstrainedGenerator(TransformersGenerator):
    """A TransformersGenerator that can also decode one prompt under a grammar."""

    def __init__(self, model: str = "smollm2-135m-instruct", device: str = "cpu"):
        super().__init__(model, device)
        self._compile = _Compiler(self.tokenizer, self.model.config.vocab_size)

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
