"""Container healthcheck for the Lumenal image: exit 0 when every check passes.

Compose needs a command to run inside the container, and the image has no
``grpc_health_probe`` or curl; it does have Python with grpcio, so the checks
use that. Kubernetes does not need this script (it has native ``grpc:`` and
``httpGet`` probes).

Usage: ``python healthcheck.py CHECK [CHECK ...]`` where CHECK is one of
  grpc:HOST:PORT   grpc.health.v1 Check("") answers SERVING
  http:URL         GET answers 2xx
  tcp:HOST:PORT    a TCP connection opens
  dir:PATH         PATH is a writable directory (a mounted volume)
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.request

TIMEOUT_S = 3.0


def check_grpc(target: str) -> str | None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        try:
            resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                             timeout=TIMEOUT_S)
        except grpc.RpcError as exc:
            return f"{exc.code().name}: {exc.details()}"
    if resp.status != health_pb2.HealthCheckResponse.SERVING:
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    return None


def check_http(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:  # noqa: S310 - local URL
            return None if 200 <= resp.status < 300 else f"HTTP {resp.status}"
    except OSError as exc:
        return str(exc)


def check_tcp(target: str) -> str | None:
    host, port = target.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=TIMEOUT_S):
            return None
    except OSError as exc:
        return str(exc)


def check_dir(path: str) -> str | None:
    if not os.path.isdir(path):
        return "not a directory"
    return None if os.access(path, os.W_OK | os.X_OK) else "not writable"


CHECKS = {"grpc": check_grpc, "http": check_http, "tcp": check_tcp, "dir": check_dir}


def run(specs: list[str]) -> list[str]:
    """The failures (empty when healthy), one line per failed check."""
    failures = []
    for spec in specs:
        kind, _, arg = spec.partition(":")
        if kind not in CHECKS or not arg:
            failures.append(f"{spec}: unknown check (use {', '.join(c + ':...' for c in CHECKS)})")
            continue
        error = CHECKS[kind](arg)
        if error:
            failures.append(f"{spec}: {error}")
    return failures


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    failures = run(argv)
    for line in failures:
        print(line, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
