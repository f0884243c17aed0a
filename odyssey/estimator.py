"""The unified performance model: Eq. 9-14 of the paper plus alpha-beta communication terms.

Computation comes from per-module forward/backward times (profiled, EMA); communication from a
latency + bytes/bandwidth model calibrated at start. `Estimator.step_time(plan)` simulates the
plan's 1F1B graph (Eq. 10-11) and adds the gradient all-reduce rounds; both parts are reported.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .groups import dsatur_rounds, owner_groups
from .layout import Plan
from .schedule import simulate


# -- closed forms (the paper's equations) ------------------------------------------------------
def eq9_symmetric(n_pp: int, n_m: int, t_f: float, t_b: float) -> float:
    """Eq. 9: T = (N_pp + N_m - 1)(t_f + t_b), t_f/t_b per micro-batch per stage."""
    return (n_pp + n_m - 1) * (t_f + t_b)


def eq13_reroute(n_pp: int, n_m: int, n_dp: int, failed: list[int], t_f: float, t_b: float) -> float | None:
    """Eq. 12-13: T = (N_pp + N_m - 1 + sum_i N_m F_i / (N_dp - F_i)) (t_f + t_b); None if F_i >= N_dp."""
    extra = 0.0
    for f in failed:
        if f >= n_dp:
            return None
        extra += n_m * f / (n_dp - f)
    return (n_pp + n_m - 1 + extra) * (t_f + t_b)


def eq14_memory(stage: int, n_pp: int, layers: int, param_b: float, optim_b: float, act_b: float) -> float:
    """Eq. 14: M_i = L_i (2P + O) + (N_pp - i) L_i A (0-based stage i, 1F1B in-flight count)."""
    return layers * (2 * param_b + optim_b) + (n_pp - stage) * layers * act_b


def allreduce_time(nbytes: float, n: int, alpha: float, beta: float) -> float:
    """Ring all-reduce: 2(n-1) latencies + 2(n-1)/n of the bytes over the link."""
    if n <= 1:
        return 0.0
    return 2 * (n - 1) * alpha + 2 * (n - 1) / n * nbytes * beta


@dataclass
class Profile:
    """Per-module costs for one micro-batch of `micro_size` samples, plus link costs."""
    t_f: list[float]
    t_b: list[float]
    param_bytes: list[float]
    optim_bytes: list[float]
    act_bytes: list[float]  # activation memory per micro-batch kept for backward
    boundary_bytes: float  # activation message between stages per micro-batch
    micro_size: float = 1.0
    alpha: float = 0.0  # s per message
    beta: float = 0.0  # s per byte
    memory_bytes: float = float("inf")  # per worker
    rebuild_s: float = 0.0  # time to rebuild process groups

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Profile":
        return cls(**d)


@dataclass
class Estimate:
    t_compute: float
    t_comm: float
    order: dict = field(default_factory=dict, repr=False)

    @property
    def t_step(self) -> float:
        return self.t_compute + self.t_comm


class Estimator:
    """Step time and memory of any plan under one profile."""

    def __init__(self, profile: Profile, global_batch: int, micro_batches: int) -> None:
        self.profile, self.global_batch, self.micro_batches = profile, global_batch, micro_batches

    def _scale(self) -> float:
        return (self.global_batch / self.micro_batches) / self.profile.micro_size

    def slot_time(self, plan: Plan, kind: str, p: int, s: int) -> float:
        st = plan.pipelines[p][s]
        arr = self.profile.t_f if kind == "F" else self.profile.t_b
        return sum(arr[st.lo:st.hi]) * self._scale()

    def step_time(self, plan: Plan, with_order: bool = False) -> Estimate:
        pr = self.profile
        msg = pr.alpha + pr.boundary_bytes * self._scale() * pr.beta
        sched = simulate(plan, lambda k, p, s: self.slot_time(plan, k, p, s), lambda p, s: msg)
        comm = 0.0
        groups = owner_groups(plan)
        for rnd in dsatur_rounds(list(groups)):
            comm += max(allreduce_time(sum(pr.param_bytes[i] for i in groups[g]), len(g), pr.alpha, pr.beta)
                        for g in rnd)
        return Estimate(sched.makespan, comm, sched.order if with_order else {})

    def memory(self, plan: Plan) -> dict[int, float]:
        """Eq. 14 per rank, summed over the stages a rank holds (endpoint modules counted)."""
        pr = self.profile
        out: dict[int, float] = {}
        scale = self._scale()
        for pipe in plan.pipelines:
            for i, st in enumerate(pipe):
                mods = st.modules
                m = sum(2 * pr.param_bytes[j] + pr.optim_bytes[j] for j in mods)
                m += (len(pipe) - i) * sum(pr.act_bytes[j] for j in mods) * scale
                out[st.rank] = out.get(st.rank, 0.0) + m
        return out

    def fits(self, plan: Plan) -> bool:
        return all(v <= self.profile.memory_bytes for v in self.memory(plan).values())
