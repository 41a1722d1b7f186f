"""Performance and business: matured-cohort AUC, PR-AUC, Precision@K and calibration;
conversion rate, lead-to-close time and lift by tier."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from ml.config import Settings
from ml.dashboard import data
from ml.dashboard.cache import cached
from ml.dashboard.charts import TIER_COLORS, empty_state, lines, show

RANKING = {"auc": "AUC", "pr_auc": "PR-AUC", "precision_at_k": "Precision@K"}


def _value(frame: pd.DataFrame, metric: str, feature: str = "") -> float | None:
    hit = frame[(frame["metric"] == metric) & (frame["feature"] == feature)]
    return None if hit.empty or pd.isna(hit["value"].iloc[-1]) else float(hit["value"].iloc[-1])


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _backtest(settings: Settings) -> None:
    """The champion's rolling-origin backtest: the figures it was chosen and gated on."""
    table = cached(data.backtest_table)(settings)
    if table.empty:
        return
    st.subheader("Backtest of the champion (out-of-time folds)")
    st.caption(
        "Each fold learns only from labels that had matured before its test window "
        f"(embargo ≥ {settings.features.label_window_days} days); every family on the same folds. "
        "The full models are measured on every lead of a test window, the request models (new "
        "leads scored from a request) on its leads in their first "
        f"{settings.training.request_new_lead_days} days, a harder population."
    )
    show(
        lines(
            table.assign(series=table["family"] + " (" + table["model"] + ")"),
            "origin:T",
            "auc:Q",
            "series:N",
            threshold=settings.registry.min_auc,
            y_title="AUC",
            x_title="fold origin (first day of its test window)",
            height=240,
        )
    )
    columns = ["origin", "family", "model", "auc", "oracle_auc", "lift_share_of_oracle",
               "pr_auc", "precision_at_k", "recall_at_k", "f1", "brier", "ece"]
    st.dataframe(table[[c for c in columns if c in table]].round(4), hide_index=True,
                 width="stretch")


def render(settings: Settings) -> None:
    st.title("Performance and business")
    _backtest(settings)
    perf = data.latest_per_cohort(cached(data.metrics)(settings, "performance"))
    business = data.latest_per_cohort(cached(data.metrics)(settings, "business"))
    if perf.empty and business.empty:
        empty_state(
            "No matured cohort in the monitoring store yet: a cohort's labels are known "
            f"{settings.features.label_window_days} days after it was scored "
            "(features.label_window_days).",
            "lead-scoring monitor",
            "make demo",
        )
        return
    cfg = settings.monitoring
    if not perf.empty:
        latest_cohort = perf["cohort"].max()
        last = perf[perf["cohort"] == latest_cohort]
        st.caption(
            f"Latest matured cohort: scored on **{latest_cohort:%Y-%m-%d}**, model "
            f"v{', v'.join(sorted(last['model_version'].astype(str).unique()))}"
        )
        a, b, c, d = st.columns(4)
        auc = _value(last, "auc")
        a.metric(
            "Cohort AUC",
            _fmt(auc, ".4f"),
            delta=None if auc is None else f"{auc - cfg.auc_threshold:+.4f} vs threshold",
            help=f"alert below {cfg.auc_threshold} (monitoring.auc_threshold)",
        )
        b.metric("Cohort PR-AUC", _fmt(_value(last, "pr_auc"), ".4f"))
        frac = settings.evaluation.top_k_fraction
        c.metric(
            "Cohort Precision@K",
            _fmt(_value(last, "precision_at_k"), ".3f"),
            help=f"precision in the top {frac:.0%} of scores (evaluation.top_k_fraction)",
        )
        n, pos = _value(last, "n"), _value(last, "positives")
        d.metric(
            "Cohort leads",
            _fmt(n, ",.0f"),
            help=None if pos is None else f"{pos:,.0f} converted in the label window",
        )

        st.subheader("Ranking quality per matured cohort")
        ranking = perf[perf["metric"].isin(RANKING)].assign(
            metric=lambda f: f["metric"].map(RANKING)
        )
        show(
            lines(
                ranking,
                "cohort:T",
                "value:Q",
                "metric:N",
                threshold=cfg.auc_threshold,
                y_title="value",
                x_title="cohort (scoring date)",
            )
        )

        st.subheader("Calibration")
        calib = perf[perf["metric"].isin(["mean_predicted", "base_rate"])].assign(
            metric=lambda f: f["metric"].map(
                {
                    "mean_predicted": "mean predicted probability",
                    "base_rate": "observed conversion rate",
                }
            )
        )
        show(
            lines(
                calib,
                "cohort:T",
                "value:Q",
                "metric:N",
                y_title="rate",
                x_title="cohort (scoring date)",
            )
        )
        errors = perf[perf["metric"].isin(["ece", "brier"])].pivot_table(
            index="cohort", columns="metric", values="value"
        )
        if not errors.empty:
            st.caption("Expected calibration error and Brier score per cohort")
            st.dataframe(errors.reset_index(), hide_index=True, width="stretch")

    if not business.empty:
        st.subheader("Business: conversion by tier")
        latest_cohort = business["cohort"].max()
        lift = _value(business[business["cohort"] == latest_cohort], "lift_a_over_base")
        st.metric(
            "Lift of tier A",
            _fmt(lift, ".2f") + ("" if lift is None else "×"),
            help="conversion rate of tier A over the cohort's base rate, latest cohort",
        )
        tiers = business[business["feature"].isin(list("ABCD"))]
        conv = tiers[tiers["metric"] == "conversion_rate"].rename(columns={"feature": "tier"})
        show(
            lines(
                conv,
                "cohort:T",
                "value:Q",
                "tier:N",
                y_title="conversion rate",
                x_title="cohort (scoring date)",
                color_scale=TIER_COLORS,
            )
        )
        days = tiers[tiers["metric"] == "median_days_to_close"].rename(columns={"feature": "tier"})
        if not days.empty:
            show(
                alt.Chart(days[days["cohort"] == latest_cohort])
                .mark_bar()
                .encode(
                    x=alt.X("tier:N"),
                    y=alt.Y("value:Q", title="median days creation → close"),
                    color=alt.Color("tier:N", scale=TIER_COLORS),
                    tooltip=["tier:N", "value:Q"],
                )
                .properties(
                    height=220, title=f"Lead-to-close time, cohort {latest_cohort:%Y-%m-%d}"
                )
            )
        lift_series = business[business["metric"] == "lift_a_over_base"]
        show(
            lines(
                lift_series,
                "cohort:T",
                "value:Q",
                threshold=1.0,
                y_title="lift of tier A (× base rate)",
                x_title="cohort (scoring date)",
                height=200,
            )
        )
