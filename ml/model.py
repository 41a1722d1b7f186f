"""The model as one object: feature order, categorical levels, XGBoost booster and calibrator.

`LeadScorer` is what training produces, what the registry stores and what batch scoring and the
service load. It is saved without pickle: the booster as UBJSON, everything else as JSON, so a
saved model can be read by any later version of this code (and by hand). `LeadScoringPyfunc`
wraps it for MLflow so the registered model loads with `mlflow.pyfunc.load_model`.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import mlflow
import numpy as np
import pandas as pd
import xgboost as xgb
from scipy.special import expit

from ml import fast_trees
from ml.contract import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from ml.errors import DataError
from ml.linear import LinearModel

log = logging.getLogger(__name__)

# The feature columns themselves are listed in ml.contract; callers may import them from here.
LABEL = "converted_within_window"
# The generator's true conversion probability, in training sets made from generated data.
ORACLE = "oracle_probability"
ID_COLUMNS = ("lead_id",)
SNAPSHOT_COLUMNS = ("snapshot_ts", "event_timestamp")  # mart name, Feast's name

BOOSTER_FILE = "booster.ubj"
LINEAR_FILE = "linear.json"
REQUEST_SUBDIR = "request"
METADATA_FILE = "scorer.json"
FORMAT_VERSION = 2  # 2: `family` (xgboost | logistic | rules); 1 was XGBoost only
FAMILIES = ("xgboost", "logistic", "rules")


def feature_columns(
    categorical: list[str] | tuple[str, ...] = CATEGORICAL_FEATURES,
    numeric: list[str] | tuple[str, ...] = NUMERIC_FEATURES,
) -> list[str]:
    """The model's input columns: the given categoricals, then the numeric columns (default:
    the default vocabulary's; training passes `settings.vocabulary.numeric_features`)."""
    return [*categorical, *(c for c in numeric if c not in categorical)]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return expit(x)  # no overflow warning for large |x|


@dataclass
class Calibrator:
    """Maps the booster's margin (log-odds) to a calibrated probability.

    `isotonic`: piecewise-linear interpolation through the fitted isotonic steps (clipped at the
    ends, as sklearn's IsotonicRegression with out_of_bounds="clip"). `sigmoid`: Platt scaling,
    p = sigmoid(a * margin + b). Both are monotone in the margin, so the ranking (AUC) is kept up
    to ties that isotonic steps introduce.
    """

    method: Literal["isotonic", "sigmoid"]
    x: list[float] = field(default_factory=list)  # isotonic: margin knots (increasing)
    y: list[float] = field(default_factory=list)  # isotonic: probability at each knot
    a: float = 1.0  # sigmoid slope
    b: float = 0.0  # sigmoid intercept

    def transform(self, margin: np.ndarray) -> np.ndarray:
        """Calibrated probability for each margin."""
        margin = np.asarray(margin, dtype=np.float64)
        if self.method == "isotonic":
            return np.interp(margin, self.x, self.y)
        return _sigmoid(self.a * margin + self.b)

    def to_dict(self) -> dict[str, Any]:
        if self.method == "isotonic":
            return {"method": "isotonic", "x": list(self.x), "y": list(self.y)}
        return {"method": "sigmoid", "a": self.a, "b": self.b}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibrator:
        return cls(**data)

    @classmethod
    def fit(cls, method: Literal["isotonic", "sigmoid"], margin: np.ndarray,
            y: np.ndarray) -> Calibrator:
        """Fit on (margin, 0/1 label) pairs, normally the validation split."""
        margin = np.asarray(margin, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(margin, y)
            return cls("isotonic", x=iso.X_thresholds_.tolist(), y=iso.y_thresholds_.tolist())
        a, b = _fit_platt(margin, y)
        return cls("sigmoid", a=a, b=b)


def _fit_platt(margin: np.ndarray, y: np.ndarray, iterations: int = 50) -> tuple[float, float]:
    """Platt scaling by Newton's method: a 2-parameter logistic regression on the margin.

    Written out (rather than sklearn's LogisticRegression) so it is unregularised, exact and has
    no solver-version dependence; Platt's smoothed targets avoid infinite weights on separable data.
    """
    n_pos, n_neg = y.sum(), len(y) - y.sum()
    target = np.where(y > 0.5, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    X = np.column_stack([margin, np.ones_like(margin)])

    def loss(w: np.ndarray) -> float:  # negative log-likelihood of the smoothed targets
        z = X @ w
        return float(np.sum(np.logaddexp(0.0, z) - target * z))

    w = np.array([1.0, 0.0])
    current = loss(w)
    for _ in range(iterations):
        p = _sigmoid(X @ w)
        grad = X.T @ (p - target)
        hess = X.T @ (X * (p * (1 - p))[:, None]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        # Backtracking: a full Newton step from a far start (an over-confident margin, where
        # p(1-p) is tiny) overshoots and diverged to slopes of ~1e12, a step function.
        size = 1.0
        while size > 1e-10:
            trial = w - size * step
            trial_loss = loss(trial)
            if trial_loss <= current - 1e-4 * size * float(grad @ step):
                break
            size /= 2
        else:
            break  # no decrease along the Newton direction: at the optimum up to rounding
        w, current = trial, trial_loss
        if np.abs(size * step).max() < 1e-10:
            break
    return float(w[0]), float(w[1])


@dataclass
class LeadScorer:
    """The whole model as one object: feature order, categorical levels, booster, calibrator.

    `decision_threshold` is the probability cut chosen on validation (max F1) at training time;
    `metadata` holds provenance (training window, row counts, versions) and is saved alongside.
    """

    feature_names: list[str]
    categorical_features: list[str]
    categories: dict[str, list[str]]
    booster: xgb.Booster | None = None
    calibrator: Calibrator | None = None
    decision_threshold: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # The linear families (logistic, rules) keep their coefficients here instead of a booster.
    linear: LinearModel | None = None
    family: str = "xgboost"
    # The request model (cold start): scores a lead from what a form or an agent gives, when
    # the online store does not know it. Saved in the `request/` subfolder, so it is registered
    # and promoted with the full model as one version.
    request_scorer: LeadScorer | None = field(default=None, compare=False)
    # Caches of the fast input path (derived from the fields above; never saved).
    _level_lookups: dict[str, tuple[dict[Any, int], pd.Index]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _feature_types: list[str] | None = field(default=None, init=False, repr=False, compare=False)

    def prepare(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The model's input: columns in training order, categoricals with the training levels
        (an unseen level becomes missing), numerics as float.

        Raises:
            DataError: the frame lacks feature columns (named in the message).
        """
        missing = [c for c in self.feature_names if c not in frame.columns]
        if missing:
            raise DataError(
                f"the frame lacks {len(missing)} feature column(s) the model needs: "
                f"{', '.join(missing)}; retrieve features through the `lead_scoring` "
                "feature service"
            )
        columns: dict[str, Any] = {}
        for name in self.feature_names:
            values = frame[name]
            if name in self.categories:
                # XGBoost reads category *codes*, so the levels must be the training levels in
                # the training order; anything else (new level, None) becomes a missing value.
                if isinstance(values.dtype, pd.CategoricalDtype):
                    # Re-map by value (fast, no string re-parsing): levels outside the training
                    # ones become NaN, the rest get the training codes.
                    columns[name] = values.cat.set_categories(self.categories[name]).array
                else:
                    columns[name] = pd.Categorical(values, categories=self.categories[name])
            else:
                columns[name] = pd.to_numeric(values, errors="coerce").astype(np.float64)
        return pd.DataFrame(columns, index=frame.index)

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """The model's input as one float32 matrix (rows, features), values as `prepare` gives
        them: categoricals as the training level codes (unseen level or null → NaN).

        The fast path of scoring: no intermediate DataFrame, one column at a time straight into
        the matrix XGBoost reads, so one lead costs microseconds rather than milliseconds.

        Raises:
            DataError: the frame lacks feature columns (named in the message).
        """
        missing = [c for c in self.feature_names if c not in frame.columns]
        if missing:
            self.prepare(frame)  # raises the DataError that names them
        out = np.empty((len(frame), len(self.feature_names)), dtype=np.float32)
        lookups = self._lookups()
        for j, name in enumerate(self.feature_names):
            values = frame[name]
            if name in lookups:
                out[:, j] = _category_codes(values, *lookups[name])
            else:
                out[:, j] = _numeric(values)
        return out

    def matrix_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """`matrix` of leads given as mappings of feature values (a missing key is null):
        the same float32 values as `matrix` of a frame of them, without building the frame.

        The real-time path: a DataFrame of one lead and its per-column Series cost far more
        than the prediction itself.
        """
        lookups = self._lookups()
        plan = [(name, lookups[name][0] if name in lookups else None)
                for name in self.feature_names]
        rows = []
        for record in records:  # a lead's row as Python floats, one numpy conversion at the end
            row = []
            for name, lookup in plan:
                v = record.get(name)
                if lookup is not None:  # as _codes_of: unseen levels and nulls are NaN
                    code = lookup.get(v, -1) if isinstance(v, str) else _lookup(lookup, v)
                    row.append(float(code) if code >= 0 else math.nan)
                elif v is None:
                    row.append(math.nan)
                elif type(v) is float or type(v) is int:  # as numbers_of: to float64 first
                    row.append(float(v))
                else:  # anything else as pd.to_numeric(errors="coerce") reads it
                    row.append(float(numbers_of([v])[0]))
            rows.append(row)
        return np.array(rows, dtype=np.float64).astype(np.float32).reshape(
            len(records), len(self.feature_names))

    def _lookups(self) -> dict[str, tuple[dict[Any, int], pd.Index]]:
        # Built once per scorer (levels never change after training): level → training code.
        if self._level_lookups is None:
            self._level_lookups = {
                name: ({v: i for i, v in enumerate(levels)}, pd.Index(levels))
                for name, levels in self.categories.items()
                if name in self.feature_names
            }
        return self._level_lookups

    def dmatrix(self, frame: pd.DataFrame) -> xgb.DMatrix:
        """A DMatrix of `matrix(frame)` with the feature names and types the booster expects."""
        return self._dmatrix(self.matrix(frame))

    def _dmatrix(self, x: np.ndarray) -> xgb.DMatrix:
        if self._feature_types is None:
            self._feature_types = ["c" if n in self.categories else "q" for n in self.feature_names]
        return xgb.DMatrix(x, feature_names=self.feature_names,
                           feature_types=self._feature_types, enable_categorical=True)

    def margin(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw log-odds of the booster (before calibration)."""
        if len(frame) == 0:
            return np.zeros(0, dtype=np.float64)
        if self.linear is not None:
            return self.linear.margin(self.matrix(frame))
        out = self.booster.inplace_predict(self.matrix(frame), predict_type="margin")
        return np.asarray(out, dtype=np.float64)

    def probability(self, margin: np.ndarray) -> np.ndarray:
        """Calibrated probability for margins from `margin` (or `margin_and_contributions`)."""
        if self.calibrator is None:
            return _sigmoid(np.asarray(margin, dtype=np.float64))
        return np.clip(self.calibrator.transform(margin), 0.0, 1.0)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of conversion within the label window, in [0, 1]."""
        return self.probability(self.margin(frame))

    def contributions(self, frame: pd.DataFrame, approximate: bool = True,
                      ) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature contributions to the margin, shape (n, n_features), and the bias, (n,).

        `contributions.sum(1) + bias == margin` (up to float32 rounding). `approximate=True` uses
        XGBoost's Saabas-style path attribution, which is fast; exact TreeSHAP costs about
        95 s per 100k rows on 2 cores, so keep it for small frames (explanations on request).
        """
        _, contribs, bias = self.margin_and_contributions(frame, approximate)
        return contribs.astype(np.float64), bias

    def margin_and_contributions(
        self, frame: pd.DataFrame, approximate: bool = True, *, mask_missing: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(margin, contributions, bias) from one input matrix: what scoring with reasons needs.

        Contributions and bias stay float32 as XGBoost computes them (half the memory of a
        float64 copy; converting would not change any value or ordering).

        The margin is the booster's own prediction (bit-identical to `margin`), not the sum of
        the contributions, which differs in the last float32 bits and would move a few scores
        across a rounding boundary.

        `mask_missing` zeroes the contribution of every input that is missing (null, or a
        category the model never saw): what a lead did not tell us is never a reason for or
        against it, whatever branch the model took for it.
        """
        return self.margin_and_contributions_of(
            self.matrix(frame), approximate, mask_missing=mask_missing
        )

    def margin_and_contributions_of(
        self, x: np.ndarray, approximate: bool = True, *, mask_missing: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`margin_and_contributions` of an input matrix (`matrix` or `matrix_records`)."""
        if len(x) == 0:
            f = len(self.feature_names)
            return np.zeros(0), np.zeros((0, f), dtype=np.float32), np.zeros(0, dtype=np.float32)
        if self.linear is not None:  # exact: a linear model's terms are its contributions
            margin, contribs, bias = self.linear.contributions(x)
        else:
            matrix = self._dmatrix(x)
            # The matrix carries the booster's own feature names: re-checking them per call
            # (which reads every name back from the C library) costs more than one prediction.
            raw = self.booster.predict(matrix, output_margin=True, validate_features=False)
            out = self.booster.predict(
                matrix, pred_contribs=True, approx_contribs=approximate, validate_features=False
            )
            margin, contribs, bias = np.asarray(raw, dtype=np.float64), out[:, :-1], out[:, -1]
        if mask_missing:
            contribs[np.isnan(x)] = 0
        return margin, contribs, bias

    def margin_and_masked_contributions(
        self, x: np.ndarray, *, compiled: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Margin and contributions of input matrix `x`, a missing input's contribution 0 (what
        the reasons read): every scoring path ends here.

        `compiled`: from the compiled tree walker (ml/fast_trees.py, the same numbers as
        XGBoost's bit for bit) where it covers the model and numba is installed.
        """
        if compiled and self.linear is None and self.booster is not None \
                and fast_trees.available():
            try:
                return fast_trees.margin_and_contributions(self.booster, x, mask_missing=True)
            except fast_trees.Unsupported as exc:
                log.info("compiled tree walker not used (%s): XGBoost computes the "
                         "contributions", exc)
        margin, contribs, _bias = self.margin_and_contributions_of(x, mask_missing=True)
        return margin, contribs

    def feature_importance(self, kind: str = "total_gain") -> dict[str, float]:
        """Importance per feature (0 for features never split on), largest first. Linear
        families: the absolute standardised coefficients summed per feature."""
        if self.linear is not None:
            full = self.linear.importance(self.feature_names)
            return dict(sorted(full.items(), key=lambda kv: -kv[1]))
        scores = self.booster.get_score(importance_type=kind)
        full = {name: float(scores.get(name, 0.0)) for name in self.feature_names}
        return dict(sorted(full.items(), key=lambda kv: -kv[1]))

    def save(self, directory: Path) -> None:
        """Write booster.ubj and scorer.json into `directory` (created if needed)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.linear is not None:
            (directory / LINEAR_FILE).write_text(json.dumps(self.linear.to_dict()))
        else:
            self.booster.save_model(directory / BOOSTER_FILE)
        meta = {
            "format_version": FORMAT_VERSION,
            "family": self.family,
            "feature_names": self.feature_names,
            "categorical_features": self.categorical_features,
            "categories": self.categories,
            "calibrator": self.calibrator.to_dict() if self.calibrator else None,
            "decision_threshold": self.decision_threshold,
            "metadata": self.metadata,
            "xgboost_version": xgb.__version__,
        }
        (directory / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        if self.request_scorer is not None:
            self.request_scorer.save(directory / REQUEST_SUBDIR)

    @classmethod
    def load(cls, directory: Path) -> LeadScorer:
        """Read a scorer written by `save`.

        Raises:
            DataError: the folder does not hold a saved scorer.
        """
        directory = Path(directory)
        meta_path = directory / METADATA_FILE
        booster_path, linear_path = directory / BOOSTER_FILE, directory / LINEAR_FILE
        if not meta_path.is_file() or not (booster_path.is_file() or linear_path.is_file()):
            raise DataError(f"no saved model in {directory}: expected {METADATA_FILE} and "
                            f"{BOOSTER_FILE} or {LINEAR_FILE}")
        meta = json.loads(meta_path.read_text())
        if meta.get("format_version") not in (1, FORMAT_VERSION):
            raise DataError(f"{meta_path} has format version {meta.get('format_version')}, "
                            f"this code reads 1–{FORMAT_VERSION}; retrain or upgrade the code")
        booster = linear = None
        if linear_path.is_file():
            linear = LinearModel.from_dict(json.loads(linear_path.read_text()))
        else:
            booster = xgb.Booster()
            booster.load_model(booster_path)
        calibrator = meta.get("calibrator")
        request = directory / REQUEST_SUBDIR
        return cls(
            feature_names=meta["feature_names"],
            categorical_features=meta["categorical_features"],
            categories=meta["categories"],
            booster=booster,
            linear=linear,
            family=meta.get("family", "xgboost"),
            request_scorer=cls.load(request) if request.is_dir() else None,
            calibrator=Calibrator.from_dict(calibrator) if calibrator else None,
            decision_threshold=meta.get("decision_threshold"),
            metadata=meta.get("metadata", {}),
        )

    def model_bytes(self) -> bytes:
        """The model's parameters as bytes (booster UBJSON or linear JSON): equal bytes ⇔ equal
        model."""
        if self.linear is not None:
            return json.dumps(self.linear.to_dict(), sort_keys=True).encode()
        return bytes(self.booster.save_raw("ubj"))

    def example_input(self, n: int = 5) -> pd.DataFrame:
        """A small frame of valid inputs (for MLflow's input example and smoke tests)."""
        data: dict[str, Any] = {}
        for name in self.feature_names:
            if name in self.categories:
                levels = self.categories[name] or ["unknown"]
                data[name] = [levels[i % len(levels)] for i in range(n)]
            else:
                data[name] = np.zeros(n, dtype=np.float64)
        return pd.DataFrame(data)


# "A few leads" (the service's calls): below this many rows plain Python per value beats numpy's
# and pandas' per-call set-up (a hash table per column, np.select, ...). One threshold for all.
FEW_ROWS = 64
_NUMERIC_TYPES = (int, float, np.integer, np.floating, type(None))


def _codes_of(items: list[Any], lookup: dict[Any, int]) -> np.ndarray:
    """Training codes of a few categorical values as float (NaN for unseen levels and nulls)."""
    out = np.array([lookup.get(v, -1) if isinstance(v, str) else _lookup(lookup, v)
                    for v in items], dtype=np.int64)
    return np.where(out >= 0, out, np.nan)


def numbers_of(items: list[Any]) -> np.ndarray:
    """A few values as float64, as pd.to_numeric(errors="coerce") gives them."""
    # Plain numbers and None: numpy's conversion equals to_numeric's (None → NaN).
    if all(isinstance(v, _NUMERIC_TYPES) and not isinstance(v, bool) for v in items):
        return np.array(items, dtype=np.float64)
    return pd.to_numeric(pd.Series(items, dtype=object), errors="coerce").astype(
        np.float64).to_numpy()


def _category_codes(values: pd.Series, lookup: dict[Any, int], levels: pd.Index) -> np.ndarray:
    """Training codes of a categorical column as float (NaN for unseen levels and nulls), the
    same codes `prepare`'s pd.Categorical(values, categories=levels) gives."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        # Recode the (few) categories, then gather by the column's codes: no string hashing.
        recode = levels.get_indexer(values.cat.categories)
        codes = values.cat.codes.to_numpy()
        out = np.where(codes >= 0, recode[codes], -1)
    elif len(values) <= FEW_ROWS:
        return _codes_of(values.tolist(), lookup)
    else:
        out = levels.get_indexer(values.to_numpy(dtype=object))
    return np.where(out >= 0, out, np.nan)


def _lookup(lookup: dict[Any, int], value: Any) -> int:
    try:
        return lookup.get(value, -1)
    except TypeError:  # unhashable: never a level
        return -1


def _numeric(values: pd.Series) -> np.ndarray:
    """A column as float64, as pd.to_numeric(errors="coerce") gives it, cheaply when possible."""
    if values.dtype.kind in "fiu" and isinstance(values.dtype, np.dtype):
        return values.to_numpy()
    if values.dtype == object and len(values) <= FEW_ROWS:
        return numbers_of(values.tolist())
    return pd.to_numeric(values, errors="coerce").astype(np.float64).to_numpy()


class LeadScoringPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow wrapper: `predict` returns the calibrated probability of each row.

    The scorer itself is logged as a plain folder artefact (`scorer`), not pickled; only this
    thin class is, so it stays readable across library versions. Reach the scorer through
    `mlflow.pyfunc.load_model(uri).unwrap_python_model().scorer`.
    """

    ARTIFACT_KEY = "scorer"

    def __init__(self) -> None:
        self.scorer: LeadScorer | None = None

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.scorer = LeadScorer.load(Path(context.artifacts[self.ARTIFACT_KEY]))

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> np.ndarray:
        if self.scorer is None:  # predict without load_context: only through misuse
            raise RuntimeError("LeadScoringPyfunc.predict called before load_context")
        return self.scorer.predict_proba(pd.DataFrame(model_input))


def log_scorer(scorer: LeadScorer, name: str = "model",
               registered_model_name: str | None = None) -> Any:
    """Log the scorer as an MLflow pyfunc model in the active run; returns MLflow's ModelInfo.

    No signature is attached on purpose: `prepare` already coerces types, and MLflow's schema
    enforcement would reject nullable integer columns or new categorical levels that the model
    handles as missing.
    """
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "scorer"
        scorer.save(folder)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=LeadScoringPyfunc(),
            artifacts={LeadScoringPyfunc.ARTIFACT_KEY: str(folder)},
            registered_model_name=registered_model_name,
        )
