"""Registered versions: alias lookups, loading a version as a LeadScorer, finding a version.

Reads never create a store (`mlflow_client(create=False)`) and fail closed: an alias that is not
set, or a model not registered yet, is None; any other failure of the registry is a
RegistryError. Loading downloads the version's files through the client's own tracking URI and
never through MLflow's global one, so the service can load from its threads.

Loading trusts only the configured registry's own record. A version is read through the
client of `paths.mlflow_tracking_uri` (never a URI a caller passes), its files' SHA-256 must
equal the `model_sha256` tag recorded when it was registered (a changed or swapped file is
refused, wherever the artefacts live), and only the scorer's own files (JSON and XGBoost UBJSON)
are read: MLflow's pickled pyfunc wrapper is never unpickled, so tampered artefacts cannot run
code in the service.
"""

from __future__ import annotations

import hashlib
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

# Version tag: SHA-256 of the scorer's files as registered (`scorer_sha256`), checked on load.
MODEL_HASH_TAG = "model_sha256"


def scorer_sha256(folder: Path) -> str:
    """SHA-256 over a saved scorer folder: every file's relative path and bytes, in path order
    (a renamed, added, removed or changed file changes it)."""
    digest = hashlib.sha256()
    root = Path(folder)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


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
    """Load a registered version (number or alias such as 'champion') as a LeadScorer, after
    checking where its files come from and their recorded hash (module docstring).

    Raises:
        RegistryError: no such version, the registry or its artefacts cannot be read, or the
            files' hash is missing or differs from the recorded one.
    """
    import mlflow

    client = mlflow_client(settings, create=False)
    mv = resolve(client, settings, alias_or_version)
    expected = (getattr(mv, "tags", None) or {}).get(MODEL_HASH_TAG)
    if not expected:
        raise RegistryError(
            f"v{mv.version} of {mv.name!r} has no recorded {MODEL_HASH_TAG} (registered before "
            "hashes were recorded, or not by this platform): it is not loaded; retrain to "
            "register a hashed version"
        )
    with registry_errors(settings, f"loading v{mv.version}"):
        uri = client.get_model_version_download_uri(mv.name, mv.version)
        with tempfile.TemporaryDirectory(prefix="lead-scoring-model-") as tmp:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=uri,
                dst_path=tmp,
                tracking_uri=registry_uri(settings),
                registry_uri=registry_uri(settings),
            )
            folder = Path(local) / "artifacts" / LeadScoringPyfunc.ARTIFACT_KEY
            if not folder.is_dir():
                raise RegistryError(f"v{mv.version} of {mv.name!r} is not a lead-scoring model "
                                    "(it has no scorer files)")
            actual = scorer_sha256(folder)
            if actual != expected:
                raise RegistryError(
                    f"v{mv.version} of {mv.name!r} does not match its recorded {MODEL_HASH_TAG} "
                    "(its files changed after registration): it is not loaded; restore the "
                    "artefact store or register the model again"
                )
            # The scorer is read into memory here (no unpickling); the downloaded copy can go.
            scorer = LeadScorer.load(folder)
    return scorer, int(mv.version)


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
