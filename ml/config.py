"""Settings: one YAML file parsed into a validated pydantic model.

`load_settings()` is the only place that reads environment variables; everything else receives a
`Settings`. Relative paths are resolved against the project root (paths under `paths` against
`paths.data_dir`), so the same settings work from any working directory.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from ml.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "config" / "training_config.yaml"

# environment variable -> dotted settings key it overrides
ENV_OVERRIDES = {
    "LEAD_SCORING_DATA_DIR": "paths.data_dir",
    "LEAD_SCORING_RAW_DIR": "paths.raw_dir",
    "LEAD_SCORING_WAREHOUSE": "paths.warehouse",
    "LEAD_SCORING_CRM_URL": "paths.crm_url",
    "LEAD_SCORING_MONITORING_URL": "paths.monitoring_url",
    "MLFLOW_TRACKING_URI": "paths.mlflow_tracking_uri",
    "LEAD_SCORING_PREDICTION_LOG_URL": "serving.prediction_log_url",
    "LEAD_SCORING_ALIAS_HISTORY_URL": "registry.alias_history_url",
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PathSettings(_Section):
    data_dir: Path = Path("data")
    raw_dir: Path = Path("raw")
    truth_dir: Path = Path("truth")
    warehouse: Path = Path("warehouse/warehouse.duckdb")
    marts_dir: Path = Path("marts")
    feast_dir: Path = Path("feast")
    mlflow_tracking_uri: str | None = None
    mlflow_artifacts: Path = Path("mlflow/artifacts")
    crm_url: str | None = None
    monitoring_url: str | None = None
    reports_dir: Path = Path("reports")
    dagster_home: Path = Path("dagster")


class GeneratorSettings(_Section):
    n_leads: int = Field(20_000, gt=0)
    days: int = Field(180, gt=0)
    end_date: date = date(2026, 11, 1)
    seed: int = 42
    activities_per_lead: float = Field(30.0, gt=0)


class FeatureSettings(_Section):
    snapshot_interval_days: int = Field(7, gt=0)
    max_lead_age_days: int = Field(120, gt=0)
    label_window_days: int = Field(60, gt=0)
    # a larger share of rejected raw rows fails the build (the export itself is broken)
    max_rejected_share: float = Field(0.05, ge=0, le=1)
    feature_service: str = "lead_scoring"


class SplitSettings(_Section):
    """Time-based split by snapshot date. Explicit dates win; otherwise the last matured
    snapshots are cut into test and validation windows of the given lengths."""

    train_start: date | None = None
    validation_start: date | None = None
    test_start: date | None = None
    validation_days: int = Field(21, gt=0)
    test_days: int = Field(21, gt=0)
    # Drop training rows whose snapshot lies within this many days before validation_start, so
    # their label windows do not reach into validation; label_window_days is a strict embargo.
    embargo_days: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> SplitSettings:
        given = [d for d in (self.train_start, self.validation_start, self.test_start) if d]
        if given != sorted(given) or len(set(given)) != len(given):
            raise ValueError("train_start < validation_start < test_start must hold")
        return self


class XGBoostParams(_Section):
    n_estimators: int = Field(600, gt=0)
    learning_rate: float = Field(0.05, gt=0, le=1)
    max_depth: int = Field(4, gt=0, le=16)
    min_child_weight: float = Field(5.0, ge=0)
    subsample: float = Field(0.9, gt=0, le=1)
    colsample_bytree: float = Field(0.8, gt=0, le=1)
    reg_lambda: float = Field(1.0, ge=0)
    max_cat_to_onehot: int = Field(4, ge=1)
    early_stopping_rounds: int = Field(50, gt=0)
    eval_metric: Literal["logloss", "auc"] = "logloss"  # early stopping on validation
    n_jobs: int = Field(2, gt=0)


class TrainingSettings(_Section):
    seed: int = 42
    split: SplitSettings = SplitSettings()
    xgboost: XGBoostParams = XGBoostParams()
    min_positive_examples: int = Field(50, gt=0)
    min_negative_examples: int = Field(50, gt=0)
    calibration: Literal["auto", "isotonic", "sigmoid", "none"] = "auto"
    categorical_features: list[str] = [
        "lead_source",
        "industry",
        "country",
        "license_type",
        "budget_band",
    ]


class EvaluationSettings(_Section):
    top_k_fraction: float = Field(0.10, gt=0, lt=1)
    top_k_count: int = Field(500, gt=0)
    decision_threshold: float | Literal["max_f1"] = "max_f1"
    segments: list[str] = ["lead_source", "industry"]
    calibration_bins: int = Field(10, ge=2)


class RegistrySettings(_Section):
    model_name: str = "lead_scoring"
    experiment: str = "lead_scoring"
    min_auc: float = Field(0.75, gt=0, le=1)  # promotion gate (original design)
    champion_tolerance: float = Field(0.005, ge=0, lt=1)  # challenger may trail by at most this AUC
    alias_history_url: str | None = None  # None: sqlite:///<data_dir>/mlflow/alias_history.db


class TierSettings(_Section):
    """Lower score bounds (0–100) of tiers A, B and C; below C is D."""

    A: float = Field(40.0, ge=0, le=100)
    B: float = Field(20.0, ge=0, le=100)
    C: float = Field(8.0, ge=0, le=100)

    @model_validator(mode="after")
    def _descending(self) -> TierSettings:
        if not self.A > self.B > self.C:
            raise ValueError("tier cut-offs must satisfy A > B > C")
        return self


class ScoringSettings(_Section):
    tiers: TierSettings = TierSettings()
    n_reasons: int = Field(3, ge=0, le=10)
    extract_format: Literal["parquet", "csv"] = "parquet"
    write_batch_size: int = Field(50_000, gt=0)


class MonitoringSettings(_Section):
    """Thresholds of the original design: PSI > 0.2, AUC < 0.75, 5,000 new labels."""

    psi_threshold: float = Field(0.2, gt=0)
    psi_bins: int = Field(10, ge=2)
    ks_pvalue: float = Field(0.01, gt=0, lt=1)
    chi2_pvalue: float = Field(0.01, gt=0, lt=1)
    auc_threshold: float = Field(0.75, gt=0, le=1)
    new_labels_threshold: int = Field(5_000, gt=0)
    report_sample_size: int = Field(20_000, gt=0)


class ChannelSettings(_Section):
    """Delivery settings shared by every alert channel. Secrets are never written here: fields
    ending in `_env` name the environment variable that holds them (read by load_settings)."""

    enabled: bool = True
    timeout_s: float = Field(5.0, gt=0)
    retries: int = Field(3, ge=0, le=10)  # attempts after the first
    backoff_s: float = Field(1.0, ge=0)  # wait before retry k: backoff_s * 2**(k-1)


class SlackChannel(ChannelSettings):
    webhook_url_env: str = "LEAD_SCORING_SLACK_WEBHOOK_URL"


class WebhookChannel(ChannelSettings):
    url_env: str = "LEAD_SCORING_ALERT_WEBHOOK_URL"


class EmailChannel(ChannelSettings):
    smtp_host: str = "localhost"
    smtp_port: int = Field(25, gt=0, lt=65536)
    starttls: bool = False
    sender: str = "lead-scoring@localhost"
    recipients: list[str] = []
    username_env: str = "LEAD_SCORING_SMTP_USER"
    password_env: str = "LEAD_SCORING_SMTP_PASSWORD"


class PagerDutyChannel(ChannelSettings):
    events_url: str = "https://events.pagerduty.com/v2/enqueue"
    routing_key_env: str = "LEAD_SCORING_PAGERDUTY_ROUTING_KEY"


class JsonlChannel(_Section):
    path: Path = Path("alerts/alerts.jsonl")  # relative to paths.data_dir; always on


class AlertChannels(_Section):
    slack: SlackChannel = SlackChannel()
    webhook: WebhookChannel = WebhookChannel()
    email: EmailChannel = EmailChannel()
    pagerduty: PagerDutyChannel = PagerDutyChannel()
    jsonl: JsonlChannel = JsonlChannel()


Severity = Literal["info", "warning", "critical"]
ChannelName = Literal["slack", "webhook", "email", "pagerduty"]


class AlertingSettings(_Section):
    """Rules map a condition to a severity, routes map a severity to channels (the JSON-lines
    file gets every alert). Defaults are the original design's."""

    rules: dict[str, Severity] = {
        "daily_report": "info",
        "deployment": "info",
        "promotion": "info",
        "data_drift": "warning",  # PSI > monitoring.psi_threshold on a model feature
        "prediction_drift": "warning",  # PSI > monitoring.psi_threshold on the score
        "latency_p99": "warning",  # p99 > latency_p99_ms
        "performance": "warning",  # AUC on matured labels < monitoring.auc_threshold
        "error_rate": "critical",  # > error_rate_threshold
        "model_failure": "critical",
        "nightly_run_failure": "critical",
    }
    routes: dict[Severity, list[ChannelName]] = {
        "info": ["slack"],
        "warning": ["slack", "email"],
        "critical": ["pagerduty", "slack"],
    }
    latency_p99_ms: float = Field(200.0, gt=0)
    error_rate_threshold: float = Field(0.05, gt=0, lt=1)
    cooldown_minutes: float = Field(360.0, ge=0)  # the same alert is not re-sent within this
    channels: AlertChannels = AlertChannels()

    def secret_env_names(self) -> list[str]:
        """Names of the environment variables the channels read secrets from."""
        names = []
        for channel in self.channels.model_dump().values():
            names += [v for k, v in channel.items() if k.endswith("_env") and v]
        return sorted(set(names))


class CanarySettings(_Section):
    """Canary: a sticky share of leads gets the challenger; the service routes them back to the
    champion when the challenger's last `window` requests (once `min_requests` were seen) show
    an error rate, p95 latency or score shift (PSI against the champion's scores) above these."""

    share: float = Field(0.1, gt=0, lt=1)
    min_requests: int = Field(200, gt=0)
    window: int = Field(1000, gt=0)
    max_error_rate: float = Field(0.02, ge=0, le=1)
    max_p95_latency_ms: float = Field(50.0, gt=0)
    max_score_psi: float = Field(0.25, gt=0)


class ABSettings(_Section):
    """A/B: a sticky `split` of leads gets the challenger; `lead-scoring ab-report` tests the
    conversion rates at `alpha` and sizes the test for `min_effect` (absolute) at `power`."""

    split: float = Field(0.5, gt=0, lt=1)
    alpha: float = Field(0.05, gt=0, lt=1)
    power: float = Field(0.8, gt=0, lt=1)
    min_effect: float = Field(0.02, gt=0, lt=1)


class ServingSettings(_Section):
    """The real-time service (ml/serving): model polling, request limits, online testing."""

    host: str = "127.0.0.1"
    port: int = Field(8000, gt=0, lt=65536)
    mode: Literal["off", "shadow", "canary", "ab"] = "shadow"
    poll_interval_seconds: float = Field(30.0, gt=0)
    batch_limit: int = Field(500, gt=0)  # leads per /predict/batch call
    micro_batch: int = Field(64, gt=0)  # concurrent requests scored in one call at most
    log_queue_size: int = Field(100_000, gt=0)  # predictions waiting for the log writer
    log_flush_seconds: float = Field(0.5, gt=0)
    prediction_log_url: str | None = None  # null: sqlite:///<data_dir>/serving/predictions.db
    canary: CanarySettings = CanarySettings()
    ab: ABSettings = ABSettings()


class ScheduleSettings(_Section):
    timezone: str = "Asia/Dubai"
    nightly_scoring_cron: str = "0 2 * * *"  # 02:00 every night
    weekly_retrain_cron: str = "0 3 * * 0"  # Sundays 03:00


class Settings(_Section):
    """All settings of the platform, with paths resolved to absolute ones."""

    paths: PathSettings = PathSettings()
    generator: GeneratorSettings = GeneratorSettings()
    features: FeatureSettings = FeatureSettings()
    training: TrainingSettings = TrainingSettings()
    evaluation: EvaluationSettings = EvaluationSettings()
    registry: RegistrySettings = RegistrySettings()
    scoring: ScoringSettings = ScoringSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    schedules: ScheduleSettings = ScheduleSettings()
    serving: ServingSettings = ServingSettings()
    alerting: AlertingSettings = AlertingSettings()
    source_file: Path | None = None
    # secrets read from the environment by load_settings (never dumped, hashed or printed)
    _secrets: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _resolve_paths(self) -> Settings:
        p = self.paths
        data_dir = p.data_dir if p.data_dir.is_absolute() else PROJECT_ROOT / p.data_dir
        resolved: dict[str, Any] = {"data_dir": data_dir}
        for name in (
            "raw_dir",
            "truth_dir",
            "warehouse",
            "marts_dir",
            "feast_dir",
            "mlflow_artifacts",
            "reports_dir",
            "dagster_home",
        ):
            value = getattr(p, name)
            resolved[name] = value if value.is_absolute() else data_dir / value
        resolved["mlflow_tracking_uri"] = (
            p.mlflow_tracking_uri or f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}"
        )
        resolved["crm_url"] = p.crm_url or f"sqlite:///{data_dir / 'crm' / 'crm.db'}"
        resolved["monitoring_url"] = (
            p.monitoring_url or f"sqlite:///{data_dir / 'monitoring' / 'monitoring.db'}"
        )
        object.__setattr__(self, "paths", p.model_copy(update=resolved))
        if self.registry.alias_history_url is None:
            url = f"sqlite:///{resolved['mlflow_artifacts'].parent / 'alias_history.db'}"
            object.__setattr__(
                self, "registry", self.registry.model_copy(update={"alias_history_url": url})
            )
        if self.serving.prediction_log_url is None:
            url = f"sqlite:///{data_dir / 'serving' / 'predictions.db'}"
            object.__setattr__(
                self, "serving", self.serving.model_copy(update={"prediction_log_url": url})
            )
        jsonl = self.alerting.channels.jsonl
        if not jsonl.path.is_absolute():
            channels = self.alerting.channels.model_copy(
                update={"jsonl": jsonl.model_copy(update={"path": data_dir / jsonl.path})}
            )
            object.__setattr__(
                self, "alerting", self.alerting.model_copy(update={"channels": channels})
            )
        return self

    def secret(self, env_name: str) -> str | None:
        """The value of a secret named in the settings (e.g. `alerting.channels.slack.
        webhook_url_env`), as read from the environment by load_settings; None if unset."""
        return self._secrets.get(env_name)

    @property
    def feature_repo(self) -> Path:
        return PROJECT_ROOT / "feature_repo"

    @property
    def dbt_project_dir(self) -> Path:
        return PROJECT_ROOT / "dbt_project"

    def config_hash(self) -> str:
        """A short hash of the effective settings (for reproducibility tags)."""
        payload = json.dumps(self.model_dump(mode="json", exclude={"source_file"}), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {}) or {}
    node[leaf] = value


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid settings in {source}:"]
    for e in err.errors():
        key = ".".join(str(part) for part in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(
                f"  - {key}: unknown key (check the spelling against config/training_config.yaml)"
            )
        else:
            lines.append(f"  - {key}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def load_settings(
    path: Path | str | None = None,
    overrides: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> Settings:
    """Load and validate the settings file.

    Args:
        path: the YAML file; default `$LEAD_SCORING_CONFIG` or config/training_config.yaml.
        overrides: dotted keys to values applied after the file and the environment
            (tests use this, e.g. ``{"paths.data_dir": tmp_path}``).
        env: the environment to read overrides from (default ``os.environ``).

    Raises:
        ConfigError: the file is missing or unreadable, or a key is unknown or has a bad value.
    """
    env = dict(os.environ if env is None else env)
    config_path = Path(path or env.get("LEAD_SCORING_CONFIG") or DEFAULT_CONFIG)
    if not config_path.is_file():
        raise ConfigError(f"settings file not found: {config_path}")
    try:
        tree = yaml.safe_load(config_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"settings file {config_path} is not valid YAML: {exc}") from exc
    if not isinstance(tree, dict):
        raise ConfigError(f"settings file {config_path} must hold a mapping at the top level")
    for var, dotted in ENV_OVERRIDES.items():
        if env.get(var):
            _set_dotted(tree, dotted, env[var])
    for dotted, value in (overrides or {}).items():
        _set_dotted(tree, dotted, value)
    tree["source_file"] = str(config_path)
    try:
        settings = Settings.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, str(config_path))) from None
    # Secrets (alert webhooks, SMTP password, PagerDuty key) come only from the environment.
    settings._secrets.update(
        {name: env[name] for name in settings.alerting.secret_env_names() if env.get(name)}
    )
    return settings
