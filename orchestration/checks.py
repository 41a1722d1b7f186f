"""Python asset checks (the dbt tests arrive as asset checks of their models on their own):
one score per open lead, enough positives to train on, a challenger above the gate's floor.

Each is a thin call of an `ml.quality` function. A blocking check that fails stops the assets
downstream of its asset in the same run (monitoring does not measure a broken score set, no
challenger is trained on too few positives); the challenger's AUC only warns, because the
promotion gate already keeps a weak challenger away from @champion.
"""

import dagster as dg

from ml.quality import CheckOutcome
from orchestration.assets.model import challenger_model, training_set
from orchestration.assets.scoring import crm_lead_scores
from orchestration.partitions import SCORING_DATES, partition_date
from orchestration.resources import SettingsResource


def _result(outcome: CheckOutcome, severity: dg.AssetCheckSeverity) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=outcome.passed,
        severity=severity,
        description=outcome.description,
        metadata={k: v for k, v in outcome.figures.items() if v is not None},
    )


@dg.asset_check(asset=crm_lead_scores, partitions_def=SCORING_DATES, blocking=True)
def one_score_per_open_lead(
    context: dg.AssetCheckExecutionContext, settings: SettingsResource
) -> dg.AssetCheckResult:
    """The CRM's score history of the partition's date holds each open lead exactly once."""
    from ml.quality import score_coverage

    outcome = score_coverage(settings.load(), partition_date(context))
    return _result(outcome, dg.AssetCheckSeverity.ERROR)


@dg.asset_check(asset=training_set, blocking=True)
def training_positives_at_least_minimum(settings: SettingsResource) -> dg.AssetCheckResult:
    """The training set has at least training.min_positive_examples converted rows."""
    from ml.quality import training_positives

    return _result(training_positives(settings.load()), dg.AssetCheckSeverity.ERROR)


@dg.asset_check(asset=challenger_model)
def challenger_auc_at_least_gate(settings: SettingsResource) -> dg.AssetCheckResult:
    """The @challenger's backtest AUC is at least the promotion gate's registry.min_auc."""
    from ml.quality import challenger_auc

    return _result(challenger_auc(settings.load()), dg.AssetCheckSeverity.WARN)


ALL_CHECKS = [
    one_score_per_open_lead,
    training_positives_at_least_minimum,
    challenger_auc_at_least_gate,
]
