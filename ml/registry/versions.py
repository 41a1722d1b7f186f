"""Registered versions: alias lookups, loading a version as a LeadScorer, finding a version.

Reads never create a store (`mlflow_client(create=False)`) and fail closed: an alias that is not
set, or a model not registered yet, is None; any other failure of the registry is a
RegistryError. Loading downloads the version's files through the client's own tracking URI and
never through MLflow's global one, so the service can load from its threads.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ml.config import Settings
from ml.model import LeadScorer, LeadScoringPyfunc
from ml.registry.alias_history import move_alias
from ml.registry.client import (
    RegistryError,
    is_not_found,
    mlflow_client,
    registry_errors,
    registry_uri,
    safe_uri,
)

CHAMPION = "champion"
CHALLENGER = "challenger"

# Tags that together say "this exact model was trained already": same code, settings and data.
IDENTITY_TAGS = ("git_commit", "config_hash", "training_fingerprint")


@dataclass(frozen=True)
class ModelVersionInfo:
    """A registered model version."""

    name: str
    version: int
    run_id: str
    model_uri: str
    aliases: tuple[str, ...] = ()


def alias_version(client: Any, name: str, alias: str) -> int | None:
    """The version `alias` points at; None only when MLflow answers that the alias (or the
    model) does not exist. Any other failure propagates (callers wrap in registry_errors)."""
    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except Exception as exc:
        if is_not_found(exc):
            return None
        raise


def current_version(settings: Settings, alias: str = CHAMPION) -> int | None:
    """The version an alias points at, or None when it is not set.

    Raises:
        RegistryError: the registry cannot answer (store missing, unreachable, damaged).
    """
    client = mlflow_client(settings, create=False)
    with registry_errors(settings, f"reading @{alias}"):
        return alias_version(client, settings.registry.model_name, alias)


def resolve(client: Any, settings: Settings, alias_or_version: str | int) -> Any:
    """The MLflow ModelVersion of a version number or alias ('champion', '@challenger', '3').

    Raises:
        RegistryError: no such version or alias, or the registry cannot answer.
    """
    name = settings.registry.model_name
    ref = str(alias_or_version).lstrip("@")
    with registry_errors(settings, f"looking up {alias_or_version!r}"):
        try:
            if ref.isdigit():
                return client.get_model_version(name, ref)
            return client.get_model_version_by_alias(name, ref)
        except Exception as exc:
            if not is_not_found(exc):
                raise
    raise RegistryError(
        f"model {name!r} has no version or alias {alias_or_version!r} in "
        f"{safe_uri(registry_uri(settings))}; run `lead-scoring history` to see versions"
    )


def load_version(settings: Settings, alias_or_version: str | int) -> tuple[LeadScorer, int]:
    """Load a registered version (number or alias such as 'champion') as a LeadScorer.

    Raises:
        RegistryError: no such version, or the registry or its artefacts cannot be read.
    """
    import mlflow

    client = mlflow_client(settings, create=False)
    mv = resolve(client, settings, alias_or_version)
    with registry_errors(settings, f"loading v{mv.version}"):
        uri = client.get_model_version_download_uri(mv.name, mv.version)
        with tempfile.TemporaryDirectory(prefix="lead-scoring-model-") as tmp:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=uri,
                dst_path=tmp,
                tracking_uri=registry_uri(settings),
                registry_uri=registry_uri(settings),
            )
            # The scorer is read into memory here; the downloaded copy can go.
            model = mlflow.pyfunc.load_model(str(Path(local)))
            python_model = model.unwrap_python_model()
    if not isinstance(python_model, LeadScoringPyfunc) or python_model.scorer is None:
        raise RegistryError(
            f"v{mv.version} of {mv.name!r} is not a lead-scoring model "
            f"({type(python_model).__name__})"
        )
    return python_model.scorer, int(mv.version)


def load_champion(settings: Settings) -> tuple[LeadScorer, int]:
    """The `@champion` model and its version."""
    return load_version(settings, CHAMPION)


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
    with registry_errors(settings, "searching versions"):
        versions = client.search_model_versions(f"name = '{name}'")
    for mv in versions:
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
    client = mlflow_client(settings, create=False)
    name = settings.registry.model_name
    with registry_errors(settings, f"moving @{CHALLENGER} to v{version}"):
        current = alias_version(client, name, CHALLENGER)
        if current != version:
            move_alias(settings, client, CHALLENGER, current, version, "challenger", reason, actor)
