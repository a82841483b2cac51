"""Labeling: one leased frame, shown large; answer with a click or a key (1-9, U, S).

A task keeps one client request id from lease to answer, so a double click or
a retry after a network error is recorded once by the labels service. Button
keys carry the lease id: a click that arrives after the next frame is shown
cannot land on the new frame.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import grpc
import streamlit as st

from lumenal.v1 import common_pb2, labels_pb2
from ui import charts, session
from ui.client import ApiError, Client, ServiceDown

SHORTCUT_KEYS = "123456789"
_STALE_CODES = (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND,
                grpc.StatusCode.DEADLINE_EXCEEDED)


def fetch_task(c: Client) -> labels_pb2.Task | None:
    """The current task, leasing a new one when there is none (None = nothing to label)."""
    task = st.session_state.get("task")
    if task is not None:
        return task
    try:
        task = c.next_task()
    except ApiError as exc:
        if exc.code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED,
                        grpc.StatusCode.FAILED_PRECONDITION):
            st.session_state["no_task_reason"] = exc.message
            return None
        raise
    if not task.frame_id:
        st.session_state["no_task_reason"] = "the pool is empty"
        return None
    st.session_state.update(task=task, task_request_id=uuid.uuid4().hex, task_started=time.time())
    return task


def drop_task() -> None:
    for key in ("task", "task_request_id", "task_started"):
        st.session_state.pop(key, None)


def submit(c: Client, task: labels_pb2.Task, kind: int, label: str, shown: str) -> None:
    """Send the answer; move on when it is recorded or when the lease is gone."""
    req = labels_pb2.SubmitLabelRequest(
        request_id=st.session_state["task_request_id"], lease_id=task.lease_id, frame_id=task.frame_id,
        kind=kind, label=label, seconds_spent=time.time() - st.session_state["task_started"])
    try:
        resp = c.submit_label(req)
    except ApiError as exc:
        if exc.code in _STALE_CODES:
            drop_task()
            session.flash(f"Frame {task.frame_id} could not take your answer ({exc.message}); "
                          "it was not recorded. Here is the next frame.", "warning")
            st.rerun()
        session.stop_on_error(exc, "Your answer was not saved")
    except ServiceDown as exc:
        session.stop_on_error(exc, "Your answer was not saved; press the button again when it is back")
    drop_task()
    if not resp.duplicate:
        st.session_state["session_count"] = st.session_state.get("session_count", 0) + 1
    session.flash(f"{task.frame_id}: {shown}" + (" (already recorded)" if resp.duplicate else ""), "toast")
    st.rerun()


def give_back(c: Client, task: labels_pb2.Task) -> None:
    """Release the lease (best effort: it also expires by itself) and move on."""
    try:
        c.release_task(task.lease_id)
    except (ApiError, ServiceDown) as exc:
        session.flash(f"The frame could not be released now ({exc}); its lease will expire.", "warning")
    drop_task()
    st.rerun()


def frame_panel(c: Client, task: labels_pb2.Task) -> None:
    meta = task.frame
    try:
        frame = c.get_frame(task.frame_id)
        st.image(frame.image, width="stretch")
        meta = frame.meta if frame.meta.frame_id else meta
    except (ApiError, ServiceDown) as exc:
        session.show_error(exc, "The frame image cannot be shown")
    where = f" · frame {meta.frame_index} at {meta.timestamp_s:.1f} s" if meta.video_id else ""
    st.caption(f"`{task.frame_id}`{where}" + (f" · {meta.source}" if meta.source else ""))


def answer_panel(c: Client, task: labels_pb2.Task, classes: list[str]) -> None:
    st.markdown("#### Your answer")
    lease = task.lease_id
    chosen: tuple[int, str, str] | None = None
    for i, name in enumerate(classes):
        key = SHORTCUT_KEYS[i] if i < len(SHORTCUT_KEYS) else None
        if st.button(name, key=f"cls-{i}-{lease}", shortcut=key, type="primary", width="stretch"):
            chosen = (common_pb2.LABEL_KIND_CLASS, name, name)
    left, right = st.columns(2)
    if left.button("Unsure", key=f"unsure-{lease}", shortcut="U", icon=":material/help:", width="stretch"):
        chosen = (common_pb2.LABEL_KIND_UNSURE, "", "unsure")
    if right.button("Skip", key=f"skip-{lease}", shortcut="S", icon=":material/skip_next:", width="stretch"):
        chosen = (common_pb2.LABEL_KIND_SKIP, "", "skipped")
    if chosen:
        submit(c, task, *chosen)
    if st.button("Give this frame back", key=f"release-{lease}", type="tertiary", icon=":material/undo:",
                 help="return the frame to the pool unanswered (use Skip to never see it again)"):
        give_back(c, task)
    st.caption("Keys: " + ", ".join(f"**{SHORTCUT_KEYS[i]}** {n}" for i, n in enumerate(classes[:9]))
               + ", **U** unsure, **S** skip")
    tags = [":material/groups: overlap frame: others label it too"] if task.overlap else []
    if task.expires_at.seconds:
        left_s = int(task.expires_at.seconds - time.time())
        tags.append(f":material/timer: lease ends {datetime.fromtimestamp(task.expires_at.seconds):%H:%M:%S}"
                    + (f" (~{left_s // 60} min left)" if left_s > 60 else ""))
    if tags:
        st.caption("  \n".join(tags))


def prediction_panel(task: labels_pb2.Task, project: labels_pb2.Project) -> None:
    if project.hide_predictions:
        st.caption(":material/visibility_off: Model output is hidden in this project so it does not bias your answer.")
        return
    score = task.score
    if not score.probabilities:
        st.caption(":material/hourglass_empty: No model prediction for this frame yet.")
        return
    classes = list(project.class_names)
    guess = classes[score.predicted_class] if score.predicted_class < len(classes) else f"class {score.predicted_class}"
    top = max(score.probabilities)
    st.markdown(f"#### Model prediction\n**{guess}** ({top:.0%}) · :gray[model v{score.model_version}]")
    st.altair_chart(charts.probabilities(classes, list(score.probabilities)), width="stretch")
    a, b, d = st.columns(3)
    a.metric("Entropy", f"{score.entropy:.2f}", help="predictive entropy (nats); higher = less sure")
    b.metric("Margin", f"{score.margin:.2f}", help="top-1 minus top-2 probability; smaller = less sure")
    d.metric("BALD", f"{score.bald:.3f}", help="MC-dropout mutual information; model (epistemic) doubt")


def progress_panel(c: Client, username: str) -> None:
    st.markdown("#### Your progress")
    try:
        stats = c.stats()
    except (ApiError, ServiceDown) as exc:
        session.show_error(exc, "Progress unavailable")
        return
    today = datetime.now(UTC).date().isoformat()
    mine_today = sum(d.count for d in stats.per_day if d.annotator == username and d.day == today)
    a, b, d = st.columns(3)
    a.metric("This session", st.session_state.get("session_count", 0))
    b.metric("Today", mine_today)
    d.metric("All time", stats.per_annotator.get(username, 0))
    if stats.submitted:
        share = stats.per_annotator.get(username, 0) / stats.submitted
        st.progress(min(1.0, share), text=f"{share:.0%} of all {stats.submitted} answers are yours")


def main() -> None:
    u = session.require("annotator")
    c = session.client()
    session.show_flash()
    try:
        project = c.get_project()
        task = fetch_task(c)
    except (ApiError, ServiceDown) as exc:
        session.stop_on_error(exc, "Cannot get a frame to label")
    if task is None:
        st.info(f"Nothing to label right now ({st.session_state.get('no_task_reason', '')}). "
                "New frames arrive as videos are ingested.", icon=":material/inbox:")
        st.button("Check again", icon=":material/refresh:", key="check-again")
        progress_panel(c, u.username)
        return
    image_col, side_col = st.columns([3, 2], gap="large")
    with image_col:
        frame_panel(c, task)
        progress_panel(c, u.username)
    with side_col:
        answer_panel(c, task, list(project.class_names))
        prediction_panel(task, project)


main()
