"""Alert rules: conditions → alerts whose severity comes from `alerting.rules` in the settings.

Conditions (the original design's defaults):
- info: `daily_report` (every monitoring run), `deployment`, `promotion`;
- warning: `data_drift` (PSI > monitoring.psi_threshold on a model feature), `prediction_drift`
  (PSI of the score), `latency_p99` (> alerting.latency_p99_ms), `performance` (AUC on matured
  labels < monitoring.auc_threshold);
- critical: `error_rate` (> alerting.error_rate_threshold), `model_failure`,
  `nightly_run_failure`.

Each alert has a `key` naming the condition and what crossed the line (e.g.
`data_drift:v3:industry+lead_source`); the cool-down compares keys, so the same drift is not
re-sent every night while a new feature drifting is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ml.config import Settings
from ml.errors import ConfigError

if TYPE_CHECKING:
    from ml.monitoring.run import MonitoringReport

SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True)
class Alert:
    """One alert: what happened (`rule`, `title`, `summary`), how bad (`severity`), evidence
    (`details`, `links`: names to paths or URLs)."""

    rule: str
    severity: str
    key: str
    title: str
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def severity_of(settings: Settings, rule: str) -> str:
    """The severity configured for a rule.

    Raises:
        ConfigError: the rule is not in `alerting.rules`.
    """
    try:
        return settings.alerting.rules[rule]
    except KeyError:
        known = ", ".join(sorted(settings.alerting.rules))
        raise ConfigError(
            f"no alerting rule {rule!r} in the settings (alerting.rules has: {known})"
        ) from None


def event_alert(
    settings: Settings,
    rule: str,
    title: str,
    summary: str = "",
    *,
    key: str | None = None,
    details: dict[str, Any] | None = None,
    links: dict[str, str] | None = None,
) -> Alert:
    """An alert for a platform event (deployment, promotion, model or nightly-run failure), for
    Dagster hooks and the CLI; the severity comes from the rule."""
    return Alert(
        rule=rule,
        severity=severity_of(settings, rule),
        key=key or f"{rule}:{title}",
        title=title,
        summary=summary or title,
        details=dict(details or {}),
        links=dict(links or {}),
    )


def service_alerts(
    settings: Settings, *, latency_p99_ms: float | None, error_rate: float | None, window: str
) -> list[Alert]:
    """Alerts for the real-time service's health over `window` (e.g. a date)."""
    cfg = settings.alerting
    out = []
    if latency_p99_ms is not None and latency_p99_ms > cfg.latency_p99_ms:
        out.append(
            event_alert(
                settings,
                "latency_p99",
                f"p99 latency {latency_p99_ms:.0f} ms > {cfg.latency_p99_ms:.0f} ms ({window})",
                key=f"latency_p99:{window}",
                details={"latency_p99_ms": latency_p99_ms, "threshold": cfg.latency_p99_ms},
            )
        )
    if error_rate is not None and error_rate > cfg.error_rate_threshold:
        out.append(
            event_alert(
                settings,
                "error_rate",
                f"error rate {error_rate:.1%} > {cfg.error_rate_threshold:.0%} ({window})",
                key=f"error_rate:{window}",
                details={"error_rate": error_rate, "threshold": cfg.error_rate_threshold},
            )
        )
    return out


def report_alerts(settings: Settings, report: MonitoringReport) -> list[Alert]:
    """The alerts a monitoring run calls for: the daily report (always), data drift, prediction
    drift, AUC below threshold on a matured cohort, and the service's p99 latency and error rate
    over the day before the run (from the prediction log)."""
    cfg = settings.monitoring
    summary = report.summary()
    links = {k: v for k, v in summary["reports"].items() if k.endswith("_html")}
    version, day = report.model_version, report.run_date.isoformat()
    alerts = [
        event_alert(
            settings,
            "daily_report",
            f"monitoring {day}: champion v{version}, "
            f"{len(report.drifted_features)} drifted feature(s)",
            (
                f"{summary['current_rows']:,} leads scored against {summary['reference_rows']:,} "
                f"reference rows; max PSI {summary['max_psi']} ({summary['worst_feature']}), "
                f"score PSI {summary['prediction_psi']}; {summary['performance_note']}"
            ),
            key=f"daily_report:{day}:v{version}",
            details={
                k: summary[k]
                for k in (
                    "max_psi",
                    "worst_feature",
                    "prediction_psi",
                    "latest_cohort",
                    "latest_cohort_auc",
                )
            },
            links=links,
        )
    ]
    drifted = report.data_drift[report.data_drift["psi_drifted"]]
    if len(drifted):
        names = sorted(drifted["feature"])
        alerts.append(
            event_alert(
                settings,
                "data_drift",
                f"data drift on {len(names)} feature(s) of champion v{version}: {', '.join(names)}",
                f"PSI > {cfg.psi_threshold} against the training data on {day}: "
                + ", ".join(f"{r.feature} {r.psi:.3f}" for r in drifted.itertuples()),
                key=f"data_drift:v{version}:{'+'.join(names)}",
                details={
                    "psi": {r.feature: round(r.psi, 4) for r in drifted.itertuples()},
                    "threshold": cfg.psi_threshold,
                    "run_id": report.run_id,
                },
                links=links,
            )
        )
    if report.prediction_psi > cfg.psi_threshold:
        alerts.append(
            event_alert(
                settings,
                "prediction_drift",
                f"score distribution of champion v{version} drifted: "
                f"PSI {report.prediction_psi:.3f}",
                f"PSI > {cfg.psi_threshold} against its test-window scores on {day}; tier mix "
                f"{summary['tier_mix']}",
                key=f"prediction_drift:v{version}",
                details={"psi": round(report.prediction_psi, 4), "threshold": cfg.psi_threshold},
                links=links,
            )
        )
    perf = report.performance
    breaches = perf[(perf["metric"] == "auc") & (perf["status"] == "breach")]
    for r in breaches.itertuples():
        alerts.append(
            event_alert(
                settings,
                "performance",
                f"AUC {r.value:.3f} < {cfg.auc_threshold} on matured cohort {r.cohort} "
                f"(v{r.model_version})",
                f"matured-label AUC of the leads scored on {r.cohort} fell below the threshold",
                key=f"performance:v{r.model_version}:{r.cohort}",
                details={
                    "auc": round(float(r.value), 4),
                    "threshold": cfg.auc_threshold,
                    "cohort": r.cohort,
                },
            )
        )
    serving = report.serving
    if len(serving):

        def latest(metric: str) -> float | None:
            rows = serving[serving["metric"] == metric]
            return None if rows.empty else float(rows["value"].iloc[-1])

        alerts += service_alerts(
            settings,
            latency_p99_ms=latest("latency_p99_ms"),
            error_rate=latest("error_rate"),
            window=day,
        )
    return alerts
