"""Evidently reports of a monitoring run: data drift (open population and recent intake) and
prediction drift, HTML and JSON.

Each is computed on a random sample (seeded by the run date) of at most
`monitoring.report_sample_size` rows of the reference and of the current data; each HTML page
opens with a banner that states the sample sizes, the full row counts and the reference used.

The per-column verdicts use the platform's own methods and thresholds, registered with
Evidently as stat tests (`register_stattests`), so a report does not contradict the monitoring
store: PSI on the reference's deciles above `monitoring.psi_threshold` (the alert rule; for the
recent intake `recent_intake_psi_threshold`), and per column the KS test (numeric) or the
chi-square test (categorical), drift only when p is below its threshold AND the effect size (KS
statistic; total variation distance) reaches its minimum. Evidently's own defaults (KS or
chi-square p-values below 1,000 rows, Wasserstein / Jensen-Shannon distances of 0.1 above) and
its own PSI binning would give other verdicts. The dataset-level verdict counts a drift when
one column drifts, as the `data_drift` alert does. Differences that remain: Evidently works on
the sample and drops missing values before a test, where the store counts all rows and missing
values as a bin of their own, so a feature close to a threshold can read differently.

Files go to `<reports_dir>/monitoring/<run_date>/` and are logged to the champion's MLflow run
under `monitoring/<run_date>/`.
"""

from __future__ import annotations

import html
import logging
import os
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml.config import Settings
from ml.monitoring import drift

log = logging.getLogger(__name__)


def _sample(frame: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    if len(frame) <= size:
        return frame.reset_index(drop=True)
    return frame.sample(n=size, random_state=seed).reset_index(drop=True)


def _evidently_frame(frame: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    out = frame.copy()
    for name in out.columns:
        if name in categorical:
            out[name] = out[name].astype(object).where(out[name].notna(), "(missing)").astype(str)
        else:
            out[name] = pd.to_numeric(out[name], errors="coerce").astype(float)
    return out


def _save(snapshot: Any, path: Path, banner: str) -> tuple[Path, Path]:
    page = snapshot.get_html_str(as_iframe=False)
    note = (
        '<div style="font-family:sans-serif;padding:8px 16px;background:#fff7e0;'
        f'border-bottom:1px solid #e0c080">{banner}</div>'
    )
    at = page.find("<body")
    at = page.find(">", at) + 1 if at >= 0 else 0
    html_path, json_path = path.with_suffix(".html"), path.with_suffix(".json")
    # Each file is written beside its final name and renamed over it: a run killed while
    # writing leaves the previous report whole, never a truncated page or JSON.
    for final in (html_path, json_path):  # what a run killed while writing left
        for stale in final.parent.glob(f".{final.name}.*.tmp"):
            stale.unlink(missing_ok=True)
    tmp_html = html_path.with_name(f".{html_path.name}.{os.getpid()}.tmp")
    tmp_json = json_path.with_name(f".{json_path.name}.{os.getpid()}.tmp")
    try:
        tmp_html.write_text(page[:at] + note + page[at:], encoding="utf-8")
        snapshot.save_json(str(tmp_json))
        os.replace(tmp_html, html_path)
        os.replace(tmp_json, json_path)
    finally:
        tmp_html.unlink(missing_ok=True)
        tmp_json.unlink(missing_ok=True)
    return html_path, json_path


def register_stattests(thresholds: drift.DriftThresholds) -> dict[str, str]:
    """Register the platform's drift rules with Evidently's stat-test registry (the name carries
    the parameters the `threshold` argument cannot) and return
    their names: "psi" (score PSI, threshold = the PSI threshold), "ks" (score KS statistic,
    threshold = ks_min_statistic) and "tv" (score total variation distance, threshold =
    chi2_min_distance); the tests also need p below `ks_pvalue` / `chi2_pvalue`."""
    from evidently.legacy.calculations.stattests.registry import StatTest, register_stattest
    from evidently.legacy.core import ColumnType

    t = thresholds
    numeric, categorical = ColumnType.Numerical, ColumnType.Categorical

    def psi(ref: pd.Series, cur: pd.Series, kind: ColumnType, threshold: float):
        d = drift.feature_drift(
            str(ref.name),
            ref,
            cur,
            categorical=kind == categorical,
            bins=t.bins,
            psi_threshold=threshold,
        )
        return d.psi, d.psi_drifted

    def test(p_value: float):
        def run(ref: pd.Series, cur: pd.Series, kind: ColumnType, threshold: float):
            d = drift.feature_drift(
                str(ref.name),
                ref,
                cur,
                categorical=kind == categorical,
                bins=t.bins,
                p_value_threshold=p_value,
                min_effect=threshold,
            )
            return d.effect_size, d.test_drifted

        return run

    specs = {
        "psi": (
            f"lead_scoring_psi_bins{t.bins}",
            f"PSI over the reference's deciles ({t.bins} bins; lead scoring)",
            [numeric, categorical],
            psi,
            t.psi,
        ),
        "ks": (
            f"lead_scoring_ks_p{t.ks_pvalue:g}",
            f"KS statistic, drift if p < {t.ks_pvalue:g} and statistic ≥ threshold (lead scoring)",
            [numeric],
            test(t.ks_pvalue),
            t.ks_min_statistic,
        ),
        "tv": (
            f"lead_scoring_tv_p{t.chi2_pvalue:g}",
            f"total variation distance, drift if chi-square p < {t.chi2_pvalue:g} and distance "
            "≥ threshold (lead scoring)",
            [categorical],
            test(t.chi2_pvalue),
            t.chi2_min_distance,
        ),
    }
    # registering a name again replaces it with the same rule (the name carries the parameters)
    for name, display, kinds, func, default in specs.values():
        register_stattest(StatTest(name, display, kinds, default), func)
    return {key: spec[0] for key, spec in specs.items()}


def _drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: list[str],
    categorical: list[str],
    names: dict[str, str],
    thresholds: drift.DriftThresholds,
    psi_threshold: float,
    tested: list[str],
) -> Any:
    """An Evidently snapshot: PSI per column (the alert rule; dataset drift when one column
    drifts) and, for the `tested` columns, the KS or chi-square test with its effect size.

    Evidently spends ~0.13 s rendering each column metric on this machine, so the second panel
    per column is drawn only where the full-data figures flagged the column (PSI or test); every
    column's test figures are in the monitoring store and on the dashboard either way."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    numeric = [c for c in features if c not in categorical]
    definition = DataDefinition(
        numerical_columns=numeric, categorical_columns=[c for c in features if c in categorical]
    )
    metrics: list[Any] = [
        DataDriftPreset(
            columns=features,
            method=names["psi"],
            threshold=psi_threshold,
            drift_share=1 / max(len(features), 1),
        )
    ]
    metrics += [
        ValueDrift(column=c, method=names["ks"], threshold=thresholds.ks_min_statistic)
        if c in numeric
        else ValueDrift(column=c, method=names["tv"], threshold=thresholds.chi2_min_distance)
        for c in features
        if c in tested
    ]
    # include_tests: the JSON then records each column's verdict (pass = no drift)
    return Report(metrics, include_tests=True).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )


def evidently_reports(
    settings: Settings,
    *,
    run_date: date,
    version: str,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    reference_scores: np.ndarray,
    current_scores: np.ndarray,
    features: list[str],
    categorical: list[str],
    reference_description: str,
    population_drift: drift.PopulationDrift | None = None,
) -> dict[str, Path]:
    """Write data_drift.{html,json} and prediction_drift.{html,json}, and, on a run whose
    `population_drift` found the recent intake drifted, recent_intake_drift.{html,json} (the
    evidence of that alert; Evidently takes seconds per report, so not every night); returns
    name → path."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    from ml.scoring import assign_tiers

    out_dir = settings.paths.reports_dir / "monitoring" / run_date.isoformat()
    out_dir.mkdir(parents=True, exist_ok=True)
    size, seed = settings.monitoring.report_sample_size, int(run_date.strftime("%Y%m%d"))
    thresholds = drift.DriftThresholds.from_settings(settings)
    names = register_stattests(thresholds)
    categorical = [c for c in features if c in categorical]
    rules = (
        f"Per column: PSI > {{psi}} (the alert rule), and the KS / chi-square test flags drift "
        f"only if p < {thresholds.ks_pvalue:g} / {thresholds.chi2_pvalue:g} and the KS "
        f"statistic ≥ {thresholds.ks_min_statistic:g} / total variation distance ≥ "
        f"{thresholds.chi2_min_distance:g}. The monitoring store holds the same figures on all "
        "rows (missing values as a bin of their own; Evidently drops them)."
    )
    paths: dict[str, Path] = {}

    def flagged(population: str) -> list[str]:
        """Columns whose PSI or KS / chi-square test flagged drift on all rows."""
        if population_drift is None:
            return list(features)
        rows = population_drift.frame
        rows = rows[(rows["population"] == population)
                    & (rows["psi_drifted"] | rows["test_drifted"])]
        return sorted(set(rows["column"]))

    def tested_note(columns: list[str]) -> str:
        return (" KS / chi-square panels are drawn for the columns the full-data figures "
                f"flagged: {', '.join(columns) if columns else 'none'}.")

    ref = _evidently_frame(_sample(reference[features], size, seed), categorical)
    cur = _evidently_frame(_sample(current[features], size, seed + 1), categorical)
    tested = flagged(drift.OPEN)
    banner = html.escape(
        f"Lead scoring — data drift of the open population, champion v{version}, run "
        f"{run_date}. Evidently on a random sample of {len(ref):,} of {len(reference):,} "
        f"reference rows and {len(cur):,} of {len(current):,} current rows "
        f"(monitoring.report_sample_size = {size:,}). "
        + rules.format(psi=f"{thresholds.psi:g}")
        + tested_note(tested)
        + f" Reference: {reference_description}."
    )
    snapshot = _drift_report(ref, cur, features, categorical, names, thresholds, thresholds.psi,
                             tested)
    paths["data_drift_html"], paths["data_drift_json"] = _save(
        snapshot, out_dir / "data_drift", banner
    )

    recent = None
    if population_drift is not None and population_drift.drifted(drift.RECENT):
        recent = next(p for p in population_drift.populations if p.name == drift.RECENT)
    if recent is not None:
        cols = drift.recent_intake_features(features)
        ref_r = drift.recent_rows(reference, thresholds.recent_days)
        cur_r = drift.recent_rows(current, thresholds.recent_days)
        ref = _evidently_frame(_sample(ref_r[cols], size, seed + 2), categorical)
        cur = _evidently_frame(_sample(cur_r[cols], size, seed + 3), categorical)
        banner = html.escape(
            f"Lead scoring — data drift of {recent.description}, champion v{version}, run "
            f"{run_date}: leads with days_since_created < {thresholds.recent_days} against the "
            f"reference's rows of the same age. Evidently on {len(ref):,} of {len(ref_r):,} "
            f"reference rows and {len(cur):,} of {len(cur_r):,} current rows. "
            + rules.format(
                psi=f"{thresholds.recent_psi:g} (monitoring.recent_intake_psi_threshold)"
            )
            + tested_note(recent_tested := [c for c in flagged(drift.RECENT) if c in cols])
            + f" Reference: {reference_description}."
        )
        snapshot = _drift_report(
            ref, cur, cols, categorical, names, thresholds, thresholds.recent_psi, recent_tested
        )
        paths["recent_intake_drift_html"], paths["recent_intake_drift_json"] = _save(
            snapshot, out_dir / "recent_intake_drift", banner
        )

    def scores_frame(scores: np.ndarray, seed_: int) -> pd.DataFrame:
        frame = pd.DataFrame({"probability": np.asarray(scores, dtype=float)})
        frame["tier"] = assign_tiers(np.round(frame["probability"].to_numpy() * 100, 1), settings)
        return _sample(frame, size, seed_)

    ref_s, cur_s = scores_frame(reference_scores, seed), scores_frame(current_scores, seed + 1)
    definition = DataDefinition(numerical_columns=["probability"], categorical_columns=["tier"])
    report = Report(
        [
            ValueDrift(column="probability", method=names["psi"], threshold=thresholds.psi),
            ValueDrift(
                column="probability", method=names["ks"], threshold=thresholds.ks_min_statistic
            ),
            ValueDrift(column="tier", method=names["psi"], threshold=thresholds.psi),
            ValueDrift(column="tier", method=names["tv"], threshold=thresholds.chi2_min_distance),
        ],
        include_tests=True,
    )
    snapshot = report.run(
        Dataset.from_pandas(cur_s, data_definition=definition),
        Dataset.from_pandas(ref_s, data_definition=definition),
    )
    banner = html.escape(
        f"Lead scoring — prediction drift, champion v{version}, run {run_date}: score and tier "
        f"mix of {len(cur_s):,} of {len(current_scores):,} current scores against {len(ref_s):,} "
        f"of {len(reference_scores):,} scores on the champion's test window "
        f"(sample size monitoring.report_sample_size = {size:,}). "
        + rules.format(psi=f"{thresholds.psi:g}")
    )
    paths["prediction_drift_html"], paths["prediction_drift_json"] = _save(
        snapshot, out_dir / "prediction_drift", banner
    )
    return paths


def log_to_champion_run(
    settings: Settings, version: str, paths: dict[str, Path], run_date: date
) -> str | None:
    """Attach the report files to the MLflow run that produced `version`; returns the run id,
    or None (logged as a warning) when the registry or the run cannot be reached."""
    try:
        from ml.registry import mlflow_client

        client = mlflow_client(settings)
        run_id = client.get_model_version(settings.registry.model_name, str(version)).run_id
        if not run_id:
            return None
        for path in paths.values():
            client.log_artifact(run_id, str(path), artifact_path=f"monitoring/{run_date}")
        return run_id
    except Exception as exc:  # noqa: BLE001 - reports stay on disk; MLflow is a copy
        log.warning("could not log monitoring reports to MLflow for v%s: %s", version, exc)
        return None
