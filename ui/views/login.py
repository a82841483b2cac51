"""Log in with a labels-service account; the token stays in this browser session."""

from __future__ import annotations

import grpc
import streamlit as st

from ui import session
from ui.client import ApiError, ServiceDown

_, middle, _ = st.columns([1, 1.2, 1])
with middle:
    st.title(":material/biotech: Lumenal")
    st.caption("Active learning for video capsule endoscopy: label the frames the model is least sure about.")
    session.show_flash()
    with st.form("login", border=True):
        username = st.text_input("Username", key="login_username")
        password = st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Log in", type="primary", width="stretch")
    if submitted:
        if not username or not password:
            st.error("Enter your username and password.")
        else:
            try:
                session.log_in(session.client().with_token(None).login(username.strip(), password))
                st.rerun()
            except ApiError as exc:
                if exc.code == grpc.StatusCode.UNAUTHENTICATED:
                    st.error(f"Login failed: {exc.message}", icon=":material/lock:")
                else:
                    session.show_error(exc, "Login failed")
            except ServiceDown as exc:
                session.show_error(exc, "Cannot log in")
