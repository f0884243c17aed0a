"""Reading a classification table from CSV and refusing what cannot be tuned, with file:line.

Everything is checked here, before any output exists, so a bad input never leaves a half-made
out-dir behind.
"""
from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field
from typing import Any

from papersuite.errors import UserError
from papersuite.io import open_text

MAX_FLOAT_CLASSES = 20  # a float target with more distinct values looks like regression


@dataclass
class Table:
    """A validated table: features, target, column roles and a fingerprint for resumable studies."""

    X: Any  # pandas.DataFrame of raw feature columns
    y: Any  # numpy array of class labels
    target: str
    num_cols: list[str]
    cat_cols: list[str]
    name: str
    sha256: str
    classes: list[Any] = field(default_factory=list)


def _read_text(path: str) -> str:
    with open_text(path) as fh:
        return fh.read()


def _check_ragged(text: str, name: str) -> list[str]:
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise UserError(f"{name}: empty CSV file") from None
    for row in reader:
        if row and len(row) != len(header):
            raise UserError(f"expected {len(header)} fields, got {len(row)}", where=f"{name}:{reader.line_num}")
    return header


def read_frame(path: str, na_values: list[str] | None = None):
    """Read a CSV (or `-`) into a DataFrame after checking every row has the header's width."""
    import pandas as pd

    name = "<stdin>" if path == "-" else str(path)
    text = _read_text(path)
    _check_ragged(text, name)
    try:
        df = pd.read_csv(io.StringIO(text), na_values=na_values or None, skipinitialspace=True)
    except (pd.errors.ParserError, ValueError) as e:
        raise UserError(f"malformed CSV ({str(e).strip().splitlines()[-1]})", where=name) from None
    if df.shape[0] == 0:
        raise UserError(f"{name}: no data rows")
    return df, text, name


def _junk_in_numeric(series, col: str, name: str) -> None:
    """A text column whose non-empty cells are mostly numbers holds junk: name the first bad cell."""
    import pandas as pd

    values = series.dropna()
    if values.empty:
        return
    parsed = pd.to_numeric(values, errors="coerce")
    bad = parsed.isna()
    if bad.any() and bad.mean() < 0.5:
        idx = bad[bad].index[0]
        token = values[idx]
        raise UserError(f"column {col!r} is numeric except {token!r} at {name}:{idx + 2}; "
                        f"pass --na-values {token}")


def load_table(path: str, target: str | None = None, *, na_values: list[str] | None = None,
               categorical: list[str] | None = None, cv: int = 3, check_classes: bool = True) -> Table:
    """Validate and split a CSV into features and target (default target: the last column)."""
    import numpy as np
    import pandas as pd
    from pandas.api import types as pdt

    df, text, name = read_frame(path, na_values)
    cols = [str(c) for c in df.columns]
    df.columns = cols
    target = target or cols[-1]
    if target not in cols:
        raise UserError(f"--target {target!r} is not a column; columns: {', '.join(cols)}", where=f"{name}:1")
    for c in categorical or []:
        if c not in cols or c == target:
            raise UserError(f"--categorical {c!r} is not a feature column; columns: {', '.join(cols)}",
                            where=f"{name}:1")
    yser = df[target]
    empty = yser.isna() | (yser.astype(str).str.strip() == "")
    if empty.any():
        raise UserError(f"target {target!r} is empty", where=f"{name}:{int(empty[empty].index[0]) + 2}")
    if pdt.is_float_dtype(yser) and yser.nunique() > MAX_FLOAT_CLASSES:
        raise UserError(f"target {target!r} holds {yser.nunique()} distinct float values: this tool does "
                        f"classification only", where=name)
    counts = yser.value_counts()
    if check_classes and len(counts) < 2:
        raise UserError(f"target {target!r} has a single class ({counts.index[0]!r}); need two or more",
                        where=name)
    small = counts[counts < cv]
    if check_classes and len(small):
        raise UserError(f"class {small.index[0]!r} of {target!r} has {int(small.iloc[0])} row(s), fewer than "
                        f"--cv {cv} folds", where=name)
    X = df.drop(columns=[target])
    if X.shape[1] == 0:
        raise UserError(f"{name}: no feature columns besides the target {target!r}")
    cat_set = set(categorical or [])
    num_cols, cat_cols = [], []
    for c in X.columns:
        s = X[c]
        if c in cat_set:
            X[c] = s.astype("string").astype(object).where(s.notna(), np.nan)
            cat_cols.append(c)
        elif pdt.is_numeric_dtype(s) or pdt.is_bool_dtype(s):
            X[c] = s.astype(float)
            num_cols.append(c)
        else:
            _junk_in_numeric(s, c, name)
            X[c] = s.astype(object).where(s.notna(), np.nan)
            cat_cols.append(c)
    digest = hashlib.sha256(text.encode()).hexdigest()
    y = yser.to_numpy()
    if y.dtype.kind in "OUT":
        y = yser.astype(str).to_numpy(dtype=object)
    return Table(X=X, y=y, target=target, num_cols=num_cols, cat_cols=cat_cols, name=name, sha256=digest,
                 classes=sorted(counts.index.tolist(), key=str))


def demo_table() -> Table:
    """The embedded offline default: scikit-learn's bundled breast-cancer table (569 x 30)."""
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer(as_frame=True)
    X = d.data.copy()
    X.columns = [str(c) for c in X.columns]
    digest = hashlib.sha256(X.to_csv().encode()).hexdigest()
    return Table(X=X, y=d.target.to_numpy(), target="target", num_cols=list(X.columns), cat_cols=[],
                 name="sklearn:breast_cancer", sha256=digest, classes=[0, 1])
