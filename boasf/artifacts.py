"""What a run leaves behind: leaderboard, anytime curve, the refitted pipeline and its safe loading.

Pipelines are saved with skops, whose loader only builds types the caller trusts. We trust an
explicit allowlist (scikit-learn's own classes plus the few internals fitted trees carry) and refuse
anything else; joblib (which runs arbitrary code on load) is only used when asked for, with a warning.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from papersuite.errors import UserError
from papersuite.io import atomic_path, write_jsonl

TRUSTED_PREFIXES = ("sklearn.", "numpy.")
TRUSTED_EXTRA = {"builtins.slice", "builtins.type", "collections.OrderedDict"}


def best_so_far(records: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(t_end, best ok score so far) in order of trial end."""
    best, out = None, []
    for r in sorted(records, key=lambda r: r["t_end"]):
        if r["status"] == "ok" and (best is None or r["score"] > best):
            best = r["score"]
            out.append((r["t_end"], best))
    return out


def best_record(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    ok = [r for r in records if r["status"] == "ok"]
    return max(ok, key=lambda r: (r["score"], -r["t_end"])) if ok else None


def leaderboard(records: list[dict[str, Any]], state: dict[str, Any] | None, scores: dict[str, float]
                ) -> list[dict[str, Any]]:
    """Per arm, best first: trials, best and mean score, final UCB, worker seconds, round dropped."""
    dropped = {}
    for rd in (state or {}).get("rounds", []):
        for a in rd.get("dropped", []):
            dropped.setdefault(a, rd["round"])
    arms = list(dict.fromkeys(r["arm"] for r in records))
    rows = []
    for a in arms:
        mine = [r for r in records if r["arm"] == a]
        ok = [r["score"] for r in mine if r["status"] == "ok"]
        rows.append({"arm": a, "family": mine[0].get("family", a), "trials": len(mine), "ok": len(ok),
                     "best": max(ok) if ok else None, "mean": statistics.fmean(ok) if ok else None,
                     "ucb": scores.get(a), "seconds": round(sum(r["duration_s"] for r in mine), 3),
                     "round_dropped": dropped.get(a)})
    rows.sort(key=lambda r: (r["best"] is None, -(r["best"] or 0.0)))
    return rows


def write_leaderboard(path: Path, rows: list[dict[str, Any]]) -> None:
    write_jsonl(path, rows)


def plot_anytime(path: Path, curves: dict[str, list[tuple[float, float]]], round_ends: list[float] = (),
                 title: str = "", xlabel: str = "seconds") -> None:
    """Best score so far against time, one step line per method; dashed lines at round ends."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, pts in curves.items():
        if pts:
            xs, ys = zip(*pts)
            ax.step(xs, ys, where="post", label=label)
    for t in round_ends:
        ax.axvline(t, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("best CV score so far")
    ax.set_title(title)
    if len(curves) > 1:
        ax.legend()
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def save_pipeline(model, path: Path, fmt: str = "skops") -> None:
    with atomic_path(path) as tmp:
        if fmt == "joblib":
            import joblib

            joblib.dump(model, tmp)
        else:
            import skops.io as sio

            sio.dump(model, tmp)


def load_pipeline(path: str | Path, *, allow_joblib: bool = False):
    """Load a saved pipeline. skops files load only allowlisted types; joblib needs `allow_joblib`."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.suffix == ".joblib":
        if not allow_joblib:
            raise UserError(f"{path}: joblib files run code when loaded; pass allow_joblib=True only for "
                            f"files you made yourself")
        import joblib

        return joblib.load(path)
    import skops.io as sio

    untrusted = sio.get_untrusted_types(file=path)
    refused = [t for t in untrusted if not (t.startswith(TRUSTED_PREFIXES) or t in TRUSTED_EXTRA)]
    if refused:
        raise UserError(f"{path}: refusing to load untrusted type(s) {', '.join(refused)}")
    return sio.load(path, trusted=untrusted)
