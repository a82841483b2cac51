"""The UI's non-Streamlit parts: the gRPC facade's error mapping, chart data, upload progress."""

from __future__ import annotations

import io
import math
import sys
from pathlib import Path

import grpc
import pytest
import ui_fakes

from lumenal.core.config import from_env
from lumenal.stack.processes import free_port
from lumenal.v1 import storage_pb2

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the ui/ package lives at the repo root, outside lumenal
    sys.path.insert(0, str(ROOT))

from ui import charts  # noqa: E402
from ui.client import ApiError, Client, ServiceDown, chunks  # noqa: E402
from ui.formatting import progress_fraction  # noqa: E402
from ui.settings import UISettings  # noqa: E402


def client(addr: str, token: str | None = None) -> Client:
    return Client(from_env(UISettings, environ={}, labels_addr=addr, storage_addr=addr), token, 2.0)


def test_service_not_running_is_service_down() -> None:
    addr = f"127.0.0.1:{free_port()}"
    with pytest.raises(ServiceDown) as err:
        client(addr).login("a", "b")
    assert err.value.service == "labels" and addr in str(err.value)


def test_error_status_is_api_error_with_the_server_message() -> None:
    stack = ui_fakes.start()
    try:
        with pytest.raises(ApiError) as err:
            client(stack.addr).login("alice", "wrong")
        assert err.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert err.value.message == "wrong username or password"
        with pytest.raises(ApiError) as err:
            client(stack.addr, "forged.token").stats()
        assert err.value.code == grpc.StatusCode.UNAUTHENTICATED
        token = client(stack.addr).login("alice", "pw-alice").token
        assert client(stack.addr, token).stats().per_annotator["alice"] == 47
    finally:
        stack.stop()


def test_ingest_streams_every_byte_in_chunks() -> None:
    stack = ui_fakes.start(("storage",))
    try:
        data = bytes(range(256)) * 41
        pos = {"at": 0}

        def read(n: int) -> bytes:
            block = data[pos["at"]:pos["at"] + n]
            pos["at"] += len(block)
            return block

        token = stack.token("rita")
        progress = list(client(stack.addr, token).ingest_video(chunks(read, 1000),
                                                               storage_pb2.IngestOptions(filename="v.mp4")))
        assert stack.storage.received == data
        assert progress[-1].done and progress[-1].frames_stored == 8
        assert [p.bytes_received for p in progress if not p.frames_decoded] == [1000 * i for i in range(1, 11)] + [len(data)]
    finally:
        stack.stop()


def test_chunks_splits_a_file() -> None:
    assert list(chunks(io.BytesIO(b"abcdefg").read, 3)) == [b"abc", b"def", b"g"]
    assert list(chunks(io.BytesIO(b"").read, 3)) == []


def test_kappa_matrix_is_symmetric_with_unit_diagonal() -> None:
    df = charts.kappa_matrix([("a", "b", 0.5, 10), ("a", "c", float("nan"), 4)])
    cell = {(r.a, r.b): r.kappa for r in df.itertuples()}
    assert cell[("a", "b")] == cell[("b", "a")] == 0.5
    assert cell[("a", "a")] == cell[("b", "b")] == cell[("c", "c")] == 1.0
    assert math.isnan(cell[("c", "a")])
    assert len(df) == 4 + 3
    assert charts.kappa_heatmap([("a", "b", 0.5, 10)]).to_dict()  # renders to a Vega-Lite spec


def test_learning_curve_marks_the_serving_version() -> None:
    spec = charts.learning_curve([(1, 0.6, 100, False, "promoted"), (2, 0.7, 200, True, "promoted")],
                                 "macro_f1").to_dict()
    rows = next(iter(spec["datasets"].values()))
    assert [r["status"] for r in rows] == ["published", "serving"]


def test_histogram_uses_the_service_bins() -> None:
    spec = charts.histogram([0.0, 0.5, 1.0], [3, 7], "entropy").to_dict()
    rows = next(iter(spec["datasets"].values()))
    assert [(r["lo"], r["hi"], r["frames"]) for r in rows] == [(0.0, 0.5, 3), (0.5, 1.0, 7)]


@pytest.mark.parametrize(("progress", "expected"), [
    (storage_pb2.IngestProgress(bytes_received=500), 0.25),
    (storage_pb2.IngestProgress(bytes_received=1000, frames_decoded=5, total_frames_estimate=10), 0.75),
    (storage_pb2.IngestProgress(frames_decoded=5), 0.5),
    (storage_pb2.IngestProgress(done=True, frames_stored=9), 1.0),
])
def test_upload_progress_covers_upload_then_decode(progress: storage_pb2.IngestProgress, expected: float) -> None:
    frac, text = progress_fraction(progress, 1000)
    assert frac == pytest.approx(expected) and text


def test_labels_over_time_fills_a_week_of_days() -> None:
    spec = charts.labels_over_time([("2026-11-20", "ana", 3), ("2026-11-22", "ben", 5)]).to_dict()
    rows = next(iter(spec["datasets"].values()))
    days = sorted({r["day"] for r in rows})
    assert days[0] == "2026-11-16" and days[-1] == "2026-11-22" and len(days) == 7
    assert sum(r["labels"] for r in rows) == 8
