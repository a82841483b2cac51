"""gRPC server bootstrap every service uses.

Gives each server: grpc.health.v1 (with a dependency probe that flips it to
NOT_SERVING), reflection, Prometheus metrics on their own HTTP port, explicit
``ServiceError`` -> status mapping, and graceful shutdown on SIGTERM/SIGINT.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import Counter, Histogram, start_http_server

from lumenal.core.errors import ServiceError

log = logging.getLogger(__name__)

RPC_TOTAL = Counter("lumenal_grpc_requests_total", "gRPC requests", ["service", "method", "code"])
RPC_SECONDS = Histogram("lumenal_grpc_request_seconds", "gRPC handler latency", ["service", "method"],
                        buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))

# A health service name that stays SERVING while the process answers gRPC, whatever
# the dependency probe says: liveness/startup probes ask it, so a Kafka or S3
# outage takes pods out of rotation (readiness asks "") without restarting them.
LIVENESS_SERVICE = "liveness"

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]


def _status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, ServiceError):
        return exc.code, str(exc)
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"


class _Interceptor(grpc.ServerInterceptor):
    """Counts and times calls; turns ``ServiceError`` into its status."""

    def __init__(self, service: str) -> None:
        self.service = service

    def intercept_service(self, continuation, details):  # noqa: ANN001
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method.rsplit("/", 1)[-1]
        if details.method.startswith(("/grpc.health", "/grpc.reflection")):
            return handler

        def finish(code: grpc.StatusCode, start: float) -> None:
            RPC_TOTAL.labels(self.service, method, code.name).inc()
            RPC_SECONDS.labels(self.service, method).observe(time.perf_counter() - start)

        def fail(exc: BaseException, context: grpc.ServicerContext, start: float) -> None:
            code, msg = _status_of(exc)
            if code == grpc.StatusCode.INTERNAL:
                log.exception("unhandled error in %s", method)
            finish(code, start)
            context.abort(code, msg)

        def unary(fn):  # noqa: ANN001, ANN202
            def wrapped(request, context):  # noqa: ANN001, ANN202
                start = time.perf_counter()
                try:
                    out = fn(request, context)
                except Exception as exc:  # noqa: BLE001 - mapped to a status
                    if _is_abort(exc):
                        finish(context.code() or grpc.StatusCode.UNKNOWN, start)
                        raise
                    fail(exc, context, start)
                finish(grpc.StatusCode.OK, start)
                return out
            return wrapped

        def streaming(fn):  # noqa: ANN001, ANN202
            def wrapped(request, context):  # noqa: ANN001, ANN202
                start = time.perf_counter()
                try:
                    yield from fn(request, context)
                except Exception as exc:  # noqa: BLE001 - mapped to a status
                    if _is_abort(exc):
                        finish(context.code() or grpc.StatusCode.UNKNOWN, start)
                        raise
                    fail(exc, context, start)
                finish(grpc.StatusCode.OK, start)
            return wrapped

        kinds = {
            "unary_unary": (unary, grpc.unary_unary_rpc_method_handler),
            "stream_unary": (unary, grpc.stream_unary_rpc_method_handler),
            "unary_stream": (streaming, grpc.unary_stream_rpc_method_handler),
            "stream_stream": (streaming, grpc.stream_stream_rpc_method_handler),
        }
        for attr, (wrap, make) in kinds.items():
            fn = getattr(handler, attr)
            if fn is not None:
                return make(wrap(fn), request_deserializer=handler.request_deserializer,
                            response_serializer=handler.response_serializer)
        return handler


def _is_abort(exc: BaseException) -> bool:
    """``context.abort`` raises a bare Exception after setting the status."""
    return type(exc) is Exception and not exc.args


@dataclass
class Server:
    """A running gRPC server with health, reflection and metrics."""

    name: str
    port: int
    grpc_server: grpc.Server
    health: health.HealthServicer
    service_names: list[str]
    probe: Callable[[], bool] | None = None
    on_stop: list[Callable[[], None]] = field(default_factory=list)
    _stopped: threading.Event = field(default_factory=threading.Event)

    def set_serving(self, ok: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
        for svc in ["", *self.service_names]:
            self.health.set(svc, status)

    def _watch(self, interval_s: float) -> None:
        last = None
        while not self._stopped.wait(interval_s):
            try:
                ok = bool(self.probe()) if self.probe else True
            except Exception:  # noqa: BLE001 - a failing probe means not serving
                ok = False
            if ok != last:
                log.info("health changed", extra={"serving": ok})
                last = ok
            self.set_serving(ok)

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop taking calls, finish in-flight ones, then run stop hooks."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.set_serving(False)
        self.grpc_server.stop(grace_s).wait()
        for hook in self.on_stop:
            try:
                hook()
            except Exception:  # noqa: BLE001 - shutdown continues
                log.exception("stop hook failed")
        log.info("stopped", extra={"port": self.port})

    def wait(self) -> None:
        """Block until SIGTERM/SIGINT (main thread) or ``stop``."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: threading.Thread(target=self.stop, daemon=True).start())
        while not self._stopped.wait(0.5):
            pass
        self.grpc_server.wait_for_termination(timeout=10)


def start(name: str, port: int, register: Iterable[tuple[Callable, object, str]],
          metrics_port: int = 0, probe: Callable[[], bool] | None = None,
          probe_interval_s: float = 2.0, max_workers: int = 32, host: str = "127.0.0.1") -> Server:
    """Start a server.

    ``register`` holds ``(add_XServicer_to_server, servicer, full_service_name)``
    triples. ``port`` 0 picks a free port (see ``Server.port``).
    """
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers),
                         interceptors=[_Interceptor(name)], options=CHANNEL_OPTIONS)
    names = []
    for add, servicer, full_name in register:
        add(servicer, server)
        names.append(full_name)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    health_servicer.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"{name}: cannot bind gRPC port {port}")
    server.start()
    if metrics_port >= 0:
        httpd, _ = start_http_server(metrics_port, addr=host)
        metrics_port = httpd.server_port
    srv = Server(name, bound, server, health_servicer, names, probe)
    srv.set_serving(probe() if probe else True)
    if probe:
        threading.Thread(target=srv._watch, args=(probe_interval_s,), daemon=True, name="health").start()
    log.info("serving", extra={"grpc_port": bound, "metrics_port": metrics_port, "services": names})
    return srv


def channel(target: str) -> grpc.Channel:
    """Client channel with the same message size limits as the servers."""
    return grpc.insecure_channel(target, options=CHANNEL_OPTIONS)


def wait_healthy(target: str, timeout_s: float = 30.0, service: str = "") -> None:
    """Block until ``target`` answers SERVING on grpc.health.v1."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    with channel(target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < deadline:
            try:
                resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError as exc:
                last = exc
            time.sleep(0.2)
    raise TimeoutError(f"{target} not healthy after {timeout_s}s: {last}")
