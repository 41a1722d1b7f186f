"""The one command-line entry point: `lead-scoring <command>`.

Each command is a few lines around a function of the `ml` package; errors a user can cause are
printed without a traceback and exit with status 2.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from ml.config import Settings, load_settings
from ml.errors import LeadScoringError

app = typer.Typer(
    help="Lead-scoring platform: data, features, models and scores.", no_args_is_help=True
)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="Settings file (default config/training_config.yaml)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]


def _settings(config: Path | None) -> Settings:
    return load_settings(config)


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Print a LeadScoringError's message and exit 2 instead of showing a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except LeadScoringError as exc:
            typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
            raise typer.Exit(code=2) from None

    return wrapper


@contextlib.contextmanager
def _progress(label: str) -> Iterator[None]:
    """A spinner with elapsed time on stderr while a long step runs."""
    from rich.console import Console

    started = time.perf_counter()
    with Console(stderr=True).status(f"{label}..."):
        yield
    typer.secho(
        f"{label}: {time.perf_counter() - started:.1f}s", err=True, fg=typer.colors.BRIGHT_BLACK
    )


def echo_summary(summary: dict[str, Any], as_json: bool, title: str) -> None:
    """Print a short human summary, or JSON when asked."""
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    typer.secho(title, bold=True)
    for key, value in summary.items():
        typer.echo(f"  {key}: {value}")


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.command("config")
@user_errors
def show_config(config: ConfigOption = None) -> None:
    """Validate the settings file and print the effective settings."""
    settings = _settings(config)
    typer.echo(json.dumps(settings.model_dump(mode="json"), indent=2))


@app.command("generate")
@user_errors
def generate_data(
    leads: Annotated[int | None, typer.Option("--leads", min=1, help="Number of leads.")] = None,
    days: Annotated[int | None, typer.Option("--days", min=1, help="Days of history.")] = None,
    end_date: Annotated[
        datetime | None, typer.Option("--end-date", formats=["%Y-%m-%d"], help="Exclusive end.")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0)] = None,
    drift: Annotated[
        list[str] | None,
        typer.Option("--drift", help="KIND:TARGET:START[:FACTOR], repeatable; see data/README.md."),
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Generate a synthetic CRM export (raw CSVs) and its latent truth; sizes default to the
    settings' `generator` section."""
    from rich.console import Console

    from ml.data.generator import generate, parse_drift

    settings = _settings(config)
    g = settings.generator
    drifts = [parse_drift(spec) for spec in drift or []]
    with Console(stderr=True).status("generating") as status:
        summary = generate(
            settings.paths.raw_dir,
            settings.paths.truth_dir,
            n_leads=leads or g.n_leads,
            days=days or g.days,
            end_date=end_date.date() if end_date else g.end_date,
            seed=g.seed if seed is None else seed,
            activities_per_lead=g.activities_per_lead,
            drifts=drifts,
            progress=lambda step: status.update(f"generator: {step}"),
        )
    result = {
        "leads": summary.n_leads,
        "activities": summary.n_activities,
        "conversions": summary.n_conversions,
        "attribute_changes": summary.n_attribute_changes,
        "period": f"{summary.start} to {summary.end}",
        "drifts": [d.name for d in drifts],
        "seconds": summary.seconds,
        "files": {name: str(path) for name, path in summary.files.items()},
    }
    echo_summary(result, as_json, "generated")


@app.command("land")
@user_errors
def land(
    export_dir: Annotated[Path, typer.Argument(help="Folder holding the CRM's export files.")],
    mapping: Annotated[
        str,
        typer.Option(
            "--mapping",
            help="Mapping name (config/crm_mappings/NAME.yaml: salesforce, hubspot, dynamics) "
            "or a path to a mapping YAML.",
        ),
    ],
    sample: Annotated[
        bool,
        typer.Option(
            "--sample",
            help="First write a sample export in the mapping's vendor shape into EXPORT_DIR: the "
            "generator's data (the settings' `generator` section) with the faults real exports "
            "have.",
        ),
    ] = False,
    sample_leads: Annotated[
        int | None,
        typer.Option("--sample-leads", min=1, help="Leads of the sample (default: settings)."),
    ] = None,
    merge: Annotated[
        bool,
        typer.Option(
            "--merge",
            help="The export is a nightly increment (only what changed since the last one): "
            "upsert it into the raw files by id instead of replacing them.",
        ),
    ] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Land a CRM export: write leads.csv, activities.csv and conversions.csv into the raw folder
    (atomically; with --merge, upserted into them) and a data-quality report under
    <reports>/landing/<date>/."""
    from ml.landing import land_from_settings, make_sample_export

    settings = _settings(config)
    if sample:
        g = settings.generator
        made = make_sample_export(
            mapping,
            export_dir,
            n_leads=sample_leads or g.n_leads,
            days=g.days,
            end_date=g.end_date,
            seed=g.seed,
        )
        typer.secho(
            f"sample {mapping} export: {', '.join(p.name for p in made.files)} in {export_dir}",
            err=True,
            fg=typer.colors.BRIGHT_BLACK,
        )
    with _progress(f"landing the {mapping} export"):
        report = land_from_settings(settings, mapping, export_dir, merge=merge)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, default=str))
        return
    summary = report.summary()
    summary["html"] = str(Path(report.report_dir) / "report.html")
    echo_summary(summary, False, f"landed into {settings.paths.raw_dir}")


@app.command("train")
@user_errors
def train(
    promote_after: Annotated[
        bool, typer.Option("--promote", help="Run the promotion gate on the new challenger.")
    ] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Build the training set from Feast, backtest every model family on rolling out-of-time
    folds, refit the best on all matured labels and register it as @challenger."""
    from ml.retrain import promote_challenger, save_training_set, train_challenger
    from ml.training_set import build_training_set

    settings = _settings(config)
    with _progress("building the training set from Feast"):
        frame = build_training_set(settings)
        save_training_set(settings, frame)
    with _progress(f"training on {len(frame)} rows"):
        report = train_challenger(settings, frame, actor="cli:train")
    summary = report.summary()
    if promote_after:
        decision = promote_challenger(settings, reason="cli: train --promote", actor="cli:train")
        summary["promotion"] = decision.message
    echo_summary(summary, as_json, f"challenger v{report.version.version}")


@app.command("evaluate")
@user_errors
def evaluate_model(
    model: Annotated[str, typer.Option("--model", help="Alias or version.")] = "champion",
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Evaluate a registered model on the latest test window of the training set.

    Only honest when the model was trained before that window: a version refit on all matured
    labels has seen it (its own figures are the backtest's, in `lead-scoring train`)."""
    from ml.evaluate import evaluate
    from ml.registry import load_version
    from ml.retrain import ORACLE, load_training_set
    from ml.train import split_by_time

    settings = _settings(config)
    scorer, version = load_version(settings, model)
    split = split_by_time(load_training_set(settings), settings)
    truth = split.test[ORACLE].to_numpy() if ORACLE in split.test.columns else None
    evaluation = evaluate(scorer, split.test, settings, truth_probability=truth)
    # The scorer's own origin: the first day it had not learned from.
    learned_until = str(scorer.metadata.get("test_start", ""))
    summary = {
        "model_version": version,
        "family": scorer.family,
        "test_window": f"{split.test_start}..{split.test_end}",
        "seen_in_training": str(split.test_start) < learned_until,
        **{k: round(v, 4) for k, v in evaluation.metrics().items()},
    }
    echo_summary(summary, as_json, f"v{version} on the test window")


@app.command("promote")
@user_errors
def promote_model(
    version: Annotated[
        int | None, typer.Option("--version", help="Version (default @challenger).")
    ] = None,
    reason: Annotated[
        str, typer.Option("--reason", help="Why, for the alias history.")
    ] = "manual promotion",
    force: Annotated[bool, typer.Option("--force", help="Skip the AUC gate (recorded).")] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Move @champion to the challenger (or --version) if it passes the promotion gate."""
    from ml.registry import promote

    decision = promote(_settings(config), version, reason=reason, actor="cli:promote", force=force)
    echo_summary(decision.to_dict(), as_json, decision.message)
    # a refusal fails; a version already @champion (e.g. the re-run of a promotion that was
    # killed after the move) is the state asked for, not a failure
    if not decision.accepted and decision.version != decision.previous_champion:
        raise typer.Exit(code=1)


@app.command("rollback")
@user_errors
def rollback_model(
    reason: Annotated[
        str, typer.Option("--reason", help="Why, for the alias history.")
    ] = "manual rollback",
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Move @champion back to the previous champion."""
    from ml.registry import rollback

    decision = rollback(_settings(config), reason=reason, actor="cli:rollback")
    echo_summary(decision.to_dict(), as_json, decision.message)


@app.command("history")
@user_errors
def alias_history_cmd(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Print every alias move (challenger, promote, rollback) with reason and actor."""
    from ml.registry import alias_history

    frame = alias_history(_settings(config))
    if as_json:
        typer.echo(frame.to_json(orient="records", date_format="iso", indent=2))
    elif frame.empty:
        typer.echo("no alias moves yet")
    else:
        typer.echo(frame.drop(columns=["id"]).to_string(index=False))


@app.command("model-card")
@user_errors
def model_card_cmd(
    model: Annotated[str, typer.Option("--model", help="Alias or version.")] = "champion",
    log_it: Annotated[
        bool, typer.Option("--log", help="Also write it and log it to the version's run.")
    ] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print the model card of a registered version (training registers one with each)."""
    from ml.errors import ConfigError
    from ml.model_card import log_model_card, model_card
    from ml.registry import current_version

    settings = _settings(config)
    version = int(model) if model.isdigit() else current_version(settings, model)
    if version is None:
        raise ConfigError(f"no @{model} in the registry; pass --model with a version number")
    if log_it:
        path = log_model_card(settings, version)
        typer.echo(f"model card of v{version} logged to its run; written to {path}")
        return
    card = model_card(settings, version)
    typer.echo(json.dumps(card.to_dict(), indent=2, default=str) if as_json else card.markdown())


@app.command("score")
@user_errors
def score_leads(
    scoring_date: Annotated[
        datetime | None,
        typer.Option("--date", formats=["%Y-%m-%d"], help="CRM date (default today)."),
    ] = None,
    model: Annotated[str, typer.Option("--model", help="Alias or version.")] = "champion",
    features: Annotated[
        Path | None,
        typer.Option("--features", help="Parquet of latest features (default the mart)."),
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Score every open lead into the CRM tables (re-running a date replaces that run)."""
    from ml.batch import score_open_leads

    summary = score_open_leads(
        _settings(config),
        scoring_date.date() if scoring_date else None,
        model=model,
        features_path=features,
    )
    echo_summary(summary.to_dict(), as_json, f"scored {summary.rows} leads")


@app.command("build")
@user_errors
def build(
    as_of: Annotated[
        datetime | None,
        typer.Option("--as-of", help="Point in time (UTC); default: midnight after the data."),
    ] = None,
    select: Annotated[str | None, typer.Option("--select", help="dbt selection.")] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Build the warehouse with dbt (staging, features, labels) and export the marts."""
    from ml.warehouse import build_warehouse

    summary = build_warehouse(_settings(config), as_of=as_of, select=select)
    echo_summary(summary.to_dict(), as_json, f"warehouse built in {summary.seconds}s")


features_app = typer.Typer(help="Feast: register the feature repo, refresh the online store.")
app.add_typer(features_app, name="features")


@features_app.command("apply")
@user_errors
def features_apply(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Register feature_repo/ in the Feast registry (like `feast apply`)."""
    from ml.feature_store import apply_feature_repo
    from ml.registry import safe_uri

    settings = _settings(config)
    names = apply_feature_repo(settings)
    summary = {"objects": names, "registry": safe_uri(str(settings.paths.feast_registry_url))}
    echo_summary(summary, as_json, f"applied {len(names)} Feast objects")


@features_app.command("refresh")
@user_errors
def features_refresh(
    full: Annotated[bool, typer.Option("--full", help="Rewrite every lead.")] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write the latest features of every open lead into the online store; drop closed leads."""
    from ml.online_refresh import refresh_online_store

    stats = refresh_online_store(_settings(config), full=full)
    title = f"online store refreshed: {stats.leads_written} of {stats.leads_read} leads written"
    echo_summary(stats.as_dict(), as_json, title)


@app.command("serve")
@user_errors
def serve(
    host: Annotated[str | None, typer.Option("--host", help="Default serving.host.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Default serving.port (8000).")] = None,
    config: ConfigOption = None,
) -> None:
    """Run the real-time scoring service (FastAPI + uvicorn; docs at /docs)."""
    from ml.serving.app import run

    run(_settings(config), host=host, port=port)


@app.command("ab-report")
@user_errors
def ab_report_cmd(
    conversions: Annotated[
        Path | None,
        typer.Option(
            "--conversions",
            help="CSV/Parquet with lead_id, converted_at "
            "(default: the landing zone's conversions.csv).",
        ),
    ] = None,
    as_of: Annotated[
        datetime | None, typer.Option("--as-of", help="Labels known up to (default now, UTC).")
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Compare the served variants of the prediction log on matured conversions."""
    from ml.serving.ab_report import ab_report, load_conversions
    from ml.serving.prediction_log import read_log

    settings = _settings(config)
    report = ab_report(settings, read_log(settings), load_conversions(settings, conversions), as_of)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, default=str))
        return
    typer.secho(report.verdict, bold=True)
    typer.echo(
        f"  matured leads: {report.leads_matured} of {report.leads_logged} logged "
        f"(label window {report.label_window_days} days, as of {report.as_of})"
    )
    for v in report.variants.values():
        auc = "n/a" if v.auc is None else f"{v.auc:.3f} [{v.auc_ci[0]:.3f}, {v.auc_ci[1]:.3f}]"
        rate = "n/a" if v.conversion_rate is None else f"{v.conversion_rate:.4f}"
        typer.echo(
            f"  {v.variant} (v{', v'.join(v.model_versions) or '-'}): {v.leads} leads, "
            f"conversion {rate}, AUC {auc}"
        )
        for tier, t in sorted(v.by_tier.items()):
            rate = t["conversion_rate"]
            typer.echo(f"    tier {tier}: {t['leads']} leads, conversion {rate:.4f}")
    typer.echo(
        f"  leads per variant to detect {report.min_effect:+.3f}: {report.needed_per_variant}"
    )


@app.command("monitor")
@user_errors
def monitor(
    day: Annotated[
        datetime | None,
        typer.Option("--date", formats=["%Y-%m-%d"], help="Run date (default the data's as-of)."),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Version (default @champion).")
    ] = None,
    alerts: Annotated[bool, typer.Option("--alerts/--no-alerts", help="Send the alerts.")] = True,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Drift, matured-label performance and business metrics for a date; Evidently reports;
    routed alerts. Figures go to the monitoring store."""
    from ml.batch import features_as_of, load_latest_features
    from ml.monitoring import run_monitoring, send_alerts

    settings = _settings(config)
    run_date = day.date() if day else features_as_of(load_latest_features(settings))
    report = run_monitoring(settings, run_date, model_version=model)
    summary = report.summary()
    if alerts:
        results = send_alerts(settings, report)
        summary["alerts"] = [f"{r.rule}→{r.channel}: {r.status}" for r in results]
    echo_summary(summary, as_json, f"monitoring {report.run_id}")


@app.command("dashboard")
@user_errors
def dashboard(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port of the dashboard.")] = 8501,
    headless: Annotated[
        bool, typer.Option("--headless/--browser", help="Do not open a browser window.")
    ] = True,
    config: ConfigOption = None,
) -> None:
    """Run the monitoring dashboard (Streamlit; reads every store read-only)."""
    import os
    import subprocess
    import sys

    import ml.dashboard.pages  # noqa: F401  (fails here, not in the browser, if streamlit is missing)

    settings = _settings(config)  # validate before starting the server
    env = dict(os.environ)
    if config:  # the app's load_settings() reads it
        env["LEAD_SCORING_CONFIG"] = str(config.resolve())
    typer.echo(f"dashboard on http://{host}:{port}  (data: {settings.paths.data_dir})")
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(Path(__file__).parent / "dashboard" / "app.py"),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        str(headless).lower(),
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "viewer",
    ]
    raise typer.Exit(subprocess.call(command, env=env))
