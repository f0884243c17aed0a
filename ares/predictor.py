"""Remaining-length predictors: ARES's hidden-state heads and the prompt-only / elapsed baselines.

Every predictor is an estimator: hyperparameters in `__init__`, `fit(train, val)` on `Records`,
`predict(records) -> r_hat` (remaining tokens, >= 1), `n_params`. `save`/`load_predictor` keep one
file (torch.save of config, state and sklearn parts).

- `ares` (default): static head L0 = g(h_0) plus a residual head during decode,
  r_hat = max(1, L0 - t + f([h_t, mean(h_1..h_t), log(1+t), log(max(1, L0 - t))])).
- `ares-literal`: the paper's probe, r_hat = MLP(h_t).
- `prompt-minilm`: all-MiniLM-L6-v2 on the prompt + MLP -> L; r_hat = max(1, L - t).
- `prompt-bucket`: TetriInfer-style length-bucket classifier on h_0; bucket median - t.
- `prompt-tfidf`: TF-IDF + ridge on the prompt -> L.
- `elapsed-median`: median(r | t) on the training split.
- `constant`: median(L) - t.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from papersuite.errors import UserError
from ares.collect import Records

PREDICTORS = ("ares", "ares-literal", "prompt-minilm", "prompt-bucket", "prompt-tfidf", "elapsed-median",
              "constant")


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.GELU()]
    return nn.Sequential(*layers[:-1])


class _Scaled(nn.Module):
    """`center + scale * net(x)`: targets in the hundreds of tokens, a net that works near unit scale."""

    def __init__(self, net: nn.Module, center: float, scale: float) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("center", torch.tensor(float(center)))
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, x):
        return self.center + self.scale * self.net(x)


def _train_regressor(net: nn.Module, X: np.ndarray, y: np.ndarray, Xv: np.ndarray, yv: np.ndarray, *,
                     offset: np.ndarray | None = None, offset_v: np.ndarray | None = None, epochs: int = 100,
                     patience: int = 10, lr: float = 1e-3, batch: int = 256, seed: int = 0) -> nn.Module:
    """L1 regression with AdamW and early stopping on validation MAE; prediction = offset + net(X)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    Xt, yt = torch.from_numpy(X).float(), torch.from_numpy(y).float()
    Xvt, yvt = torch.from_numpy(Xv).float(), torch.from_numpy(yv).float()
    ot = torch.zeros_like(yt) if offset is None else torch.from_numpy(offset).float()
    ovt = torch.zeros_like(yvt) if offset_v is None else torch.from_numpy(offset_v).float()
    resid = (yt - ot).numpy()
    net = _Scaled(net, float(np.median(resid)), float(max(resid.std(), 1.0)))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    best, best_state, bad = float("inf"), copy.deepcopy(net.state_dict()), 0
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(len(Xt), generator=g).split(batch):
            loss = (ot[idx] + net(Xt[idx]).squeeze(-1) - yt[idx]).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            val = (ovt + net(Xvt).squeeze(-1) - yvt).abs().mean().item() if len(Xvt) else 0.0
        if val < best - 1e-6:
            best, best_state, bad = val, copy.deepcopy(net.state_dict()), 0
        else:
            bad += 1
            if bad >= patience:
                break
    net.load_state_dict(best_state)
    return net.eval()


class _Scaler:
    """Standardisation fitted on the training split only."""

    def fit(self, X: np.ndarray) -> "_Scaler":
        self.mean_, self.std_ = X.mean(0), X.std(0) + 1e-6
        return self

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.mean_) / self.std_).astype(np.float32)


class Predictor:
    name = "base"
    hidden_size: int | None = None

    def __init__(self, epochs: int = 100, patience: int = 10, random_state: int = 0) -> None:
        self.epochs, self.patience, self.random_state = epochs, patience, random_state

    def fit(self, train: Records, val: Records) -> "Predictor":
        raise TypeError  # every concrete predictor overrides fit

    def predict(self, rec: Records) -> np.ndarray:
        raise TypeError

    def predict_online(self, h0: np.ndarray, h: np.ndarray, hmean: np.ndarray, t: np.ndarray,
                       prompts: list[str]) -> np.ndarray:
        """Remaining length of running requests from what a serving hook holds (one row each)."""
        n = len(t)
        rec = Records(h, hmean, np.asarray(t), np.zeros(n, dtype=np.int64), np.arange(n),
                      [{"prompt": p, "output_tokens": 0} for p in prompts], {})
        return self.predict(rec)

    @property
    def n_params(self) -> int:
        return 0

    def _check_hidden(self, rec: Records) -> None:
        if self.hidden_size is not None and rec.hidden_size != self.hidden_size:
            raise UserError(f"predictor {self.name!r} was trained for hidden size {self.hidden_size}; "
                            f"the records have {rec.hidden_size}")

    def save(self, path: str | Path) -> None:
        from papersuite.io import atomic_path

        with atomic_path(path) as tmp:
            torch.save({"name": self.name, "object": self}, tmp)


def _count(*nets: nn.Module) -> int:
    return sum(p.numel() for n in nets for p in n.parameters())


class ConstantPredictor(Predictor):
    name = "constant"

    def fit(self, train, val):
        self.median_ = float(np.median(train.lengths[train.t == 0] if (train.t == 0).any() else train.lengths))
        return self

    def predict(self, rec):
        return np.maximum(1.0, self.median_ - rec.t)


class ElapsedMedianPredictor(Predictor):
    name = "elapsed-median"

    def fit(self, train, val):
        self.ts_ = np.unique(train.t)
        self.medians_ = np.array([np.median(train.r[train.t == t]) for t in self.ts_])
        return self

    def predict(self, rec):
        idx = np.clip(np.searchsorted(self.ts_, rec.t, side="right") - 1, 0, len(self.ts_) - 1)
        return np.maximum(1.0, self.medians_[idx] - (rec.t - self.ts_[idx]))


class _PromptLengthPredictor(Predictor):
    """Predicts L from the prompt alone; r_hat = max(1, L_hat - t)."""

    def _prompt_rows(self, rec: Records) -> tuple[list[int], np.ndarray]:
        reqs = sorted(set(rec.req.tolist()))
        return reqs, np.array([rec.requests[q]["output_tokens"] for q in reqs], dtype=np.float32)

    def predict_online(self, h0, h, hmean, t, prompts):
        return np.maximum(1.0, np.asarray(self._predict_lengths(list(prompts), None, None)) - np.asarray(t))

    def predict(self, rec):
        reqs = sorted(set(rec.req.tolist()))
        L = dict(zip(reqs, self._predict_lengths([rec.requests[q]["prompt"] for q in reqs], rec, reqs)))
        return np.maximum(1.0, np.array([L[q] for q in rec.req]) - rec.t)


class PromptTfidfPredictor(_PromptLengthPredictor):
    name = "prompt-tfidf"

    def fit(self, train, val):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import Ridge
        from sklearn.pipeline import make_pipeline

        reqs, L = self._prompt_rows(train)
        self.model_ = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=1), Ridge(alpha=1.0))
        self.model_.fit([train.requests[q]["prompt"] for q in reqs], L)
        return self

    def _predict_lengths(self, prompts, rec, reqs):
        return self.model_.predict(prompts)

    @property
    def n_params(self):
        return int(self.model_[-1].coef_.size + 1)


class PromptMiniLMPredictor(_PromptLengthPredictor):
    """The S3 / SSJF / mu-Serve family: a BERT-class encoder on the prompt plus an MLP."""

    name = "prompt-minilm"
    encoder_params = 22_713_216  # all-MiniLM-L6-v2

    def _embed(self, prompts: list[str]) -> np.ndarray:
        from papersuite.models import SentenceEmbedder

        if not hasattr(self, "_embedder"):
            self._embedder = SentenceEmbedder("minilm-l6-v2")
        return self._embedder.encode(prompts)

    def fit(self, train, val):
        reqs, L = self._prompt_rows(train)
        vreqs, Lv = self._prompt_rows(val)
        X = self._embed([train.requests[q]["prompt"] for q in reqs])
        Xv = self._embed([val.requests[q]["prompt"] for q in vreqs])
        self.net_ = _train_regressor(_mlp([X.shape[1], 256, 64, 1]), X, L, Xv, Lv, epochs=self.epochs,
                                     patience=self.patience, seed=self.random_state)
        return self

    def _predict_lengths(self, prompts, rec, reqs):
        with torch.no_grad():
            return self.net_(torch.from_numpy(self._embed(prompts))).squeeze(-1).numpy()

    @property
    def n_params(self):
        return self.encoder_params + _count(self.net_)

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_embedder"}


class PromptBucketPredictor(Predictor):
    """Length buckets (quantile edges on the training split) classified from the prompt-end state."""

    name = "prompt-bucket"

    def __init__(self, n_buckets: int = 6, **kw) -> None:
        super().__init__(**kw)
        self.n_buckets = n_buckets

    def fit(self, train, val):
        from sklearn.linear_model import LogisticRegression

        self.hidden_size = train.hidden_size
        at0 = train.t == 0
        L = train.lengths[at0]
        self.edges_ = np.unique(np.quantile(L, np.linspace(0, 1, self.n_buckets + 1)[1:-1]))
        y = np.searchsorted(self.edges_, L, side="right")
        self.medians_ = np.array([np.median(L[y == b]) if (y == b).any() else np.median(L)
                                  for b in range(len(self.edges_) + 1)])
        self.scaler_ = _Scaler().fit(train.h[at0])
        self.clf_ = LogisticRegression(max_iter=500, C=0.1).fit(self.scaler_(train.h[at0]), y)
        return self

    def predict(self, rec):
        self._check_hidden(rec)
        return self._from_h0(_prompt_end_states(rec), rec.t)

    def _from_h0(self, h0, t):
        return np.maximum(1.0, self.medians_[self.clf_.predict(self.scaler_(h0))] - t)

    def predict_online(self, h0, h, hmean, t, prompts):
        return self._from_h0(h0, np.asarray(t))

    @property
    def n_params(self):
        return int(self.clf_.coef_.size + self.clf_.intercept_.size)


def _prompt_end_states(rec: Records) -> np.ndarray:
    """h_0 of each record's request (records of one request share it)."""
    first: dict[int, np.ndarray] = {}
    for i in np.flatnonzero(rec.t == 0):
        first.setdefault(int(rec.req[i]), rec.h[i])
    missing = set(rec.req.tolist()) - set(first)
    if missing:
        raise UserError(f"{len(missing)} request(s) have no prompt-end record (t = 0)")
    return np.stack([first[int(q)] for q in rec.req])


class AresLiteralPredictor(Predictor):
    """The paper's probe: r_hat = MLP(h_t), d -> 256 -> 64 -> 1 for SmolLM2 (d = 576)."""

    name = "ares-literal"

    def fit(self, train, val):
        self.hidden_size = train.hidden_size
        self.scaler_ = _Scaler().fit(train.h)
        self.net_ = _train_regressor(_mlp([train.hidden_size, 256, 64, 1]), self.scaler_(train.h),
                                     train.r.astype(np.float32), self.scaler_(val.h), val.r.astype(np.float32),
                                     epochs=self.epochs, patience=self.patience, seed=self.random_state)
        return self

    def predict_from(self, h: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.maximum(1.0, self.net_(torch.from_numpy(self.scaler_(h))).squeeze(-1).numpy())

    def predict(self, rec):
        self._check_hidden(rec)
        return self.predict_from(rec.h)

    def predict_online(self, h0, h, hmean, t, prompts):
        return self.predict_from(h)

    @property
    def n_params(self):
        return _count(self.net_)


class AresPredictor(Predictor):
    """Static prompt-end head plus a continuous residual head (see the module docstring)."""

    name = "ares"

    def _static(self, h0: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.maximum(1.0, self.static_(torch.from_numpy(self.scaler0_(h0))).squeeze(-1).numpy())

    def _features(self, h, hmean, t, L0):
        extra = np.stack([np.log1p(t), np.log(np.maximum(1.0, L0 - t))], axis=1).astype(np.float32)
        return np.concatenate([self.scaler_(np.concatenate([h, hmean], 1)), extra], 1)

    def fit(self, train, val):
        self.hidden_size = train.hidden_size
        at0, vat0 = train.t == 0, val.t == 0
        self.scaler0_ = _Scaler().fit(train.h[at0])
        d = train.hidden_size
        self.static_ = _train_regressor(_mlp([d, 256, 64, 1]), self.scaler0_(train.h[at0]),
                                        train.lengths[at0].astype(np.float32), self.scaler0_(val.h[vat0]),
                                        val.lengths[vat0].astype(np.float32), epochs=self.epochs,
                                        patience=self.patience, seed=self.random_state)
        self.scaler_ = _Scaler().fit(np.concatenate([train.h, train.hmean], 1))
        L0, L0v = self._static(_prompt_end_states(train)), self._static(_prompt_end_states(val))
        X = self._features(train.h, train.hmean, train.t, L0)
        Xv = self._features(val.h, val.hmean, val.t, L0v)
        self.residual_ = _train_regressor(_mlp([X.shape[1], 256, 64, 1]), X, train.r.astype(np.float32), Xv,
                                          val.r.astype(np.float32), offset=(L0 - train.t).astype(np.float32),
                                          offset_v=(L0v - val.t).astype(np.float32), epochs=self.epochs,
                                          patience=self.patience, seed=self.random_state + 1)
        return self

    def predict_from(self, h0: np.ndarray, h: np.ndarray, hmean: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Batched prediction from raw states: what the serving hook calls every k steps."""
        L0 = self._static(h0)
        with torch.no_grad():
            res = self.residual_(torch.from_numpy(self._features(h, hmean, t, L0))).squeeze(-1).numpy()
        return np.maximum(1.0, L0 - t + res)

    def predict(self, rec):
        self._check_hidden(rec)
        return self.predict_from(_prompt_end_states(rec), rec.h, rec.hmean, rec.t.astype(np.float32))

    def predict_online(self, h0, h, hmean, t, prompts):
        return self.predict_from(h0, h, hmean, np.asarray(t, dtype=np.float32))

    @property
    def n_params(self):
        return _count(self.static_, self.residual_)


_CLASSES = {c.name: c for c in (AresPredictor, AresLiteralPredictor, PromptMiniLMPredictor, PromptBucketPredictor,
                                PromptTfidfPredictor, ElapsedMedianPredictor, ConstantPredictor)}


def make_predictor(name: str, **kw) -> Predictor:
    if name not in _CLASSES:
        raise UserError(f"unknown predictor {name!r}; choose one of {', '.join(PREDICTORS)}")
    return _CLASSES[name](**kw)


def load_predictor(path: str | Path) -> Predictor:
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: no such predictor file")
    try:
        blob = torch.load(p, weights_only=False)
        pred = blob["object"]
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        raise UserError(f"{p}: not a predictor file ({type(e).__name__})") from None
    if not isinstance(pred, Predictor):
        raise UserError(f"{p}: not a predictor file")
    return pred
