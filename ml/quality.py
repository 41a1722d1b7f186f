"""Checks of what a pipeline step wrote: one score per open lead, enough positives to train on,
a challenger that clears the promotion gate's AUC floor.

Each reads the step's output where the rest of the platform reads it (the CRM's score history,
the saved training set, the registry), not the step's own summary, so a step that reports one
thing and writes another is caught. The orchestrator shows them as asset checks; each returns a
`CheckOutcome` whose description names the figure and its threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from ml.config import Settings

Figure = int | float | str | None


@dataclass(frozen=True)
class CheckOutcome:
    """A check's verdict, a one-line reason and the figures behind it."""

    passed: bool
    description: str
    figures: dict[str, Figure] = field(default_factory=dict)


def _examples(ids: set[str], n: int = 5) -> str:
    return ", ".join(sorted(ids)[:n]) + (" …" if len(ids) > n else "")


def score_coverage(settings: Settings, scoring_date: date) -> CheckOutcome:
    """One score per open lead: the CRM's `lead_score_history` of `scoring_date` holds a score
    for every lead of the `lead_features_latest` mart and for no other lead (its primary key,
    date and lead, rules out a second score of a lead)."""
    from ml.batch import load_latest_features
    from ml.crm import crm_engine, read_history

    open_ids = set(load_latest_features(settings)["lead_id"].astype(str))
    engine = crm_engine(settings, read_only=True)
    try:
        scored = read_history(engine, scoring_date)["lead_id"].astype(str)
    finally:
        engine.dispose()
    missing = open_ids - set(scored)
    extra = set(scored) - open_ids
    problems = []
    if missing:
        problems.append(f"{len(missing)} open lead(s) without a score ({_examples(missing)})")
    if extra:
        problems.append(f"{len(extra)} score(s) of leads that are not open ({_examples(extra)})")
    head = f"{len(open_ids)} open leads, {len(scored)} scores on {scoring_date.isoformat()}"
    return CheckOutcome(
        passed=not problems,
        description=f"{head}: " + ("; ".join(problems) if problems else "one score each"),
        figures={
            "open_leads": len(open_ids),
            "scores": int(len(scored)),
            "unscored_open_leads": len(missing),
            "scores_of_leads_not_open": len(extra),
        },
    )


def training_positives(settings: Settings) -> CheckOutcome:
    """The saved training set has at least `training.min_positive_examples` converted rows."""
    from ml.retrain import load_training_set
    from ml.training_set import LABEL

    frame = load_training_set(settings)
    positives = int(frame[LABEL].sum())
    minimum = settings.training.min_positive_examples
    passed = positives >= minimum
    relation = "≥" if passed else "<"
    return CheckOutcome(
        passed=passed,
        description=f"{positives} converted examples in {len(frame)} training rows {relation} "
        f"the minimum {minimum} (training.min_positive_examples)",
        figures={"positives": positives, "rows": len(frame), "minimum": minimum},
    )


def challenger_auc(settings: Settings) -> CheckOutcome:
    """The registry's @challenger clears the gate's AUC floor (`registry.min_auc`): its backtest
    mean AUC (its test-window AUC if it has no folds), judged by the gate's own comparison."""
    from ml.registry import compare, gate_input, mlflow_client
    from ml.registry.client import registry_errors
    from ml.registry.versions import CHALLENGER, alias_version

    floor = settings.registry.min_auc
    client = mlflow_client(settings, create=False)
    with registry_errors(settings, f"reading @{CHALLENGER}"):
        version = alias_version(client, settings.registry.model_name, CHALLENGER)
        if version is None:
            return CheckOutcome(
                False,
                f"no @{CHALLENGER} in the registry: nothing to judge",
                {"min_auc": floor},
            )
        candidate = gate_input(client, settings, version)
    # With no champion to beat, the gate's verdict is the AUC floor alone.
    verdict = compare(candidate, None, settings)
    measure = "backtest mean AUC" if verdict.basis == "folds" else "test-window AUC"
    auc = verdict.candidate_auc
    description = (
        f"v{version}: {measure} {auc:.4f} ≥ the gate's {floor} (registry.min_auc)"
        if verdict.accepted and auc is not None
        else f"v{version}: {verdict.message}"
    )
    return CheckOutcome(
        verdict.accepted,
        description,
        {"version": version, "auc": None if auc is None else round(auc, 4), "min_auc": floor},
    )
