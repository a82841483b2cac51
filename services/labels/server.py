"""LabelsService gRPC server: authentication and roles around ``Tasks``/``Reports``/``Accounts``.

Start-up: migrate the database, write project defaults, create the bootstrap
admin (first start only), then serve. Background: a consumer of
``frames.ingested`` (group ``labels``) fills the frame pool, and the outbox
publisher sends ``labels.submitted`` / ``labels.resolved``. Health follows the
database (Kafka being down delays events but loses none: the outbox keeps them).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import grpc
from sqlalchemy.exc import OperationalError

from lumenal.core import auth, events, grpc_server, logs, topics
from lumenal.core.config import listen_port
from lumenal.core.errors import InvalidArgument, Unavailable
from lumenal.labels.accounts import Accounts
from lumenal.labels.db import Database
from lumenal.labels.outbox import OutboxPublisher
from lumenal.labels.ranking import Ranker
from lumenal.labels.reports import Reports
from lumenal.labels.settings import LabelsSettings, load
from lumenal.labels.tasks import Tasks
from lumenal.v1 import events_pb2, labels_pb2, labels_pb2_grpc

log = logging.getLogger(__name__)

ROLE_TO_PB = {auth.ANNOTATOR: labels_pb2.ROLE_ANNOTATOR, auth.REVIEWER: labels_pb2.ROLE_REVIEWER,
              auth.ADMIN: labels_pb2.ROLE_ADMIN, auth.SERVICE: labels_pb2.ROLE_SERVICE}
PB_TO_ROLE = {v: k for k, v in ROLE_TO_PB.items() if k != auth.SERVICE}


def annotator_pb(user) -> labels_pb2.Annotator:  # noqa: ANN001 - models.Annotator
    return labels_pb2.Annotator(username=user.username, display_name=user.display_name,
                                role=ROLE_TO_PB[user.role], active=user.active)


def role_of(value: int, default: str = "") -> str:
    """Proto role -> role name; ROLE_UNSPECIFIED -> ``default``."""
    if value == labels_pb2.ROLE_UNSPECIFIED:
        return default
    if value not in PB_TO_ROLE:
        raise InvalidArgument("role must be ROLE_ANNOTATOR, ROLE_REVIEWER or ROLE_ADMIN")
    return PB_TO_ROLE[value]


class LabelsServicer(labels_pb2_grpc.LabelsServiceServicer):
    def __init__(self, accounts: Accounts, tasks: Tasks, reports: Reports) -> None:
        self.accounts, self.tasks, self.reports = accounts, tasks, reports

    def _auth(self, context: grpc.ServicerContext, role: str) -> auth.Principal:
        principal = self.accounts.authenticate(auth.bearer(context))
        auth.require(principal, role)
        return principal

    # -- sessions --------------------------------------------------------------
    def Login(self, request, context):  # noqa: ANN001, ANN201, N802
        token, user, expires_at = self.accounts.login(request.username, request.password)
        out = labels_pb2.LoginResponse(token=token, annotator=annotator_pb(user))
        out.expires_at.FromNanoseconds(int(expires_at * 1e9))
        return out

    def Logout(self, request, context):  # noqa: ANN001, ANN201, N802
        self.accounts.logout(self._auth(context, auth.ANNOTATOR))
        return labels_pb2.LogoutResponse()

    def WhoAmI(self, request, context):  # noqa: ANN001, ANN201, N802
        p = self._auth(context, auth.ANNOTATOR)
        if p.role == auth.SERVICE:
            return labels_pb2.Annotator(username=p.subject, display_name=p.subject,
                                        role=labels_pb2.ROLE_SERVICE, active=True)
        return annotator_pb(self.accounts.get(p.subject))

    # -- admin -----------------------------------------------------------------
    def CreateAnnotator(self, request, context):  # noqa: ANN001, ANN201, N802
        self._auth(context, auth.ADMIN)
        user = self.accounts.create(request.username, request.password,
                                    role_of(request.role, auth.ANNOTATOR), request.display_name)
        return annotator_pb(user)

    def UpdateAnnotator(self, request, context):  # noqa: ANN001, ANN201, N802
        self._auth(context, auth.ADMIN)
        user = self.accounts.update(request.username, password=request.password, role=role_of(request.role),
                                    active=request.active, display_name=request.display_name)
        return annotator_pb(user)

    def ListAnnotators(self, request, context):  # noqa: ANN001, ANN201, N802
        self._auth(context, auth.ADMIN)
        return labels_pb2.ListAnnotatorsResponse(annotators=[annotator_pb(u) for u in self.accounts.list()])

    def GetProject(self, request, context):  # noqa: ANN001, ANN201, N802
        self._auth(context, auth.ANNOTATOR)
        return self.tasks.project().to_proto()

    def UpdateProject(self, request, context):  # noqa: ANN001, ANN201, N802
        p = self._auth(context, auth.ADMIN)
        return self.tasks.update_project(request, p.subject).to_proto()

    # -- annotators ------------------------------------------------------------
    def NextTask(self, request, context):  # noqa: ANN001, ANN201, N802
        return self.tasks.next_task(self._auth(context, auth.ANNOTATOR).subject)

    def SubmitLabel(self, request, context):  # noqa: ANN001, ANN201, N802
        return self.tasks.submit(self._auth(context, auth.ANNOTATOR).subject, request)

    def ReleaseTask(self, request, context):  # noqa: ANN001, ANN201, N802
        self.tasks.release(self._auth(context, auth.ANNOTATOR).subject, request.lease_id)
        return labels_pb2.ReleaseTaskResponse()

    # -- reviewers -------------------------------------------------------------
    def ListAdjudications(self, request, context):  # noqa: ANN001, ANN201, N802
        self._auth(context, auth.REVIEWER)
        return labels_pb2.ListAdjudicationsResponse(items=self.tasks.list_adjudications(request.limit))

    def Adjudicate(self, request, context):  # noqa: ANN001, ANN201, N802
        p = self._auth(context, auth.REVIEWER)
        resolved = self.tasks.adjudicate(p.subject, request.frame_id, request.label, request.request_id)
        return labels_pb2.AdjudicateResponse(resolved=resolved)

    # -- reports ---------------------------------------------------------------
    def GetAgreement(self, request, context):  # noqa: ANN001, ANN201, N802
        self._auth(context, auth.ANNOTATOR)
        return self.reports.agreement()

    def GetStats(self, request, context):  # noqa: ANN001, ANN201, N802
        self._auth(context, auth.ANNOTATOR)
        return self.reports.stats()

    def ListResolved(self, request, context):  # noqa: ANN001, ANN201, N802
        self._auth(context, auth.REVIEWER)
        return labels_pb2.ListResolvedResponse(
            labels=self.reports.list_resolved(request.after_sequence, request.limit))

    def Export(self, request, context):  # noqa: ANN001, ANN201, N802
        self._auth(context, auth.REVIEWER)
        return self.reports.export(request.format)


@dataclass
class App:
    """Everything the service runs, wired; ``stop`` ends the background threads."""

    settings: LabelsSettings
    db: Database
    accounts: Accounts
    tasks: Tasks
    reports: Reports
    outbox: OutboxPublisher | None = None
    consumer: events.Consumer | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def servicer(self) -> LabelsServicer:
        return LabelsServicer(self.accounts, self.tasks, self.reports)

    def start_background(self) -> App:
        s = self.settings
        if s.publish_events:
            self.outbox = OutboxPublisher(self.db, s.kafka_bootstrap, s.outbox_interval_s).start()
            self.tasks.notify = self.outbox.notify
        if s.consume_frames:
            threading.Thread(target=self._start_consumer, daemon=True, name="labels-frames").start()
        return self

    def _start_consumer(self) -> None:
        """Join the ``labels`` group once Kafka answers (it may start after us)."""
        backoff = 0.5
        while not self._stop.is_set():
            try:
                events.ensure_topics(self.settings.kafka_bootstrap, timeout_s=10)
                publisher = events.Publisher(self.settings.kafka_bootstrap, client_id="labels-dlq")
                break
            except Exception as exc:  # noqa: BLE001 - broker not up yet
                log.warning("kafka not reachable; frames consumer waits", extra={"error": str(exc)})
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10)
        else:
            return
        self.consumer = events.Consumer(
            self.settings.kafka_bootstrap, "labels",
            {topics.FRAMES_INGESTED: (events_pb2.FramesIngested, self._on_frames)}, publisher,
            session_timeout_ms=self.settings.consumer_session_ms,
            fetch_max_wait_ms=self.settings.kafka_fetch_max_wait_ms).start()

    def _on_frames(self, msg: events_pb2.FramesIngested, record: events.Record) -> None:
        try:
            added = self.tasks.add_frames(msg.frames)
        except OperationalError as exc:  # database away: retry the event, never dead-letter it
            raise Unavailable(f"labels database unavailable: {exc.orig}") from exc
        log.info("frames ingested", extra={"video_id": msg.video_id, "frames": len(msg.frames), "new": added})

    def stop(self) -> None:
        self._stop.set()
        if self.consumer is not None:
            self.consumer.stop()
        if self.outbox is not None:
            self.outbox.stop()
        self.db.dispose()


def build(settings: LabelsSettings) -> App:
    """Migrate, seed defaults and wire the service (no threads, no ports yet)."""
    db = Database(settings.database_url(), settings.db_pool_size)
    db.migrate()
    accounts = Accounts(db, settings.auth_secret, settings.token_ttl_s)
    ranker = Ranker(settings.inference_addr, settings.auth_secret, settings.inference_timeout_s,
                    settings.inference_retry_s)
    tasks = Tasks(db, ranker, settings)
    tasks.ensure_defaults()
    accounts.bootstrap_admin(settings.admin_user, settings.admin_password)
    return App(settings, db, accounts, tasks, Reports(db))


def serve(settings: LabelsSettings, port: int | None = None, metrics_port: int | None = None,
          background: bool = True) -> tuple[grpc_server.Server, App]:
    """Start the server (tests pass port 0 and metrics_port -1 for none)."""
    app = build(settings)
    if background:
        app.start_background()
    server = grpc_server.start(
        "labels", listen_port(settings.labels_addr) if port is None else port,
        [(labels_pb2_grpc.add_LabelsServiceServicer_to_server, app.servicer(), "lumenal.v1.LabelsService")],
        metrics_port=settings.metrics_port if metrics_port is None else metrics_port,
        probe=app.db.healthy, host=settings.bind_host, max_workers=settings.grpc_workers)
    server.on_stop.append(app.stop)
    return server, app


def main() -> None:
    settings = load()
    logs.setup("labels", settings.log_level)
    server, app = serve(settings)
    log.info("labels service ready", extra={"db": app.db.dialect, "port": server.port})
    server.wait()
