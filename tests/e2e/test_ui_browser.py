"""End to end in headless Chromium: upload a video, log in, label a frame with a key.

Real processes on free ports: SeaweedFS and tansu (the conftest fixtures), the
storage and labels services (``python -m lumenal.<name>``) and
``streamlit run ui/app.py``. Inference and training are not started, so the
labels service uses its fallback ordering and the UI must show notices for
them instead of failing. The video is the SYNTHETIC demo video (not real
endoscopy). Screenshots are saved as test artefacts.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from ui_browser import (
    button,
    chromium,
    idle,
    log_in,
    missing_browser,
    open_page,
    page_text,
    quit_browser,
    start_ui,
    wait_until,
)

from lumenal.core import auth
from lumenal.core.config import CommonSettings, from_env
from lumenal.core.grpc_server import wait_healthy
from lumenal.demo import synthetic
from lumenal.stack.processes import ManagedProcess, free_port
from lumenal.v1 import labels_pb2, labels_pb2_grpc, storage_pb2, storage_pb2_grpc

pytestmark = pytest.mark.e2e

CLASSES = ",".join(synthetic.CLASSES)  # informative, bubbles, blur, dark, debris -> keys 1..5
ADMIN_PASSWORD = "admin-password-1"
NURSE_PASSWORD = "nurse-password-1"
REPO = Path(__file__).resolve().parents[2]


def artefacts(tmp_path: Path) -> Path:
    """Where screenshots go: $LUMENAL_E2E_ARTIFACTS (CI can keep it) or the test's tmp dir."""
    out = Path(os.environ.get("LUMENAL_E2E_ARTIFACTS", tmp_path / "artefacts"))
    out.mkdir(parents=True, exist_ok=True)
    return out


def service(name: str, port: int, home: Path, env: dict[str, str]) -> ManagedProcess:
    proc = ManagedProcess(name, [sys.executable, "-m", f"lumenal.{name}"], home / "logs" / f"{name}.log",
                          env={**env, f"LUMENAL_{name.upper()}_METRICS_PORT": str(free_port())}, cwd=REPO)
    proc.start()
    try:
        wait_healthy(f"127.0.0.1:{port}", 120)
    except TimeoutError:
        raise RuntimeError(f"{name} did not become healthy; log tail:\n{proc.log_tail()}") from None
    return proc


@pytest.fixture
def system(stack_infra, tmp_path: Path) -> Iterator[dict[str, str]]:  # noqa: ANN001
    """storage + labels + the UI; yields the UI url and the service addresses."""
    if reason := missing_browser():
        pytest.skip(reason)
    ports = {"storage": free_port(), "labels": free_port()}
    nowhere = f"127.0.0.1:{free_port()}"  # inference and training are not running
    env = {**stack_infra.env(), "LUMENAL_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1",
           "LUMENAL_STORAGE_ADDR": f"127.0.0.1:{ports['storage']}",
           "LUMENAL_LABELS_ADDR": f"127.0.0.1:{ports['labels']}",
           "LUMENAL_INFERENCE_ADDR": nowhere, "LUMENAL_TRAINING_ADDR": nowhere,
           "LUMENAL_DB_URL": f"sqlite:///{tmp_path / 'labels.db'}",
           "LUMENAL_LABELS_CLASS_NAMES": CLASSES, "LUMENAL_LABELS_OVERLAP_FRACTION": "0",
           "LUMENAL_LABELS_ADMIN_PASSWORD": ADMIN_PASSWORD, "LUMENAL_LABELS_CONSUMER_SESSION_MS": "6000",
           "LUMENAL_LABELS_INFERENCE_TIMEOUT_S": "0.5",
           "LUMENAL_STORAGE_SAMPLE_FPS": "-1", "LUMENAL_STORAGE_DEDUP_THRESHOLD": "0"}
    procs: list[ManagedProcess] = []
    try:
        procs.append(service("storage", ports["storage"], tmp_path, env))
        procs.append(service("labels", ports["labels"], tmp_path, env))
        ui, url = start_ui(tmp_path / "logs", env)
        procs.append(ui)
        yield {**env, "url": url}
    finally:
        for p in reversed(procs):
            p.stop()


def labels_stub(env: dict[str, str]) -> tuple[labels_pb2_grpc.LabelsServiceStub, tuple]:
    import grpc

    ch = grpc.insecure_channel(env["LUMENAL_LABELS_ADDR"])
    stub = labels_pb2_grpc.LabelsServiceStub(ch)
    token = stub.Login(labels_pb2.LoginRequest(username="admin", password=ADMIN_PASSWORD)).token
    return stub, auth.metadata(token)


def frames_in_storage(env: dict[str, str]) -> int:
    import grpc

    settings = from_env(CommonSettings, environ=env)
    with grpc.insecure_channel(settings.storage_addr) as ch:
        stub = storage_pb2_grpc.StorageServiceStub(ch)
        md = auth.metadata(auth.service_token(settings.auth_secret, "e2e"))
        return stub.ListFrames(storage_pb2.ListFramesRequest(), metadata=md).total


def press(driver, key: str) -> None:  # noqa: ANN001
    """A key press on the page itself (not in a text box), as a person would."""
    driver.execute_script("document.activeElement && document.activeElement.blur()")
    ActionChains(driver).send_keys(key).perform()


def metric_value(driver, label: str) -> str | None:  # noqa: ANN001
    for m in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stMetric"]'):
        lines = [x.strip() for x in m.text.split("\n") if x.strip()]
        if lines and lines[0] == label:
            return lines[-1]
    return None


def test_upload_login_and_label_with_a_key(system: dict[str, str], tmp_path: Path) -> None:
    out = artefacts(tmp_path)
    demo = synthetic.generate(tmp_path / "video", frames=24, size=128, fps=5)
    stub, md = labels_stub(system)
    stub.CreateAnnotator(labels_pb2.CreateAnnotatorRequest(username="nurse", password=NURSE_PASSWORD,
                                                           display_name="Nurse Joy", role=labels_pb2.ROLE_ANNOTATOR),
                         metadata=md)
    driver = chromium(tmp_path / "profile")
    try:
        # 1. The admin uploads the video through the page; it streams to storage IngestVideo.
        log_in(driver, system["url"], "admin", ADMIN_PASSWORD)
        open_page(driver, "Upload video")
        upload = wait_until(driver, lambda: driver.find_element(By.CSS_SELECTOR, 'input[type="file"]'),
                            "file input")
        upload.send_keys(str(demo.video))
        wait_until(driver, lambda: enabled(button(driver, "Ingest")), "Ingest enabled").click()
        wait_until(driver, lambda: "ingested:" in page_text(driver), "ingest report", 180)
        driver.save_screenshot(str(out / "upload.png"))
        assert frames_in_storage(system) > 0
        # The labels service learns the frames from frames.ingested (Kafka).
        wait_until(driver, lambda: stub.GetStats(labels_pb2.GetStatsRequest(), metadata=md).frames > 0,
                   "labels saw the frames", 120)
        wait_until(driver, lambda: button(driver, "Log out"), "log out button").click()
        wait_until(driver, lambda: driver.find_elements(By.CSS_SELECTOR, 'input[aria-label="Username"]'),
                   "back at the login form")

        # 2. The annotator logs in and labels the frame with key "1" (informative).
        log_in(driver, system["url"], "nurse", NURSE_PASSWORD)
        wait_until(driver, lambda: button(driver, "informative") and idle(driver), "class buttons", 90)
        wait_until(driver, lambda: driver.find_elements(By.CSS_SELECTOR, '[data-testid="stImage"] img'),
                   "the frame image")
        first = wait_until(driver, lambda: _frame_caption(driver), "frame id caption")
        assert metric_value(driver, "This session") == "0"
        time.sleep(0.5)  # let the image settle for the screenshot
        driver.save_screenshot(str(out / "label.png"))
        press(driver, "1")
        wait_until(driver, lambda: metric_value(driver, "This session") == "1", "the count to change", 60)
        second = wait_until(driver, lambda: _frame_caption(driver), "next frame")
        assert second != first
        driver.save_screenshot(str(out / "label-after.png"))

        # 3. The label arrived in the labels service, once, as class 1.
        stats = stub.GetStats(labels_pb2.GetStatsRequest(), metadata=md)
        assert stats.per_annotator["nurse"] == 1
        assert stats.per_kind["class"] == 1
        assert stats.per_class[synthetic.CLASSES[0]] == 1

        # 4. The dashboard works with inference and training down (notices, no crash).
        open_page(driver, "Dashboard")
        notices = ("Labels per day", "inference service is not reachable", "training service is not reachable")
        wait_until(driver, lambda: all(n in page_text(driver) for n in notices), "dashboard with notices", 90)
        assert "Traceback" not in page_text(driver)
        driver.save_screenshot(str(out / "dashboard.png"))
    except Exception:
        driver.save_screenshot(str(out / "failure.png"))
        raise
    finally:
        quit_browser(driver, tmp_path / "profile")
    print(f"screenshots in {out}")


def enabled(element):  # noqa: ANN001, ANN201
    return element if element is not None and element.is_enabled() else None


def _frame_caption(driver) -> str | None:  # noqa: ANN001
    """The frame id under the image (``video:index``)."""
    for c in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stCaptionContainer"] code'):
        if ":" in c.text:
            return c.text
    return None
