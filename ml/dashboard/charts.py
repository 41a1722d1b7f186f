"""Altair charts the pages share (interactive: tooltips, zoom and pan on the time axes)."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

TIER_COLORS = alt.Scale(
    domain=["A", "B", "C", "D"], range=["#1b7837", "#7fbf7b", "#f1a340", "#b2182b"]
)


def show(chart: alt.TopLevelMixin) -> None:
    st.altair_chart(chart, width="stretch")


def lines(
    frame: pd.DataFrame,
    x: str,
    y: str,
    color: str | None = None,
    *,
    threshold: float | None = None,
    y_title: str | None = None,
    x_title: str | None = None,
    log_y: bool = False,
    height: int = 260,
    color_scale: alt.Scale | None = None,
    zero: bool = False,
) -> alt.TopLevelMixin:
    """A line chart with points and tooltips; `threshold` draws a dashed red rule."""
    y_scale = alt.Scale(type="log") if log_y else alt.Scale(zero=zero)
    enc: dict = {
        "x": alt.X(x, title=x_title or x),
        "y": alt.Y(y, title=y_title or y, scale=y_scale),
        "tooltip": [c for c in (x, color, y) if c],
    }
    if color:
        enc["color"] = alt.Color(color, scale=color_scale) if color_scale else alt.Color(color)
    chart = alt.Chart(frame).mark_line(point=True).encode(**enc)
    if threshold is not None:
        rule = (
            alt.Chart(pd.DataFrame({"threshold": [threshold]}))
            .mark_rule(color="red", strokeDash=[6, 4])
            .encode(y="threshold:Q", tooltip=["threshold:Q"])
        )
        chart = chart + rule
    return chart.properties(height=height).interactive(bind_y=False)


def empty_state(what: str, command: str, alternative: str | None = None) -> None:
    """The message a page shows when its store has nothing yet: what is missing, what to run."""
    also = f" (or `{alternative}`)" if alternative else ""
    st.info(f"{what}\n\nTo fill it, run `{command}`{also}.", icon=":material/hourglass_empty:")
