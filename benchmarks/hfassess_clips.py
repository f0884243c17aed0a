"""hf-assess clips benchmark: geometric (calibrated) vs 3D-CNN EF on SYNTHETIC clips, levels 0-3.

    python benchmarks/hfassess_clips.py                       # CUDA when present, else CPU
    python benchmarks/hfassess_clips.py --train-per-level 100 --test 50 --epochs 5   # quick CPU run
One CNN is trained on clips of all levels; each level has its own geometric calibration and
200 test clips. Writes benchmarks/results/hfassess/clips_cnn.json + .md. Research use only.
"""
from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from papersuite.bench import markdown_table, write_results  # noqa: E402


def _gen(args):
    from hfassess.synth_echo import make_clips

    n, level, seed = args
    return [(c.frames, c.ef) for c in make_clips(n, level=level, seed=seed)]


def _geo(args):
    from hfassess.echo import raw_ef

    return [raw_ef(f) for f in args]


def clips(n: int, level: int, seed: int, pool) -> tuple[list, np.ndarray]:
    chunks = [(min(25, n - i), level, seed * 1000 + i) for i in range(0, n, 25)]
    out = [c for part in pool.map(_gen, chunks) for c in part]
    return [f for f, _ in out], np.array([e for _, e in out])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-per-level", type=int, default=500)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    import torch
    from sklearn.metrics import roc_auc_score

    from hfassess.echo import CNNEF

    device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    t0 = time.perf_counter()
    with ProcessPoolExecutor() as pool:
        train = {lv: clips(a.train_per_level, lv, a.seed + 10 * lv, pool) for lv in range(4)}
        test = {lv: clips(a.test, lv, a.seed + 10 * lv + 5, pool) for lv in range(4)}
        geo_tr = {lv: np.array([x for p in pool.map(_geo, [train[lv][0][i:i + 25] for i in range(0, len(train[lv][0]), 25)])
                                for x in p]) for lv in range(4)}
        geo_te = {lv: np.array([x for p in pool.map(_geo, [test[lv][0][i:i + 25] for i in range(0, len(test[lv][0]), 25)])
                                for x in p]) for lv in range(4)}
    t_data = time.perf_counter() - t0
    Xtr = [f for lv in range(4) for f in train[lv][0]]
    ytr = np.concatenate([train[lv][1] for lv in range(4)])
    t1 = time.perf_counter()
    cnn = CNNEF(epochs=a.epochs, device=device, random_state=a.seed).fit(Xtr, ytr)
    t_train = time.perf_counter() - t1
    rows = []
    for lv in range(4):
        frames, y = test[lv]
        coef = np.polyfit(geo_tr[lv], train[lv][1], 1)
        g = np.clip(np.polyval(coef, geo_te[lv]), 0, 100)
        c = cnn.predict(frames)
        rows.append({"level": lv, "n_test": len(y), "geometric_raw_mae": float(np.abs(geo_te[lv] - y).mean()),
                     "geometric_cal_mae": float(np.abs(g - y).mean()), "cnn_mae": float(np.abs(c - y).mean()),
                     "cnn_rmse": float(np.sqrt(((c - y) ** 2).mean())),
                     "cnn_r2": float(1 - ((c - y) ** 2).sum() / ((y - y.mean()) ** 2).sum()),
                     "geometric_hfref_auroc": float(roc_auc_score(y <= 40, -g)),
                     "cnn_hfref_auroc": float(roc_auc_score(y <= 40, -c))})
    res = {"rows": rows, "device": device, "train_clips": len(Xtr), "epochs": a.epochs,
           "cnn_train_seconds": t_train, "data_seconds": t_data, "loss_history": cnn.history_,
           "reference": "EchoNet-Dynamic EF MAE 4.1 (real video; design anchor only)", "synthetic": True}
    md = (f"# SYNTHETIC clips 16x64x64: geometric vs CNN EF ({len(Xtr)} training clips, {a.epochs} epochs, "
          f"{device}, CNN training {t_train:.0f} s)\n\n" + markdown_table(rows))
    write_results("hfassess", "clips_cnn", res, md)
    print(md)


if __name__ == "__main__":
    main()
