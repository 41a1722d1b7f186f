"""The one command-line entry point: `lead-scoring <command>`.

Each command is a few lines around a function of the `ml` package; errors a user can cause are
printed without a traceback and exit with status 2.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from ml.config import Settings, load_settings
from ml.errors import LeadScoringError

app = typer.Typer(help="Lead-scoring platform: data, features, models and scores.", no_args_is_help=True)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="Settings file (default config/training_config.yaml).")
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
            settings.paths.raw_dir, settings.paths.truth_dir,
            n_leads=leads or g.n_leads, days=days or g.days,
            end_date=end_date.date() if end_date else g.end_date,
            seed=g.seed if seed is None else seed, activities_per_lead=g.activities_per_lead,
            drifts=drifts, progress=lambda step: status.update(f"generator: {step}"),
        )
    result = {
        "leads": summary.n_leads, "activities": summary.n_activities,
        "conversions": summary.n_conversions, "period": f"{summary.start} to {summary.end}",
        "drifts": [d.name for d in drifts], "seconds": summary.seconds,
        "files": {name: str(path) for name, path in summary.files.items()},
    }
    echo_summary(result, as_json, "generated")
