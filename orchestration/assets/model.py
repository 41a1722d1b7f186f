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
    from ml.model import LABEL
    from ml.retrain import save_training_set
    from ml.training_set import build_training_set, fingerprint

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
    description="Every model family backtested on rolling out-of-time folds; the best refit on "
    "all matured labels (with its request model) and registered in MLflow as @challenger.",
)
def challenger_model(settings: SettingsResource, mlflow: MlflowResource) -> dg.MaterializeResult:
    from ml.retrain import load_training_set, train_challenger

    s = settings.load()
    report = train_challenger(s, load_training_set(s), actor="dagster:challenger_model")
    summary = report.summary()
    backtest = summary["backtest"]
    return dg.MaterializeResult(
        metadata={
            "model_version": dg.MetadataValue.int(int(report.version.version)),
            "champion_family": summary["champion_family"],
            "backtest_auc_mean": backtest["auc_mean"],
            "backtest_auc_ci95": str(backtest["auc_ci95"]),
            "lift_share_of_oracle_mean": backtest["lift_share_of_oracle_mean"],
            "baseline_logistic_auc_mean": backtest["baseline_logistic_auc_mean"],
            "baseline_rules_auc_mean": backtest["baseline_rules_auc_mean"],
            "request_model": str(backtest.get("request_model")),
            "embargo_days": backtest["embargo_days"],
            "folds": dg.MetadataValue.md(_folds_markdown(backtest["folds"])),
            "calibration": summary["calibration"],
            "mlflow_run": f"{mlflow.tracking_uri} run {report.version.run_id}",
            "report_dir": dg.MetadataValue.path(summary["report_dir"]),
        }
    )


def _folds_markdown(folds: list[dict]) -> str:
    columns = ["origin", "auc", "oracle_auc", "lift_share_of_oracle", "pr_auc", "brier"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(f.get(c)) for c in columns) + " |" for f in folds]
    return "\n".join(lines)


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
    from ml.retrain import promote_challenger

    s = settings.load()
    decision = promote_challenger(
        s, reason=config.reason, actor=f"dagster run {context.run.run_id}"
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
