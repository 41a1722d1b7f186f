"""The alias history: every move of a registered model's aliases, in one table.

MLflow keeps no alias history, so the registry appends a row here for every move it makes
(challenger, promote, rollback) and replays the rows to find the champion before the current
one. The table lives in the database `registry.alias_history_url` names (engines from
ml/stores.py: by default an SQLite file beside the MLflow store,
<data_dir>/mlflow/alias_history.db; PostgreSQL in production, so a rollback from another machine
sees the same history).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from ml import stores
from ml.config import Settings

log = logging.getLogger(__name__)

ALIAS_HISTORY_FILE = "alias_history.db"  # the default database's file name (ml.config)

_history_meta = MetaData()
alias_history_table = Table(
    "alias_history",
    _history_meta,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("changed_at", DateTime(timezone=True), nullable=False),  # UTC
    Column("model_name", String(200), nullable=False),
    Column("alias", String(50), nullable=False),
    Column("from_version", Integer, nullable=True),
    Column("to_version", Integer, nullable=True),
    Column("action", String(20), nullable=False),  # challenger, promote, rollback
    Column("reason", Text, nullable=False),
    Column("actor", String(200), nullable=False),  # the command or run id
)


def alias_history_url(settings: Settings) -> str:
    """SQLAlchemy URL of the alias-history database (`registry.alias_history_url`)."""
    return str(settings.registry.alias_history_url)  # Settings resolves null to the default


def _history_engine(settings: Settings) -> Engine:
    """The store's engine (ml/stores.py: an SQLite file in WAL mode or PostgreSQL), table made."""
    engine = stores.engine(alias_history_url(settings))
    _history_meta.create_all(engine, checkfirst=True)
    return engine


def alias_history(settings: Settings) -> pd.DataFrame:
    """Every alias move, oldest first: changed_at, model_name, alias, from_version, to_version,
    action, reason, actor."""
    engine = _history_engine(settings)
    with engine.connect() as conn:
        result = conn.execute(alias_history_table.select().order_by(alias_history_table.c.id))
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def move_alias(
    settings: Settings,
    client: Any,
    alias: str,
    from_version: int | None,
    to_version: int,
    action: str,
    reason: str,
    actor: str,
) -> None:
    """Set the alias in MLflow and append the history row as one unit as far as possible: the
    row is inserted first and committed only after MLflow accepted the move."""
    engine = _history_engine(settings)
    with engine.begin() as conn:
        conn.execute(
            alias_history_table.insert().values(
                changed_at=datetime.now(UTC),
                model_name=settings.registry.model_name,
                alias=alias,
                from_version=from_version,
                to_version=to_version,
                action=action,
                reason=reason,
                actor=actor,
            )
        )
        client.set_registered_model_alias(settings.registry.model_name, alias, str(to_version))
    log.info("%s: @%s %s -> %s (%s; by %s)", action, alias, from_version, to_version, reason, actor)


def alias_stack(history: pd.DataFrame, name: str, alias: str) -> list[int]:
    """Successive holders of `alias` (e.g. the champions), replaying moves (push) and rollbacks
    (pop) of an `alias_history` frame."""
    stack: list[int] = []
    rows = history[(history["model_name"] == name) & (history["alias"] == alias)]
    for row in rows.itertuples():
        if row.action == "rollback":
            if stack:
                stack.pop()
        else:
            stack.append(int(row.to_version))
    return stack
