"""Algorithm 1 (best dynamic plan over survivors) and the recovery candidates of one failure.

The search: for each allowed DP degree, each integer partition of the survivors into pipeline
lengths, micro-batches proportional to pipeline length (every remainder placement), layers split
evenly per pipeline (every placement of remainder layers), drop plans failing Eq. 14, keep the
smallest Eq. 10-11 estimate. Pipelines are independent in Eq. 11 (T = max_p T_p), so each
pipeline's layer placement is chosen on its own; the brute-force product gives the same optimum
(tested). Plans for hypothetical single failures are cached at safe points (`PlanCache`).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

from .estimator import Estimator
from .layout import Plan, Stage, reroute, split_blocks, stage_ranges, shares_to_micro, substitute
from .restorer import assign, lost_modules, transfer_bytes, transfers
from .selector import Candidate


def partitions(total: int, parts: int, allowed: set[int], max_part: int | None = None):
    """Non-increasing tuples of `parts` allowed integers summing to `total`."""
    max_part = total if max_part is None else max_part
    if parts == 0:
        if total == 0:
            yield ()
        return
    for first in range(min(total, max_part), 0, -1):
        if first in allowed and first * parts >= total:
            for rest in partitions(total - first, parts - 1, allowed, first):
                yield (first,) + rest


def micro_shares(lengths: tuple[int, ...], micro_batches: int):
    """Shares proportional to length, every placement of the remainder; zero shares repaired."""
    n = sum(lengths)
    base = [micro_batches * k // n for k in lengths]
    rem = micro_batches - sum(base)
    seen = set()
    for extra in itertools.combinations(range(len(lengths)), rem):
        sh = list(base)
        for e in extra:
            sh[e] += 1
        while 0 in sh:
            sh[sh.index(0)] += 1
            sh[sh.index(max(sh))] -= 1
        key = tuple(sorted(zip(lengths, sh)))
        if key not in seen:
            seen.add(key)
            yield sh


def layer_placements(layers: int, stages: int, limit: int = 64):
    """Block counts per stage: even split, each placement of the remainder (capped)."""
    for k, extra in enumerate(itertools.combinations(range(stages), layers % stages)):
        if k >= limit:
            return
        yield split_blocks(layers, stages, extra)


def _pipeline(rank0: int, counts: list[int]) -> list[Stage]:
    return [Stage(rank0 + s, lo, hi) for s, (lo, hi) in enumerate(stage_ranges(counts))]


def _assemble(lengths, shares, counts_per_pipe) -> Plan:
    pipes, r = [], 0
    for k, counts in zip(lengths, counts_per_pipe):
        pipes.append(_pipeline(r, counts))
        r += k
    return Plan(pipes, shares_to_micro(shares), kind="replan")


@dataclass
class Searched:
    plan: Plan  # placeholder ranks 0..n-1
    t_step: float
    evaluated: int


def best_dynamic_plan(n: int, layers: int, micro_batches: int, est: Estimator,
                      r_dp: set[int] | None = None, r_pp: set[int] | None = None) -> Searched | None:
    """Algorithm 1 over `n` survivors (slot ranks are placeholders 0..n-1)."""
    r_dp = r_dp or set(range(1, n + 1))
    r_pp = r_pp or set(range(1, layers + 1))
    best: Searched | None = None
    evaluated = 0
    for dp in sorted(r_dp):
        if dp > micro_batches:
            continue
        for lengths in partitions(n, dp, r_pp):
            for shares in micro_shares(lengths, micro_batches):
                counts = []
                for k, m in zip(lengths, shares):
                    choice = None
                    for c in layer_placements(layers, k):
                        single = _assemble((k,), [m], [c])
                        evaluated += 1
                        if not est.fits(single):
                            continue
                        t = est.step_time(single).t_compute
                        if choice is None or t < choice[0]:
                            choice = (t, c)
                    if choice is None:
                        break
                    counts.append(choice[1])
                else:
                    plan = _assemble(lengths, shares, counts)
                    t = est.step_time(plan).t_step
                    if best is None or t < best.t_step - 1e-15:
                        best = Searched(plan, t, 0)
    if best is not None:
        best.evaluated = evaluated
    return best


def brute_force_plan(n: int, layers: int, micro_batches: int, est: Estimator) -> float | None:
    """The same search space as Algorithm 1 without the per-pipeline decomposition (for tests)."""
    best = None
    for dp in range(1, min(n, micro_batches) + 1):
        for lengths in partitions(n, dp, set(range(1, layers + 1))):
            for shares in micro_shares(lengths, micro_batches):
                for counts in itertools.product(*[list(layer_placements(layers, k)) for k in lengths]):
                    plan = _assemble(lengths, shares, list(counts))
                    if not est.fits(plan):
                        continue
                    t = est.step_time(plan).t_step
                    best = t if best is None else min(best, t)
    return best


class PlanCache:
    """Algorithm 1 results keyed by (survivor count, profile fingerprint, config), not by D."""

    def __init__(self) -> None:
        self._cache: dict[tuple, Searched | None] = {}
        self.hits = 0

    def get(self, n: int, layers: int, micro_batches: int, est: Estimator) -> Searched | None:
        pr = est.profile
        key = (n, layers, micro_batches, est.global_batch, tuple(round(x, 6) for x in pr.t_f + pr.t_b),
               pr.memory_bytes)
        if key in self._cache:
            self.hits += 1
        else:
            self._cache[key] = best_dynamic_plan(n, layers, micro_batches, est)
        return self._cache[key]


def module_bytes(est: Estimator) -> list[float]:
    pr = est.profile
    return [p + o for p, o in zip(pr.param_bytes, pr.optim_bytes)]


def candidates(plan: Plan, dead: list[int], spares: list[int], est: Estimator, layers: int,
               micro_batches: int, failure_free_t: float, restart_s: float, steps_since_ckpt: int | None,
               cache: PlanCache | None = None) -> list[Candidate]:
    """The four recovery candidates for `dead` ranks of `plan` (scores are added by the selector).

    Transitions: reroute = rebuild; replan = rebuild + largest state transfer; spare = rebuild +
    the slot's state; restart = restart_s + steps since the checkpoint x failure-free step.
    """
    pr = est.profile
    mb = module_bytes(est)
    rebuild = pr.rebuild_s
    link = lambda nbytes: (pr.alpha + nbytes * pr.beta) if nbytes else 0.0  # noqa: E731
    all_dead = set(dead) | set(plan.dead)
    survivors = [r for r in plan.ranks if r not in all_dead]
    holdings = {r: plan.modules_of(r) for r in survivors}
    lost = lost_modules(holdings, plan.n_modules())
    out: list[Candidate] = []

    # reroute: a routing-table change
    rr = reroute(plan, dead)
    if rr is None or lost:
        out.append(Candidate("reroute", False, reason="a stage lost every replica (F_i >= N_dp)"))
    else:
        out.append(Candidate("reroute", True, est.step_time(rr).t_step, rebuild, plan=rr))

    # replan: Algorithm 1 over survivors + Hungarian restorer
    searched = (cache.get if cache else lambda *a: best_dynamic_plan(*a))(len(survivors), layers, micro_batches, est) \
        if survivors else None
    if lost:
        out.append(Candidate("replan", False, reason=f"last copy of modules {lost} lost"))
    elif searched is None:
        out.append(Candidate("replan", False, reason="no plan over the survivors fits memory"))
    else:
        rp, moves = assign(searched.plan, holdings, mb)
        out.append(Candidate("replan", True, est.step_time(rp).t_step, rebuild + link(transfer_bytes(moves, mb)),
                             plan=rp, extra={"transfers": {str(k): v for k, v in moves.items()}}))

    # spare: standbys take the dead slots of the un-routed layout
    base = Plan(plan.pipelines, plan.micro, {}, kind="symmetric")
    if len(spares) < len(all_dead):
        out.append(Candidate("spare", False, reason=f"{len(all_dead)} dead, {len(spares)} spares"))
    elif lost:
        out.append(Candidate("spare", False, reason=f"last copy of modules {lost} lost"))
    else:
        sp = substitute(base, dict(zip(sorted(all_dead), spares)))
        moves = transfers(sp, holdings)
        out.append(Candidate("spare", True, est.step_time(sp).t_step, rebuild + link(transfer_bytes(moves, mb)),
                             plan=sp, extra={"transfers": {str(k): v for k, v in moves.items()}}))

    # restart: every rank reloads the last checkpoint (spares fill dead slots, else re-plan)
    if steps_since_ckpt is None:
        out.append(Candidate("restart", False, reason="no checkpoint"))
    else:
        trans = restart_s + steps_since_ckpt * failure_free_t
        if len(spares) >= len(all_dead):
            rs = substitute(base, dict(zip(sorted(all_dead), spares)))
            out.append(Candidate("restart", True, est.step_time(rs).t_step, trans, plan=rs))
        elif searched is not None:
            rs, _ = assign(searched.plan, holdings, mb) if not lost else (_bare(searched.plan, survivors), None)
            out.append(Candidate("restart", True, est.step_time(rs).t_step, trans, plan=rs))
        else:
            out.append(Candidate("restart", False, reason="no layout over the survivors fits memory"))
    return out


def _bare(template: Plan, survivors: list[int]) -> Plan:
    """Slots filled with survivors in order (restart reloads everything, so no bytes matter)."""
    mapping = dict(enumerate(sorted(survivors)))
    return substitute(template, mapping)
