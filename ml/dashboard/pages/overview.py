"""Overview: which models serve, the last nightly run, and the open alerts."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ml.config import Settings
from ml.dashboard import data
from ml.dashboard.cache import cached
from ml.dashboard.charts import empty_state

SEVERITIES = ("critical", "warning", "info")


def _model_column(settings: Settings, card: data.ModelCard | None, alias: str) -> None:
    label = alias.capitalize()
    if card is None:
        st.metric(label, "none")
        st.caption(f"No @{alias} in the registry.")
        return
    st.metric(label, f"v{card.version}")
    auc = card.test_auc
    oracle = card.metrics.get("backtest_oracle_auc_mean", card.metrics.get("test_oracle_auc"))
    low = card.metrics.get("backtest_auc_ci95_low")
    high = card.metrics.get("backtest_auc_ci95_high")
    st.metric(
        f"{label} backtest AUC",
        "n/a" if auc is None else f"{auc:.4f}",
        help="mean AUC over the rolling out-of-time folds (each trained only on labels matured "
        "before its test window)"
        + ("" if low is None else f"; 95 % interval {low:.4f}–{high:.4f}")
        + ("" if oracle is None else f"; the oracle (true probabilities) got {oracle:.4f}"),
    )
    family = card.tags.get("family")
    if family:
        request = card.tags.get("request_family") or "none"
        st.caption(f"**Family** {family} (request model: {request})")
    created = card.created.strftime("%Y-%m-%d %H:%M UTC") if card.created else "unknown"
    st.caption(
        f"**Trained** {created}  \n**On** {card.trained_on}  \n"
        f"**Backtest windows** {card.test_window}  \n**Run** `{card.run_id}`"
    )
    text = cached(data.model_card_text)(settings, card.run_id) if card.run_id else None
    with st.expander(f"Model card of v{card.version}"):
        if text:
            st.markdown(text.split("\n", 1)[1])  # the title is the expander's label
        else:
            st.caption(f"No card logged with v{card.version}: "
                       f"`lead-scoring model-card --model {card.version} --log`.")


def render(settings: Settings) -> None:
    st.title("Can we trust today's scores?")
    cards = {c.alias: c for c in cached(data.model_cards)(settings)}
    runs = cached(data.scoring_runs)(settings)
    monitoring = cached(data.metrics)(settings)
    if not cards and runs.empty and monitoring.empty:
        empty_state("No model, scoring run or monitoring figure yet.", "make demo")
        return

    st.subheader("Models")
    left, right = st.columns(2)
    with left:
        _model_column(settings, cards.get("champion"), "champion")
    with right:
        _model_column(settings, cards.get("challenger"), "challenger")

    st.subheader("Last nightly run")
    if runs.empty:
        st.caption("No scoring run yet: `lead-scoring score` (or `make demo`).")
    else:
        last = runs.iloc[0]
        a, b, c = st.columns(3)
        a.metric("Last scoring run", str(last["scoring_date"]), help=f"run {last['run_id']}")
        b.metric("Run status", str(last["status"]))
        rows = last["rows"]
        c.metric("Scored leads", "—" if pd.isna(rows) else f"{int(rows):,}")
        st.caption(
            f"model v{last['model_version']}, started {last['started_at']}, "
            f"finished {last['finished_at'] or '—'}"
        )
    if not monitoring.empty:
        latest = monitoring.sort_values("recorded_at").iloc[-1]
        st.caption(
            f"Last monitoring run: **{latest['run_id']}** "
            f"(run date {latest['run_date']:%Y-%m-%d}, recorded {latest['recorded_at']})"
        )

    st.subheader("Open alerts")
    open_alerts = cached(data.open_alerts)(settings)
    cols = st.columns(len(SEVERITIES))
    for col, severity in zip(cols, SEVERITIES, strict=True):
        n = int((open_alerts["severity"] == severity).sum()) if len(open_alerts) else 0
        col.metric(f"{severity.capitalize()} alerts", n)
    st.caption(
        f"An alert stays open for its cool-down ({settings.alerting.cooldown_minutes:g} "
        "minutes, alerting.cooldown_minutes)."
    )
    if len(open_alerts):
        st.dataframe(open_alerts, hide_index=True, width="stretch")

    moves = cached(data.alias_moves)(settings)
    if not moves.empty:
        with st.expander("Alias history (promotions, rollbacks, new challengers)"):
            st.dataframe(moves, hide_index=True, width="stretch")
