"""`Chameleon`: profiler -> policy -> executor around any eager model's training step.

    cham = Chameleon(model, optimizer, budget_mib=200)
    for batch in data:
        with cham.step():
            loss = model(batch).loss
            loss.backward()
        optimizer.step(); optimizer.zero_grad()

Each step runs in the phase the online profiler is in: WARMUP profiles every op and only guards
the budget (forced swaps), SEARCH profiles, regenerates the policy and executes it, keeping the
fastest clean policy, STABLE only executes it and checks the light signature. A changed operator
sequence or a forced swap in STABLE sends it back to WARMUP.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from chameleon import memory as memory_mod
from chameleon import transfer
from chameleon.executor import SwapExecutor
from chameleon.matcher import Matcher, Signature
from chameleon.policy import Policy, generate
from chameleon.profiler import SEARCH, STABLE, WARMUP, ChangeDetector, OpRecorder, PhaseMachine, build_profile
from chameleon.stages import StageTracker

MIB = 1 << 20


def find_layers(model: nn.Module) -> list[nn.Module]:
    """The model's repeated blocks: the longest nn.ModuleList in it."""
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        return [model]
    return list(max(lists, key=len))


class BudgetError(ValueError):
    """The budget is below what swapping every candidate can reach (the unswappable floor)."""


@dataclass
class StepReport:
    phase: str
    swap_out_bytes: int = 0
    swap_in_bytes: int = 0
    forced_swaps: int = 0
    match_rate: float | None = None
    change: str | None = None
    regenerated: bool = False
    unplanned: int = 0


@dataclass
class Chameleon:
    """Swap-based activation memory for eager training (hyperparameters only in __init__)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer | None = None
    budget_mib: float | None = None
    layers: list[nn.Module] | None = None
    device: str | None = None
    host_dir: str | None = None
    min_bytes: int = 1 << 20
    warmup_steps: int = 2
    stable_steps: int = 3
    change_threshold: float = 0.05
    bytes_drift: float = 0.2
    margin_step: float = 0.05
    memory: object = None
    tier: object = None
    reports_: list[StepReport] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if self.device is None:
            self.device = str(next(self.model.parameters()).device)
        self.memory = self.memory or memory_mod.for_device(self.device)
        self.tier = self.tier or transfer.for_device(self.device, self.host_dir)
        if hasattr(self.tier, "calibrate"):
            self.tier.calibrate()
        self.overlap = self.device.startswith("cuda")
        self.tracker_ = StageTracker(self.layers or find_layers(self.model)).install(self.optimizer)
        self.executor_ = SwapExecutor(self.tier, self.tracker_, self.memory, self.min_bytes)
        self.phases_ = PhaseMachine(self.warmup_steps, self.stable_steps)
        self.detector_ = ChangeDetector(self.change_threshold, self.bytes_drift)
        self.budget_: int | None = int(self.budget_mib * MIB) if self.budget_mib else None
        self.strict_ = self.budget_ is not None
        self.margin_ = 0
        self.guard_extra_ = 0  # learnt in WARMUP: how far backward rises above the forward guard
        self.policy_: Policy | None = None
        self.last_profile_ = None
        self.policy_sig_: Signature | None = None
        self.last_sig_: Signature | None = None
        self.best_: tuple[float, Policy, Signature] | None = None
        self.regenerations_ = 0
        self.floor_checked_ = False

    # -- public ---------------------------------------------------------------------------------
    def set_budget(self, nbytes: int, strict: bool = False) -> None:
        """A strict budget (the user's own number) below the floor is an error; a derived one
        (a fraction of a measured peak, a capacity) is met as closely as swapping can."""
        self.budget_ = int(nbytes)
        self.strict_ = strict
        if self.policy_ is None and self.last_profile_ is not None:
            self._provisional(self.last_profile_)

    def _provisional(self, profile) -> None:
        """A policy from the last WARMUP profile, so the remaining WARMUP steps are not guarded by
        forced swaps alone; replaced by the full plan once the sequence is seen to repeat."""
        self.policy_ = generate(profile, self.budget_, self.tier.bandwidth, self.overlap, self.margin_,
                                self.min_bytes)
        self.policy_sig_ = profile.signature
        self.regenerations_ += 1

    @property
    def phase(self) -> str:
        return self.phases_.phase

    @property
    def sequence_changes(self) -> int:
        return self.phases_.changes

    def on_oom(self) -> None:
        """An allocator failure: more margin, profile again (the caller retries the step)."""
        if self.budget_:
            self.margin_ += max(int(self.budget_ * 2 * self.margin_step), 4 * MIB)
        if self.phase != WARMUP:
            self.phases_.back_to_warmup("out of memory")

    def close(self) -> None:
        self.tracker_.remove()
        self.tier.close()

    @contextlib.contextmanager
    def step(self):
        """Run forward + backward of one step inside this context."""
        phase = self.phase
        full = self.phases_.full_profiling
        # While re-profiling after a change the last policy stays active for the stages it knows;
        # tensors of stages it has never seen are swapped (they were not planned for).
        policy = self.policy_
        matcher = Matcher(policy.entries if policy else frozenset())
        ex = self.executor_
        ex.prefetch_blocks = policy.prefetch_blocks if policy else 0
        ex.guard_budget = self.budget_ - self.margin_ - self.guard_extra_ if self.budget_ else None
        known = {(k[0], k[1], k[2]) for k in self.policy_sig_.stages} if self.policy_sig_ else set()
        self.unplanned_ = 0

        def decide(fp, _ordinal, _nbytes) -> bool:
            if policy is None:
                return False
            if (fp.kind, fp.micro, fp.layer) in known:
                return matcher.wants(fp)
            self.unplanned_ += 1
            return True
        ex.begin_step(self.model.parameters(), matcher, decide)
        self.tracker_.begin_forward()
        recorder = OpRecorder(self.memory, self.tracker_, ex.live, self.min_bytes) if full else None
        ex.op_counter = (lambda: recorder.n_ops) if recorder else (lambda: 0)
        bwd = _BackwardMark(self.tracker_, recorder)
        ex.on_first_unpack = bwd
        t0 = time.perf_counter()
        ok = False
        try:
            with ex.hooks(), (recorder if recorder else contextlib.nullcontext()):
                yield self
            ok = True
        finally:
            if ok:
                if self.overlap:
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - t0
                self._after_step(phase, matcher, recorder, bwd.op, seconds)
            ex.end_step()

    # -- phases -------------------------------------------------------------------------------
    def _profile(self, recorder, bwd_op: int, seconds: float):
        return build_profile(recorder, self.executor_.handles, self.executor_.matcher.signature,
                             self.memory.peak(), seconds, bwd_op, even=self.overlap)

    def _plan(self, profile) -> Policy:
        pol = generate(profile, self.budget_, self.tier.bandwidth, self.overlap, self.margin_,
                       self.min_bytes)
        self.regenerations_ += 1
        if not self.floor_checked_:
            self.floor_checked_ = True
            floor = min(pol.floor, generate(profile, self.budget_, self.tier.bandwidth, self.overlap,
                                            self.margin_, self.min_bytes, distances=(0,)).floor)
            if self.strict_ and floor > self.budget_:
                raise BudgetError(f"budget {self.budget_ / MIB:.0f} MiB is below the unswappable floor "
                                  f"of {floor / MIB:.0f} MiB (gradients, parameters, one layer's "
                                  f"working set); raise the budget")
        return pol

    def _after_step(self, phase: str, matcher: Matcher, recorder, bwd_op: int, seconds: float) -> None:
        stats = self.executor_.stats
        rep = StepReport(phase, stats.swap_out_bytes, stats.swap_in_bytes, stats.forced_swaps,
                         matcher.hit_rate() if self.policy_ is not None else None, unplanned=self.unplanned_)
        sig = matcher.signature
        machine = self.phases_
        if phase == WARMUP and self.budget_:
            over = self.memory.peak() - (self.budget_ - self.margin_ - self.guard_extra_)
            if over > 0 and self.memory.peak() > self.budget_:
                self.guard_extra_ = min(self.guard_extra_ + over, self.budget_ // 2)
        if phase == WARMUP:
            similar = self.last_sig_ is not None and self.detector_.compare(sig, self.last_sig_) is None
            self.last_sig_ = sig
            ready = machine.after_warmup_step(similar)
            profile = self.last_profile_ = self._profile(recorder, bwd_op, seconds)
            if self.budget_ is None:
                machine.phase = WARMUP  # nothing to plan for until the caller sets a budget
            elif ready:  # the first full plan also checks the floor (step 0 has one-off costs)
                self.policy_, self.policy_sig_ = self._plan(profile), sig
                self.best_ = None
                rep.regenerated = True
            elif self.policy_ is None:
                self._provisional(profile)
                rep.regenerated = True
        elif phase == SEARCH:
            reason = self.detector_.compare(sig, self.policy_sig_)
            if reason:
                rep.change = reason
                machine.back_to_warmup(reason)
                self.last_sig_ = sig
            else:
                clean = stats.forced_swaps == 0
                if clean and (self.best_ is None or seconds < self.best_[0]):
                    self.best_ = (seconds, self.policy_, self.policy_sig_)
                if not clean:
                    self.margin_ += int(self.budget_ * self.margin_step)
                self.policy_, self.policy_sig_ = self._plan(self._profile(recorder, bwd_op, seconds)), sig
                rep.regenerated = True
                machine.after_search_step()
                if machine.phase == STABLE and self.best_ is not None:
                    _, self.policy_, self.policy_sig_ = self.best_
        else:
            reason = self.detector_.compare(sig, self.policy_sig_)
            if reason is None and stats.forced_swaps:
                reason = "forced swap in STABLE"
            if reason:
                rep.change = reason
                machine.back_to_warmup(reason)
                self.last_sig_ = sig
        self.reports_.append(rep)


class _BackwardMark:
    """Marks the start of backward at the first unpack (only backward unpacks saved tensors)."""

    def __init__(self, tracker: StageTracker, recorder) -> None:
        self.tracker, self.recorder, self.op = tracker, recorder, 0
        self.seen = False

    def __call__(self) -> None:
        if not self.seen:
            self.seen = True
            self.op = self.recorder.n_ops if self.recorder else 0
            if self.tracker.current.kind == "FWD":
                self.tracker.begin_backward()
