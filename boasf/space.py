"""The search space: one arm per model family, each holding its own preprocessing choices.

Spaces are declarative (`Param` tuples) rather than `suggest_*` code, because the same space has to
feed three consumers: a per-arm optuna study (BOASF), a joint conditional space (the TPE / random
baselines) and the orthogonal HPO arms, which cut every range in two.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from typing import Any, Callable

SCALERS = ("none", "standard", "minmax", "robust", "quantile")


@dataclass(frozen=True)
class Param:
    """One hyperparameter: a float/int range (optionally log-scaled) or a categorical choice list."""

    name: str
    kind: str  # "float" | "int" | "cat"
    low: float = 0.0
    high: float = 1.0
    log: bool = False
    choices: tuple = ()

    def suggest(self, trial: Any, prefix: str = "") -> Any:
        """Ask an optuna trial (or FrozenTrial-like object) for a value under `prefix + name`."""
        name = prefix + self.name
        if self.kind == "float":
            return trial.suggest_float(name, self.low, self.high, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_categorical(name, list(self.choices))

    def split(self) -> tuple["Param", "Param"]:
        """Two halves of the range, as BOASF's orthogonal arms need.

        Log-scaled ranges are cut at the geometric midpoint (the authors cut on the raw scale, which
        gives the upper half almost all of a log range); a single choice yields two equal copies.
        """
        if self.kind == "cat":
            if len(self.choices) < 2:
                return self, self
            k = math.ceil(len(self.choices) / 2)
            return replace(self, choices=self.choices[:k]), replace(self, choices=self.choices[k:])
        mid = math.sqrt(self.low * self.high) if self.log else (self.low + self.high) / 2
        if self.kind == "int":
            lo_hi = int(math.floor(mid))
            if lo_hi >= self.high or self.low >= self.high:
                return self, self
            return replace(self, high=max(lo_hi, self.low)), replace(self, low=max(lo_hi, self.low) + 1)
        return replace(self, high=mid), replace(self, low=mid)

    def key(self) -> tuple:
        return (self.name, self.kind, self.low, self.high, self.log, self.choices)


@dataclass(frozen=True)
class Family:
    """A scikit-learn classifier family with its hyperparameters and the preprocessing it uses."""

    key: str
    label: str
    params: tuple[Param, ...]
    make: Callable[[dict, int], Any]
    scaled: bool = True  # distance/margin based: the rescaler matters
    balanced: bool = True  # accepts class_weight

    def space(self) -> tuple[Param, ...]:
        """Model parameters plus the preprocessing choices, all searched together."""
        pre = [Param("imputer", "cat", choices=("mean", "median"))]
        if self.scaled:
            pre.append(Param("scaler", "cat", choices=SCALERS))
        if self.balanced:
            pre.append(Param("class_weight", "cat", choices=("none", "balanced")))
        return tuple(pre) + self.params


def _cw(p: dict) -> Any:
    return "balanced" if p.get("class_weight") == "balanced" else None


def _lr(p, rs):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=p["C"], class_weight=_cw(p), max_iter=500, random_state=rs)


def _sgd(p, rs):
    from sklearn.linear_model import SGDClassifier

    return SGDClassifier(loss=p["loss"], alpha=p["alpha"], penalty=p["penalty"], class_weight=_cw(p),
                         max_iter=1000, tol=1e-3, random_state=rs)


def _svc(p, rs):
    from sklearn.svm import SVC

    return SVC(C=p["C"], gamma=p["gamma"], class_weight=_cw(p), random_state=rs)


def _knn(p, rs):
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(n_neighbors=p["n_neighbors"], weights=p["weights"], p=p["p"])


def _forest(cls_name):
    def make(p, rs):
        import sklearn.ensemble as ens

        cls = getattr(ens, cls_name)
        return cls(n_estimators=p["n_estimators"], max_features=p["max_features"],
                   min_samples_leaf=p["min_samples_leaf"], criterion=p["criterion"],
                   class_weight=_cw(p), n_jobs=1, random_state=rs)
    return make


def _hgb(p, rs):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        learning_rate=p["learning_rate"], max_leaf_nodes=p["max_leaf_nodes"],
        min_samples_leaf=p["min_samples_leaf"], l2_regularization=p["l2_regularization"],
        max_iter=p["max_iter"], class_weight=_cw(p), early_stopping=False, random_state=rs)


def _dt(p, rs):
    from sklearn.tree import DecisionTreeClassifier

    return DecisionTreeClassifier(max_depth=p["max_depth"], min_samples_leaf=p["min_samples_leaf"],
                                  criterion=p["criterion"], class_weight=_cw(p), random_state=rs)


def _gnb(p, rs):
    from sklearn.naive_bayes import GaussianNB

    return GaussianNB(var_smoothing=p["var_smoothing"])


def _lda(p, rs):
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    return LinearDiscriminantAnalysis(solver="lsqr", shrinkage=p["shrinkage"])


_FOREST = (Param("n_estimators", "int", 16, 256, log=True), Param("max_features", "float", 0.05, 1.0),
           Param("min_samples_leaf", "int", 1, 20, log=True), Param("criterion", "cat", choices=("gini", "entropy")))

FAMILIES: dict[str, Family] = {f.key: f for f in (
    Family("lr", "logistic regression", (Param("C", "float", 1e-3, 1e3, log=True),), _lr),
    Family("sgd", "SGD linear model", (Param("loss", "cat", choices=("hinge", "log_loss", "modified_huber")),
                                        Param("alpha", "float", 1e-6, 1e-1, log=True),
                                        Param("penalty", "cat", choices=("l2", "l1", "elasticnet"))), _sgd),
    Family("svc", "SVC (RBF kernel)", (Param("C", "float", 1e-2, 1e3, log=True),
                                        Param("gamma", "float", 1e-4, 1.0, log=True)), _svc),
    Family("knn", "k-nearest neighbours", (Param("n_neighbors", "int", 1, 50, log=True),
                                            Param("weights", "cat", choices=("uniform", "distance")),
                                            Param("p", "int", 1, 2)), _knn, balanced=False),
    Family("rf", "random forest", _FOREST, _forest("RandomForestClassifier"), scaled=False),
    Family("et", "extra trees", _FOREST, _forest("ExtraTreesClassifier"), scaled=False),
    Family("hgb", "histogram gradient boosting", (Param("learning_rate", "float", 0.01, 0.5, log=True),
                                                   Param("max_leaf_nodes", "int", 4, 64, log=True),
                                                   Param("min_samples_leaf", "int", 2, 100, log=True),
                                                   Param("l2_regularization", "float", 1e-6, 1.0, log=True),
                                                   Param("max_iter", "int", 32, 256, log=True)),
           _hgb, scaled=False),
    Family("dt", "decision tree", (Param("max_depth", "int", 1, 30), Param("min_samples_leaf", "int", 1, 50, log=True),
                                   Param("criterion", "cat", choices=("gini", "entropy"))), _dt, scaled=False),
    Family("gnb", "Gaussian naive Bayes", (Param("var_smoothing", "float", 1e-11, 1e-3, log=True),), _gnb,
           scaled=False, balanced=False),
    Family("lda", "linear discriminant analysis", (Param("shrinkage", "float", 0.0, 1.0),), _lda,
           balanced=False),
)}


@dataclass(frozen=True)
class Arm:
    """One bandit arm: a family with a (possibly restricted) space. Model selection: arm = family."""

    name: str
    family: str
    space: tuple[Param, ...]

    def suggest(self, trial: Any) -> dict[str, Any]:
        return {p.name: p.suggest(trial) for p in self.space}


def resolve_models(spec: str | None) -> list[str]:
    """`lr,rf,...` -> family keys; unknown names are a UserError listing the known ones."""
    from papersuite.errors import UserError

    if not spec:
        return list(FAMILIES)
    keys = [k.strip().lower() for k in spec.split(",") if k.strip()]
    bad = [k for k in keys if k not in FAMILIES]
    if bad or not keys:
        raise UserError(f"unknown model(s) {', '.join(bad) or repr(spec)}; choose from {', '.join(FAMILIES)}")
    return list(dict.fromkeys(keys))


def family_arms(keys: list[str]) -> list[Arm]:
    """Model-selection mode: one arm per family."""
    return [Arm(k, k, FAMILIES[k].space()) for k in keys]


def orthogonal_arms(key: str, max_arms: int = 16) -> list[Arm]:
    """HPO mode: cut each hyperparameter's range in two; every cell of the product is an arm.

    Only the first log2(max_arms) model parameters are cut (the rest keep their full range), and
    cells that come out identical (a single-choice parameter cut in two) are merged.
    """
    fam = FAMILIES[key]
    space = list(fam.space())
    n_model = len(fam.params)
    model_params = space[len(space) - n_model:]
    n_cut = min(len(model_params), max(0, int(math.log2(max_arms))))
    cut = model_params[:n_cut]
    fixed = [p for p in space if p not in cut]
    arms, seen = [], set()
    for halves in itertools.product(*(p.split() for p in cut)):
        sig = tuple(h.key() for h in halves)
        if sig in seen:
            continue
        seen.add(sig)
        arms.append(Arm(f"{key}.{len(arms)}", key, tuple(fixed) + tuple(halves)))
    return arms


def build_pipeline(family: str, params: dict[str, Any], num_cols: list[str], cat_cols: list[str],
                   random_state: int = 0):
    """A single sklearn Pipeline on raw CSV columns: impute/rescale numbers, one-hot text, classify."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import (MinMaxScaler, OneHotEncoder, QuantileTransformer, RobustScaler,
                                       StandardScaler)

    fam = FAMILIES[family]
    scaler = {"standard": StandardScaler(), "minmax": MinMaxScaler(), "robust": RobustScaler(),
              "quantile": QuantileTransformer(n_quantiles=100, random_state=random_state)}.get(
        params.get("scaler", "none"), "passthrough")
    parts = []
    if num_cols:
        parts.append(("num", Pipeline([("impute", SimpleImputer(strategy=params.get("imputer", "median"))),
                                       ("scale", scaler)]), list(num_cols)))
    if cat_cols:
        parts.append(("cat", Pipeline([("impute", SimpleImputer(strategy="most_frequent")),
                                       ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False))]),
                      list(cat_cols)))
    pre = ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)
    return Pipeline([("prep", pre), ("model", fam.make(params, random_state))])


JOINT_KEY = "family"


def suggest_joint(trial: Any, keys: list[str]) -> tuple[str, dict[str, Any]]:
    """The baselines' joint conditional space: family first, then its parameters, name-prefixed."""
    family = trial.suggest_categorical(JOINT_KEY, list(keys))
    params = {p.name: p.suggest(trial, prefix=f"{family}__") for p in FAMILIES[family].space()}
    return family, params


def preload(keys: list[str]) -> None:
    """Import the families' modules in the parent, so forked workers inherit them and a trial's
    duration measures fitting, not a first import (several seconds on a loaded machine)."""
    import sklearn.compose  # noqa: F401
    import sklearn.impute  # noqa: F401
    import sklearn.metrics  # noqa: F401
    import sklearn.pipeline  # noqa: F401
    import sklearn.preprocessing  # noqa: F401

    for k in keys:
        FAMILIES[k].make({p.name: (p.choices[0] if p.kind == "cat" else p.low if p.kind == "float" else int(p.low))
                          for p in FAMILIES[k].space()}, 0)
