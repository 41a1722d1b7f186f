"""The one command-line entry point: `lead-scoring <command>`.

Each command is a few lines around a function of the `ml` package; errors a user can cause are
printed without a traceback and exit with status 2.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
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
