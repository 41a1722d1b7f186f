"""Jobs: the nightly scoring run and the retraining run."""

from __future__ import annotations

import dagster as dg

MODEL_GROUP = "model"

# dbt build → mart export → online refresh → scores into the CRM → drift and performance
nightly_scoring_job = dg.define_asset_job(
    "nightly_scoring",
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups(MODEL_GROUP),
    description="Nightly: validate raw files, dbt build, refresh the online store, score, monitor.",
)

# training set → challenger → evaluation → promotion gate
weekly_retrain_job = dg.define_asset_job(
    "weekly_retrain",
    selection=dg.AssetSelection.groups(MODEL_GROUP),
    description="Retrain: training set from Feast, challenger, evaluation, promotion gate.",
)
