"""In-process fake gRPC servicers for the UI's AppTest tests.

They speak the real ``lumenal.v1`` protos on a real gRPC port (through the
same ``lumenal.core.grpc_server`` bootstrap the services use), check bearer
tokens with ``lumenal.core.auth`` and record every request, so a test can
assert what the UI actually sent.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from PIL import Image

from lumenal.core import auth, grpc_server
from lumenal.core.errors import FailedPrecondition, NotFound, Unauthenticated
from lumenal.v1 import (
    common_pb2,
    inference_pb2,
    inference_pb2_grpc,
    labels_pb2,
    labels_pb2_grpc,
    storage_pb2,
    storage_pb2_grpc,
    training_pb2,
    training_pb2_grpc,
)

SECRET = "ui-test-secret"
CLASSES = ["normal", "ulcer", "polyp", "blood"]
ROLE_NAME = {labels_pb2.ROLE_ANNOTATOR: auth.ANNOTATOR, labels_pb2.ROLE_REVIEWER: auth.REVIEWER,
             labels_pb2.ROLE_ADMIN: auth.ADMIN}


def png(color: tuple[int, int, int] = (180, 60, 50), size: int = 96) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class Recorder:
    calls: list[tuple[str, object]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, method: str, request: object) -> None:
        with self.lock:
            self.calls.append((method, request))

    def of(self, method: str) -> list:
        return [r for m, r in self.calls if m == method]


class FakeLabels(labels_pb2_grpc.LabelsServiceServicer):
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec
        self.users = {
            "alice": ("pw-alice", labels_pb2.Annotator(username="alice", display_name="Alice A.",
                                                       role=labels_pb2.ROLE_ANNOTATOR, active=True)),
            "rita": ("pw-rita", labels_pb2.Annotator(username="rita", display_name="Rita R.",
                                                     role=labels_pb2.ROLE_REVIEWER, active=True)),
            "root": ("pw-root", labels_pb2.Annotator(username="root", display_name="Admin",
                                                     role=labels_pb2.ROLE_ADMIN, active=True)),
        }
        self.project = labels_pb2.Project(class_names=CLASSES, strategy="entropy", overlap_fraction=0.2,
                                          overlap_k=3, hide_predictions=False, lease_ttl_s=300)
        self.queue = [f"vid1:{i:06d}" for i in range(5)]
        self.expire_leases = False
        self.request_ids: set[str] = set()
        self.leases = 0
        self.adjudications = [labels_pb2.Adjudication(frame_id="vid1:000042", votes={"ulcer": 1, "polyp": 1},
                                                      annotators=["alice", "bob"], reason="tie")]

    def _auth(self, context, role: str = auth.ANNOTATOR) -> auth.Principal:  # noqa: ANN001
        p = auth.authenticate(context, SECRET)
        auth.require(p, role)
        return p

    def Login(self, request, context):  # noqa: ANN001, N802
        self.rec.record("Login", request)
        pw, who = self.users.get(request.username, (None, None))
        if who is None or pw != request.password:
            raise Unauthenticated("wrong username or password")
        if not who.active:
            raise Unauthenticated("account deactivated")
        token, _ = auth.issue_token(SECRET, who.username, ROLE_NAME[who.role], 3600)
        return labels_pb2.LoginResponse(token=token, annotator=who)

    def Logout(self, request, context):  # noqa: ANN001, N802
        self._auth(context)
        self.rec.record("Logout", request)
        return labels_pb2.LogoutResponse()

    def GetProject(self, request, context):  # noqa: ANN001, N802
        self._auth(context)
        return self.project

    def UpdateProject(self, request, context):  # noqa: ANN001, N802
        self._auth(context, auth.ADMIN)
        self.rec.record("UpdateProject", request)
        self.project = request
        return request

    def NextTask(self, request, context):  # noqa: ANN001, N802
        p = self._auth(context)
        self.rec.record("NextTask", p.subject)
        if not self.queue:
            raise NotFound("no frames are waiting for labels")
        self.leases += 1
        frame = self.queue[0]
        score = common_pb2.FrameScore(frame_id=frame, model_name="frame_triage", model_version=3,
                                      probabilities=[0.1, 0.55, 0.3, 0.05], predicted_class=1,
                                      entropy=1.07, margin=0.25, bald=0.031)
        task = labels_pb2.Task(lease_id=f"lease-{self.leases}", frame_id=frame, overlap=True,
                               source="inference")
        task.expires_at.FromSeconds(4102444800)
        if not self.project.hide_predictions:
            task.score.CopyFrom(score)
        return task

    def SubmitLabel(self, request, context):  # noqa: ANN001, N802
        self._auth(context)
        self.rec.record("SubmitLabel", request)
        if self.expire_leases:
            raise FailedPrecondition(f"lease {request.lease_id} expired")
        if request.request_id in self.request_ids:
            return labels_pb2.SubmitLabelResponse(label_id=request.request_id, duplicate=True)
        self.request_ids.add(request.request_id)
        if request.frame_id in self.queue:
            self.queue.remove(request.frame_id)
        return labels_pb2.SubmitLabelResponse(label_id=request.request_id)

    def ReleaseTask(self, request, context):  # noqa: ANN001, N802
        self._auth(context)
        self.rec.record("ReleaseTask", request)
        return labels_pb2.ReleaseTaskResponse()

    def ListAdjudications(self, request, context):  # noqa: ANN001, N802
        self._auth(context, auth.REVIEWER)
        return labels_pb2.ListAdjudicationsResponse(items=self.adjudications)

    def Adjudicate(self, request, context):  # noqa: ANN001, N802
        self._auth(context, auth.REVIEWER)
        self.rec.record("Adjudicate", request)
        self.adjudications = [a for a in self.adjudications if a.frame_id != request.frame_id]
        return labels_pb2.AdjudicateResponse(resolved=True)

    def GetAgreement(self, request, context):  # noqa: ANN001, N802
        self._auth(context)
        return labels_pb2.Agreement(
            cohen=[labels_pb2.PairKappa(a="alice", b="bob", kappa=0.71, n=40),
                   labels_pb2.PairKappa(a="alice", b="carol", kappa=0.42, n=35),
                   labels_pb2.PairKappa(a="bob", b="carol", kappa=0.18, n=38)],
            fleiss=0.44, fleiss_items=30,
            with_consensus=[labels_pb2.AnnotatorAgreement(annotator=n, agreement=a, n=40)
                            for n, a in (("alice", 0.91), ("bob", 0.84), ("carol", 0.66))])

    def GetStats(self, request, context):  # noqa: ANN001, N802
        self._auth(context)
        from datetime import UTC, datetime
        today = datetime.now(UTC).date().isoformat()
        return labels_pb2.LabelStats(
            submitted=120, resolved=80, pending_adjudication=len(self.adjudications), active_leases=2,
            per_day=[labels_pb2.DailyCount(day="2026-11-01", annotator="alice", count=30),
                     labels_pb2.DailyCount(day="2026-11-01", annotator="bob", count=20),
                     labels_pb2.DailyCount(day=today, annotator="alice", count=17),
                     labels_pb2.DailyCount(day=today, annotator="bob", count=53)],
            per_annotator={"alice": 47, "bob": 73}, per_class={"normal": 50, "ulcer": 20, "polyp": 10})

    def ListAnnotators(self, request, context):  # noqa: ANN001, N802
        self._auth(context, auth.ADMIN)
        return labels_pb2.ListAnnotatorsResponse(annotators=[a for _, a in self.users.values()])

    def CreateAnnotator(self, request, context):  # noqa: ANN001, N802
        self._auth(context, auth.ADMIN)
        self.rec.record("CreateAnnotator", request)
        a = labels_pb2.Annotator(username=request.username, display_name=request.display_name,
                                 role=request.role, active=True)
        self.users[request.username] = (request.password, a)
        return a

    def UpdateAnnotator(self, request, context):  # noqa: ANN001, N802
        self._auth(context, auth.ADMIN)
        self.rec.record("UpdateAnnotator", request)
        pw, a = self.users[request.username]
        a = labels_pb2.Annotator(username=a.username, display_name=request.display_name or a.display_name,
                                 role=request.role, active=request.active)
        self.users[request.username] = (request.password or pw, a)
        return a

    def Export(self, request, context):  # noqa: ANN001, N802
        self._auth(context, auth.REVIEWER)
        return labels_pb2.ExportResponse(data=b"frame_id,label\nvid1:000001,ulcer\n", content_type="text/csv",
                                         filename="labels.csv")


class FakeStorage(storage_pb2_grpc.StorageServiceServicer):
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec
        self.received = b""

    def GetFrame(self, request, context):  # noqa: ANN001, N802
        auth.authenticate(context, SECRET)
        self.rec.record("GetFrame", request)
        video, index = request.frame_id.split(":")
        meta = common_pb2.FrameMeta(frame_id=request.frame_id, video_id=video, frame_index=int(index),
                                    timestamp_s=int(index) / 2, width=96, height=96, content_type="image/png")
        return storage_pb2.Frame(meta=meta, image=png())

    def IngestVideo(self, request_iterator, context) -> Iterator[storage_pb2.IngestProgress]:  # noqa: ANN001, N802
        auth.authenticate(context, SECRET)
        options = None
        data = bytearray()
        for req in request_iterator:
            if req.HasField("options"):
                options = req.options
            else:
                data += req.chunk
                yield storage_pb2.IngestProgress(video_id="pending", bytes_received=len(data))
        self.rec.record("IngestVideo", options)
        self.received = bytes(data)
        for i in (5, 10):
            yield storage_pb2.IngestProgress(video_id="vid9", frames_decoded=i, frames_stored=i - 1,
                                             total_frames_estimate=10, bytes_received=len(data))
        yield storage_pb2.IngestProgress(video_id="vid9", frames_decoded=10, frames_stored=8,
                                         frames_dropped_duplicate=2, done=True, bytes_received=len(data))

    def ListVideos(self, request, context):  # noqa: ANN001, N802
        auth.authenticate(context, SECRET)
        return storage_pb2.ListVideosResponse(videos=[storage_pb2.VideoInfo(
            video_id="vid1", filename="capsule.mp4", frames_stored=500, frames_dropped_duplicate=40, complete=True)])


class FakeInference(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    def GetPoolStats(self, request, context):  # noqa: ANN001, N802
        auth.authenticate(context, SECRET)
        self.rec.record("GetPoolStats", request)
        n = request.histogram_bins or 10
        edges = [i / n for i in range(n + 1)]
        counts = [int(100 * (1 - abs(i - n / 2) / n)) for i in range(n)]
        return inference_pb2.PoolStats(frames=900, scored=850, labeled=120, model_version=3,
                                       histogram_edges=edges, histogram_counts=counts,
                                       histogram_metric=request.metric or "entropy")

    def ListStrategies(self, request, context):  # noqa: ANN001, N802
        auth.authenticate(context, SECRET)
        return inference_pb2.ListStrategiesResponse(
            strategies=["random", "least_confidence", "margin", "entropy", "bald", "kcenter", "badge"],
            default_strategy="margin")


class FakeTraining(training_pb2_grpc.TrainingServiceServicer):
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    def _models(self) -> list[training_pb2.ModelVersion]:
        return [training_pb2.ModelVersion(version=v, metrics={"val_accuracy": acc, "val_loss": 1 - acc},
                                          serving=(v == 3), train_labels=100 * v)
                for v, acc in ((1, 0.61), (2, 0.72), (3, 0.78), (4, 0.75))]

    def GetStatus(self, request, context):  # noqa: ANN001, N802
        auth.authenticate(context, SECRET)
        last = training_pb2.TrainingRun(run_id="run-4", state=training_pb2.RUN_STATE_REJECTED, version=4,
                                        metrics={"val_accuracy": 0.75})
        return training_pb2.TrainingStatus(serving_version=3, labels_seen=120, labels_since_last_run=14, last=last)

    def ListModels(self, request, context):  # noqa: ANN001, N802
        auth.authenticate(context, SECRET)
        return training_pb2.ListModelsResponse(models=self._models(), serving_version=3)

    def ListRuns(self, request, context):  # noqa: ANN001, N802
        auth.authenticate(context, SECRET)
        return training_pb2.ListRunsResponse(runs=[training_pb2.TrainingRun(
            run_id="run-4", state=training_pb2.RUN_STATE_REJECTED, version=4, train_labels=400)])

    def TriggerRetrain(self, request, context):  # noqa: ANN001, N802
        p = auth.authenticate(context, SECRET)
        auth.require(p, auth.ADMIN)
        self.rec.record("TriggerRetrain", request)
        return training_pb2.TriggerRetrainResponse(accepted=True, run_id="run-5")

    def Rollback(self, request, context):  # noqa: ANN001, N802
        p = auth.authenticate(context, SECRET)
        auth.require(p, auth.ADMIN)
        self.rec.record("Rollback", request)
        return training_pb2.ModelVersion(version=request.version, serving=True)


@dataclass
class FakeStack:
    """All four fake services on one port (one address for every service)."""

    rec: Recorder
    labels: FakeLabels
    storage: FakeStorage
    inference: FakeInference
    training: FakeTraining
    server: grpc_server.Server

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def token(self, username: str) -> str:
        pw, who = self.labels.users[username]
        return auth.issue_token(SECRET, username, ROLE_NAME[who.role], 3600)[0]

    def stop(self) -> None:
        self.server.stop(0)


def start(services: tuple[str, ...] = ("labels", "storage", "inference", "training")) -> FakeStack:
    rec = Recorder()
    fakes = {"labels": FakeLabels(rec), "storage": FakeStorage(rec), "inference": FakeInference(rec),
             "training": FakeTraining(rec)}
    adders = {"labels": (labels_pb2_grpc.add_LabelsServiceServicer_to_server, "lumenal.v1.LabelsService"),
              "storage": (storage_pb2_grpc.add_StorageServiceServicer_to_server, "lumenal.v1.StorageService"),
              "inference": (inference_pb2_grpc.add_InferenceServiceServicer_to_server,
                            "lumenal.v1.InferenceService"),
              "training": (training_pb2_grpc.add_TrainingServiceServicer_to_server, "lumenal.v1.TrainingService")}
    register = [(adders[s][0], fakes[s], adders[s][1]) for s in services]
    server = grpc_server.start("ui-fakes", 0, register, metrics_port=-1, max_workers=8)
    return FakeStack(rec, fakes["labels"], fakes["storage"], fakes["inference"], fakes["training"], server)
