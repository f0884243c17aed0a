"""EF estimation from clips: a calibrated geometric (area-length) estimator.

Per frame: threshold the dark cavity (the connected component at the centre), area A and long
axis L from the PCA of its pixels, V = 8 A^2 / (3 pi L); EF = (Vmax - Vmin) / Vmax; then a linear
calibration fitted on training clips corrects systematic bias (speckle, blur, foreshortening).
"""
from __future__ import annotations

import numpy as np


def frame_volume(frame: np.ndarray) -> float:
    """Area-length volume (pixel units) of the dark component around the image centre."""
    from scipy import ndimage

    img = ndimage.gaussian_filter(frame.astype(float), 1.0)
    h, w = img.shape
    c = img[h // 2 - 2:h // 2 + 3, w // 2 - 2:w // 2 + 3]
    thr = 0.5 * (float(np.median(c)) + float(np.percentile(img, 90)))
    lab, _ = ndimage.label(img < thr)
    centre = lab[h // 2 - 2:h // 2 + 3, w // 2 - 2:w // 2 + 3]
    ids = centre[centre > 0]
    if len(ids) == 0:
        return 0.0
    mask = lab == np.bincount(ids).argmax()
    ys, xs = np.nonzero(mask)
    area = float(mask.sum())
    if area < 5:
        return 0.0
    cov = np.cov(np.vstack([ys, xs]))
    L = 4.0 * np.sqrt(max(np.linalg.eigvalsh(cov)[-1], 1e-9))
    return 8 * area ** 2 / (3 * np.pi * L)


def raw_ef(frames: np.ndarray) -> float:
    vols = np.array([frame_volume(f) for f in frames])
    vmax, vmin = vols.max(), vols[vols > 0].min() if (vols > 0).any() else 0.0
    return float(100 * (vmax - vmin) / vmax) if vmax > 0 else 0.0


class GeometricEF:
    """Area-length EF with a linear calibration (sklearn-style: fit learns `coef_`, `intercept_`)."""

    def __init__(self, calibrate: bool = True):
        self.calibrate = calibrate

    def fit(self, clips: list[np.ndarray], ef: np.ndarray) -> "GeometricEF":
        raw = np.array([raw_ef(c) for c in clips])
        if self.calibrate:
            self.coef_, self.intercept_ = np.polyfit(raw, np.asarray(ef, dtype=float), 1)
        else:
            self.coef_, self.intercept_ = 1.0, 0.0
        return self

    def predict(self, clips: list[np.ndarray]) -> np.ndarray:
        raw = np.array([raw_ef(c) for c in clips])
        return np.clip(self.coef_ * raw + self.intercept_, 0, 100)
