"""Review: settle the frames whose votes tied or disagreed.

The queue comes from the labels service; a decision carries a request id made
once per frame, so pressing twice records one adjudication.
"""

from __future__ import annotations

import uuid

import pandas as pd
import streamlit as st

from lumenal.v1 import labels_pb2
from ui import charts, session
from ui.client import ApiError, Client, ServiceDown

SHORTCUT_KEYS = "123456789"


def request_id(frame_id: str) -> str:
    ids = st.session_state.setdefault("adjudication_ids", {})
    return ids.setdefault(frame_id, uuid.uuid4().hex)


def decide(c: Client, item: labels_pb2.Adjudication, label: str) -> None:
    try:
        c.adjudicate(item.frame_id, label, request_id(item.frame_id))
    except (ApiError, ServiceDown) as exc:
        session.stop_on_error(exc, f"Adjudication of {item.frame_id} was not saved")
    st.session_state["adjudication_ids"].pop(item.frame_id, None)
    session.flash(f"{item.frame_id} resolved as {label}.", "toast")
    st.rerun()


def show_image(c: Client, frame_id: str) -> None:
    try:
        st.image(c.get_frame(frame_id).image, width="stretch")
    except (ApiError, ServiceDown) as exc:
        session.show_error(exc, "The frame image cannot be shown")
    st.caption(f"`{frame_id}`")


def focus(c: Client, item: labels_pb2.Adjudication, classes: list[str]) -> None:
    image_col, side_col = st.columns([3, 2], gap="large")
    with image_col:
        show_image(c, item.frame_id)
    with side_col:
        st.markdown(f"#### Votes ({item.reason or 'disagreement'})")
        if item.votes:
            st.altair_chart(charts.votes_bar(dict(item.votes)), width="stretch")
        extra = f" · {item.unsure} unsure" if item.unsure else ""
        st.caption("Answered by " + ", ".join(item.annotators) + extra)
        st.markdown("#### Final label")
        for i, name in enumerate(classes):
            votes = item.votes.get(name, 0)
            key = SHORTCUT_KEYS[i] if i < len(SHORTCUT_KEYS) else None
            if st.button(f"{name}" + (f" · {votes} vote{'s' * (votes != 1)}" if votes else ""),
                         key=f"adj-{item.frame_id}-{i}", shortcut=key, width="stretch",
                         type="primary" if votes else "secondary"):
                decide(c, item, name)


def main() -> None:
    session.require("reviewer")
    c = session.client()
    st.title("Review")
    session.show_flash()
    try:
        project = c.get_project()
        items = c.list_adjudications(session.settings().adjudication_limit)
    except (ApiError, ServiceDown) as exc:
        session.stop_on_error(exc, "The adjudication queue is unavailable")
    if not items:
        st.success("The adjudication queue is empty: every disagreement is settled.", icon=":material/task_alt:")
        return
    st.caption(f"{len(items)} frame(s) wait for a decision. Press 1-9 to choose a class.")
    ids = [i.frame_id for i in items]
    if st.session_state.get("review_frame") not in ids:
        st.session_state.pop("review_frame", None)  # decided meanwhile: start at the head of the queue
    chosen = st.selectbox("Frame", ids, key="review_frame")
    focus(c, items[ids.index(chosen)], list(project.class_names))
    st.markdown("#### Queue")
    st.dataframe(pd.DataFrame([{
        "frame": i.frame_id, "reason": i.reason,
        "votes": ", ".join(f"{k}: {v}" for k, v in sorted(i.votes.items(), key=lambda kv: -kv[1])),
        "unsure": i.unsure,
        "annotators": ", ".join(i.annotators)} for i in items]), hide_index=True)


main()
