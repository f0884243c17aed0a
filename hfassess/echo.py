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


class _EFNet:
    """Factory for the small (2+1)D-style 3D CNN (torch imported lazily)."""

    @staticmethod
    def build(width: int = 16):
        import torch.nn as nn

        def block(cin, cout, pool):
            # (2+1)D factorisation as in EchoNet's R(2+1)D: spatial 1x3x3 then temporal 3x1x1
            return nn.Sequential(nn.Conv3d(cin, cout, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(cout), nn.ReLU(),
                                 nn.Conv3d(cout, cout, (3, 1, 1), padding=(1, 0, 0)), nn.BatchNorm3d(cout), nn.ReLU(),
                                 nn.MaxPool3d(pool))

        return nn.Sequential(block(1, width // 2, (1, 2, 2)), block(width // 2, width, (2, 2, 2)),
                             block(width, 2 * width, (2, 2, 2)), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
                             nn.Linear(2 * width, 1))


class CNNEF:
    """Learned EF regressor: a scaled-down R(2+1)D, Huber loss, predictions averaged over windows.

    sklearn-style: hyperparameters in __init__, `fit(clips, ef)` learns `net_`; `history_` holds
    per-epoch training loss. Runs on CPU; pass device="cuda" where available.
    """

    def __init__(self, epochs: int = 15, batch_size: int = 16, lr: float = 2e-3, width: int = 16,
                 window: int = 16, device: str = "cpu", random_state: int = 0):
        self.epochs, self.batch_size, self.lr, self.width = epochs, batch_size, lr, width
        self.window, self.device, self.random_state = window, device, random_state

    def _windows(self, clip: np.ndarray) -> np.ndarray:
        T = len(clip)
        w = min(self.window, T)
        starts = range(0, T - w + 1, max(1, w // 2))
        return np.stack([clip[s:s + w] for s in starts])

    def fit(self, clips: list[np.ndarray], ef: np.ndarray) -> "CNNEF":
        import torch

        torch.manual_seed(self.random_state)
        self.net_ = _EFNet.build(self.width).to(self.device)
        X = torch.tensor(np.stack([self._windows(c)[0] for c in clips]), dtype=torch.float32).unsqueeze(1)
        y = torch.tensor(np.asarray(ef, dtype=np.float32) / 100.0)
        opt = torch.optim.AdamW(self.net_.parameters(), lr=self.lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.epochs))
        loss_fn = torch.nn.HuberLoss(delta=0.1)
        g = torch.Generator().manual_seed(self.random_state)
        self.history_ = []
        for _ in range(self.epochs):
            self.net_.train()
            perm = torch.randperm(len(X), generator=g)
            total = 0.0
            for i in range(0, len(X), self.batch_size):
                idx = perm[i:i + self.batch_size]
                xb = X[idx].to(self.device)
                if torch.rand(1, generator=g).item() < 0.5:  # augmentation: horizontal flip
                    xb = xb.flip(-1)
                loss = loss_fn(self.net_(xb).squeeze(1), y[idx].to(self.device))
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            sched.step()
            self.history_.append(total / len(X))
        return self

    def predict(self, clips: list[np.ndarray]) -> np.ndarray:
        import torch

        self.net_.eval()
        out = []
        with torch.inference_mode():
            for c in clips:
                w = torch.tensor(self._windows(c), dtype=torch.float32).unsqueeze(1).to(self.device)
                out.append(float(self.net_(w).mean()) * 100)
        return np.clip(np.array(out), 0, 100)
