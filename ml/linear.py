"""A logistic-regression scorer with exact per-feature contributions, saved as plain JSON.

It reads the same float32 input matrix as the booster (`LeadScorer.matrix`: categoricals as the
training level codes, NaN for missing or unseen values), so every family shares one input path.
The design matrix is built from it: one-hot columns per categorical level (missing → all zeros),
numerics log1p-transformed when they are counts (non-negative in training), imputed with the
training median plus a missing flag, and standardised.

Contributions are exact: with design columns z and training means z̄, the margin is
`b + Σ w·z = (b + Σ w·z̄) + Σ_j Σ_{c∈j} w_c (z_c − z̄_c)`, so the per-feature terms plus the
bias equal the margin. Monotone features get coefficients bounded at ≥ 0 (L-BFGS-B), so more
of them never lowers the score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_expit

# Up to this many rows (the service's requests) `design` builds every column at once.
_FEW_ROWS = 64
_CHUNK_ROWS = 65_536  # rows per step of the margin's row sums (bounds the temporary)
_KINDS = {"level": 0, "value": 1, "missing": 2}


@dataclass
class _Column:
    feature: int  # index into the input matrix
    kind: str  # "level" (one-hot of a code), "value" (numeric), "missing" (numeric's flag)
    level: int = -1
    log: bool = False
    fill: float = 0.0  # imputation for a missing numeric (in the transformed scale)
    mean: float = 0.0
    scale: float = 1.0


@dataclass
class LinearModel:
    """Logistic regression over the model's input matrix; `columns` describe the design."""

    n_features: int
    columns: list[_Column]
    weights: np.ndarray
    intercept: float
    design_mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    _columns_arrays: tuple[np.ndarray, ...] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _feature_groups: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    # ------------------------------------------------------------------ design

    def design(self, x: np.ndarray) -> np.ndarray:
        """The standardised design matrix (rows, columns) of an input matrix."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape[0] <= _FEW_ROWS:
            return self._design_few(x)
        out = np.empty((x.shape[0], len(self.columns)), dtype=np.float64)
        for i, col in enumerate(self.columns):
            v = x[:, col.feature]
            if col.kind == "level":
                out[:, i] = (v == col.level).astype(np.float64)
                continue
            missing = np.isnan(v)
            if col.kind == "missing":
                out[:, i] = missing
                continue
            if col.log:
                v = np.log1p(np.maximum(v, 0.0))
            v = np.where(missing, col.fill, v)
            out[:, i] = (v - col.mean) / col.scale
        return out

    def _design_few(self, x: np.ndarray) -> np.ndarray:
        """`design` of a few rows, every column at once: the same float64 operations per value
        (so the same values), without a Python step per design column."""
        kind, feature, level, log, fill, mean, scale = self._arrays()
        v = x[:, feature]
        missing = np.isnan(v)
        with np.errstate(invalid="ignore"):
            logged = np.where(log, np.log1p(np.maximum(v, 0.0)), v)
        value = (np.where(missing, fill, logged) - mean) / scale
        return np.where(
            kind == 0, (v == level).astype(np.float64), np.where(kind == 1, value, missing)
        )

    def _arrays(self) -> tuple[np.ndarray, ...]:
        if self._columns_arrays is None:
            c = self.columns
            self._columns_arrays = (
                np.array([_KINDS[col.kind] for col in c]),
                np.array([col.feature for col in c], dtype=np.int64),
                np.array([col.level for col in c], dtype=np.float64),
                np.array([col.log for col in c], dtype=bool),
                np.array([col.fill for col in c], dtype=np.float64),
                np.array([col.mean if col.kind == "value" else 0.0 for col in c]),
                np.array([col.scale if col.kind == "value" else 1.0 for col in c]),
            )
        return self._columns_arrays

    def _by_feature(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The design columns grouped by input feature (stable order), where each feature's
        group starts, and which feature each group is (for `np.add.reduceat`)."""
        if self._feature_groups is None:
            feature = np.array([col.feature for col in self.columns], dtype=np.int64)
            order = np.argsort(feature, kind="stable")
            sorted_features = feature[order]
            starts = np.flatnonzero(np.diff(sorted_features, prepend=-1))
            self._feature_groups = (order, starts, sorted_features[starts])
        return self._feature_groups

    def margin(self, x: np.ndarray) -> np.ndarray:
        return self._margin(self.design(x))

    def _margin(self, z: np.ndarray) -> np.ndarray:
        # Row by row, never a matrix product: BLAS sums a row's terms in an order that depends
        # on how many rows are multiplied, so one lead scored alone and the same lead in a
        # nightly batch would differ in the last bits (and could round to another score).
        out = np.empty(z.shape[0], dtype=np.float64)
        for start in range(0, z.shape[0], _CHUNK_ROWS):
            # C order: each row's terms contiguous, so each row is summed the same way.
            part = np.ascontiguousarray(z[start : start + _CHUNK_ROWS])
            out[start : start + len(part)] = (part * self.weights).sum(axis=1)
        return out + self.intercept

    def contributions(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(margin, contributions (rows, n_features), bias (rows,)): exact, summing to margin."""
        z = self.design(x)
        terms = (z - self.design_mean) * self.weights
        contribs = np.zeros((z.shape[0], self.n_features), dtype=np.float64)
        order, starts, features = self._by_feature()
        if len(order):
            # each feature's design columns summed left to right, one call for all features
            contribs[:, features] = np.add.reduceat(terms[:, order], starts, axis=1)
        bias = self.intercept + float(self.design_mean @ self.weights)
        return self._margin(z), contribs, np.full(z.shape[0], bias)

    def importance(self, feature_names: list[str]) -> dict[str, float]:
        """Mean |contribution| per feature on the training design (standardised weights)."""
        out = dict.fromkeys(feature_names, 0.0)
        for w, col in zip(self.weights, self.columns, strict=True):
            out[feature_names[col.feature]] += abs(float(w))
        return out

    # ------------------------------------------------------------------ fit

    @classmethod
    def fit(
        cls,
        x: np.ndarray,
        y: np.ndarray,
        *,
        categorical: list[bool],
        n_levels: list[int],
        monotone: list[int],
        l2: float = 1.0,
        sample_weight: np.ndarray | None = None,
    ) -> LinearModel:
        """Fit on an input matrix.

        Args:
            categorical: per input column, whether it holds category codes.
            n_levels: per input column, the number of training levels (categoricals only).
            monotone: per input column, +1 if the score may only rise with it, -1 if it may
                only fall, else 0.
            l2: ridge penalty on the standardised weights (the intercept is not penalised),
                scaled by the number of rows so it means the same at any size.
        """
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        columns: list[_Column] = []
        for j in range(x.shape[1]):
            v = x[:, j]
            if categorical[j]:
                columns += [_Column(j, "level", level=k) for k in range(n_levels[j])]
                continue
            present = v[~np.isnan(v)]
            log = bool(present.size and present.min() >= 0 and present.max() > 1)
            t = np.log1p(present) if log else present
            fill = float(np.median(t)) if t.size else 0.0
            filled = np.where(np.isnan(v), fill, np.log1p(np.maximum(v, 0)) if log else v)
            mean, scale = float(filled.mean()), float(filled.std()) or 1.0
            columns.append(_Column(j, "value", log=log, fill=fill, mean=mean, scale=scale))
            if present.size < v.size:
                columns.append(_Column(j, "missing"))
        model = cls(x.shape[1], columns, np.zeros(len(columns)), 0.0)
        z = model.design(x)
        w_rows = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, float)
        total = w_rows.sum()
        penalty = l2 / total
        sign = np.where(2 * y - 1 > 0, 1.0, -1.0)

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            w, b = theta[:-1], theta[-1]
            m = z @ w + b
            nll = -(w_rows * log_expit(sign * m)).sum() / total
            r = (expit(m) - y) * w_rows / total
            grad = np.append(z.T @ r + penalty * w, r.sum())
            return nll + 0.5 * penalty * float(w @ w), grad

        bounds = [
            (0.0, None) if c.kind == "value" and monotone[c.feature] > 0
            else (None, 0.0) if c.kind == "value" and monotone[c.feature] < 0
            else (None, None)
            for c in columns
        ] + [(None, None)]
        prior = float(np.clip(np.average(y, weights=w_rows), 1e-6, 1 - 1e-6))
        start = np.append(np.zeros(len(columns)), np.log(prior / (1 - prior)))
        result = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds,
                          options={"maxiter": 500})
        model.weights, model.intercept = result.x[:-1], float(result.x[-1])
        model.design_mean = z.mean(axis=0)
        return model

    # ------------------------------------------------------------------ save / load

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_features": self.n_features,
            "columns": [c.__dict__ for c in self.columns],
            "weights": self.weights.tolist(),
            "intercept": self.intercept,
            "design_mean": self.design_mean.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LinearModel:
        return cls(
            n_features=int(data["n_features"]),
            columns=[_Column(**c) for c in data["columns"]],
            weights=np.asarray(data["weights"], dtype=np.float64),
            intercept=float(data["intercept"]),
            design_mean=np.asarray(data["design_mean"], dtype=np.float64),
        )
