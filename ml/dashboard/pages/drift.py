"""Drift: PSI and KS / chi-square (with effect sizes) per feature over time, for the open
population and the recent intake; prediction drift; Evidently reports."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st
import streamlit.components.v1 as components

from ml.config import Settings
from ml.dashboard import data
from ml.dashboard.cache import cached
from ml.dashboard.charts import TIER_COLORS, empty_state, lines, show
from ml.monitoring.drift import RECENT_SUFFIX

EFFECTS = ("ks_statistic", "tv_distance")

TOP_FEATURES = 6


def latest_table(drift_rows: pd.DataFrame) -> pd.DataFrame:
    """Per feature label of the latest run date: population, PSI and its status, the test, its
    p-value and effect size, and the test's status (p below its threshold and effect at least
    its minimum); worst PSI first."""
    last = drift_rows[drift_rows["run_date"] == drift_rows["run_date"].max()]
    psi = last[last["metric"] == "psi"].set_index("feature")
    tests = last[last["metric"].str.endswith("_pvalue")].set_index("feature")
    effects = last[last["metric"].isin(EFFECTS)].set_index("feature")
    out = pd.DataFrame(
        {
            "population": [
                "recent intake" if str(f).endswith(RECENT_SUFFIX) else "open" for f in psi.index
            ],
            "psi": psi["value"],
            "psi_threshold": psi["threshold"],
            "psi_status": psi["status"],
            "test": tests["metric"].str.removesuffix("_pvalue").reindex(psi.index),
            "p_value": tests["value"].reindex(psi.index),
            "effect": effects["metric"].reindex(psi.index),
            "effect_size": effects["value"].reindex(psi.index),
            "test_status": tests["status"].reindex(psi.index),
        },
        index=psi.index,
    )
    return out.sort_values("psi", ascending=False).reset_index()


def _reports(settings: Settings) -> None:
    st.subheader("Evidently reports")
    reports = data.evidently_reports(settings)
    if reports.empty:
        st.caption(
            "No Evidently report on disk yet (`lead-scoring monitor` writes them under "
            f"{settings.paths.reports_dir / 'monitoring'})."
        )
        return
    day = st.selectbox("Run date", reports["run_date"].unique().tolist(), key="report_date")
    chosen = reports[reports["run_date"] == day]
    for row in chosen.itertuples():
        a, b = st.columns([3, 1])
        a.markdown(f"**{row.name.replace('_', ' ')}** — `{row.path}`")
        b.download_button(
            "Download HTML",
            row.path.read_bytes(),
            file_name=f"{day}-{row.path.name}",
            mime="text/html",
            key=f"dl-{day}-{row.name}",
        )
    name = st.radio(
        "Open a report here", ["none", *chosen["name"].tolist()], horizontal=True, key="report_open"
    )
    if name != "none":
        path = chosen.loc[chosen["name"] == name, "path"].iloc[0]
        components.html(path.read_text(encoding="utf-8"), height=900, scrolling=True)


def render(settings: Settings) -> None:
    st.title("Drift")
    rows = cached(data.metrics)(settings, "data_drift")
    pred = cached(data.metrics)(settings, "prediction_drift")
    if rows.empty and pred.empty:
        empty_state(
            "No drift figures in the monitoring store yet.", "lead-scoring monitor", "make demo"
        )
        _reports(settings)
        return
    cfg = settings.monitoring
    if not rows.empty:
        table = latest_table(rows)
        last_day = rows["run_date"].max()
        a, b, c = st.columns(3)
        a.metric(
            "Features monitored",
            int((table["population"] == "open").sum()),
            help=f"run date {last_day:%Y-%m-%d}",
        )
        a.caption(f"run date {last_day:%Y-%m-%d}")
        b.metric(
            "Features drifted (PSI)",
            int((table["psi_status"] == "drift").sum()),
            help=f"open population: PSI > {cfg.psi_threshold} (monitoring.psi_threshold); "
            f"recent intake (leads younger than {cfg.recent_intake_days} days): PSI > "
            f"{cfg.recent_intake_psi_threshold} (monitoring.recent_intake_psi_threshold)",
        )
        c.metric("Max PSI", f"{table['psi'].max():.3f}", help=str(table["feature"].iloc[0]))

        st.subheader("Feature drift over time")
        features = st.multiselect(
            "Features",
            table["feature"].tolist(),
            default=table["feature"].head(TOP_FEATURES).tolist(),
            key="drift_features",
        )
        chosen = rows[rows["feature"].isin(features)]
        psi = chosen[chosen["metric"] == "psi"]
        show(
            lines(
                psi,
                "run_date:T",
                "value:Q",
                "feature:N",
                threshold=cfg.psi_threshold,
                y_title="PSI",
                x_title="run date",
            )
        )
        pvals = chosen[chosen["metric"].str.endswith("_pvalue")].copy()
        pvals["value"] = pvals["value"].clip(lower=1e-300)
        st.caption(
            f"KS (numeric) and chi-square (categorical) p-values. A test reads drift only when "
            f"p < {cfg.ks_pvalue:g} / {cfg.chi2_pvalue:g} (monitoring.ks_pvalue, chi2_pvalue) "
            f"AND its effect size reaches {cfg.ks_min_statistic:g} (KS statistic, "
            f"monitoring.ks_min_statistic) / {cfg.chi2_min_distance:g} (total variation "
            "distance, monitoring.chi2_min_distance): with many rows the smallest shift has a "
            "tiny p-value. Alerts and retraining use PSI."
        )
        show(
            lines(
                pvals,
                "run_date:T",
                "value:Q",
                "feature:N",
                threshold=cfg.ks_pvalue,
                y_title="p-value",
                x_title="run date",
                log_y=True,
            )
        )
        st.dataframe(
            table,
            hide_index=True,
            width="stretch",
            column_config={
                "psi": st.column_config.NumberColumn(format="%.4f"),
                "p_value": st.column_config.NumberColumn(format="%.2e"),
                "effect_size": st.column_config.NumberColumn(format="%.3f"),
            },
        )

    if not pred.empty:
        st.subheader("Prediction drift")
        series = pred[(pred["metric"] == "psi")]
        last = series[series["run_date"] == series["run_date"].max()].set_index("feature")
        a, b = st.columns(2)
        if "probability" in last.index:
            a.metric("Score PSI", f"{last.loc['probability', 'value']:.3f}")
        if "tier" in last.index:
            b.metric("Tier-mix PSI", f"{last.loc['tier', 'value']:.3f}")
        show(
            lines(
                series,
                "run_date:T",
                "value:Q",
                "feature:N",
                threshold=cfg.psi_threshold,
                y_title="PSI (score and tier mix)",
                x_title="run date",
            )
        )
        shares = pred[pred["metric"].isin(["reference_share", "current_share"])]
        shares = shares[shares["run_date"] == shares["run_date"].max()].copy()
        if not shares.empty:
            shares["tier"] = shares["feature"].str.removeprefix("tier_")
            shares["sample"] = shares["metric"].str.removesuffix("_share")
            show(
                alt.Chart(shares)
                .mark_bar()
                .encode(
                    x=alt.X("sample:N", title=None),
                    y=alt.Y("value:Q", stack="normalize", axis=alt.Axis(format="%"), title="share"),
                    color=alt.Color("tier:N", scale=TIER_COLORS),
                    tooltip=["sample:N", "tier:N", alt.Tooltip("value:Q", format=".1%")],
                )
                .properties(height=200, title="Tier mix: reference (test window) vs current")
            )
    _reports(settings)
