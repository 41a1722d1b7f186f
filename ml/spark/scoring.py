"""Nightly batch scoring as a Spark job: the latest-features mart is read by Spark, each partition
is scored by the one scoring function (`ml.scoring.score_frame`, through `mapInPandas`), and the
scores come back to the driver to be written through the store layer (ml/crm.py: the CRM tables
in one transaction, and the extract file) exactly as a single-machine run writes them.

The model travels to the executors as a broadcast of the loaded `LeadScorer`, so every executor
scores with the very object the single-machine run uses: same probabilities, tiers and reasons.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from ml.config import Settings
from ml.errors import DataError
from ml.model import LeadScorer
from ml.scoring import SCORE_COLUMNS, score_frame
from ml.spark import spark_session

log = logging.getLogger(__name__)

# the Spark schema of score_frame's output (SCORE_COLUMNS, in order)
SCORE_SCHEMA = (
    "lead_id string, probability double, score double, tier string, "
    "reasons_for string, reasons_against string"
)


def spark_score_frame(settings: Settings, scorer: LeadScorer, features_path: Path) -> pd.DataFrame:
    """Score every row of a features Parquet (file or folder) on Spark.

    Returns:
        score_frame's columns, one row per input row (in lead_id order: Spark's partitions have
        no input order to keep).
    """
    if not Path(features_path).exists():
        raise DataError(f"features not found: {features_path} (run `lead-scoring build` first)")
    spark = spark_session(settings, app_name="lead-scoring-batch")
    features = spark.read.parquet(str(features_path))
    model = spark.sparkContext.broadcast(scorer)

    def score_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            yield score_frame(model.value, batch, settings)[SCORE_COLUMNS]

    scored = features.mapInPandas(score_batches, SCORE_SCHEMA)
    out = scored.toPandas().sort_values("lead_id", kind="stable").reset_index(drop=True)
    model.unpersist()
    log.info("scored %d leads on Spark (%s)", len(out), settings.spark.master)
    return out
