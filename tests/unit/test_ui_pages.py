"""AppTest tests of every UI page against in-process fake gRPC services.

The fakes speak the real protos over a real port and record requests, so these
tests check what the UI shows AND what it sends (labels, request ids, roles).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import ui_fakes
from streamlit.testing.v1 import AppTest

from lumenal.stack.processes import free_port
from lumenal.v1 import common_pb2, labels_pb2

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the ui/ package lives at the repo root, outside lumenal
    sys.path.insert(0, str(ROOT))

from ui import session  # noqa: E402

APP = str(ROOT / "ui" / "app.py")
SERVICES = ("labels", "storage", "inference", "training")


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[ui_fakes.FakeStack]:
    s = ui_fakes.start()
    for name in SERVICES:
        monkeypatch.setenv(f"LUMENAL_{name.upper()}_ADDR", s.addr)
    monkeypatch.setenv("LUMENAL_UI_GRPC_TIMEOUT_S", "15")
    yield s
    s.stop()


def app_as(stack: ui_fakes.FakeStack, username: str | None, page: str | None = None) -> AppTest:
    """The app logged in as ``username`` (None = logged out), run once, on ``page``."""
    at = AppTest.from_file(APP, default_timeout=90)
    if username:
        _, who = stack.labels.users[username]
        at.session_state["token"] = stack.token(username)
        at.session_state["user"] = session.User(username, who.display_name, session.ROLE_NAMES[who.role])
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    """Everything a person would read on the page, as one string."""
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [t.value for t in at.title]
    parts += [str(x.value) for kind in ("info", "warning", "error", "success", "subheader") for x in getattr(at, kind)]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    return "\n".join(parts)


def button(at: AppTest, label: str):  # noqa: ANN201
    found = [b for b in at.button if b.label == label]
    assert found, f"no button {label!r} in {[b.label for b in at.button]}"
    return found[0]


# -- login ---------------------------------------------------------------------

def test_login_stores_token_and_shows_role_pages(stack: ui_fakes.FakeStack) -> None:
    at = app_as(stack, None)
    at.text_input(key="login_username").input("alice")
    at.text_input(key="login_password").input("pw-alice")
    at.button[0].click().run()
    assert not at.exception
    assert at.session_state["user"].role == "annotator"
    assert at.session_state["token"]
    assert stack.rec.of("Login")[0].username == "alice"
    assert "Your answer" in texts(at)  # landed on the labeling page


def test_wrong_password_is_refused_with_a_message(stack: ui_fakes.FakeStack) -> None:
    at = app_as(stack, None)
    at.text_input(key="login_username").input("alice")
    at.text_input(key="login_password").input("nope")
    at.button[0].click().run()
    assert "token" not in at.session_state
    assert "wrong username or password" in texts(at)


def test_logout_clears_the_session(stack: ui_fakes.FakeStack) -> None:
    at = app_as(stack, "alice")
    at.button(key="logout").click().run()
    assert "token" not in at.session_state
    assert stack.rec.of("Logout")
    assert stack.rec.of("ReleaseTask")[0].lease_id == "lease-1"  # the open frame goes back to the pool
    assert at.text_input(key="login_username")  # back on the login form


def test_labels_service_down_is_a_notice_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUMENAL_LABELS_ADDR", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("LUMENAL_UI_GRPC_TIMEOUT_S", "1")
    at = AppTest.from_file(APP, default_timeout=90).run()
    at.text_input(key="login_username").input("alice")
    at.text_input(key="login_password").input("pw-alice")
    at.button[0].click().run()
    assert not at.exception
    assert "labels service is not reachable" in texts(at)


# -- labeling ------------------------------------------------------------------

def test_label_page_shows_frame_classes_shortcuts_and_prediction(stack: ui_fakes.FakeStack) -> None:
    at = app_as(stack, "alice")
    labels = [b.label for b in at.button]
    for name in ui_fakes.CLASSES:
        assert name in labels
    assert "Unsure" in labels and "Skip" in labels
    assert len(at.get("image")) == 1  # the frame
    assert stack.rec.of("GetFrame")[0].frame_id == "vid1:000000"
    page = texts(at)
    assert "Model prediction" in page and "**ulcer** (55%)" in page  # predicted class 1, p=0.55
    assert "**1** normal" in page and "**S** skip" in page
    assert "All time 47" in page and "Today 17" in page


def test_submit_sends_the_chosen_label_once_per_task(stack: ui_fakes.FakeStack) -> None:
    at = app_as(stack, "alice")
    button(at, "polyp").click().run()
    assert not at.exception
    sent = stack.rec.of("SubmitLabel")
    assert len(sent) == 1
    req = sent[0]
    assert (req.frame_id, req.label, req.kind) == ("vid1:000000", "polyp", common_pb2.LABEL_KIND_CLASS)
    assert req.lease_id == "lease-1" and req.request_id
    # the next frame is leased with a fresh request id
    assert stack.rec.of("GetFrame")[-1].frame_id == "vid1:000001"
    button(at, "normal").click().run()
    second = stack.rec.of("SubmitLabel")[1]
    assert second.request_id != req.request_id and second.frame_id == "vid1:000001"
    assert at.session_state["session_count"] == 2


def test_retry_of_the_same_task_reuses_its_request_id(stack: ui_fakes.FakeStack) -> None:
    at = app_as(stack, "alice")
    rid = at.session_state["task_request_id"]
    stack.labels.request_ids.add(rid)  # as if the first click's answer had already been recorded
    button(at, "ulcer").click().run()
    assert stack.rec.of("SubmitLabel")[0].request_id == rid
    assert "session_count" not in at.session_state  # a duplicate is not counted again
    assert "already recorded" in str([t.value for t in at.toast])


def test_skip_and_unsure_are_answers(stack: ui_fakes.FakeStack) -> None:
    at = app_as(stack, "alice")
    button(at, "Skip").click().run()
    button(at, "Unsure").click().run()
    kinds = [(r.kind, r.label) for r in stack.rec.of("SubmitLabel")]
    assert kinds == [(common_pb2.LABEL_KIND_SKIP, ""), (common_pb2.LABEL_KIND_UNSURE, "")]


def test_expired_lease_explains_and_moves_on(stack: ui_fakes.FakeStack) -> None:
    at = app_as(stack, "alice")
    stack.labels.expire_leases = True
    button(at, "ulcer").click().run()
    assert not at.exception
    page = texts(at)
    assert "expired" in page and "was not recorded" in page
    assert at.session_state["task"].lease_id == "lease-2"


def test_hidden_predictions_are_hidden(stack: ui_fakes.FakeStack) -> None:
    stack.labels.project.hide_predictions = True
    at = app_as(stack, "alice")
    page = texts(at)
    assert "Model prediction" not in page and "Entropy" not in page
    assert "hidden" in page
    assert not at.get("vega_lite_chart")


def test_empty_pool_says_so(stack: ui_fakes.FakeStack) -> None:
    stack.labels.queue.clear()
    at = app_as(stack, "alice")
    assert "Nothing to label" in texts(at)
    assert "no frames are waiting" in texts(at)


def test_storage_down_still_allows_labeling(stack: ui_fakes.FakeStack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUMENAL_STORAGE_ADDR", f"127.0.0.1:{free_port()}")
    at = app_as(stack, "alice")
    assert "storage service is not reachable" in texts(at)
    button(at, "blood").click().run()
    assert stack.rec.of("SubmitLabel")[0].label == "blood"


# -- role-aware navigation ------------------------------------------------------

def test_annotator_cannot_reach_review_upload_or_admin(stack: ui_fakes.FakeStack) -> None:
    at = app_as(stack, "alice")
    for page in ("views/admin.py", "views/review.py", "views/upload.py"):
        with pytest.raises(ValueError):
            at.switch_page(page)
    at.switch_page("views/dashboard.py").run()
    assert not at.exception


def test_reviewer_cannot_reach_admin(stack: ui_fakes.FakeStack) -> None:
    at = app_as(stack, "rita")
    with pytest.raises(ValueError):
        at.switch_page("views/admin.py")
    at.switch_page("views/review.py").run()
    assert "Review" in texts(at)


# -- review ---------------------------------------------------------------------

def test_review_shows_votes_and_adjudicates(stack: ui_fakes.FakeStack) -> None:
    at = app_as(stack, "rita", "views/review.py")
    page = texts(at)
    assert "Votes (tie)" in page and "alice, bob" in page
    button(at, "polyp · 1 vote").click().run()
    assert not at.exception
    req = stack.rec.of("Adjudicate")[0]
    assert (req.frame_id, req.label) == ("vid1:000042", "polyp") and req.request_id
    assert "queue is empty" in texts(at)


# -- dashboard ------------------------------------------------------------------

def test_dashboard_shows_every_section(stack: ui_fakes.FakeStack) -> None:
    at = app_as(stack, "alice", "views/dashboard.py")
    page = texts(at)
    for expected in ("Labels per day", "Cohen's κ", "Learning curve", "Pool uncertainty",
                     "Serving version: **3**", "Fleiss' κ (all annotators) 0.44", "Answers 120"):
        assert expected in page, expected
    assert len(at.get("vega_lite_chart")) >= 6
    assert stack.rec.of("GetPoolStats")[0].metric == "entropy"


def test_dashboard_survives_missing_services(stack: ui_fakes.FakeStack, monkeypatch: pytest.MonkeyPatch) -> None:
    down = f"127.0.0.1:{free_port()}"
    for name in ("inference", "training"):
        monkeypatch.setenv(f"LUMENAL_{name.upper()}_ADDR", down)
    at = app_as(stack, "alice", "views/dashboard.py")
    page = texts(at)
    assert "inference service is not reachable" in page
    assert "training service is not reachable" in page
    assert "Labels per day" in page  # the labels sections still render


# -- upload ---------------------------------------------------------------------

def test_upload_streams_the_video_to_storage(stack: ui_fakes.FakeStack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUMENAL_UI_UPLOAD_CHUNK_BYTES", "1000")
    at = app_as(stack, "rita", "views/upload.py")
    video = bytes(range(256)) * 20  # 5,120 bytes -> 6 chunks
    at.file_uploader(key="video_upload").set_value(("capsule.mp4", video, "video/mp4")).run()
    at.button(key="ingest").click().run()
    assert not at.exception
    assert stack.storage.received == video
    assert stack.rec.of("IngestVideo")[0].filename == "capsule.mp4"
    assert "8 frames stored, 2 near-duplicates dropped" in texts(at)


# -- admin ----------------------------------------------------------------------

def test_admin_triggers_retrain_and_rollback(stack: ui_fakes.FakeStack) -> None:
    at = app_as(stack, "root", "views/admin.py")
    button(at, "Trigger retrain").click().run()
    assert stack.rec.of("TriggerRetrain")[0].reason
    assert "run-5" in texts(at)
    at.selectbox(key="rollback_version").select(2)
    button(at, "Roll back").click().run()
    assert stack.rec.of("Rollback")[0].version == 2
    assert "Version 2 is now serving" in texts(at)


def test_admin_saves_strategy_and_hide_predictions(stack: ui_fakes.FakeStack) -> None:
    at = app_as(stack, "root", "views/admin.py")
    assert "badge" in at.selectbox(key="project_strategy").options
    at.selectbox(key="project_strategy").select("bald")
    at.toggle(key="project_hide").set_value(True)
    button(at, "Save project settings").click().run()
    sent = stack.rec.of("UpdateProject")[0]
    assert (sent.strategy, sent.hide_predictions) == ("bald", True)
    assert list(sent.class_names) == ui_fakes.CLASSES and sent.overlap_k == 3


def test_admin_manages_annotators(stack: ui_fakes.FakeStack) -> None:
    at = app_as(stack, "root", "views/admin.py")
    at.text_input(key="new_username").input("nina")
    at.text_input(key="new_name").input("Nina N.")
    at.text_input(key="new_password").input("pw-nina-123")
    at.selectbox(key="new_role").select("reviewer")
    button(at, "Create").click().run()
    created = stack.rec.of("CreateAnnotator")[0]
    assert (created.username, created.role) == ("nina", labels_pb2.ROLE_REVIEWER)
    at.selectbox(key="edit_username").select("alice").run()
    at.selectbox(key="edit_role_alice").select("reviewer")
    at.checkbox(key="edit_active_alice").uncheck()
    button(at, "Save").click().run()
    upd = stack.rec.of("UpdateAnnotator")[0]
    assert (upd.username, upd.role, upd.active) == ("alice", labels_pb2.ROLE_REVIEWER, False)
    assert "deactivated" in texts(at)


def test_admin_page_refuses_non_admin_even_if_opened(stack: ui_fakes.FakeStack) -> None:
    at = AppTest.from_file(str(Path(APP).parent / "views" / "admin.py"), default_timeout=90)
    at.session_state["token"] = stack.token("alice")
    at.session_state["user"] = session.User("alice", "Alice", "annotator")
    at.run()
    assert "This page is for admins" in texts(at)
    assert not stack.rec.of("TriggerRetrain")


def test_expired_or_forged_token_sends_the_user_back_to_login(stack: ui_fakes.FakeStack) -> None:
    at = AppTest.from_file(APP, default_timeout=90)
    at.session_state["token"] = "forged.token"
    at.session_state["user"] = session.User("alice", "Alice", "annotator")
    at.run()
    assert not at.exception
    assert "token" not in at.session_state
    assert "Your session ended (invalid token signature)" in texts(at)
    assert at.text_input(key="login_username")


def test_admin_exports_labels(stack: ui_fakes.FakeStack) -> None:
    at = app_as(stack, "root", "views/admin.py")
    at.button(key="export").click().run()
    assert not at.exception
    assert at.session_state["export_file"].filename == "labels.csv"
    assert any(b.label == "Download labels.csv" for b in at.get("download_button"))


def test_give_back_releases_the_lease_and_shows_another_frame(stack: ui_fakes.FakeStack) -> None:
    at = app_as(stack, "alice")
    assert at.session_state["task"].lease_id == "lease-1"
    button(at, "Give this frame back").click().run()
    assert not at.exception
    assert stack.rec.of("ReleaseTask")[0].lease_id == "lease-1"
    assert at.session_state["task"].lease_id == "lease-2"
    assert not stack.rec.of("SubmitLabel")
