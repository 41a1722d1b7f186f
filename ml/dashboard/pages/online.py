"""Online tests: shadow / canary / A-B status from the prediction log (and the running service
when it answers), and the A/B report with its verdict."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ml.config import Settings
from ml.dashboard import data
from ml.dashboard.cache import cached

EMPTY = (
    "No predictions in the prediction log yet: start the service with `lead-scoring serve` "
    "(or `make serve`) and send requests to /predict."
)


def full_log(settings: Settings) -> pd.DataFrame:
    return data.prediction_log(settings, hours=None)


def latest_ab_report(settings: Settings) -> object | None:
    return data.ab_report(settings, full_log(settings))


def _canary(settings: Settings, log_rows: pd.DataFrame) -> None:
    cfg = settings.serving.canary
    window = log_rows[(log_rows["variant"] == "challenger") & log_rows["served"]].tail(cfg.window)
    st.markdown(
        f"**Canary checks** over the challenger's last {len(window):,} served requests "
        f"(canary.window = {cfg.window}, checks start at {cfg.min_requests})"
    )
    if window.empty:
        st.caption("The challenger has served no request yet.")
        return
    import numpy as np

    a, b = st.columns(2)
    errors = float((window["status"] != "ok").mean())
    p95 = float(np.percentile(window["latency_ms"], 95))
    a.metric("Challenger error rate", f"{errors:.2%}", help=f"limit {cfg.max_error_rate:.2%}")
    b.metric("Challenger p95 latency", f"{p95:.1f} ms", help=f"limit {cfg.max_p95_latency_ms} ms")


def _ab(settings: Settings) -> None:
    st.subheader("Latest A/B report")
    report = cached(latest_ab_report)(settings)
    if report is None:
        st.caption(
            "No A/B report: it needs the prediction log and the conversions file "
            f"{settings.paths.raw_dir / 'conversions.csv'} (`lead-scoring ab-report`)."
        )
        return
    (st.success if report.significant else st.info)(f"Verdict: {report.verdict}")
    st.caption(
        f"{report.leads_matured:,} of {report.leads_logged:,} logged leads matured "
        f"(label window {report.label_window_days} days, as of {report.as_of}); "
        f"alpha {report.alpha}."
    )
    rows = []
    for v in report.variants.values():
        rows.append(
            {
                "variant": v.variant,
                "versions": ", ".join(v.model_versions),
                "leads": v.leads,
                "conversions": v.conversions,
                "conversion_rate": v.conversion_rate,
                "auc": v.auc,
                "auc_95ci": None if v.auc_ci is None else f"{v.auc_ci[0]:.3f}–{v.auc_ci[1]:.3f}",
            }
        )
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    a, b, c = st.columns(3)
    a.metric(
        "Difference (B − A)", "n/a" if report.difference is None else f"{report.difference:+.4f}"
    )
    b.metric("p-value", "n/a" if report.p_value is None else f"{report.p_value:.4g}")
    c.metric(
        "Leads needed per variant",
        "n/a" if report.needed_per_variant is None else f"{report.needed_per_variant:,}",
        help=f"to detect {report.min_effect:+.3f} (serving.ab.min_effect)",
    )


def render(settings: Settings) -> None:
    st.title("Online tests")
    serving = settings.serving
    live = data.live_service_models(settings)
    a, b = st.columns(2)
    a.metric("Configured mode", serving.mode, help="serving.mode")
    if live is None:
        b.metric(
            "Service",
            "not reachable",
            help=f"GET http://{serving.host}:{serving.port}/model did not answer",
        )
    else:
        b.metric("Challenger share (live)", f"{live['challenger_share']:.0%}")
        canary = live.get("canary")
        if canary and canary.get("rolled_back"):
            st.error(f"Canary rolled back: {canary['reason']}")
    log_rows = cached(full_log)(settings)
    if log_rows.empty:
        st.info(EMPTY, icon=":material/hourglass_empty:")
        return
    st.subheader("Variants in the prediction log")
    summary = data.variant_summary(log_rows)
    st.dataframe(
        summary,
        hide_index=True,
        width="stretch",
        column_config={
            "error_rate": st.column_config.NumberColumn(format="percent"),
            "mean_score": st.column_config.NumberColumn(format="%.1f"),
        },
    )
    served = log_rows[log_rows["served"]]
    recent = served[served["logged_at"] >= served["logged_at"].max() - pd.Timedelta(hours=24)]
    share = float((recent["variant"] == "challenger").mean()) if len(recent) else 0.0
    st.metric(
        "Challenger share of served predictions",
        f"{share:.1%}",
        help="over the last 24 hours of the log",
    )
    shadow = log_rows[~log_rows["served"]]
    if not shadow.empty:
        pairs = shadow.merge(served, on=["request_id", "lead_id"], suffixes=("_shadow", ""))
        if len(pairs):
            diff = (pairs["score_shadow"] - pairs["score"]).abs()
            st.metric(
                "Shadow: mean |challenger − champion| score",
                f"{diff.mean():.2f}",
                help=f"over {len(pairs):,} requests scored by both",
            )
    if (log_rows["mode"] == "canary").any() or serving.mode == "canary":
        _canary(settings, log_rows)
    _ab(settings)
