"""Model registry: log and register models in MLflow, gate promotions, roll back, keep history.

Aliases: a newly registered version becomes `@challenger`; `promote` moves `@champion` to it
only through the gate (test AUC ≥ registry.min_auc and not worse than the champion by more than
registry.champion_tolerance); `rollback` moves `@champion` back. MLflow keeps no alias history,
so every move is appended to an `alias_history` table in a small SQLite database beside the
MLflow store (<data_dir>/mlflow/alias_history.db by default).

Everything talks to MLflow through an `MlflowClient` built from the settings. The exceptions
are logging the pyfunc model (MLflow offers it only through its fluent API) and creating the
model version (MLflow's SQL registry resolves `models:/<id>` through the global tracking URI):
both run inside `_tracking_uri()`, which sets the global URI for the call and restores it. That
is fine for training (one process, one call at a time); loading and alias reads, which the
service does from threads, never touch global state.

The gate's comparison with the champion: with an `evaluator` callback the champion is re-scored
on the candidate's test window; without one, the champion's stored `test_auc` is used and the
decision's `comparison` names both test windows (tags test_window_start/test_window_end).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import pandas as pd

# The alias history lives in ml.alias_history; its public names stay importable from here.
from ml.alias_history import (
    ALIAS_HISTORY_FILE,  # noqa: F401
    alias_history,
    alias_history_table,  # noqa: F401
    alias_history_url,  # noqa: F401
    alias_stack,
    move_alias,
)
from ml.config import PROJECT_ROOT, Settings
from ml.errors import LeadScoringError
from ml.model import LeadScorer, LeadScoringPyfunc

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
TEST_AUC_METRIC = "test_auc"
# Tags that record the test window a run's test_auc was measured on (ISO dates). The gate reports
# them; promote() compares stored metrics only with these spelled out in the decision.
TEST_START_TAG = "test_window_start"
TEST_END_TAG = "test_window_end"
MODEL_ARTIFACT = "model"
PACKAGES = ("xgboost", "mlflow", "feast", "dbt-core", "pandas", "scikit-learn", "numpy")

# An evaluator re-scores a model on a test window: (scorer, window_start, window_end) -> AUC.
Evaluator = Callable[[LeadScorer, str | None, str | None], float]


class RegistryError(LeadScoringError):
    """A registry request that cannot be served (no such version, nothing to roll back to)."""


@dataclass(frozen=True)
class ModelVersionInfo:
    """A registered model version."""

    name: str
    version: int
    run_id: str
    model_uri: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class PromotionDecision:
    """The outcome of promote/rollback; `message` spells out why."""

    accepted: bool
    action: str  # promote, rollback
    model_name: str
    version: int | None
    previous_champion: int | None
    message: str
    test_auc: float | None = None
    champion_auc: float | None = None
    comparison: str | None = None  # how the champion's AUC was obtained

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# ---------------------------------------------------------------- clients and stores


def mlflow_client(settings: Settings) -> Any:
    """An MlflowClient on the settings' tracking/registry URI (folders created if local)."""
    from mlflow import MlflowClient

    uri = settings.paths.mlflow_tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@contextlib.contextmanager
def _tracking_uri(settings: Settings) -> Iterator[None]:
    """Point MLflow's fluent API at the settings' store for the block, then restore."""
    import mlflow

    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(settings.paths.mlflow_tracking_uri)
    try:
        yield
    finally:
        # None unsets it again, including the MLFLOW_TRACKING_URI variable MLflow exports for
        # subprocesses (which load_settings would otherwise read as an override).
        mlflow.set_tracking_uri(previous)


def _experiment_id(client: Any, settings: Settings) -> str:
    name = settings.registry.experiment
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifacts = settings.paths.mlflow_artifacts
    artifacts.mkdir(parents=True, exist_ok=True)
    return client.create_experiment(name, artifact_location=artifacts.resolve().as_uri())


# ---------------------------------------------------------------- logging and registration


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
    `test_auc`, which the gate reads), the artefact files (name -> path; folders keep their
    tree) and `tags`; the registered version gets `tags` too. Pass the test window as tags
    `test_window_start` / `test_window_end` so promotions can say what they compared.
    """
    import mlflow

    client = mlflow_client(settings)
    experiment_id = _experiment_id(client, settings)
    name = settings.registry.model_name
    example = input_example.head(5).copy()
    for col in example.columns:
        if isinstance(example[col].dtype, pd.CategoricalDtype):
            example[col] = example[col].astype(object)  # JSON-serialisable example
    str_tags = {k: str(v) for k, v in tags.items()}
    with _tracking_uri(settings), mlflow.start_run(experiment_id=experiment_id) as run:
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
            info = mlflow.pyfunc.log_model(
                name=MODEL_ARTIFACT,
                python_model=LeadScoringPyfunc(),
                artifacts={LeadScoringPyfunc.ARTIFACT_KEY: str(folder)},
                signature=_signature(scorer, example),
                input_example=example,
                pip_requirements=_pip_requirements(),
            )
    previous = _alias_version(client, name, CHALLENGER)
    # MLflow's SQL registry looks the logged model up through the *global* tracking URI.
    with _tracking_uri(settings):
        with contextlib.suppress(Exception):  # exists already: the usual case
            client.create_registered_model(name)
        mv = client.create_model_version(
            name=name,
            source=info.model_uri,
            run_id=run_id,
            tags=str_tags,
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


# ---------------------------------------------------------------- lookups and loading


def _alias_version(client: Any, name: str, alias: str) -> int | None:
    from mlflow.exceptions import MlflowException

    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


# Tags that together say "this exact model was trained already": same code, settings and data.
IDENTITY_TAGS = ("git_commit", "config_hash", "training_fingerprint")


def find_identical_version(settings: Settings, tags: Mapping[str, str]) -> ModelVersionInfo | None:
    """A registered version trained from the same code, settings and data, if any.

    Training is deterministic, so retraining on unchanged inputs would only register a copy;
    callers reuse the existing version instead (re-runs stay idempotent). A dirty work tree
    never matches, since its commit does not pin the code.
    """
    if any(not tags.get(k) for k in IDENTITY_TAGS) or tags["git_commit"].endswith("-dirty"):
        return None
    client = mlflow_client(settings)
    name = settings.registry.model_name
    for mv in client.search_model_versions(f"name = '{name}'"):
        if all(mv.tags.get(k) == tags[k] for k in IDENTITY_TAGS):
            return ModelVersionInfo(
                name=name,
                version=int(mv.version),
                run_id=mv.run_id,
                model_uri=f"models:/{name}/{mv.version}",
                aliases=tuple(getattr(mv, "aliases", ()) or ()),
            )
    return None


def point_challenger(settings: Settings, version: int, *, reason: str, actor: str) -> None:
    """Move `@challenger` to `version` (recorded in the alias history) unless it is there."""
    client = mlflow_client(settings)
    current = _alias_version(client, settings.registry.model_name, CHALLENGER)
    if current != version:
        move_alias(settings, client, CHALLENGER, current, version, "challenger", reason, actor)


def current_version(settings: Settings, alias: str = CHAMPION) -> int | None:
    """The version an alias points at, or None."""
    return _alias_version(mlflow_client(settings), settings.registry.model_name, alias)


def _resolve(client: Any, settings: Settings, alias_or_version: str | int) -> Any:
    from mlflow.exceptions import MlflowException

    name = settings.registry.model_name
    ref = str(alias_or_version).lstrip("@")
    try:
        if ref.isdigit():
            return client.get_model_version(name, ref)
        return client.get_model_version_by_alias(name, ref)
    except MlflowException:
        raise RegistryError(
            f"model {name!r} has no version or alias {alias_or_version!r} in "
            f"{settings.paths.mlflow_tracking_uri}; run `lead-scoring history` to see versions"
        ) from None


def load_version(settings: Settings, alias_or_version: str | int) -> tuple[LeadScorer, int]:
    """Load a registered version (number or alias such as 'champion') as a LeadScorer."""
    import mlflow

    client = mlflow_client(settings)
    mv = _resolve(client, settings, alias_or_version)
    uri = client.get_model_version_download_uri(mv.name, mv.version)
    model = mlflow.pyfunc.load_model(uri)
    return model.unwrap_python_model().scorer, int(mv.version)


def load_champion(settings: Settings) -> tuple[LeadScorer, int]:
    """The `@champion` model and its version."""
    return load_version(settings, CHAMPION)


def _test_auc(client: Any, mv: Any) -> tuple[float | None, str | None, str | None]:
    if not mv.run_id:
        return None, None, None
    run = client.get_run(mv.run_id)
    tags = {**run.data.tags, **(mv.tags or {})}
    auc = run.data.metrics.get(TEST_AUC_METRIC)
    return auc, tags.get(TEST_START_TAG), tags.get(TEST_END_TAG)


# ---------------------------------------------------------------- promotion and rollback


def promote(
    settings: Settings,
    version: int | None = None,
    *,
    reason: str,
    actor: str,
    force: bool = False,
    evaluator: Evaluator | None = None,
) -> PromotionDecision:
    """Move `@champion` to the challenger (or `version`) if it passes the gate.

    Gate: its run's `test_auc` ≥ registry.min_auc, and it is not worse than the current champion
    by more than registry.champion_tolerance. With `evaluator`, the champion is re-scored on the
    candidate's test window (a like-for-like comparison); without it, the champion's stored
    `test_auc` is used and the decision names both test windows. `force` skips the gate (the
    reason is recorded). A refusal is returned with accepted=False and the reason in `message`.

    Raises:
        RegistryError: there is no such version, or no challenger to promote.
    """
    client = mlflow_client(settings)
    name = settings.registry.model_name
    reg = settings.registry
    if version is None:
        candidate = _alias_version(client, name, CHALLENGER)
        if candidate is None:
            raise RegistryError(
                f"model {name!r} has no @challenger to promote; train a model "
                "first or pass --version"
            )
    else:
        candidate = int(_resolve(client, settings, version).version)
    champion = _alias_version(client, name, CHAMPION)

    def decision(accepted: bool, message: str, **kw: Any) -> PromotionDecision:
        return PromotionDecision(accepted, "promote", name, candidate, champion, message, **kw)

    if champion == candidate:
        return decision(False, f"version {candidate} is already @champion; nothing to do")
    auc, start, end = _test_auc(client, client.get_model_version(name, str(candidate)))
    champion_auc = comparison = None
    if not force:
        if auc is None or math.isnan(auc):
            return _refuse(
                decision(
                    False,
                    f"refused: version {candidate} has no usable {TEST_AUC_METRIC} metric on its "
                    f"run (got {auc}); evaluate it before promoting",
                )
            )
        if auc < reg.min_auc:
            return _refuse(
                decision(
                    False,
                    f"refused: {TEST_AUC_METRIC} {auc:.4f} < min_auc {reg.min_auc} "
                    "(registry.min_auc)",
                    test_auc=auc,
                )
            )
        if champion is not None:
            champion_auc, comparison = _champion_auc(
                settings, client, champion, start, end, evaluator
            )
            if champion_auc is not None and auc < champion_auc - reg.champion_tolerance - 1e-12:
                return _refuse(
                    decision(
                        False,
                        f"refused: {TEST_AUC_METRIC} {auc:.4f} is worse than champion "
                        f"v{champion}'s {champion_auc:.4f} by {champion_auc - auc:.4f} > "
                        f"champion_tolerance {reg.champion_tolerance} "
                        f"(registry.champion_tolerance; {comparison})",
                        test_auc=auc,
                        champion_auc=champion_auc,
                        comparison=comparison,
                    )
                )
    why = (
        "forced, gate skipped"
        if force
        else (
            f"{TEST_AUC_METRIC} {auc:.4f} ≥ min_auc {reg.min_auc}"
            + (
                ""
                if champion_auc is None
                else f", within {reg.champion_tolerance} of champion v{champion}'s "
                f"{champion_auc:.4f} ({comparison})"
            )
            + ("; first champion" if champion is None else "")
        )
    )
    move_alias(
        settings,
        client,
        CHAMPION,
        champion,
        candidate,
        "promote",
        reason=f"{reason} [{why}]",
        actor=actor,
    )
    return decision(
        True,
        f"promoted v{candidate} to @champion (was "
        f"{'none' if champion is None else f'v{champion}'}): {why}",
        test_auc=auc,
        champion_auc=champion_auc,
        comparison=comparison,
    )


def _refuse(d: PromotionDecision) -> PromotionDecision:
    log.warning("%s", d.message)
    return d


def _champion_auc(
    settings: Settings,
    client: Any,
    champion: int,
    start: str | None,
    end: str | None,
    evaluator: Evaluator | None,
) -> tuple[float | None, str]:
    """The champion's AUC to compare against, and how it was obtained (said in the decision)."""
    note = ""
    if evaluator is not None:
        scorer, _ = load_version(settings, champion)
        auc = float(evaluator(scorer, start, end))
        if not math.isnan(auc):
            return auc, f"champion re-evaluated on the candidate's test window {start}–{end}"
        note = f"re-evaluation on {start}–{end} impossible (one class only); "
    auc, c_start, c_end = _test_auc(
        client, client.get_model_version(settings.registry.model_name, str(champion))
    )
    same = (c_start, c_end) == (start, end)
    return auc, note + (
        f"stored metrics, same test window {start}–{end}"
        if same
        else f"stored metrics on different test windows: champion {c_start}–{c_end}, "
        f"candidate {start}–{end}"
    )


def rollback(settings: Settings, *, reason: str, actor: str) -> PromotionDecision:
    """Move `@champion` back to the champion before the current one (from the alias history).

    Raises:
        RegistryError: there is no earlier champion to go back to.
    """
    client = mlflow_client(settings)
    name = settings.registry.model_name
    champion = _alias_version(client, name, CHAMPION)
    stack = alias_stack(alias_history(settings), name, CHAMPION)
    if champion is None or len(stack) < 2:
        raise RegistryError(
            f"model {name!r} has no previous champion to roll back to (champion: "
            f"{'none' if champion is None else f'v{champion}'}); see `lead-scoring history`"
        )
    if stack[-1] != champion:
        log.warning(
            "@champion is v%s but the history says v%s: it was moved outside this tool",
            champion,
            stack[-1],
        )
    target = stack[-2]
    move_alias(settings, client, CHAMPION, champion, target, "rollback", reason=reason, actor=actor)
    return PromotionDecision(
        True,
        "rollback",
        name,
        target,
        champion,
        f"rolled back @champion from v{champion} to v{target}: {reason}",
    )
