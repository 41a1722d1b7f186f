"""Model assets: training set → challenger → evaluation against the champion → champion."""

import dagster as dg

from orchestration.assets.dbt import mart_parquet
from orchestration.assets.feast import feast_registry
from orchestration.jobs import MODEL_GROUP
from orchestration.resources import MlflowResource, SettingsResource


@dg.asset(
    group_name=MODEL_GROUP,
    deps=[feast_registry, mart_parquet],
    description="Matured labels joined point-in-time to the lead_scoring feature service (Feast).",
)
def training_set(settings: SettingsResource) -> dg.MaterializeResult:
    from ml.retrain import save_training_set
    from ml.training_set import LABEL, build_training_set, fingerprint

    s = settings.load()
    frame = build_training_set(s)
    path = save_training_set(s, frame)
    fp = fingerprint(frame)
    return dg.MaterializeResult(
        metadata={
            "rows": dg.MetadataValue.int(len(frame)),
            "positives": dg.MetadataValue.int(int(frame[LABEL].sum())),
            "first_snapshot": fp.first_snapshot,
            "last_snapshot": fp.last_snapshot,
            "content_hash": fp.content_hash,
            "path": dg.MetadataValue.path(str(path)),
        }
    )


@dg.asset(
    group_name=MODEL_GROUP,
    deps=[training_set],
    description="A new XGBoost version registered in MLflow as @challenger, evaluated on the "
    "test window against the baselines and the oracle.",
)
def challenger_model(settings: SettingsResource, mlflow: MlflowResource) -> dg.MaterializeResult:
    from ml.retrain import load_training_set, train_challenger

    s = settings.load()
    report = train_challenger(s, load_training_set(s), actor="dagster:challenger_model")
    summary = report.summary()
    return dg.MaterializeResult(
        metadata={
            "model_version": dg.MetadataValue.int(int(report.version.version)),
            "test_auc": dg.MetadataValue.float(summary["test_auc"]),
            "oracle_auc": summary["oracle_auc"],
            "auc_ratio_to_oracle": summary["auc_ratio_to_oracle"],
            "baseline_logistic_auc": summary["baseline_logistic_auc"],
            "baseline_rules_auc": summary["baseline_rules_auc"],
            "calibration": summary["calibration"],
            "mlflow_run": f"{mlflow.tracking_uri} run {report.version.run_id}",
            "report_dir": dg.MetadataValue.path(summary["report_dir"]),
        }
    )


class PromotionConfig(dg.Config):
    reason: str = "retrain"


@dg.asset(
    group_name=MODEL_GROUP,
    deps=[challenger_model],
    description="The promotion gate (ml.registry.promote): @champion moves to the challenger "
    "only if its backtest AUC ≥ registry.min_auc and it is no worse than the champion on the "
    "same backtest folds (test AUC for versions without folds).",
)
def champion_model(
    context: dg.AssetExecutionContext, config: PromotionConfig, settings: SettingsResource
) -> dg.MaterializeResult:
    from ml.registry import current_version
    from ml.retrain import load_training_set, promote_challenger

    s = settings.load()
    decision = promote_challenger(
        s, load_training_set(s), reason=config.reason, actor=f"dagster run {context.run.run_id}"
    )
    context.log.info(decision.message)  # the promotion alert is sent by ml.registry.promote
    return dg.MaterializeResult(
        metadata={
            "promoted": decision.accepted,
            "decision": decision.message,
            "champion_version": current_version(s),
            "challenger_test_auc": decision.test_auc,
            "champion_auc_same_window": decision.champion_auc,
        }
    )
