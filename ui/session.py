"""Per-browser-session state (who is logged in, their token) and shared page helpers.

The token lives only in ``st.session_state``: it is never put in a URL or a
cookie, so a reload means logging in again. Roles decide what the navigation
shows; the services enforce them again on every call.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import streamlit as st

from lumenal.v1 import labels_pb2
from ui import settings as ui_settings
from ui.client import ApiError, Client, ServiceDown

ROLE_NAMES = {labels_pb2.ROLE_ANNOTATOR: "annotator", labels_pb2.ROLE_REVIEWER: "reviewer",
              labels_pb2.ROLE_ADMIN: "admin", labels_pb2.ROLE_SERVICE: "service"}
ROLE_VALUES = {name: value for value, name in ROLE_NAMES.items()}
_RANK = {"annotator": 1, "reviewer": 2, "admin": 3, "service": 4}


@dataclass(frozen=True)
class User:
    username: str
    display_name: str
    role: str

    def at_least(self, role: str) -> bool:
        return _RANK.get(self.role, 0) >= _RANK[role]


def settings() -> ui_settings.UISettings:
    return ui_settings.load()


def client() -> Client:
    s = settings()
    return Client(s, st.session_state.get("token"), s.grpc_timeout_s)


def user() -> User | None:
    return st.session_state.get("user")


def log_in(resp: labels_pb2.LoginResponse) -> None:
    a = resp.annotator
    st.session_state["token"] = resp.token
    st.session_state["user"] = User(a.username, a.display_name or a.username,
                                    ROLE_NAMES.get(a.role, "annotator"))


def log_out(message: str | None = None) -> None:
    """Forget everything about this browser session except a parting message."""
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    if message:
        flash(message, "info")


def require(role: str) -> User:
    """The logged-in user if they have ``role``; otherwise explain and stop the page."""
    u = user()
    if u is None:
        st.warning("Please log in.")
        st.stop()
    if not u.at_least(role):
        st.error(f"This page is for {role}s; you are logged in as {u.role}.")
        st.stop()
    return u


def flash(message: str, kind: str = "success") -> None:
    """A message shown once on the next run (survives ``st.rerun``)."""
    st.session_state.setdefault("_flash", []).append((kind, message))


def show_flash() -> None:
    for kind, message in st.session_state.pop("_flash", []):
        if kind == "toast":
            st.toast(message, icon=":material/check_circle:")
        else:
            {"success": st.success, "info": st.info, "warning": st.warning, "error": st.error}[kind](message)


def show_error(exc: Exception, what: str = "") -> None:
    """Render a service failure as a notice the user can act on."""
    prefix = f"{what}: " if what else ""
    if isinstance(exc, ServiceDown):
        st.warning(f"{prefix}{exc} Start it (for example with `lumenal up`) and reload.",
                   icon=":material/cloud_off:")
    elif isinstance(exc, ApiError) and exc.code == grpc.StatusCode.UNAUTHENTICATED:
        log_out(f"Your session ended ({exc.message}). Please log in again.")
        st.rerun()
    elif isinstance(exc, ApiError) and exc.code == grpc.StatusCode.PERMISSION_DENIED:
        st.error(f"{prefix}not allowed: {exc.message}", icon=":material/block:")
    elif isinstance(exc, ApiError):
        st.error(f"{prefix}{exc.message}", icon=":material/error:")
    else:
        raise exc


def stop_on_error(exc: Exception, what: str = "") -> None:
    """Show the failure and end this page's run (the rest depends on the answer)."""
    show_error(exc, what)
    st.stop()
