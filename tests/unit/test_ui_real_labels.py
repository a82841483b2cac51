"""AppTest tests of the UI against the REAL labels service (in-process gRPC server, SQLite).

Cheap enough for the unit suite and catches contract drift between the UI and
the labels service: real login tokens and sessions, real leases, real
idempotency, real adjudication queue, real role checks. Frame images come from
the fake storage (same auth secret); inference is absent, so the labels
service uses its fallback ordering.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import ui_fakes
from streamlit.testing.v1 import AppTest

from lumenal.core.config import from_env
from lumenal.labels.server import App, serve
from lumenal.labels.settings import LabelsSettings
from lumenal.stack.processes import free_port
from lumenal.v1 import common_pb2, labels_pb2

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the ui/ package lives at the repo root, outside lumenal
    sys.path.insert(0, str(ROOT))

from ui import settings as ui_settings  # noqa: E402
from ui.client import Client  # noqa: E402

APP = str(ROOT / "ui" / "app.py")
CLASSES = "normal,ulcer,polyp"
PASSWORD = "correct-horse-1"


@dataclass
class Real:
    app: App
    addr: str

    def client(self, username: str) -> Client:
        c = Client(from_env(ui_settings.UISettings, environ={}, labels_addr=self.addr))
        return c.with_token(c.login(username, PASSWORD).token)


@pytest.fixture
def real(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Real]:
    fakes = ui_fakes.start(("storage",))
    settings = from_env(LabelsSettings, environ={}, db_url=f"sqlite:///{tmp_path}/labels.db",
                        auth_secret=ui_fakes.SECRET, class_names=CLASSES, overlap_fraction=1.0,
                        overlap_k=2, inference_addr=f"127.0.0.1:{free_port()}", inference_timeout_s=0.3,
                        consume_frames=False, publish_events=False)
    server, app = serve(settings, port=0, metrics_port=-1, background=False)
    for name, role in (("ann", "annotator"), ("ann2", "annotator"), ("rev", "reviewer"), ("boss", "admin")):
        app.accounts.create(name, PASSWORD, role, name.title())
    app.tasks.add_frames([common_pb2.FrameMeta(frame_id=f"vid:{i:06d}", video_id="vid", frame_index=i)
                          for i in range(3)])
    addr = f"127.0.0.1:{server.port}"
    monkeypatch.setenv("LUMENAL_LABELS_ADDR", addr)
    monkeypatch.setenv("LUMENAL_STORAGE_ADDR", fakes.addr)
    for down in ("INFERENCE", "TRAINING"):
        monkeypatch.setenv(f"LUMENAL_{down}_ADDR", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("LUMENAL_UI_GRPC_TIMEOUT_S", "15")
    yield Real(app, addr)
    server.stop(0)
    fakes.stop()


def logged_in(username: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90).run()
    at.text_input(key="login_username").input(username)
    at.text_input(key="login_password").input(PASSWORD)
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert at.session_state["user"].username == username
    return at


def button(at: AppTest, label: str):  # noqa: ANN201
    found = [b for b in at.button if b.label == label]
    assert found, f"no button {label!r} in {[b.label for b in at.button]}"
    return found[0]


def test_label_reaches_the_real_service_once(real: Real) -> None:
    at = logged_in("ann")
    assert [b.label for b in at.button if b.label in CLASSES.split(",")] == CLASSES.split(",")
    frame = at.session_state["task"].frame_id
    button(at, "ulcer").click().run()
    assert not at.exception
    stats = real.client("boss").stats()
    assert stats.per_annotator["ann"] == 1 and stats.submitted == 1
    assert at.session_state["task"].frame_id != frame  # moved on to the next frame


def test_review_and_admin_against_the_real_service(real: Real) -> None:
    # Two annotators disagree on one overlap frame -> it waits for a reviewer.
    a, b = real.client("ann"), real.client("ann2")
    ta = a.next_task()
    tb = b.next_task()
    assert ta.frame_id == tb.frame_id and ta.overlap
    for c, t, label in ((a, ta, "normal"), (b, tb, "polyp")):
        c.submit_label(labels_pb2.SubmitLabelRequest(request_id=f"r-{t.lease_id}", lease_id=t.lease_id,
                                                     frame_id=t.frame_id, kind=common_pb2.LABEL_KIND_CLASS,
                                                     label=label))
    at = logged_in("rev")
    at.switch_page("views/review.py").run()
    assert any(b.label.startswith("polyp · 1 vote") for b in at.button)
    button(at, "ulcer").click().run()
    assert not at.exception
    assert real.client("boss").stats().resolved == 1
    with pytest.raises(ValueError):
        at.switch_page("views/admin.py")  # reviewers have no admin page

    admin = logged_in("boss")
    admin.switch_page("views/admin.py").run()
    admin.toggle(key="project_hide").set_value(True)
    button(admin, "Save project settings").click().run()
    assert not admin.exception
    assert real.client("boss").get_project().hide_predictions
    admin.switch_page("views/dashboard.py").run()
    assert not admin.exception
    page = "\n".join(m.value for m in admin.markdown) + "\n".join(str(w.value) for w in admin.warning)
    assert "Labels per day" in page and "training service is not reachable" in page


def test_annotator_sees_the_server_refuse_admin_calls(real: Real) -> None:
    at = logged_in("ann")
    with pytest.raises(ValueError):
        at.switch_page("views/admin.py")
    # even with a hand-made admin flag in the session, the server checks the token's role
    at.session_state["user"] = at.session_state["user"].__class__("ann", "Ann", "admin")
    at.run()
    at.switch_page("views/admin.py").run()
    assert not at.exception
    errors = "\n".join(e.value for e in at.error)
    assert "not allowed" in errors and "needs admin" in errors
