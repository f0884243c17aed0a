"""Prediction-aware scheduling inside one engine (a SchedulingPolicy; notes section 4).

Admission: a waiting request is admitted only while the projected peak KV of the running set plus
the newcomer stays under (1 - margin) of the capacity, where each request is costed at its context
plus min(r_hat, H); requests without a prediction yet cost the training median. Preemption: when
blocks run out, the running request with the longest predicted remaining length goes (it would
hold memory longest). Without predictions it is FCFS with newest-first preemption.
"""
from __future__ import annotations


class AresSchedulingPolicy:
    name = "ares"

    def __init__(self, capacity_tokens: int, horizon: int = 256, margin: float = 0.05,
                 default_remaining: float = 128.0) -> None:
        self.capacity_tokens, self.horizon, self.margin = capacity_tokens, horizon, margin
        self.default_remaining = default_remaining
        self.running: list = []  # bound by `attach`

    def attach(self, scheduler) -> "AresSchedulingPolicy":
        """Read the scheduler's running set when deciding admission."""
        self._scheduler = scheduler
        return self

    def _cost(self, seq) -> float:
        r = seq.annotations.get("r_hat", self.default_remaining)
        return seq.num_tokens + min(float(r), self.horizon)

    def order_waiting(self, waiting):
        ordered = sorted(waiting, key=lambda s: (s.arrival_time, s.seq_id))
        running = getattr(self, "_scheduler", None)
        if running is None:
            return ordered
        projected = sum(self._cost(s) for s in running.running)
        limit = (1 - self.margin) * self.capacity_tokens
        admitted = []
        for seq in ordered:
            c = seq.num_tokens + min(self.default_remaining, self.horizon)
            if projected + c > limit and (running.running or admitted):
                break
            projected += c
            admitted.append(seq)
        return admitted

    def order_running(self, running):
        return sorted(running, key=lambda s: (s.arrival_time, s.seq_id))

    def select_victim(self, running):
        return max(running, key=lambda s: (float(s.annotations.get("r_hat", self.default_remaining)),
                                           s.arrival_time, s.seq_id))
