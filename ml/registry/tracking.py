"""Tracking: what pins a model (reproducibility tags, fingerprints, backtest folds), and logging
one run and registering its model as a new version aliased `@challenger`."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import subprocess
import tempfile
import warnings
from collections.abc import Mapping
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import pandas as pd

from ml.config import PROJECT_ROOT, Settings
from ml.model import LeadScorer, LeadScoringPyfunc
from ml.registry.alias_history import move_alias
from ml.registry.client import (
    RegistryError,
    fluent_uris,
    mlflow_client,
    registry_errors,
)
from ml.registry.versions import (
    CHALLENGER,
    MODEL_HASH_TAG,
    ModelVersionInfo,
    alias_version,
    scorer_sha256,
)

TEST_AUC_METRIC = "test_auc"
# Tags that record the test window a run's test_auc was measured on (ISO dates).
TEST_START_TAG = "test_window_start"
TEST_END_TAG = "test_window_end"
# The backtest: mean AUC over the folds (run metric) and each fold's AUC by origin date (run tag,
# JSON {"YYYY-MM-DD": auc}); the gate compares champion and candidate on their common folds.
BACKTEST_AUC_METRIC = "backtest_auc_mean"
FOLD_AUCS_TAG = "backtest.fold_aucs"
MODEL_ARTIFACT = "model"
PACKAGES = ("xgboost", "mlflow", "feast", "dbt-core", "pandas", "scikit-learn", "numpy")


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=10,
    )
    return commit + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def _file_hash(path: Path) -> str:
    if not path.is_file():
        return "absent"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """A content hash of a frame (values, column names and order; not the index)."""
    digest = hashlib.sha256()
    digest.update(json.dumps([str(c) for c in frame.columns]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def reproducibility_tags(
    settings: Settings,
    training_frame: pd.DataFrame,
    *,
    feature_service: str | None = None,
    snapshot_column: str = "snapshot_ts",
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Tags that pin what produced a model: code, settings, data, feature definitions, packages.

    Args:
        training_frame: the training set (its row count, snapshot range and content hash).
        feature_service: the Feast feature-service definition as text (the caller renders it).
    """
    tags = {
        "git_commit": _git_commit(),
        "config_hash": settings.config_hash(),
        "training_rows": str(len(training_frame)),
        "training_fingerprint": frame_fingerprint(training_frame),
        "dbt_manifest_hash": _file_hash(settings.dbt_project_dir / "target" / "manifest.json"),
    }
    if snapshot_column in training_frame.columns and len(training_frame):
        snapshots = pd.to_datetime(training_frame[snapshot_column], utc=True)
        tags["training_snapshot_min"] = snapshots.min().isoformat()
        tags["training_snapshot_max"] = snapshots.max().isoformat()
    if feature_service is not None:
        tags["feature_service"] = feature_service
        tags["feature_service_hash"] = hashlib.sha256(feature_service.encode()).hexdigest()[:16]
    for package in PACKAGES:
        try:
            tags[f"version.{package}"] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            tags[f"version.{package}"] = "not installed"
    tags.update(extra or {})
    return tags


def fold_aucs_tag(folds: list[Mapping[str, Any]]) -> dict[str, str]:
    """The run tag the gate reads per-fold AUCs from: {"backtest.fold_aucs": JSON}.

    Args:
        folds: the backtest folds, each with "origin" (a date, ISO "YYYY-MM-DD") and "auc";
            other keys are ignored.

    Raises:
        ValueError: a fold without a valid origin date or a finite AUC, or an origin twice.
    """
    aucs: dict[str, float] = {}
    for i, fold in enumerate(folds):
        origin, auc = fold.get("origin"), fold.get("auc")
        try:
            day = pd.Timestamp(str(origin)).date().isoformat()
        except ValueError:
            raise ValueError(f"backtest fold {i} has no valid origin date: {origin!r}") from None
        if not isinstance(auc, int | float) or not math.isfinite(auc):
            raise ValueError(f"backtest fold {day} has no finite auc: {auc!r}")
        if day in aucs:
            raise ValueError(f"backtest fold origin {day} appears twice")
        aucs[day] = float(auc)
    return {FOLD_AUCS_TAG: json.dumps(dict(sorted(aucs.items())))}


def parse_fold_aucs(value: str | None) -> dict[str, float]:
    """Fold origin -> AUC from a `backtest.fold_aucs` tag ({} when absent).

    Raises:
        RegistryError: the tag is not a JSON object of date -> number.
    """
    if not value:
        return {}
    try:
        raw = json.loads(value)
        if not isinstance(raw, dict):
            raise TypeError("not an object")
        return {str(k): float(v) for k, v in raw.items()}
    except (TypeError, ValueError) as exc:
        raise RegistryError(
            f"tag {FOLD_AUCS_TAG} is not a JSON object of date -> AUC ({exc}); got {value[:200]!r}"
        ) from None


def _signature(scorer: LeadScorer, example: pd.DataFrame) -> Any:
    """Signature inferred from the input example as given (integer feature columns stay `long`:
    MLflow refuses int64 -> double as unsafe), with every column optional, since missing values
    and unseen categorical levels are handled by the model itself."""
    from mlflow.models import infer_signature
    from mlflow.types.schema import ColSpec, Schema

    with warnings.catch_warnings():
        # MLflow's hint about integer columns and missing values: a known, documented choice.
        warnings.filterwarnings("ignore", message=".*[Ii]nteger column", category=UserWarning)
        inferred = infer_signature(example, scorer.predict_proba(example))
    inferred.inputs = Schema(
        [ColSpec(c.type, c.name, required=False) for c in inferred.inputs.inputs]
    )
    return inferred


def _pip_requirements() -> list[str]:
    # Pinned from what is installed: MLflow's own inference starts a subprocess per log call.
    reqs = []
    for package in ("mlflow", "xgboost", "pandas", "numpy", "scikit-learn", "pyarrow"):
        with contextlib.suppress(importlib_metadata.PackageNotFoundError):
            reqs.append(f"{package}=={importlib_metadata.version(package)}")
    return reqs


def _experiment_id(client: Any, settings: Settings) -> str:
    name = settings.registry.experiment
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifacts = settings.paths.mlflow_artifacts
    artifacts.mkdir(parents=True, exist_ok=True)
    return client.create_experiment(name, artifact_location=artifacts.resolve().as_uri())


def log_and_register(
    scorer: LeadScorer,
    *,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    artifacts: Mapping[str, Path],
    tags: Mapping[str, str],
    input_example: pd.DataFrame,
    settings: Settings,
    actor: str = "train",
) -> ModelVersionInfo:
    """Log one MLflow run and register its model as a new version aliased `@challenger`.

    The run (in experiment settings.registry.experiment) gets params, metrics (include
    `test_auc`, and `backtest_auc_mean` with the `backtest.fold_aucs` tag from `fold_aucs_tag`,
    which the gate reads), the artefact files (name -> path; folders keep their tree) and
    `tags`; the registered version gets `tags` too. Pass the test window as tags
    `test_window_start` / `test_window_end` so promotions can say what they compared.

    Raises:
        RegistryError: the registry store fails.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow_client(settings)
    name = settings.registry.model_name
    example = input_example.head(5).copy()
    for col in example.columns:
        if isinstance(example[col].dtype, pd.CategoricalDtype):
            example[col] = example[col].astype(object)  # JSON-serialisable example
    str_tags = {k: str(v) for k, v in tags.items()}
    with registry_errors(settings, "logging the training run"):
        experiment_id = _experiment_id(client, settings)
        with fluent_uris(settings), mlflow.start_run(experiment_id=experiment_id) as run:
            run_id = run.info.run_id
            mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
            mlflow.set_tags(str_tags)
            for key, path in artifacts.items():
                path = Path(path)
                if path.is_dir():
                    mlflow.log_artifacts(str(path), artifact_path=key)
                else:
                    mlflow.log_artifact(str(path))
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp) / LeadScoringPyfunc.ARTIFACT_KEY
                scorer.save(folder)
                model_hash = scorer_sha256(folder)  # what loading checks (versions.py)
                mlflow.set_tag(MODEL_HASH_TAG, model_hash)
                info = mlflow.pyfunc.log_model(
                    name=MODEL_ARTIFACT,
                    python_model=LeadScoringPyfunc(),
                    artifacts={LeadScoringPyfunc.ARTIFACT_KEY: str(folder)},
                    signature=_signature(scorer, example),
                    input_example=example,
                    pip_requirements=_pip_requirements(),
                )
    with registry_errors(settings, f"registering a version of {name!r}"):
        previous = alias_version(client, name, CHALLENGER)
        try:
            client.create_registered_model(name)
        except MlflowException as exc:  # exists already: the usual case
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        # MLflow's SQL registry looks the logged model (models:/m-…) up through the *global*
        # tracking URI: create the version inside fluent_uris.
        with fluent_uris(settings):
            mv = client.create_model_version(
                name=name,
                source=info.model_uri,
                run_id=run_id,
                tags={**str_tags, MODEL_HASH_TAG: model_hash},
                model_id=info.model_id,
            )
        version = int(mv.version)
        move_alias(
            settings,
            client,
            CHALLENGER,
            previous,
            version,
            "challenger",
            reason=f"registered from run {run_id}",
            actor=actor,
        )
    return ModelVersionInfo(
        name=name,
        version=version,
        run_id=run_id,
        model_uri=f"models:/{name}/{version}",
        aliases=(CHALLENGER,),
    )
