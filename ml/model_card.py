"""A model card per registered version: what it learned from, how well it ranks (backtest
figures with their 95 % intervals, segment AUCs, calibration) and what it is known not to do.

Built only from what the version's MLflow run recorded (its tags, params, metrics and
`evaluation.json`), so a card can be made for any registered version, and every figure on it is
one the run backs. `log_model_card` writes it as Markdown and JSON to
`<reports_dir>/model_cards/v<N>.{md,json}` and logs both to the version's run under
`model_card/`; the dashboard's Overview shows the card of each aliased version.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ml.backtest import mean_ci95
from ml.config import Settings
from ml.errors import DataError
from ml.evaluate import auc_interval

CARD_DIR = "model_card"  # artifact folder on the version's run
CARD_MD, CARD_JSON = "model_card.md", "model_card.json"
EVALUATION_FILE = "evaluation.json"
# Backtest figures shown with their interval over the folds: (key in a fold row, label).
FOLD_METRICS = (
    ("auc", "ROC AUC"),
    ("pr_auc", "PR-AUC"),
    ("precision_at_k", "Precision@K"),
    ("recall_at_k", "Recall@K"),
    ("f1", "F1 at the threshold"),
    ("brier", "Brier score"),
    ("ece", "ECE"),
    ("lift_share_of_oracle", "share of the oracle's lift"),
)
# A segment with fewer positives than this has an AUC too uncertain to act on.
MIN_SEGMENT_POSITIVES = 30


@dataclass(frozen=True)
class ModelCard:
    """Everything the card says about one registered version (JSON-ready)."""

    model: str
    version: int
    run_id: str
    created: str
    family: str
    request_family: str | None
    calibration_method: str
    label_window_days: int
    data: dict[str, Any]
    features: dict[str, list[str]]
    backtest: list[dict[str, Any]]  # metric, mean, ci95 low / high over the folds
    folds: list[dict[str, Any]]
    families: list[dict[str, Any]]  # every family's mean AUC and interval on the same folds
    request_model: dict[str, Any] | None
    segments: list[dict[str, Any]]  # segment, level, n, positives, auc, ci95
    calibration: list[dict[str, Any]]  # equal-count bins of the pooled out-of-fold scores
    ece: float | None
    brier: float | None
    reproducibility: dict[str, str]
    limits: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def markdown(self) -> str:
        return render_markdown(self)


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _fmt(value: Any, digits: int = 4) -> str:
    value = _num(value)
    return "—" if value is None else f"{value:.{digits}f}"


def _interval(low: Any, high: Any, digits: int = 4) -> str:
    if _num(low) is None or _num(high) is None:
        return "—"
    return f"{_fmt(low, digits)} – {_fmt(high, digits)}"


def _segments(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        n, positives, auc = int(row["n"]), int(row["positives"]), _num(row.get("auc"))
        low, high = (None, None) if auc is None else auc_interval(auc, positives, n - positives)
        out.append({"segment": row["segment"], "level": row["level"], "n": n,
                    "positives": positives, "auc": auc, "ci95_low": low, "ci95_high": high})
    return out


def _limits(card: dict[str, Any], settings: Settings) -> list[str]:
    """Known limits, each stated from the version's own figures."""
    limits = [
        f"It predicts conversion within {card['label_window_days']} days of a snapshot; a lead "
        "that converts later counted as not converted when it learned.",
        f"It learned from snapshots {card['data']['snapshot_min']} → "
        f"{card['data']['snapshot_max']}; behaviour after that is unseen (the drift monitoring "
        "compares today's leads with this window).",
        "Its scores rank leads by association with conversion; they do not say what an action "
        "on a lead would change.",
    ]
    auc = next((b for b in card["backtest"] if b["metric"] == "auc"), None)
    if auc is not None and card["data"]["folds"]:
        limits.append(
            f"The backtest has {card['data']['folds']} folds: the 95 % interval of the mean AUC "
            f"({_interval(auc['ci95_low'], auc['ci95_high'])}) is a t-interval over "
            f"{card['data']['folds']} values."
        )
    floor = settings.registry.min_auc
    for s in card["segments"]:
        where = f"{s['segment']} = {s['level']}"
        if s["auc"] is None:
            limits.append(f"{where}: no AUC ({s['positives']} of {s['n']} rows converted).")
        elif s["positives"] < MIN_SEGMENT_POSITIVES:
            limits.append(
                f"{where}: only {s['positives']} conversions in {s['n']} rows; its AUC "
                f"{_fmt(s['auc'], 3)} ({_interval(s['ci95_low'], s['ci95_high'], 3)}) is "
                "uncertain."
            )
        elif s["auc"] < floor:
            limits.append(
                f"{where}: AUC {_fmt(s['auc'], 3)} is below the gate's floor "
                f"registry.min_auc = {floor:g}; it ranks these leads worse than the rest."
            )
    bins = [b for b in card["calibration"] if b.get("n")]
    if bins:
        worst = max(bins, key=lambda b: abs(b["mean_predicted"] - b["observed_rate"]))
        gap = worst["observed_rate"] - worst["mean_predicted"]
        limits.append(
            f"Calibration: the largest gap is in bin {worst['bin']} of {len(bins)} (scores "
            f"{_fmt(worst['min_score'], 3)}–{_fmt(worst['max_score'], 3)}): predicted "
            f"{worst['mean_predicted']:.1%}, observed {worst['observed_rate']:.1%} "
            f"({'under' if gap > 0 else 'over'}-confident by {abs(gap):.1%})."
        )
    request = card["request_model"]
    if request and auc is not None:
        limits.append(
            f"A lead the online store does not know is scored by the request model "
            f"({request['family']}, backtest AUC {_fmt(request.get('auc_mean'))} on leads in "
            f"their first {request.get('new_lead_days', '?')} days, against "
            f"{_fmt(request.get('baseline_rules_auc_mean'))} for the engagement score alone on "
            f"the same rows; the full model's {_fmt(auc['mean'])} is on every open lead): it "
            "has less to go on."
        )
    if card["data"].get("oracle_auc_mean") is not None:
        limits.append(
            "These figures come from generated data (only there is the true probability, the "
            "oracle, known); on a real CRM the same backtest measures it on that CRM's data."
        )
    return limits


def build_card(
    *,
    model: str,
    version: int,
    run_id: str,
    created: str,
    tags: dict[str, str],
    params: dict[str, str],
    evaluation: dict[str, Any],
    settings: Settings,
) -> ModelCard:
    """The card of one version from what its run recorded.

    Raises:
        DataError: the run's evaluation has no backtest block (a version trained before
            backtests existed) or no out-of-fold figures.
    """
    summary = evaluation.get("backtest")
    oof = evaluation.get("out_of_fold")
    if not summary or not summary.get("folds") or not oof:
        raise DataError(
            f"v{version} (run {run_id}) has no backtest figures in its {EVALUATION_FILE}: "
            "it was trained before the rolling backtest; retrain it (`lead-scoring train`)"
        )
    folds = summary["folds"]
    backtest = []
    for key, label in FOLD_METRICS:
        values = [f[key] for f in folds if _num(f.get(key)) is not None]
        if values:
            mean, (low, high) = mean_ci95(values)
            backtest.append({"metric": key, "label": label, "mean": mean, "ci95_low": low,
                             "ci95_high": high, "folds": len(values)})
    try:
        features = json.loads(tags.get("feature_service") or "{}").get("features", {})
    except json.JSONDecodeError as exc:
        raise DataError(f"v{version}: the feature_service tag is not JSON ({exc})") from exc
    families = [{"family": name, "auc_mean": f.get("auc_mean"),
                 "ci95_low": (f.get("auc_ci95") or [None, None])[0],
                 "ci95_high": (f.get("auc_ci95") or [None, None])[1]}
                for name, f in (summary.get("families") or {}).items()]
    metrics = oof.get("metrics", {})
    data = {
        "training_rows": int(tags["training_rows"]) if tags.get("training_rows") else None,
        "snapshot_min": tags.get("training_snapshot_min", "not recorded")[:10],
        "snapshot_max": tags.get("training_snapshot_max", "not recorded")[:10],
        "backtest_start": tags.get("test_window_start"),
        "backtest_end": tags.get("test_window_end"),
        "embargo_days": summary.get("embargo_days"),
        "folds": len(folds),
        "out_of_fold_rows": metrics.get("n_rows"),
        "out_of_fold_positives": metrics.get("n_positives"),
        "train_rows": params.get("train_rows"),
        "validation_rows": params.get("validation_rows"),
        "oracle_auc_mean": summary.get("oracle_auc_mean"),
    }
    reproducibility = {k: v for k, v in sorted(tags.items())
                       if k in ("git_commit", "config_hash", "training_fingerprint",
                                "dbt_manifest_hash", "feature_service_hash")
                       or k.startswith("version.")}
    card = {
        "model": model, "version": version, "run_id": run_id, "created": created,
        "family": tags.get("family") or summary.get("champion_family", "unknown"),
        "request_family": tags.get("request_family") or None,
        "calibration_method": tags.get("calibration", "unknown"),
        "label_window_days": settings.features.label_window_days,
        "data": data, "features": features, "backtest": backtest,
        "folds": folds, "families": families, "request_model": summary.get("request_model"),
        "segments": _segments(oof.get("segments") or []),
        "calibration": oof.get("calibration") or [],
        "ece": _num(metrics.get("ece")), "brier": _num(metrics.get("brier")),
        "reproducibility": reproducibility,
    }
    return ModelCard(**card, limits=_limits(card, settings))


def render_markdown(card: ModelCard) -> str:
    """The card as Markdown (what MLflow, the dashboard and the docs show)."""
    d = card.data
    lines = [
        f"# Model card: {card.model} v{card.version}",
        "",
        f"Registered {card.created} from run `{card.run_id}`. Family **{card.family}** "
        f"(calibration: {card.calibration_method}); request model: "
        f"**{card.request_family or 'none'}**.",
        "",
        "## Intended use",
        "",
        f"Rank the CRM's open leads by their chance to convert within "
        f"{card.label_window_days} days, nightly into the CRM and in real time when a lead is "
        "opened. Not for decisions about a person beyond the order in which sales calls them.",
        "",
        "## Data window",
        "",
        "| what | value |",
        "|---|---|",
        f"| training rows (matured labels) | {d['training_rows'] if d['training_rows'] else '—'} |",
        f"| snapshots | {d['snapshot_min']} → {d['snapshot_max']} |",
        f"| backtest test windows | {d['backtest_start']} → {d['backtest_end']} "
        f"({d['folds']} folds) |",
        f"| embargo | {d['embargo_days']} days (≥ the label window) |",
        f"| out-of-fold rows (positives) | {_fmt(d['out_of_fold_rows'], 0)} "
        f"({_fmt(d['out_of_fold_positives'], 0)}) |",
        "",
        "## Features",
        "",
        "| feature view | features |",
        "|---|---|",
        *[f"| `{view}` | {', '.join(f'`{f}`' for f in feats)} |"
          for view, feats in sorted(card.features.items())],
        "",
        "## Backtest (mean over the folds, 95 % t-interval)",
        "",
        "| metric | mean | 95 % interval |",
        "|---|---|---|",
        *[f"| {b['label']} | {_fmt(b['mean'])} | {_interval(b['ci95_low'], b['ci95_high'])} |"
          for b in card.backtest],
        "",
        "Every family on the same folds (AUC):",
        "",
        "| family | mean AUC | 95 % interval |",
        "|---|---|---|",
        *[f"| {f['family']}{' (chosen)' if f['family'] == card.family else ''} | "
          f"{_fmt(f['auc_mean'])} | {_interval(f['ci95_low'], f['ci95_high'])} |"
          for f in card.families],
    ]
    if card.request_model:
        r = card.request_model
        ci = r.get("auc_ci95") or [None, None]
        lines += ["", f"Request model ({r['family']}), on leads in their first "
                  f"{r.get('new_lead_days', '?')} days: mean AUC {_fmt(r.get('auc_mean'))}, "
                  f"95 % interval {_interval(ci[0], ci[1])}; the engagement score alone on the "
                  f"same rows {_fmt(r.get('baseline_rules_auc_mean'))}."]
    lines += [
        "",
        "Per fold:",
        "",
        "| origin | AUC | PR-AUC | Brier | ECE |",
        "|---|---|---|---|---|",
        *[f"| {f['origin']} | {_fmt(f.get('auc'))} | {_fmt(f.get('pr_auc'))} | "
          f"{_fmt(f.get('brier'))} | {_fmt(f.get('ece'))} |" for f in card.folds],
        "",
        "## Segment AUCs (pooled out-of-fold predictions, 95 % Hanley–McNeil interval)",
        "",
        "| segment | level | rows | conversions | AUC | 95 % interval |",
        "|---|---|---|---|---|---|",
        *[f"| {s['segment']} | {s['level']} | {s['n']} | {s['positives']} | {_fmt(s['auc'], 3)} "
          f"| {_interval(s['ci95_low'], s['ci95_high'], 3)} |" for s in card.segments],
        "",
        f"## Calibration (out-of-fold: ECE {_fmt(card.ece)}, Brier {_fmt(card.brier)})",
        "",
        "| bin | rows | scores | mean predicted | observed |",
        "|---|---|---|---|---|",
        *[f"| {b['bin']} | {b['n']} | {_fmt(b['min_score'], 3)}–{_fmt(b['max_score'], 3)} | "
          f"{b['mean_predicted']:.2%} | {b['observed_rate']:.2%} |" for b in card.calibration],
        "",
        "## Known limits",
        "",
        *[f"- {limit}" for limit in card.limits],
        "",
        "## Reproducibility",
        "",
        "| tag | value |",
        "|---|---|",
        *[f"| `{k}` | `{v}` |" for k, v in card.reproducibility.items()],
        "",
    ]
    return "\n".join(lines)


def model_card(settings: Settings, version: int) -> ModelCard:
    """Build the card of a registered version from its MLflow run.

    Raises:
        RegistryError: the registry cannot be read or has no such version.
        DataError: the run lacks the figures a card needs.
    """
    from ml.registry import mlflow_client
    from ml.registry.client import registry_errors

    client = mlflow_client(settings, create=False)
    name = settings.registry.model_name
    with registry_errors(settings, f"reading v{version} of {name!r} for its model card"):
        mv = client.get_model_version(name, str(version))
        run = client.get_run(mv.run_id)
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(mv.run_id, EVALUATION_FILE, tmp)
            evaluation = json.loads(Path(path).read_text())
    created = datetime.fromtimestamp(int(mv.creation_timestamp) / 1000, UTC)
    return build_card(
        model=name, version=int(mv.version), run_id=mv.run_id,
        created=created.strftime("%Y-%m-%d %H:%M UTC"),
        tags={**run.data.tags, **(mv.tags or {})}, params=dict(run.data.params),
        evaluation=evaluation, settings=settings,
    )


def card_paths(settings: Settings, version: int) -> tuple[Path, Path]:
    """Where `log_model_card` writes the Markdown and JSON of a version's card."""
    folder = settings.paths.reports_dir / "model_cards"
    return folder / f"v{version}.md", folder / f"v{version}.json"


def log_model_card(settings: Settings, version: int) -> Path:
    """Write the card of `version` (Markdown + JSON) and log both to its run under
    `model_card/`; returns the Markdown file. Re-running replaces both."""
    from ml.registry import mlflow_client
    from ml.registry.client import registry_errors

    card = model_card(settings, version)
    md_path, json_path = card_paths(settings, version)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(card.markdown())
    json_path.write_text(json.dumps(card.to_dict(), indent=2, default=str))
    client = mlflow_client(settings, create=False)
    doing = f"logging the model card of v{version}"
    with registry_errors(settings, doing), tempfile.TemporaryDirectory() as tmp:
        for source, target in ((md_path, CARD_MD), (json_path, CARD_JSON)):
            staged = Path(tmp) / target
            staged.write_bytes(source.read_bytes())
            client.log_artifact(card.run_id, str(staged), artifact_path=CARD_DIR)
    return md_path


def read_logged_card(settings: Settings, run_id: str) -> str | None:
    """The Markdown card logged on a run, or None when the run has none."""
    from mlflow.exceptions import MlflowException

    from ml.registry import mlflow_client

    client = mlflow_client(settings, create=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return Path(client.download_artifacts(run_id, f"{CARD_DIR}/{CARD_MD}", tmp)).read_text()
    except (MlflowException, OSError):
        return None
