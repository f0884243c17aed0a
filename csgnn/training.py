"""One training loop and the two classification protocols.

- `train_model`: Adam on cross-entropy; after each epoch the validation (and, when given, test)
  accuracy and loss are recorded; the epoch with the best validation accuracy (ties: lower
  validation loss, then the earlier epoch) is selected and its weights kept.
- `cv`: stratified k folds, a stratified validation split inside each training fold, test
  accuracy at the best-validation epoch. The honest protocol.
- `xu`: the same runs, but the epoch is picked on the mean test-fold curve (GIN paper style).
  It selects on test and is optimistic: for comparison with published tables only.
The test fold never influences training or selection in `cv`; labels never influence features.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from papersuite.errors import UserError


@dataclass
class TrainConfig:
    epochs: int = 200
    lr: float = 1e-3
    batch_size: int = 32
    seed: int = 0
    device: str = "cpu"


@dataclass
class History:
    val_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)

    def best_epoch(self) -> int:
        """0-based epoch of the best validation accuracy; ties -> lower loss -> earlier."""
        if not self.val_acc:
            return len(self.train_loss) - 1
        return min(range(len(self.val_acc)), key=lambda e: (-self.val_acc[e], self.val_loss[e], e))


def _loader(datas: Sequence, batch_size: int, shuffle: bool, seed: int):
    from torch_geometric.loader import DataLoader

    gen = torch.Generator().manual_seed(seed)
    return DataLoader(list(datas), batch_size=batch_size, shuffle=shuffle, generator=gen)


@torch.no_grad()
def evaluate(model: torch.nn.Module, datas: Sequence, batch_size: int = 256, device: str = "cpu"
             ) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of `model` on `datas`."""
    if not datas:
        return float("nan"), float("nan")
    model.eval()
    correct, loss, total = 0, 0.0, 0
    for batch in _loader(datas, batch_size, False, 0):
        batch = batch.to(device)
        out = model(batch)
        loss += float(torch.nn.functional.cross_entropy(out, batch.y, reduction="sum"))
        correct += int((out.argmax(1) == batch.y).sum())
        total += batch.num_graphs
    return correct / total, loss / total


@torch.no_grad()
def predict_proba(model: torch.nn.Module, datas: Sequence, batch_size: int = 256, device: str = "cpu") -> np.ndarray:
    model.eval().to(device)
    parts = [torch.softmax(model(b.to(device)), 1).cpu().numpy() for b in _loader(datas, batch_size, False, 0)]
    return np.concatenate(parts, 0) if parts else np.zeros((0, 0))


def train_model(model: torch.nn.Module, train: Sequence, val: Sequence, cfg: TrainConfig,
                test: Sequence = (), on_epoch: Callable[[int], None] | None = None) -> tuple[History, dict]:
    """Train for cfg.epochs; returns the history and the state dict of the selected epoch."""
    model.to(cfg.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loader = _loader(train, cfg.batch_size, True, cfg.seed)
    hist, best_state, best_key = History(), None, None
    for epoch in range(cfg.epochs):
        model.train()
        t0 = time.perf_counter()
        tot, n = 0.0, 0
        for batch in loader:
            if batch.num_graphs < 2 and len(train) > 1:
                continue  # BatchNorm cannot train on a lone graph; it returns next epoch
            batch = batch.to(cfg.device)
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(batch), batch.y)
            loss.backward()
            opt.step()
            tot, n = tot + loss.item() * batch.num_graphs, n + batch.num_graphs
        hist.epoch_seconds.append(time.perf_counter() - t0)
        hist.train_loss.append(tot / max(n, 1))
        if val:
            acc, vloss = evaluate(model, val, device=cfg.device)
            hist.val_acc.append(acc)
            hist.val_loss.append(vloss)
            key = (-acc, vloss, epoch)
            if best_key is None or key < best_key:
                best_key, best_state = key, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if test:
            hist.test_acc.append(evaluate(model, test, device=cfg.device)[0])
        if on_epoch:
            on_epoch(epoch)
    if best_state is None:
        best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    model.cpu()
    return hist, best_state


# -- splits ---------------------------------------------------------------------------------------
def _stratified_or_plain(y: np.ndarray, n_splits: int, seed: int):
    from sklearn.model_selection import KFold, StratifiedKFold

    _, counts = np.unique(y, return_counts=True)
    if counts.min() >= n_splits:
        return StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
    return KFold(n_splits, shuffle=True, random_state=seed).split(np.zeros(len(y)))


def val_split(idx: np.ndarray, y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (when every class has 2+ members) train/validation split of `idx`."""
    from sklearn.model_selection import train_test_split

    if fraction <= 0:
        return idx, idx[:0]
    n_val = max(1, int(round(fraction * len(idx))))
    if n_val >= len(idx):
        raise UserError(f"--val-fraction {fraction} leaves no training graphs ({len(idx)} graphs)")
    _, counts = np.unique(y[idx], return_counts=True)
    strat = y[idx] if counts.min() >= 2 and n_val >= len(counts) else None
    tr, va = train_test_split(idx, test_size=n_val, random_state=seed, stratify=strat)
    return np.sort(tr), np.sort(va)


def make_folds(y: Sequence[int], folds: int, val_fraction: float, seed: int) -> list[dict[str, list[int]]]:
    y = np.asarray(y)
    if folds < 2 or folds > len(y):
        raise UserError(f"--folds must be in 2..{len(y)} for {len(y)} graphs, got {folds}")
    out = []
    for k, (tr, te) in enumerate(_stratified_or_plain(y, folds, seed)):
        tr, va = val_split(np.asarray(tr), y, val_fraction, seed + k)
        out.append({"train": tr.tolist(), "val": va.tolist(), "test": np.sort(te).tolist()})
    return out


def check_splits(splits: dict, n: int, where: str) -> list[dict[str, list[int]]]:
    folds = splits.get("folds") if isinstance(splits, dict) else None
    if not isinstance(folds, list) or not folds:
        raise UserError(f"{where}: expected {{\"folds\": [{{\"train\", \"val\", \"test\"}}, ...]}}")
    for k, f in enumerate(folds):
        for part in ("train", "val", "test"):
            ids = f.get(part) if isinstance(f, dict) else None
            if not isinstance(ids, list) or not all(isinstance(i, int) and 0 <= i < n for i in ids):
                raise UserError(f"{where}: fold {k} '{part}' must be a list of graph indices in 0..{n - 1}")
        if not f["train"] or not f["test"]:
            raise UserError(f"{where}: fold {k} needs non-empty 'train' and 'test'")
    return folds


# -- protocols -------------------------------------------------------------------------------------
def summarise(histories: list[History], protocol: str) -> dict[str, Any]:
    """Fold results for `cv` (best validation epoch) or `xu` (best mean test epoch)."""
    folds = []
    if protocol == "xu":
        length = min(len(h.test_acc) for h in histories)
        mean_curve = np.mean([h.test_acc[:length] for h in histories], 0)
        sel = int(np.argmax(mean_curve))
        chosen = [sel] * len(histories)
    else:
        chosen = [h.best_epoch() for h in histories]
    for h, e in zip(histories, chosen):
        folds.append({"test_accuracy": h.test_acc[e] if h.test_acc else None,
                      "val_accuracy": h.val_acc[e] if h.val_acc else None,
                      "selected_epoch": e + 1})
    accs = [f["test_accuracy"] for f in folds]
    return {"accuracy_mean": float(np.mean(accs)),
            "accuracy_std": float(np.std(accs)),
            "epoch_seconds": float(statistics.median(s for h in histories for s in h.epoch_seconds)),
            "folds": folds}
