"""Settings from environment variables with local defaults.

Each service declares one frozen dataclass whose fields carry their variable
name in ``metadata["env"]``; ``from_env`` fills it. One place per setting, and
the deployment drift test can list every variable the code reads
(``env_vars``).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def env(name: str, default: Any) -> Any:
    """A dataclass field read from environment variable ``name``."""
    return dataclasses.field(default=default, metadata={"env": name})


def _coerce(raw: str, kind: Any) -> Any:
    kind = kind if isinstance(kind, type) else {"int": int, "float": float, "bool": bool}.get(str(kind), str)
    if kind is bool:
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if kind in (int, float):
        return kind(raw)
    return raw


def from_env(cls: type[T], environ: dict[str, str] | None = None, **overrides: Any) -> T:
    """Build settings ``cls`` from the environment; ``overrides`` win."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = f.metadata.get("env")
        if f.name in overrides:
            values[f.name] = overrides[f.name]
        elif name and name in environ:
            values[f.name] = _coerce(environ[name], f.type)
    return cls(**values)


def env_vars(cls: type) -> dict[str, Any]:
    """Variable name -> default, for docs and the deployment drift test."""
    return {f.metadata["env"]: f.default for f in dataclasses.fields(cls) if "env" in f.metadata}


def lumenal_home() -> Path:
    """Root of local state (embedded stack data, logs, model base path)."""
    return Path(os.environ.get("LUMENAL_HOME", Path.home() / ".lumenal")).expanduser()


@dataclasses.dataclass(frozen=True)
class CommonSettings:
    """Connection settings every service shares."""

    kafka_bootstrap: str = env("LUMENAL_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    # How long the broker may hold a fetch that has no data yet. Apache Kafka answers as soon as
    # data arrives, so its default (500 ms) costs no latency there; tansu holds every such fetch
    # for the full wait, so the embedded stack sets 100 ms (each event hop waited ~120 ms at 500).
    kafka_fetch_max_wait_ms: int = env("LUMENAL_KAFKA_FETCH_MAX_WAIT_MS", 500)
    s3_endpoint: str = env("LUMENAL_S3_ENDPOINT", "127.0.0.1:8333")
    s3_access_key: str = env("LUMENAL_S3_ACCESS_KEY", "lumenal")
    s3_secret_key: str = env("LUMENAL_S3_SECRET_KEY", "lumenal-secret")
    s3_secure: bool = env("LUMENAL_S3_SECURE", False)
    s3_region: str = env("LUMENAL_S3_REGION", "us-east-1")
    auth_secret: str = env("LUMENAL_AUTH_SECRET", "dev-only-change-me")
    log_level: str = env("LUMENAL_LOG_LEVEL", "INFO")
    # Where each service listens (clients dial these; each server binds its own).
    storage_addr: str = env("LUMENAL_STORAGE_ADDR", "127.0.0.1:50051")
    inference_addr: str = env("LUMENAL_INFERENCE_ADDR", "127.0.0.1:50052")
    labels_addr: str = env("LUMENAL_LABELS_ADDR", "127.0.0.1:50053")
    training_addr: str = env("LUMENAL_TRAINING_ADDR", "127.0.0.1:50054")
    modelserver_addr: str = env("LUMENAL_MODELSERVER_ADDR", "127.0.0.1:8500")
    model_name: str = env("LUMENAL_MODEL_NAME", "frame_triage")
    bind_host: str = env("LUMENAL_BIND_HOST", "127.0.0.1")


def listen_port(addr: str) -> int:
    """The port part of ``host:port`` (a server binds the port of its own address)."""
    return int(addr.rsplit(":", 1)[1])
