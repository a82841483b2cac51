"""Lumenal oracle UI entry point: ``streamlit run ui/app.py``.

Builds the navigation for the logged-in user's role (annotators never see the
review, upload or admin pages; the services still check every call) and runs
the chosen page.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run ui/app.py` puts only ui/ on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from ui import session  # noqa: E402
from ui.client import ApiError, ServiceDown  # noqa: E402

st.set_page_config(page_title="Lumenal", page_icon=":material/biotech:", layout="wide")

PAGES = {  # page file -> (title, icon, least role)
    "views/label.py": ("Label", ":material/label:", "annotator"),
    "views/dashboard.py": ("Dashboard", ":material/monitoring:", "annotator"),
    "views/review.py": ("Review", ":material/gavel:", "reviewer"),
    "views/upload.py": ("Upload video", ":material/upload:", "reviewer"),
    "views/admin.py": ("Admin", ":material/admin_panel_settings:", "admin"),
}


def pages_for(user: session.User) -> list[st.Page]:
    return [st.Page(path, title=title, icon=icon, default=(path == "views/label.py"))
            for path, (title, icon, role) in PAGES.items() if user.at_least(role)]


def log_out_of_services() -> None:
    """Give back the frame being labeled and end the session on the server (best effort:
    the token is dropped here either way, and leases and tokens also expire on their own)."""
    c = session.client()
    task = st.session_state.get("task")
    with contextlib.suppress(ApiError, ServiceDown):
        if task is not None:
            c.release_task(task.lease_id)
        c.logout()


def sidebar(user: session.User) -> None:
    with st.sidebar:
        st.markdown(f"**{user.display_name}**  \n:gray[{user.username} · {user.role}]")
        if st.button("Log out", icon=":material/logout:", key="logout"):
            log_out_of_services()
            session.log_out("You are logged out.")
            st.rerun()


user = session.user()
if user is None:
    nav = st.navigation([st.Page("views/login.py", title="Log in", icon=":material/login:")],
                        position="hidden")
else:
    nav = st.navigation(pages_for(user))
    sidebar(user)
nav.run()
