"""Admin: retrain and roll back the model, tune the project, manage annotators, export labels.

Only admins see this page; the services check the admin role on each of these
calls as well.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from lumenal.v1 import labels_pb2
from ui import session
from ui.client import ApiError, Client, ServiceDown

ROLES = ["annotator", "reviewer", "admin"]
EXPORTS = {"CSV": labels_pb2.EXPORT_FORMAT_CSV, "JSON": labels_pb2.EXPORT_FORMAT_JSON,
           "COCO JSON": labels_pb2.EXPORT_FORMAT_COCO}


def model_section(c: Client) -> None:
    st.subheader("Model")
    retrain, rollback = st.columns(2, gap="large")
    with retrain, st.form("retrain"):
        st.markdown("**Retrain now**")
        reason = st.text_input("Reason", value="requested from the admin page", key="retrain_reason")
        if st.form_submit_button("Trigger retrain", icon=":material/model_training:", type="primary"):
            try:
                resp = c.trigger_retrain(reason)
            except (ApiError, ServiceDown) as exc:
                session.show_error(exc, "Retrain not started")
            else:
                what = "queued behind the running one" if resp.coalesced else f"started as run `{resp.run_id}`"
                (st.success if resp.accepted else st.warning)(
                    (f"Retrain {what}." if resp.accepted else "Retrain not accepted.")
                    + (f" {resp.message}" if resp.message else ""))
    with rollback:
        rollback_form(c)


def rollback_form(c: Client) -> None:
    st.markdown("**Roll back**")
    try:
        models = c.list_models()
    except (ApiError, ServiceDown) as exc:
        session.show_error(exc, "Model versions unavailable")
        return
    versions = sorted((m.version for m in models.models), reverse=True)
    if not versions:
        st.caption("No published versions yet.")
        return
    with st.form("rollback"):
        st.caption(f"Serving version: **{models.serving_version or 'none'}**")
        version = st.selectbox("Serve version", versions, key="rollback_version")
        if st.form_submit_button("Roll back", icon=":material/history:"):
            try:
                mv = c.rollback(int(version))
            except (ApiError, ServiceDown) as exc:
                session.show_error(exc, "Rollback failed")
            else:
                st.success(f"Version {mv.version} is now serving.")


def project_section(c: Client) -> None:
    st.subheader("Project")
    try:
        project = c.get_project()
    except (ApiError, ServiceDown) as exc:
        session.show_error(exc, "Project settings unavailable")
        return
    strategies, default = [], ""
    try:
        resp = c.strategies()
        strategies, default = list(resp.strategies), resp.default_strategy
    except (ApiError, ServiceDown) as exc:
        session.show_error(exc, "Strategy list unavailable (showing the current one only)")
    current = project.strategy or default
    options = strategies if current in strategies or not current else [current, *strategies]
    with st.form("project"):
        a, b = st.columns(2, gap="large")
        strategy = a.selectbox("Query strategy", options or [""], index=options.index(current) if current in options else 0,
                               key="project_strategy", help="how the inference service ranks frames for labeling")
        hide = a.toggle("Hide model predictions from annotators", value=project.hide_predictions,
                        key="project_hide", help="avoids anchoring annotators on the model's guess")
        ttl = a.number_input("Lease length (seconds)", min_value=10, value=project.lease_ttl_s or 300, step=30,
                             key="project_ttl")
        frac = b.slider("Overlap fraction", 0.0, 1.0, float(project.overlap_fraction), 0.05, key="project_overlap",
                        help="share of frames labeled by several annotators, to measure agreement")
        k = b.number_input("Annotators per overlap frame", min_value=2, value=max(2, project.overlap_k), step=1,
                           key="project_k")
        classes = b.text_input("Classes (comma separated, in shortcut order)", ", ".join(project.class_names),
                               key="project_classes")
        if st.form_submit_button("Save project settings", type="primary", icon=":material/save:"):
            new = labels_pb2.Project(class_names=[x.strip() for x in classes.split(",") if x.strip()],
                                     strategy=strategy, overlap_fraction=frac, overlap_k=int(k),
                                     hide_predictions=hide, lease_ttl_s=int(ttl))
            try:
                c.update_project(new)
            except (ApiError, ServiceDown) as exc:
                session.show_error(exc, "Settings not saved")
            else:
                st.success("Project settings saved.")


def annotators_section(c: Client) -> None:
    st.subheader("Annotators")
    try:
        people = c.list_annotators()
    except (ApiError, ServiceDown) as exc:
        session.show_error(exc, "Annotator list unavailable")
        return
    st.dataframe(pd.DataFrame([{"username": a.username, "name": a.display_name,
                                "role": session.ROLE_NAMES.get(a.role, "?"), "active": a.active}
                               for a in people], columns=["username", "name", "role", "active"]),
                 hide_index=True)
    create, edit = st.columns(2, gap="large")
    with create:
        create_form(c)
    with edit:
        edit_form(c, people)


def create_form(c: Client) -> None:
    with st.form("create_annotator", clear_on_submit=True):
        st.markdown("**Add an annotator**")
        username = st.text_input("Username", key="new_username")
        name = st.text_input("Display name", key="new_name")
        password = st.text_input("Password", type="password", key="new_password")
        role = st.selectbox("Role", ROLES, key="new_role")
        if st.form_submit_button("Create", icon=":material/person_add:"):
            try:
                a = c.create_annotator(username.strip(), password, name.strip(), session.ROLE_VALUES[role])
            except (ApiError, ServiceDown) as exc:
                session.show_error(exc, "Annotator not created")
            else:
                session.flash(f"Created {a.username} ({role}).")
                st.rerun()


def edit_form(c: Client, people: list[labels_pb2.Annotator]) -> None:
    if not people:
        return
    by_name = {a.username: a for a in people}
    username = st.selectbox("Change", list(by_name), key="edit_username")
    a = by_name[username]
    with st.form("edit_annotator"):
        st.markdown(f"**Change {username}**")
        role_name = session.ROLE_NAMES.get(a.role, "annotator")
        role = st.selectbox("Role", ROLES, index=ROLES.index(role_name) if role_name in ROLES else 0,
                            key=f"edit_role_{username}")
        active = st.checkbox("Active (may log in)", value=a.active, key=f"edit_active_{username}")
        password = st.text_input("New password (empty = unchanged)", type="password", key=f"edit_pw_{username}")
        if st.form_submit_button("Save", icon=":material/save:"):
            try:
                c.update_annotator(username, role=session.ROLE_VALUES[role], active=active,
                                   display_name=a.display_name, password=password)
            except (ApiError, ServiceDown) as exc:
                session.show_error(exc, f"{username} not changed")
            else:
                session.flash(f"Saved {username}: {role}, {'active' if active else 'deactivated'}.")
                st.rerun()


def export_section(c: Client) -> None:
    st.subheader("Export labels")
    fmt = st.segmented_control("Format", list(EXPORTS), default="CSV", key="export_format", required=True)
    if st.button("Prepare export", icon=":material/download:", key="export"):
        try:
            st.session_state["export_file"] = c.export(EXPORTS[fmt or "CSV"])
        except (ApiError, ServiceDown) as exc:
            session.show_error(exc, "Export failed")
    out = st.session_state.get("export_file")
    if out is not None:
        st.download_button(f"Download {out.filename}", out.data, file_name=out.filename, mime=out.content_type,
                           key="export_download")


def main() -> None:
    session.require("admin")
    c = session.client()
    st.title("Admin")
    session.show_flash()
    model_section(c)
    st.divider()
    project_section(c)
    st.divider()
    annotators_section(c)
    st.divider()
    export_section(c)


main()
