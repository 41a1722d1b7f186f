"""The training set: labelled (lead, snapshot) rows joined to their features through Feast.

The entity frame is `lead_labels` (only matured label windows); features come from
`get_historical_features` on the `lead_scoring` feature service, so training sees exactly the
features serving sees, as they were at each snapshot.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ml.config import Settings
from ml.errors import DataError
from ml.model import LABEL, ORACLE

log = logging.getLogger(__name__)

TIMESTAMP = "event_timestamp"


@dataclass(frozen=True)
class TrainingSetFingerprint:
    rows: int
    positives: int
    first_snapshot: str
    last_snapshot: str
    content_hash: str

    def as_tags(self) -> dict[str, str]:
        return {f"training_set.{k}": str(v) for k, v in self.__dict__.items()}


def labels_path(settings: Settings) -> Path:
    return settings.paths.marts_dir / "lead_labels.parquet"


def load_entity_frame(settings: Settings) -> pd.DataFrame:
    """The matured labels as Feast's entity frame: lead_id, event_timestamp (UTC), label."""
    path = labels_path(settings)
    if not path.is_file():
        raise DataError(f"labels not found: {path} (run `lead-scoring build` first)")
    labels = pd.read_parquet(path, columns=["lead_id", "snapshot_ts", LABEL])
    if labels.empty:
        raise DataError(
            f"{path} has no matured labels: the data must span more than "
            f"features.label_window_days ({settings.features.label_window_days}) days"
        )
    entity = labels.rename(columns={"snapshot_ts": TIMESTAMP})
    entity[TIMESTAMP] = pd.to_datetime(entity[TIMESTAMP], utc=True)
    return entity.sort_values([TIMESTAMP, "lead_id"], kind="stable").reset_index(drop=True)


def build_training_set(settings: Settings, with_truth: bool = True) -> pd.DataFrame:
    """Labelled rows with the feature service's features as of each snapshot.

    When the generator's truth file is present (`with_truth`), adds `oracle_probability`: the
    true probability of the label on each row, for the oracle AUC. It is never a model input.
    """
    from ml.feature_store import historical_features

    entity = load_entity_frame(settings)
    frame = historical_features(settings, entity)
    if len(frame) != len(entity):
        raise DataError(f"Feast returned {len(frame)} rows for {len(entity)} entity rows")
    frame = frame.sort_values([TIMESTAMP, "lead_id"], kind="stable").reset_index(drop=True)
    truth_file = settings.paths.truth_dir / "lead_truth.parquet"
    if with_truth and truth_file.is_file():
        frame[ORACLE] = oracle_for(settings, frame)
    log.info("training set: %d rows, %d positives", len(frame), int(frame[LABEL].sum()))
    return frame


def oracle_for(settings: Settings, frame: pd.DataFrame) -> pd.Series:
    """True probability of each row's label from the generator's truth file."""
    from ml.data.truth import load_truth, oracle_probability

    truth = load_truth(settings.paths.truth_dir)
    return pd.Series(
        oracle_probability(
            truth,
            frame["lead_id"].to_numpy(),
            None,  # creation times from the truth file
            frame[TIMESTAMP],
            settings.features.label_window_days,
        ),
        index=frame.index,
        name=ORACLE,
    )


def fingerprint(frame: pd.DataFrame) -> TrainingSetFingerprint:
    """Row count, date range and a content hash that identify a training set.

    The hash is the registry's (`frame_fingerprint` of the model inputs, without the oracle), so
    it equals the `training_fingerprint` tag of the version trained on this set.
    """
    from ml.registry import frame_fingerprint

    digest = frame_fingerprint(frame.drop(columns=[ORACLE], errors="ignore"))
    return TrainingSetFingerprint(
        rows=len(frame),
        positives=int(frame[LABEL].sum()),
        first_snapshot=str(frame[TIMESTAMP].min()),
        last_snapshot=str(frame[TIMESTAMP].max()),
        content_hash=digest,
    )
