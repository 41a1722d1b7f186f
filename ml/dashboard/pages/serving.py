"""Serving: request rate, errors and latency percentiles from the prediction log."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ml.config import Settings
from ml.dashboard import data
from ml.dashboard.cache import cached
from ml.dashboard.charts import lines, show
from ml.dashboard.pages.online import EMPTY

WINDOWS = {"last hour": 1.0, "last 24 hours": 24.0, "last 7 days": 24.0 * 7, "everything": None}


def bucket_for(span: pd.Timedelta) -> str:
    """A time bucket giving a readable number of points for the span shown."""
    if span <= pd.Timedelta(hours=2):
        return "1min"
    if span <= pd.Timedelta(days=2):
        return "15min"
    return "1h"


def render(settings: Settings) -> None:
    st.title("Serving")
    label = st.selectbox(
        "Window (before the newest logged request)", list(WINDOWS), index=1, key="serving_window"
    )
    log_rows = cached(data.prediction_log)(settings, WINDOWS[label])
    if log_rows.empty or not log_rows["served"].any():
        st.info(EMPTY, icon=":material/hourglass_empty:")
        return
    summary = data.serving_summary(log_rows)
    alerting = settings.alerting
    a, b, c = st.columns(3)
    a.metric("Requests", f"{summary['requests']:,}", help="served predictions in the window")
    b.metric("Requests per minute", f"{summary['requests_per_minute']:.1f}")
    c.metric(
        "Error rate",
        f"{summary['error_rate']:.2%}",
        help=f"alert above {alerting.error_rate_threshold:.0%} (alerting.error_rate_threshold)",
    )
    d, e, f = st.columns(3)
    d.metric("Latency p50", f"{summary['p50_ms']:.1f} ms")
    e.metric("Latency p95", f"{summary['p95_ms']:.1f} ms")
    f.metric(
        "Latency p99",
        f"{summary['p99_ms']:.1f} ms",
        help=f"alert above {alerting.latency_p99_ms:g} ms (alerting.latency_p99_ms)",
    )

    served = log_rows[log_rows["served"]]
    freq = bucket_for(served["logged_at"].max() - served["logged_at"].min())
    series = data.serving_series(log_rows, freq)
    st.subheader(f"Requests per {freq} bucket")
    show(
        lines(
            series,
            "time:T",
            "requests:Q",
            y_title="requests",
            x_title="time (UTC)",
            zero=True,
            height=200,
        )
    )
    st.subheader("Latency percentiles")
    latency = series.melt(
        id_vars="time",
        value_vars=["p50_ms", "p95_ms", "p99_ms"],
        var_name="percentile",
        value_name="ms",
    )
    show(
        lines(
            latency,
            "time:T",
            "ms:Q",
            "percentile:N",
            threshold=alerting.latency_p99_ms,
            y_title="latency (ms)",
            x_title="time (UTC)",
        )
    )
    st.subheader("Error rate")
    show(
        lines(
            series,
            "time:T",
            "error_rate:Q",
            threshold=alerting.error_rate_threshold,
            y_title="error rate",
            x_title="time (UTC)",
            height=200,
        )
    )
    daily = cached(data.metrics)(settings, "serving")
    if not daily.empty:
        with st.expander("Daily service health recorded by the monitoring runs"):
            st.dataframe(
                daily[["run_date", "metric", "value", "threshold", "status"]],
                hide_index=True,
                width="stretch",
            )
