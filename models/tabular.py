"""Tabular preprocessing: min-max scaled numeric columns plus one-hot categorical columns.

The preprocessor is fitted on training inlier rows only and travels with the model as JSON.
Test values outside the training range are not clipped (they are anomaly evidence), and a
categorical value never seen in the fit rows lights the column's ``=<unseen>`` indicator.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .storage import atomic_write_text
from .errors import GadflowError

UNSEEN = "<unseen>"
FORMAT = "gadflow.tabular_preprocessor/1"
CONSTANT_SPAN = 1e-12  # a numeric column whose fitted range is below this is constant: span 1.0
NUMERIC_TRANSFORMS = ("log1p", "none")


def _row(frame: pd.DataFrame, position: int) -> str:
    """The index label of the row at ``position``, for error messages."""
    return str(frame.index[position])


def _check_columns(frame: pd.DataFrame, wanted: list[str]) -> None:
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise GadflowError(f"input column '{missing[0]}' missing ({len(missing)} of {len(wanted)} expected columns absent)")


def _numeric_matrix(frame: pd.DataFrame, numeric: list[str]) -> np.ndarray:
    """The numeric columns as float64 (N, len(numeric)); every value must be a finite number."""
    values = np.empty((len(frame), len(numeric)), dtype=np.float64, order="F")  # (N, n_numeric), column-major
    for j, col in enumerate(numeric):
        series = frame[col]
        if not pd.api.types.is_numeric_dtype(series.dtype):
            coerced = pd.to_numeric(series, errors="coerce")
            bad = np.flatnonzero(coerced.isna().to_numpy() & series.notna().to_numpy())
            if bad.size:
                raise GadflowError(f"column '{col}': non-numeric value {series.iloc[bad[0]]!r} at row {_row(frame, bad[0])}")
            series = coerced
        values[:, j] = series.to_numpy(dtype=np.float64, na_value=np.nan)
    finite = np.isfinite(values)
    if not finite.all():
        rows, cols = np.nonzero(~finite)  # row-major: the first entry is the first bad row
        raise GadflowError(f"column '{numeric[cols[0]]}': NaN or infinite value at row {_row(frame, rows[0])}")
    return values


def _categorical_values(frame: pd.DataFrame, col: str) -> pd.Series:
    """A categorical column as strings; a missing value (NaN / None) is an error."""
    series = frame[col]
    missing = np.flatnonzero(series.isna().to_numpy())
    if missing.size:
        raise GadflowError(f"column '{col}': missing (NaN) categorical value at row {_row(frame, missing[0])}")
    return series.astype(str)


@dataclass
class TabularPreprocessor:
    """Numeric columns: optional log1p, then min-max from the fit rows; categorical columns: one-hot + unseen."""

    columns: list[str]  # the raw input columns, in input order (numeric and categorical)
    numeric: list[str]  # numeric columns, in output order
    categorical: dict[str, list[str]]  # categorical column -> sorted vocabulary seen in the fit rows
    log1p: list[str]  # numeric columns transformed by log1p before scaling
    minimum: list[float]  # per numeric column, after the transform, over the fit rows
    span: list[float]  # max - min per numeric column over the fit rows; 1.0 for a constant column

    @classmethod
    def fit(cls, frame: pd.DataFrame, categorical: list[str], numeric_transform: str = "log1p") -> "TabularPreprocessor":
        """Fit on ``frame`` (training inliers only); numeric = every column not in ``categorical``."""
        if numeric_transform not in NUMERIC_TRANSFORMS:
            raise GadflowError(f"numeric_transform: '{numeric_transform}' is not one of {', '.join(NUMERIC_TRANSFORMS)}")
        _check_columns(frame, list(categorical))
        if len(frame) == 0:
            raise GadflowError("cannot fit the tabular preprocessor on 0 rows")
        columns = [str(c) for c in frame.columns]
        numeric = [c for c in columns if c not in categorical]
        values = _numeric_matrix(frame, numeric)  # (N, n_numeric)
        log1p = [c for c, low in zip(numeric, values.min(axis=0)) if numeric_transform == "log1p" and low >= 0]
        idx = [numeric.index(c) for c in log1p]
        values[:, idx] = np.log1p(values[:, idx])
        low, high = values.min(axis=0), values.max(axis=0)
        span = np.where(high - low < CONSTANT_SPAN, 1.0, high - low)
        vocab = {col: sorted(_categorical_values(frame, col).unique().tolist()) for col in categorical}
        return cls(columns=columns, numeric=numeric, categorical=vocab, log1p=log1p,
                   minimum=[float(v) for v in low], span=[float(v) for v in span])

    @property
    def feature_names(self) -> list[str]:
        """Numeric names, then ``col=value`` per vocabulary value and ``col=<unseen>`` per categorical column."""
        names = list(self.numeric)
        for col, vocab in self.categorical.items():
            names += [f"{col}={value}" for value in vocab] + [f"{col}={UNSEEN}"]
        return names

    @property
    def n_features(self) -> int:
        return len(self.numeric) + sum(len(vocab) + 1 for vocab in self.categorical.values())

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw rows -> float32 (N, n_features); unseen categorical values go to the ``<unseen>`` column."""
        _check_columns(frame, self.columns)
        n = len(frame)
        out = np.zeros((n, self.n_features), dtype=np.float32)
        values = _numeric_matrix(frame, self.numeric)  # (N, n_numeric) float64, column-major
        log1p = set(self.log1p)
        for j, col in enumerate(self.numeric):
            column = values[:, j]  # a contiguous view, updated in place
            if col in log1p:
                negative = np.flatnonzero(column < 0)
                if negative.size:
                    raise GadflowError(f"column '{col}': negative value {column[negative[0]]:g} at row {_row(frame, negative[0])} "
                                       "(the preprocessor applies log1p to this column)")
                np.log1p(column, out=column)
            column -= self.minimum[j]
            column /= self.span[j]  # min-max from the fit rows, no clipping
        out[:, : len(self.numeric)] = values
        offset = len(self.numeric)
        rows = np.arange(n)
        for col, vocab in self.categorical.items():
            strings = _categorical_values(frame, col)
            codes = pd.Index(vocab, dtype=strings.dtype).get_indexer(strings)  # (N,), -1 = unseen
            out[rows, offset + np.where(codes < 0, len(vocab), codes)] = 1.0
            offset += len(vocab) + 1
        return out

    def unseen_counts(self, frame: pd.DataFrame) -> dict[str, dict[str, int]]:
        """Per categorical column: value -> number of rows whose value is not in the vocabulary."""
        _check_columns(frame, list(self.categorical))
        counts: dict[str, dict[str, int]] = {}
        for col, vocab in self.categorical.items():
            values = _categorical_values(frame, col)
            unseen = values[~values.isin(vocab)].value_counts()
            counts[col] = {str(value): int(count) for value, count in sorted(unseen.items(), key=lambda kv: (-kv[1], kv[0]))}
        return counts

    def to_dict(self) -> dict:
        return {"format": FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "TabularPreprocessor":
        """Rebuild from ``to_dict`` output; ValueError when the fields are inconsistent."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"format is not {FORMAT}")
        fields = {k: data[k] for k in ("columns", "numeric", "categorical", "log1p", "minimum", "span")}
        pre = cls(
            columns=[str(c) for c in fields["columns"]],
            numeric=[str(c) for c in fields["numeric"]],
            categorical={str(k): [str(v) for v in vocab] for k, vocab in fields["categorical"].items()},
            log1p=[str(c) for c in fields["log1p"]],
            minimum=[float(v) for v in fields["minimum"]],
            span=[float(v) for v in fields["span"]],
        )
        if sorted(pre.columns) != sorted([*pre.numeric, *pre.categorical]):
            raise ValueError("columns are not the numeric plus the categorical columns")
        if not (len(pre.minimum) == len(pre.span) == len(pre.numeric)):
            raise ValueError("minimum / span do not have one value per numeric column")
        if not set(pre.log1p) <= set(pre.numeric):
            raise ValueError("log1p names a column that is not numeric")
        if not (np.isfinite(pre.minimum).all() and np.isfinite(pre.span).all() and all(s > 0 for s in pre.span)):
            raise ValueError("minimum / span must be finite and span positive")
        return pre

    def save(self, path: Path) -> Path:
        """Write the preprocessor as JSON, atomically."""
        return atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: Path) -> "TabularPreprocessor":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise GadflowError(f"{path}: tabular preprocessor not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise GadflowError(f"{path}: not a readable tabular preprocessor ({type(exc).__name__})") from None
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise GadflowError(f"{path}: not a valid tabular preprocessor ({type(exc).__name__}: {exc})") from None
