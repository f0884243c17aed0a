"""SYNTHETIC echo-like clips with a known ejection fraction (no real video anywhere).

The LV cavity is a prolate spheroid seen in an apical view: an ellipse with long semi-axis a and
short semi-axis b, volume V = 4/3 pi a b^2. We draw a_ed, b_ed and a long-axis shortening f,
set a_es = a_ed (1 - f) and solve b_es = b_ed sqrt((1 - EF) a_ed / a_es), so EF = 1 - V_es/V_ed
holds exactly. Heart rate 50-110 bpm, random phase, systole 35% of the cycle; a bright
myocardial ring around a dark cavity inside a fan sector. Levels add Rayleigh speckle and blur
(1+), shadow wedges and foreshortening (2+), off-axis rotation and irregular rhythm (3).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

GENERATOR_VERSION = "hfassess-echo-1"
FAN_DEPTH_CM = 16.0


@dataclass
class Clip:
    frames: np.ndarray  # float32 [T, H, W] in [0, 1]
    ef: float  # percent
    edv: float  # mL
    esv: float  # mL
    seed: int
    level: int

    def as_npz(self) -> dict[str, Any]:
        return {"frames": self.frames, "ef": self.ef, "edv": self.edv, "esv": self.esv, "seed": self.seed,
                "level": self.level, "generator_version": GENERATOR_VERSION, "synthetic": True}


def _contraction(phase: np.ndarray) -> np.ndarray:
    """0 at end-diastole, 1 at end-systole (35% of the cycle), smooth in between."""
    ph = np.mod(phase, 1.0)
    sys = 0.5 * (1 - np.cos(np.pi * ph / 0.35))
    dia = 0.5 * (1 + np.cos(np.pi * (ph - 0.35) / 0.65))
    return np.where(ph < 0.35, sys, dia)


def make_clip(ef: float | None = None, *, level: int = 1, frames: int = 16, size: int = 64,
              seed: int = 0) -> Clip:
    """One clip; `ef` in percent (drawn 15-75 when None)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    ef = float(rng.uniform(15, 75)) if ef is None else float(ef)
    a_ed, b_ed = rng.uniform(4.0, 5.2), rng.uniform(1.9, 2.6)  # cm
    f = rng.uniform(0.08, 0.18)
    a_es = a_ed * (1 - f)
    b_es = b_ed * np.sqrt((1 - ef / 100) * a_ed / a_es)
    edv, esv = 4 / 3 * np.pi * a_ed * b_ed ** 2, 4 / 3 * np.pi * a_es * b_es ** 2
    hr = rng.uniform(50, 110)
    cycle = 60.0 / hr
    dt = 1.25 * cycle / frames  # every clip spans more than one beat: ED and ES are both seen
    t = np.arange(frames) * dt
    phase = rng.uniform() + t / cycle
    if level >= 3:  # irregular rhythm: beat-to-beat jitter in the phase speed
        phase = rng.uniform() + np.cumsum(np.r_[0, rng.uniform(0.7, 1.3, frames - 1)]) * dt / cycle
    s = _contraction(phase)
    px = size / FAN_DEPTH_CM
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    cy, cx = size * 0.5 + rng.uniform(-1.5, 1.5), size * 0.5 + rng.uniform(-1.5, 1.5)
    angle = np.deg2rad(rng.uniform(-8, 8) + (rng.uniform(-20, 20) if level >= 3 else 0))
    foreshorten = rng.uniform(0.80, 0.95) if level >= 2 else 1.0
    offaxis = rng.uniform(0.85, 1.0) if level >= 3 else 1.0
    wall = 0.9 * px
    dy, dx = yy - cy, xx - cx
    u = dy * np.cos(angle) + dx * np.sin(angle)  # along the long axis
    v = -dy * np.sin(angle) + dx * np.cos(angle)
    fan = (np.abs(np.arctan2(xx - size / 2, yy + 8)) < np.deg2rad(40)) & (np.hypot(xx - size / 2, yy + 8) < size * 1.02)
    wedge = None
    if level >= 2:
        wa = rng.uniform(-30, 30)
        wedge = np.abs(np.rad2deg(np.arctan2(xx - size / 2, yy + 8)) - wa) < rng.uniform(3, 7)
    out = np.zeros((frames, size, size), dtype=np.float32)
    for k in range(frames):
        a = (a_ed + s[k] * (a_es - a_ed)) * px * foreshorten
        b = (b_ed + s[k] * (b_es - b_ed)) * px * offaxis
        r_in = (u / a) ** 2 + (v / b) ** 2
        r_out = (u / (a + wall)) ** 2 + (v / (b + wall)) ** 2
        img = np.full((size, size), 0.35)
        img[r_out <= 1] = 0.85
        img[r_in <= 1] = 0.06
        if level >= 1:
            img = img * rng.rayleigh(0.8, size=img.shape) / (0.8 * np.sqrt(np.pi / 2))
            img = ndimage.gaussian_filter(img, 0.6 + 0.3 * level)
        if wedge is not None:
            img[wedge] *= 0.25
        img[~fan] = 0.0
        out[k] = np.clip(img, 0, 1)
    return Clip(out, ef, float(edv), float(esv), seed, level)


def make_clips(n: int, *, level: int = 1, frames: int = 16, size: int = 64, seed: int = 0,
               efs: np.ndarray | None = None) -> list[Clip]:
    return [make_clip(None if efs is None else float(efs[i]), level=level, frames=frames, size=size,
                      seed=seed * 100_003 + i) for i in range(n)]


def write_clips(folder: str | Path, n: int, *, level: int = 1, size: int = 64, seed: int = 0) -> None:
    """`.npz` per clip (frames, ef, edv, esv, seed, level, generator_version, synthetic) + a PNG filmstrip."""
    from papersuite.io import atomic_path

    folder = Path(folder)
    frames = 32 if size >= 112 else 16
    clips = make_clips(n, level=level, frames=frames, size=size, seed=seed)
    for i, c in enumerate(clips):
        with atomic_path(folder / f"clip_{i:04d}.npz", suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **c.as_npz())
    filmstrip(clips[0], folder / "clip_0000.png")


def filmstrip(clip: Clip, path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from papersuite.io import atomic_path

    k = min(8, len(clip.frames))
    fig, axes = plt.subplots(1, k, figsize=(1.6 * k, 1.9))
    for j, ax in enumerate(axes):
        ax.imshow(clip.frames[j * len(clip.frames) // k], cmap="gray", vmin=0, vmax=1)
        ax.axis("off")
    fig.suptitle(f"SYNTHETIC clip, EF {clip.ef:.1f}%, level {clip.level}", fontsize=8)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
