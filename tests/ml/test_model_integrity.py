"""Models are loaded only from the configured registry, with the hash recorded at registration
checked before use, and never by unpickling: a tampered or unhashed version is refused with a
message that says why, and the loaded model is the registered one."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from _scoring_fixtures import make_features, make_scorer

from ml import registry
from ml.config import Settings, load_settings
from ml.registry import MODEL_HASH_TAG, RegistryError


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    s = load_settings(overrides={"paths.data_dir": str(tmp_path_factory.mktemp("integrity"))})
    scorer, frame = make_scorer()
    registry.log_and_register(scorer, params={}, metrics={"test_auc": 0.8}, artifacts={},
                              tags={}, input_example=frame.drop(columns="lead_id").head(5),
                              settings=s, actor="test")
    return s


def _scorer_dir(settings: Settings) -> Path:
    client = registry.mlflow_client(settings)
    uri = client.get_model_version_download_uri(settings.registry.model_name, "1")
    return Path(uri.removeprefix("file://")) / "artifacts" / "scorer"


def test_the_hash_is_recorded_at_registration_and_the_loaded_model_is_the_registered_one(
        settings: Settings) -> None:
    mv = registry.mlflow_client(settings).get_model_version(settings.registry.model_name, "1")
    assert mv.tags[MODEL_HASH_TAG] == registry.scorer_sha256(_scorer_dir(settings))
    loaded, version = registry.load_version(settings, 1)
    features = make_features(40, seed=3)
    np.testing.assert_array_equal(loaded.predict_proba(features),
                                  make_scorer()[0].predict_proba(features))


def test_a_changed_model_file_is_refused(settings: Settings) -> None:
    meta = _scorer_dir(settings) / "scorer.json"
    original = meta.read_text()
    try:
        meta.write_text(original.replace('"decision_threshold"', '"decision_threshold" ', 1))
        with pytest.raises(RegistryError, match="does not match its recorded model_sha256"):
            registry.load_version(settings, 1)
    finally:
        meta.write_text(original)
    registry.load_version(settings, 1)  # restored: loads again


def test_the_pickled_wrapper_is_never_unpickled(settings: Settings, tmp_path: Path) -> None:
    """A python_model.pkl replaced by a payload that would write a file when unpickled: loading
    still works (the scorer's own files are hashed and read) and the payload never runs."""
    pkl = _scorer_dir(settings).parents[1] / "python_model.pkl"
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.write_text, (marker, "ran"))

    original = pkl.read_bytes()
    try:
        pkl.write_bytes(pickle.dumps(Payload()))
        registry.load_version(settings, 1)
    finally:
        pkl.write_bytes(original)
    assert not marker.exists(), "loading a model unpickled its wrapper"


def test_a_version_without_a_recorded_hash_is_refused(settings: Settings) -> None:
    client = registry.mlflow_client(settings)
    name = settings.registry.model_name
    recorded = client.get_model_version(name, "1").tags[MODEL_HASH_TAG]
    client.delete_model_version_tag(name, "1", MODEL_HASH_TAG)
    try:
        with pytest.raises(RegistryError, match="has no recorded model_sha256"):
            registry.load_version(settings, "1")
    finally:
        client.set_model_version_tag(name, "1", MODEL_HASH_TAG, recorded)
