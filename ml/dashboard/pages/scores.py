"""Scores: the distribution and tier mix of the CRM scores, and a lead lookup."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from ml.config import Settings
from ml.dashboard import data
from ml.dashboard.cache import cached
from ml.dashboard.charts import TIER_COLORS, empty_state, lines, show


def _lookup(settings: Settings, example: str) -> None:
    st.subheader("Lead lookup")
    lead_id = st.text_input("Lead id", placeholder=f"e.g. {example}", key="lead_id")
    if not lead_id:
        return
    history = data.lead_history(settings, lead_id)
    if history.empty:
        st.warning(f"No score for lead {lead_id!r} in the CRM database.")
        return
    last = history.iloc[-1]
    a, b, c = st.columns(3)
    change = last["score_change"]
    a.metric(
        "Lead score", f"{last['score']:.1f}", delta=None if pd.isna(change) else f"{change:+.1f}"
    )
    b.metric("Lead tier", str(last["tier"]))
    c.metric("Scored on", str(last["scoring_date"]), help=f"model v{last['model_version']}")
    if len(history) > 1:
        trend = history.assign(scoring_date=pd.to_datetime(history["scoring_date"]))
        show(
            lines(
                trend,
                "scoring_date:T",
                "score:Q",
                y_title="score",
                x_title="scoring date",
                height=200,
            )
        )
    pro, con = st.columns(2)
    with pro:
        st.markdown("**Reasons for**")
        st.markdown("\n".join(f"- {r}" for r in last["reasons_for"]) or "—")
    with con:
        st.markdown("**Reasons against**")
        st.markdown("\n".join(f"- {r}" for r in last["reasons_against"]) or "—")


def _vocabulary(settings: Settings) -> None:
    activities, categoricals = data.vocabulary_tables(settings)
    with st.expander("What the scores count (settings: vocabulary)"):
        st.caption(
            f"Each activity type is counted over the last "
            f"{', '.join(map(str, settings.vocabulary.activity_windows_days))} days; its weight "
            "is its points in the engagement score. Add a type in the settings to count it."
        )
        st.dataframe(activities, hide_index=True, width="stretch")
        st.dataframe(categoricals, hide_index=True, width="stretch")


def render(settings: Settings) -> None:
    st.title("Scores")
    _vocabulary(settings)
    current = cached(data.current_scores)(settings)
    if current.empty:
        empty_state("No scores in the CRM database yet.", "lead-scoring score", "make demo")
        return
    a, b, c, d = st.columns(4)
    a.metric("Leads scored", f"{len(current):,}")
    b.metric("Scoring date", str(current["scoring_date"].max()))
    c.metric("Mean score", f"{current['score'].mean():.1f}")
    d.metric("Tier A share", f"{(current['tier'] == 'A').mean():.1%}")

    st.subheader("Score distribution (latest run)")
    hist = (
        alt.Chart(current[["score", "tier"]])
        .mark_bar()
        .encode(
            x=alt.X("score:Q", bin=alt.Bin(step=2), title="score (0–100)"),
            y=alt.Y("count():Q", title="leads"),
            color=alt.Color("tier:N", scale=TIER_COLORS),
            tooltip=["tier:N", "count():Q"],
        )
        .properties(height=260)
    )
    show(hist)
    t = settings.scoring.tiers
    st.caption(f"Tiers: A ≥ {t.A:g}, B ≥ {t.B:g}, C ≥ {t.C:g}, D below (scoring.tiers).")

    mix = cached(data.tier_mix_over_time)(settings)
    st.subheader("Tier mix over time")
    if mix["scoring_date"].nunique() < 2:
        st.caption("One scoring date so far; the series grows with each nightly run.")
    area = (
        alt.Chart(mix)
        .mark_area(opacity=0.85)
        .encode(
            x=alt.X("scoring_date:T", title="scoring date"),
            y=alt.Y("share:Q", stack="normalize", axis=alt.Axis(format="%"), title="share"),
            color=alt.Color("tier:N", scale=TIER_COLORS),
            tooltip=["scoring_date:T", "tier:N", "leads:Q", alt.Tooltip("share:Q", format=".1%")],
        )
        .properties(height=240)
    )
    bars = area.mark_bar() if mix["scoring_date"].nunique() < 2 else area
    show(bars.interactive(bind_y=False))
    _lookup(settings, str(current["lead_id"].iloc[0]))
