"""Dashboard: how labeling, agreement, the model and the pool are doing.

Each section asks one service; a service that is not running costs its own
section a notice, never the page.
"""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from lumenal.v1 import training_pb2
from ui import charts, session
from ui.client import ApiError, Client, ServiceDown

UNCERTAINTY_METRICS = ["entropy", "least_confidence", "margin", "bald", "variation_ratio"]
_RUN_STATES = {v: k.removeprefix("RUN_STATE_").lower() for k, v in training_pb2.RunState.items()}


def labeling_section(c: Client) -> None:
    st.subheader("Labeling")
    try:
        stats = c.stats()
    except (ApiError, ServiceDown) as exc:
        session.show_error(exc, "Label statistics unavailable")
        return
    cols = st.columns(5)
    cols[0].metric("Frames in pool", stats.frames)
    cols[1].metric("Answers", stats.submitted,
                   help=", ".join(f"{v} {k}" for k, v in sorted(stats.per_kind.items())) or None)
    cols[2].metric("Resolved frames", stats.resolved)
    cols[3].metric("Awaiting review", stats.pending_adjudication)
    cols[4].metric("Being labeled now", stats.active_leases)
    if not stats.submitted:
        st.caption("No answers yet.")
        return
    over_time, per_annotator = st.columns([3, 2], gap="large")
    with over_time:
        st.markdown("**Labels per day**")
        st.altair_chart(charts.labels_over_time((d.day, d.annotator, d.count) for d in stats.per_day),
                        width="stretch")
    with per_annotator:
        st.markdown("**Labels per annotator**")
        st.altair_chart(charts.counts_bar(dict(stats.per_annotator), "annotator"), width="stretch")
        if stats.per_class:
            st.markdown("**Resolved labels per class**")
            st.altair_chart(charts.counts_bar(dict(stats.per_class), "class"), width="stretch")


def agreement_section(c: Client) -> None:
    st.subheader("Agreement")
    try:
        agr = c.agreement()
    except (ApiError, ServiceDown) as exc:
        session.show_error(exc, "Agreement unavailable")
        return
    left, right = st.columns([3, 2], gap="large")
    with left:
        st.markdown("**Cohen's κ per annotator pair** (on the frames both labeled)")
        if agr.cohen:
            st.altair_chart(charts.kappa_heatmap((p.a, p.b, p.kappa, p.n) for p in agr.cohen))
        else:
            st.caption("No pair has labeled the same frames yet (overlap frames make this possible).")
    with right:
        defined = agr.fleiss_items and not math.isnan(agr.fleiss)
        st.metric("Fleiss' κ (all annotators)", f"{agr.fleiss:.2f}" if defined else "–",
                  help=f"over {agr.fleiss_items} overlap frames; 1 = perfect, 0 = chance")
        st.markdown("**Agreement with consensus**")
        if agr.with_consensus:
            st.altair_chart(charts.agreement_bars((a.annotator, a.agreement, a.n) for a in agr.with_consensus),
                            width="stretch")
        else:
            st.caption("No consensus labels yet.")


def model_section(c: Client) -> None:
    st.subheader("Model")
    try:
        models = c.list_models()
        status = c.training_status()
    except (ApiError, ServiceDown) as exc:
        session.show_error(exc, "Training information unavailable")
        return
    curve, state = st.columns([3, 2], gap="large")
    with curve:
        st.markdown("**Learning curve**")
        learning_curve(models)
    with state:
        training_status(status)


def learning_curve(models: training_pb2.ListModelsResponse) -> None:
    if not models.models:
        st.caption("No model has been published yet.")
        return
    metrics = sorted({k for m in models.models for k in m.metrics})
    if not metrics:
        st.caption("The published models carry no metrics.")
        return
    preferred = next((m for m in ("macro_f1", "val_macro_f1", "val_accuracy", "accuracy") if m in metrics), metrics[0])
    metric = st.selectbox("Metric", metrics, index=metrics.index(preferred), key="curve_metric")
    serving = models.serving_version
    points = sorted((m.version, m.metrics[metric], m.train_labels, m.version == serving or m.serving,
                     f"rollback to v{m.rollback_of}" if m.rollback_of else (m.reason or "promoted"))
                    for m in models.models if metric in m.metrics)
    st.altair_chart(charts.learning_curve(points, metric), width="stretch")
    st.caption(f"Serving version: **{serving or 'none'}** (red).")


def training_status(status: training_pb2.TrainingStatus) -> None:
    a, b = st.columns(2)
    a.metric("Serving version", status.serving_version or "–")
    b.metric("New labels since last run", status.labels_since_last_run)
    if status.current.run_id:
        run = status.current
        st.info(f"Training run `{run.run_id}` is **{_RUN_STATES.get(run.state, '?')}** "
                f"on {run.train_labels} labels ({run.reason}).", icon=":material/model_training:")
    else:
        st.caption("Training is idle" + (" (a retrain is queued)." if status.pending else "."))
    if status.last.run_id:
        run = status.last
        verdict = _RUN_STATES.get(run.state, "?")
        shown = [k for k in ("macro_f1", "accuracy", "val_accuracy") if k in run.metrics][:2]
        detail = ", ".join(f"{k} {run.metrics[k]:.3f}" for k in shown)
        detail += f" · {run.train_labels} labels · {run.duration_s:.0f} s"
        st.caption(f"Last run `{run.run_id}`: **{verdict}** v{run.version} · {detail}"
                   + (f" · {run.gate}" if run.gate else "") + (f" · error: {run.error}" if run.error else ""))


def pool_section(c: Client) -> None:
    st.subheader("Pool uncertainty")
    metric = st.segmented_control("Uncertainty measure", UNCERTAINTY_METRICS, default="entropy",
                                  key="pool_metric", required=True)
    try:
        pool = c.pool_stats(metric=metric or "entropy", bins=30)
    except (ApiError, ServiceDown) as exc:
        session.show_error(exc, "Pool statistics unavailable")
        return
    cols = st.columns(4)
    cols[0].metric("Frames in pool", pool.frames)
    cols[1].metric("Scored", pool.scored)
    cols[2].metric("Labeled", pool.labeled)
    cols[3].metric("Scored by version", pool.model_version or "–")
    if pool.rescore.running and pool.rescore.total:
        st.progress(pool.rescore.done / pool.rescore.total,
                    text=f"Re-scoring with v{pool.rescore.model_version}: {pool.rescore.done}/{pool.rescore.total}")
    if len(pool.histogram_edges) > 1 and sum(pool.histogram_counts):
        st.altair_chart(charts.histogram(list(pool.histogram_edges), list(pool.histogram_counts),
                                         pool.histogram_metric or metric or "entropy"), width="stretch")
    else:
        st.caption("No scored frames yet: the histogram appears once a model has scored the pool.")


def runs_table(c: Client) -> None:
    try:
        runs = c.list_runs(limit=20)
    except (ApiError, ServiceDown):
        return  # the model section already explained why
    if not runs:
        return
    with st.expander(f"Recent training runs ({len(runs)})"):
        st.dataframe(pd.DataFrame([{
            "run": r.run_id, "state": _RUN_STATES.get(r.state, "?"), "version": r.version,
            "labels": r.train_labels, "reason": r.reason, "seconds": round(r.duration_s, 1),
            **{k: round(v, 4) for k, v in r.metrics.items()}} for r in runs]), hide_index=True)


def main() -> None:
    session.require("annotator")
    c = session.client()
    st.title("Dashboard")
    labeling_section(c)
    st.divider()
    agreement_section(c)
    st.divider()
    model_section(c)
    runs_table(c)
    st.divider()
    pool_section(c)


main()
