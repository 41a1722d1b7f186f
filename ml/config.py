"""Settings: one YAML file parsed into a validated pydantic model.

`load_settings()` is the only place that reads environment variables; everything else receives a
`Settings`. Relative paths are resolved against the project root (paths under `paths` against
`paths.data_dir`), so the same settings work from any working directory.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
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
    field_validator,
    model_validator,
)

from ml import contract
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
    "LEAD_SCORING_ONLINE_STORE_URL": "paths.online_store_url",
    "LEAD_SCORING_FEAST_REGISTRY_URL": "paths.feast_registry_url",
    "LEAD_SCORING_ENGINE": "engine",
    "LEAD_SCORING_SPARK_MASTER": "spark.master",
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
    # Feast's online store: sqlite:///file.db or redis://[:password@]host:port/db
    online_store_url: str | None = None
    # Feast's registry: a protobuf file (a path) or a SQL registry (postgresql+psycopg://...)
    feast_registry_url: str | None = None
    mlflow_tracking_uri: str | None = None
    mlflow_artifacts: Path = Path("mlflow/artifacts")
    crm_url: str | None = None
    monitoring_url: str | None = None
    reports_dir: Path = Path("reports")
    dagster_home: Path = Path("dagster")

    @field_validator("online_store_url")
    @classmethod
    def _online_store_scheme(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("sqlite:///", "redis://", "rediss://")):
            raise ValueError(
                f"{url!r} is not an online store Feast can serve from here; use "
                "sqlite:///path/online_store.db or redis://host:6379/0"
            )
        return url

    @field_validator("feast_registry_url")
    @classmethod
    def _registry_scheme(cls, url: str | None) -> str | None:
        if url is not None and "://" in url and not url.startswith(("postgresql", "postgres://")):
            raise ValueError(
                f"{url!r}: the Feast registry is a file path or a PostgreSQL URL "
                "(postgresql+psycopg://user:pw@host/db)"
            )
        return url


class SparkSettings(_Section):
    """The Spark of `engine: spark`: dbt (dbt-spark, session method), Feast's offline store and
    batch scoring all start an in-process session with these settings."""

    master: str = "local[2]"
    # managed tables (one Parquet folder each) and the Derby metastore of the dbt build
    warehouse_dir: Path = Path("warehouse/spark")
    driver_memory: str = "2g"
    # Spark's default 200 shuffle partitions cost more than they split on one machine
    shuffle_partitions: int = Field(default=4, ge=1)
    # Tiny inputs (the parity tests, `make demo-spark`): each query's fixed cost dominates there,
    # so queries run interpreted (no whole-stage code generation), without adaptive re-planning,
    # in a JVM that compiles less (C1 only, serial GC). Measured on the tests' 300-lead build:
    # dbt-spark 158 s -> 116 s. Leave false for real volumes, where compiled queries pay off.
    small_data: bool = False


class DuckDBSettings(_Section):
    """The DuckDB warehouse of `engine: duckdb` (dbt-duckdb, one file, one writer process)."""

    # dbt's threads (models and tests run at once). auto: one per core while the raw files are
    # below auto_threads_max_raw_mb, where the many small data tests wait on planning rather than
    # compute (the demo's build: about a fifth faster with two); one above, where a second
    # thread made the heavy models share the cores (lead_features 2x slower at 1M leads).
    dbt_threads: Literal["auto"] | int = "auto"
    auto_threads_max_raw_mb: float = Field(default=200.0, gt=0)

    @field_validator("dbt_threads")
    @classmethod
    def _positive(cls, value: Literal["auto"] | int) -> Literal["auto"] | int:
        if value != "auto" and value < 1:
            raise ValueError("must be 'auto' or a number of threads >= 1")
        return value


class GeneratorSettings(_Section):
    n_leads: int = Field(18_000, gt=0)
    days: int = Field(540, gt=0)
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


_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class ActivityTypeSettings(_Section):
    """One activity type: its points in the sales team's engagement rule (0: not counted) and
    how a reason phrases a count of it: [none, one, many with {n}]; null: built from the name."""

    engagement_weight: float = Field(0.0, ge=0)
    phrases: tuple[str, str, str] | None = None

    @model_validator(mode="after")
    def _many_has_n(self) -> ActivityTypeSettings:
        if self.phrases is not None and "{n}" not in self.phrases[2]:
            raise ValueError(
                f"phrases: the third (many) must contain {{n}}, got {self.phrases[2]!r}")
        return self


def _default_activity_types() -> dict[str, ActivityTypeSettings]:
    return {
        name: ActivityTypeSettings(engagement_weight=weight, phrases=phrases)
        for name, (weight, phrases) in contract.DEFAULT_ACTIVITY_TYPES.items()
    }


class VocabularySettings(_Section):
    """The one vocabulary: activity types and categorical values, read by dbt (vars), Feast
    (a field per windowed count), training (the feature list), the reasons and the dashboard.
    Adding an activity type here adds its `n_<type>_<w>d` counts end to end."""

    activity_windows_days: list[int] = list(contract.ACTIVITY_WINDOWS_DAYS)
    activity_types: dict[str, ActivityTypeSettings] = Field(
        default_factory=_default_activity_types
    )
    # attribute -> {value: its wording in a reason, or null} (a list: values without wording);
    # an empty mapping is free text
    categoricals: dict[str, dict[str, str | None]] = Field(
        default_factory=lambda: {k: dict(v) for k, v in contract.DEFAULT_CATEGORICALS.items()}
    )

    @field_validator("categoricals", mode="before")
    @classmethod
    def _lists_as_mappings(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: dict.fromkeys(v) if isinstance(v, list) else ({} if v is None else v)
                for k, v in value.items()
            }
        return value

    @model_validator(mode="after")
    def _consistent(self) -> VocabularySettings:
        windows = self.activity_windows_days
        if not windows or any(w <= 0 for w in windows) or windows != sorted(set(windows)):
            raise ValueError(
                f"activity_windows_days must be positive, increasing and distinct, got {windows}")
        missing = [w for w in contract.REQUIRED_WINDOWS_DAYS if w not in windows]
        if missing:
            raise ValueError(f"activity_windows_days lacks {missing}: engagement_score counts 30 "
                             "days and the email/pricing rates 90 days")
        bad = [t for t in self.activity_types if not _NAME.match(t)]
        if bad:
            raise ValueError(f"activity type names become column names n_<type>_<w>d: {bad} must "
                             "be lowercase letters, digits and _ (start with a letter, <= 40)")
        missing_types = [
            t for t in contract.REQUIRED_ACTIVITY_TYPES if t not in self.activity_types]
        if missing_types:
            raise ValueError(f"activity_types lacks {missing_types}: website_visits, email_opens "
                             "and the 90-day rates are computed from them")
        if set(self.categoricals) != set(contract.CATEGORICAL_FEATURES):
            extra = sorted(set(self.categoricals) - set(contract.CATEGORICAL_FEATURES))
            lacking = sorted(set(contract.CATEGORICAL_FEATURES) - set(self.categoricals))
            raise ValueError(
                f"categoricals must list exactly the leads file's categorical attributes "
                f"{list(contract.CATEGORICAL_FEATURES)} (their values are configurable, the "
                f"columns are the raw contract's): unknown {extra}, missing {lacking}")
        for name in contract.WAREHOUSE_ENUMS:
            if not self.categoricals[name]:
                raise ValueError(f"categoricals.{name}: staging checks it against this list; "
                                 "it cannot be empty")
        for name, values in self.categoricals.items():
            blank = [v for v in values if not str(v).strip()]
            if blank:
                raise ValueError(f"categoricals.{name} has an empty value")
        return self

    @property
    def activity_type_names(self) -> tuple[str, ...]:
        return tuple(self.activity_types)

    @property
    def activity_count_features(self) -> tuple[str, ...]:
        """The windowed counts n_<type>_<w>d, type-major."""
        return contract.activity_count_features(self.activity_types, self.activity_windows_days)

    @property
    def numeric_features(self) -> tuple[str, ...]:
        return contract.numeric_features(self.activity_types, self.activity_windows_days)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Every feature column of the lead_features mart, in mart order."""
        return contract.feature_names(
            self.categoricals, self.activity_types, self.activity_windows_days)

    def values(self, attribute: str) -> tuple[str, ...]:
        """The closed list of an attribute (empty: free text)."""
        return tuple(self.categoricals[attribute])

    def dbt_vars(self) -> dict[str, Any]:
        """The vocabulary as dbt vars (the macros in dbt_project/macros/crm_enums.sql)."""
        return {
            "activity_types": list(self.activity_types),
            "activity_windows_days": list(self.activity_windows_days),
            "engagement_weights": {
                t: int(w) if float(w).is_integer() else w
                for t, a in self.activity_types.items()
                if (w := a.engagement_weight)
            },
            "crm_enums": {name: list(self.categoricals[name]) for name in contract.WAREHOUSE_ENUMS},
            "feature_columns": self.feature_column_types,
        }

    @property
    def feature_column_types(self) -> dict[str, str]:
        """The lead_features mart's columns -> string | timestamp | integer | double."""
        return contract.feature_column_types(
            self.categoricals, self.activity_types, self.activity_windows_days)


class SplitSettings(_Section):
    """How each backtest fold and the final refit cut the labelled snapshots by date.

    A fold evaluated on the window starting at T (its origin) validates on the
    `validation_days` of snapshots ending `embargo_days` before T and trains on everything
    before that, so every label it learns or validates on had matured by T."""

    train_start: date | None = None  # ignore snapshots before this date
    validation_days: int = Field(21, gt=0)
    test_days: int = Field(7, gt=0)  # each fold's test window
    # Days between the last snapshot a fold learns from and its test window. null: the label
    # window (features.label_window_days), the smallest value that does not leak; smaller is
    # refused, larger adds a gap.
    embargo_days: int | None = Field(None, ge=0)


class BacktestSettings(_Section):
    """Rolling-origin backtest: `folds` origins, `step_days` apart, the last one as late as the
    matured labels allow."""

    folds: int = Field(4, ge=4, le=52)
    step_days: int = Field(7, gt=0)


class XGBoostParams(_Section):
    n_estimators: int = Field(200, gt=0)
    learning_rate: float = Field(0.2, gt=0, le=1)
    max_depth: int = Field(4, gt=0, le=16)
    min_child_weight: float = Field(5.0, ge=0)
    subsample: float = Field(0.9, gt=0, le=1)
    colsample_bytree: float = Field(0.8, gt=0, le=1)
    reg_lambda: float = Field(1.0, ge=0)
    max_cat_to_onehot: int = Field(4, ge=1)
    early_stopping_rounds: int = Field(25, gt=0)
    eval_metric: Literal["logloss", "auc"] = "logloss"  # early stopping on validation
    n_jobs: int = Field(2, gt=0)

    def with_overrides(self, overrides: dict[str, Any]) -> XGBoostParams:
        """These settings with a search entry's values, validated (and typed) as settings."""
        return XGBoostParams(**{**self.model_dump(), **overrides})


class LogisticParams(_Section):
    l2: float = Field(1.0, ge=0)  # ridge penalty on standardised coefficients


Family = Literal["xgboost", "logistic", "rules"]


def _matches(name: str, patterns: list[str]) -> bool:
    """Whether a feature name matches one of the shell-style patterns."""
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


class TrainingSettings(_Section):
    seed: int = 42
    split: SplitSettings = SplitSettings()
    backtest: BacktestSettings = BacktestSettings()
    # Candidate model families, compared on the same backtest folds; the best mean AUC wins,
    # the simpler family (later in this order: xgboost, logistic, rules) on a tie.
    families: list[Family] = ["xgboost", "logistic", "rules"]
    tie_tolerance: float = Field(0.002, ge=0, lt=0.1)  # AUC difference that counts as a tie
    xgboost: XGBoostParams = XGBoostParams()
    # Small tuning budget: overrides of `xgboost` tried in every fold, chosen on the fold's
    # validation log loss (never its test window).
    xgboost_search: list[dict[str, Any]] = [{}]
    logistic: LogisticParams = LogisticParams()
    # The score may only rise with these features (monotone constraints in every family);
    # shell-style patterns allowed ("n_*": every windowed activity count).
    monotone_increasing: list[str] = ["engagement_score", "website_visits", "email_opens", "n_*"]

    # ... and may only fall with these: a lead idle for longer is never a better lead.
    monotone_decreasing: list[str] = ["days_since_last_activity"]

    def monotone(self, features: list[str]) -> list[int]:
        """Per feature, +1 when the score may only rise with it, -1 only fall, else 0."""
        return [1 if _matches(n, self.monotone_increasing)
                else -1 if _matches(n, self.monotone_decreasing) else 0 for n in features]
    # The request model (cold start): the features a web form or an agent gives about a new
    # lead, learned from the same point-in-time rows as the full model, restricted to leads in
    # their first `request_new_lead_days` (what a new lead is). Age is no input: "created today
    # with 10 website visits" lies outside anything the data shows (activity starts at
    # creation), and with age as an input the model added the boost of age 0 to that of the
    # visits (README payload: 79, against ~0.43 oracle probability for such first-week leads).
    request_features: list[str] = [
        "lead_source", "industry", "country", "license_type", "budget_band", "company_size",
        "visa_quota", "engagement_score", "website_visits", "email_opens",
    ]
    request_new_lead_days: int = Field(7, gt=0)
    # The request model's own tuning budget (as `xgboost_search`, chosen per fit on validation
    # log loss). Ten inputs and a first week of data suit shallower trees: depth 2 had the
    # lower validation log loss in 9 of 9 fits of the default data (3 seeds x 3 samplings).
    request_xgboost_search: list[dict[str, Any]] = [{}, {"max_depth": 2}]
    # Share of training rows in which each optional request field is blanked, so the request
    # model learns what "not given" means instead of guessing it.
    request_mask_share: float = Field(0.3, ge=0, lt=1)
    # Share of non-converted rows each fit learns from (weighted back up; all converted rows are
    # kept): with a base rate of a few percent, most rows tell the model little it needs.
    negative_sampling: float = Field(0.25, gt=0, le=1)
    min_positive_examples: int = Field(50, gt=0)
    min_negative_examples: int = Field(50, gt=0)
    calibration: Literal["auto", "isotonic", "sigmoid", "none"] = "auto"
    # Isotonic steps tie leads (on the default data 41 of the 67 tier-A leads shared one score
    # for a 0.2 % Brier gain): with `auto` it must beat the best tie-free option (none, sigmoid)
    # by this relative share of Brier.
    isotonic_min_gain: float = Field(0.01, ge=0, lt=1)
    categorical_features: list[str] = [
        "lead_source",
        "industry",
        "country",
        "license_type",
        "budget_band",
    ]

    @model_validator(mode="after")
    def _known_families(self) -> TrainingSettings:
        if not self.families:
            raise ValueError("training.families must name at least one model family")
        if len(set(self.families)) != len(self.families):
            raise ValueError("training.families lists a family twice")
        return self

    @model_validator(mode="after")
    def _valid_searches(self) -> TrainingSettings:
        for key in ("xgboost_search", "request_xgboost_search"):
            search = getattr(self, key)
            if not search:
                raise ValueError(
                    f"training.{key} needs at least one entry ({{}}: training.xgboost)")
            for overrides in search:  # each candidate must be valid training.xgboost settings
                try:
                    self.xgboost.with_overrides(overrides)
                except ValidationError as exc:
                    problems = "; ".join(f"{_key_of(e)}: {_problem(e)}" for e in exc.errors())
                    raise ValueError(f"training.{key} entry {overrides}: {problems}") from None
        return self


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
    report_sample_size: int = Field(5_000, gt=0)
    # a KS / chi-square test flags drift only when p < ks_pvalue / chi2_pvalue AND its effect
    # size reaches these (the KS statistic; the total variation distance of the categories)
    ks_min_statistic: float = Field(0.1, gt=0, le=1)
    chi2_min_distance: float = Field(0.1, gt=0, le=1)
    # the recent intake: leads created in the last N days against the reference's leads of the
    # same age; judged by PSI > its own threshold when both sides hold at least min_rows rows
    recent_intake_days: int = Field(14, ge=1)
    recent_intake_psi_threshold: float = Field(0.1, gt=0)
    recent_intake_min_rows: int = Field(500, ge=1)


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
    """SMTP delivery. STARTTLS with a verified certificate unless `starttls: false` (then the
    sender logs a warning whenever it logs in over the plain connection)."""

    smtp_host: str = "localhost"
    smtp_port: int = Field(25, gt=0, lt=65536)
    starttls: bool = True
    ca_file: Path | None = None  # CA bundle for the server's certificate; None: the system's
    sender: str = "lead-scoring@localhost"
    recipients: list[str] = []
    username_env: str = "LEAD_SCORING_SMTP_USER"
    password_env: str = "LEAD_SCORING_SMTP_PASSWORD"

    @model_validator(mode="after")
    def _resolve_ca_file(self) -> EmailChannel:
        if self.ca_file is not None and not self.ca_file.is_absolute():
            object.__setattr__(self, "ca_file", PROJECT_ROOT / self.ca_file)
        return self


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


class AuthSettings(_Section):
    """API keys of the service (ml/serving/auth.py). Off unless a key is configured: in the
    environment variable `keys_env` (comma-separated) or in `keys_file` (one key per line, `#`
    comments). With keys, every endpoint but /health asks for one in `header`."""

    header: str = Field("X-API-Key", min_length=1, pattern=r"^[A-Za-z0-9-]+$")
    keys_env: str = "LEAD_SCORING_API_KEYS"
    keys_file: Path | None = None  # relative: to the project root, like every settings path


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
    # After each model swap, collect once and freeze what is left out of the garbage collector's
    # sight (gc.freeze): a full collection of the ~490k objects a loaded service holds stalls
    # every request for ~300 ms, and CPython ran one about every 50,000 requests
    # (tests/benchmarks/bench_gc_pauses.py).
    freeze_heap: bool = True
    canary: CanarySettings = CanarySettings()
    ab: ABSettings = ABSettings()
    auth: AuthSettings = AuthSettings()


class ScheduleSettings(_Section):
    timezone: str = "Asia/Dubai"
    nightly_scoring_cron: str = "0 2 * * *"  # 02:00 every night
    weekly_retrain_cron: str = "0 3 * * 0"  # Sundays 03:00
    # the first day of the nightly scoring partitions (one Dagster partition per scoring date)
    first_scoring_date: date = date(2025, 1, 1)


class Settings(_Section):
    """All settings of the platform, with paths resolved to absolute ones."""

    # where dbt builds, Feast's offline store reads and batch scoring runs (same SQL, same
    # scoring function; tests/dbt/test_spark_parity.py keeps the two engines equal)
    engine: Literal["duckdb", "spark"] = "duckdb"
    paths: PathSettings = PathSettings()
    duckdb: DuckDBSettings = DuckDBSettings()
    spark: SparkSettings = SparkSettings()
    generator: GeneratorSettings = GeneratorSettings()
    vocabulary: VocabularySettings = VocabularySettings()
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
    _api_keys: frozenset[str] = PrivateAttr(default_factory=frozenset)

    @model_validator(mode="after")
    def _no_leaking_split(self) -> Settings:
        embargo = self.training.split.embargo_days
        window = self.features.label_window_days
        if embargo is not None and embargo < window:
            raise ValueError(
                f"training.split.embargo_days {embargo} < features.label_window_days {window}: "
                "training labels would be decided by conversions inside the evaluation window "
                f"(label leakage); use at least {window}, or null for exactly the label window")
        features = list(self.vocabulary.feature_names)
        for key in ("request_features", "categorical_features"):
            unknown = sorted(set(getattr(self.training, key)) - set(features))
            if unknown:
                raise ValueError(f"training.{key} names features the vocabulary does not make: "
                                 f"{unknown}")
        for key in ("monotone_increasing", "monotone_decreasing"):
            unmatched = [p for p in getattr(self.training, key)
                         if not any(fnmatch.fnmatchcase(f, p) for f in features)]
            if unmatched:
                raise ValueError(f"training.{key} matches no feature: {unmatched}")
        both = [f for f in features if _matches(f, self.training.monotone_increasing)
                and _matches(f, self.training.monotone_decreasing)]
        if both:
            raise ValueError(
                f"training.monotone_increasing and monotone_decreasing both name {both}")
        return self

    @property
    def embargo_days(self) -> int:
        """Days from a fold's last learnable snapshot to its test window (≥ the label window)."""
        split = self.training.split
        return self.features.label_window_days if split.embargo_days is None else split.embargo_days

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
        feast_dir = resolved["feast_dir"]
        resolved["online_store_url"] = (
            p.online_store_url or f"sqlite:///{feast_dir / 'online_store.db'}"
        )
        resolved["feast_registry_url"] = p.feast_registry_url or str(feast_dir / "registry.db")
        resolved["crm_url"] = p.crm_url or f"sqlite:///{data_dir / 'crm' / 'crm.db'}"
        resolved["monitoring_url"] = (
            p.monitoring_url or f"sqlite:///{data_dir / 'monitoring' / 'monitoring.db'}"
        )
        object.__setattr__(self, "paths", p.model_copy(update=resolved))
        if not self.spark.warehouse_dir.is_absolute():
            warehouse_dir = data_dir / self.spark.warehouse_dir
            spark = self.spark.model_copy(update={"warehouse_dir": warehouse_dir})
            object.__setattr__(self, "spark", spark)
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
    def api_keys(self) -> frozenset[str]:
        """The service's API keys (serving.auth), read by load_settings; empty: auth is off."""
        return self._api_keys

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


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any, origin: str) -> None:
    """Set `dotted` (e.g. "paths.data_dir") in the parsed file; `origin` names where the value
    comes from, for the error when a parent key in the file is not a section."""
    node = tree
    *parents, leaf = dotted.split(".")
    for depth, key in enumerate(parents):
        if node.get(key) is None:  # absent, or a section left empty (`paths:`)
            node[key] = {}
        node = node[key]
        if not isinstance(node, dict):
            where = ".".join(parents[: depth + 1])
            raise ConfigError(
                f"{where}: must be a section (a mapping of keys) to take {dotted} from "
                f"{origin}, got {_short(node)}"
            )
    node[leaf] = value


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _SettingsLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (the safe
    loader keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key: the safe loader reports it
                continue
            if first != key_node.start_mark.line + 1:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} is given twice (first on line {first})",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def _yaml_error(exc: yaml.YAMLError, source: Path) -> str:
    """One line: where (line, column), what, and the enclosing construct, from a YAML error."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    message = f"settings file {source} is not valid YAML{where}: {problem}"
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context:
        started = f" that starts at line {context_mark.line + 1}" if context_mark else ""
        message += f" ({context}{started})"
    return message


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The line of the file where the key at `loc` (a pydantic error location) is written, or
    None when it is not in the file (a default, or set from the environment)."""
    node, line = root, None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((kv for kv in node.value if kv[0].value == str(part)), None)
            if match is None:
                return line
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _format_errors(err: ValidationError, source: str, root: yaml.Node | None = None) -> str:
    lines = [f"invalid settings in {source}:"]
    for e in err.errors():
        line = _line_of(root, e["loc"])
        at = f" (line {line})" if line else ""
        lines.append(f"  - {_key_of(e)}: {_problem(e)}{at}")
    return "\n".join(lines)


def _key_of(error: Any) -> str:
    return ".".join(str(part) for part in error["loc"]) or "(top level)"


def _problem(error: Any) -> str:
    """One validation error in words: a misspelt key is named as such, any other with its value."""
    if error["type"] == "extra_forbidden":
        return "unknown key (check the spelling against config/training_config.yaml)"
    return f"{error['msg']} (got {_short(error.get('input'))})"


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
    if not config_path.exists():
        raise ConfigError(f"settings file not found: {config_path}")
    if not config_path.is_file():
        raise ConfigError(f"settings file {config_path} is not a file")
    try:
        text = config_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"settings file {config_path} is not UTF-8 text (byte {exc.start}: {exc.reason})"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read settings file {config_path}: {exc.strerror}") from None
    try:
        tree = yaml.load(text, Loader=_SettingsLoader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_error(exc, config_path)) from None
    if tree is None:
        # an empty file is more likely a truncated copy than a wish for every default
        raise ConfigError(
            f"settings file {config_path} is empty: give it the sections of "
            f"config/training_config.yaml (or point --config / LEAD_SCORING_CONFIG at that file)"
        )
    if not isinstance(tree, dict):
        raise ConfigError(
            f"settings file {config_path} must hold a mapping of sections at the top level "
            f"(paths:, training:, ...), got a {type(tree).__name__}"
        )
    try:
        for var, dotted in ENV_OVERRIDES.items():
            if env.get(var):
                _set_dotted(tree, dotted, env[var], f"${var}")
        for dotted, value in (overrides or {}).items():
            _set_dotted(tree, dotted, value, "the overrides")
    except ConfigError as exc:
        raise ConfigError(f"invalid settings in {config_path}: {exc}") from None
    tree["source_file"] = str(config_path)
    try:
        settings = Settings.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, str(config_path), yaml.compose(text))) from None
    # Secrets (alert webhooks, SMTP password, PagerDuty key) come only from the environment.
    settings._secrets.update(
        {name: env[name] for name in settings.alerting.secret_env_names() if env.get(name)}
    )
    settings._api_keys = _api_keys(settings.serving.auth, env, config_path)
    return settings


def _api_keys(auth: AuthSettings, env: dict[str, str], config_path: Path) -> frozenset[str]:
    """API keys from `auth.keys_env` (comma-separated) and `auth.keys_file` (one per line)."""
    keys = {k.strip() for k in env.get(auth.keys_env, "").split(",") if k.strip()}
    if auth.keys_file is not None:
        path = auth.keys_file if auth.keys_file.is_absolute() else PROJECT_ROOT / auth.keys_file
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise ConfigError(
                f"invalid settings in {config_path}: serving.auth.keys_file {path} cannot be "
                f"read ({exc.strerror}); create it with one API key per line, or set it to null"
            ) from None
        from_file = {ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")}
        if not from_file:
            raise ConfigError(
                f"invalid settings in {config_path}: serving.auth.keys_file {path} holds no key; "
                "put one API key per line, or set it to null"
            )
        keys |= from_file
    short = [k for k in keys if len(k) < 16]
    if short:
        raise ConfigError(
            f"invalid settings in {config_path}: {len(short)} API key(s) of serving.auth are "
            "shorter than 16 characters; use long random keys (e.g. `openssl rand -hex 24`)"
        )
    return frozenset(keys)
