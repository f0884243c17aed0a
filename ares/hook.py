"""Serving-time re-prediction: a StepHook that predicts each running request's remaining length.

Every `k` generated tokens it batches the running requests' final-norm hidden states (plus the
prompt-end state and the running mean, kept per sequence as a sum and a count) into one predictor
call and writes `seq.annotations["r_hat"]`, which the scheduling policy and the rebalancer read.
"""
from __future__ import annotations

import time

import numpy as np
import torch


class RemainingLengthHook:
    """StepHook: keeps `annotations["r_hat"]` (and its history) fresh every `k` tokens."""

    def __init__(self, predictor, k: int = 4, keep_history: bool = False) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.predictor, self.k, self.keep_history = predictor, k, keep_history
        self.calls = 0
        self.seconds = 0.0

    def __call__(self, batch, hidden_states: torch.Tensor) -> None:
        rows, h0s, hs, hms, ts, prompts = [], [], [], [], [], []
        for i, (seq, flag) in enumerate(zip(batch.seqs, batch.samples)):
            if not flag:
                continue
            t = seq.num_output_tokens
            h = hidden_states[i].detach().float().cpu()
            ann = seq.annotations
            if t == 0 or "ares_h0" not in ann:
                ann["ares_h0"], ann["ares_sum"], ann["ares_n"] = h.clone(), torch.zeros_like(h), 0
            elif ann.get("ares_last_t") != t:  # not a recomputation of a position already seen
                ann["ares_sum"] += h
                ann["ares_n"] += 1
            ann["ares_last_t"] = t
            if t % self.k == 0 or "r_hat" not in ann:
                rows.append(seq)
                h0s.append(ann["ares_h0"])
                hs.append(h)
                hms.append(ann["ares_sum"] / ann["ares_n"] if ann["ares_n"] else h)
                ts.append(t)
                prompts.append(ann.get("prompt_text", ""))
        if not rows:
            return
        t0 = time.perf_counter()
        r_hat = self.predictor.predict_online(torch.stack(h0s).numpy(), torch.stack(hs).numpy(),
                                              torch.stack(hms).numpy(), np.array(ts), prompts)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        for seq, t, r in zip(rows, ts, r_hat):
            seq.annotations["r_hat"] = float(r)
            seq.annotations["r_hat_at"] = t
            if self.keep_history:
                seq.annotations.setdefault("r_hat_history", []).append([t, float(r)])
