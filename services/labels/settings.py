"""Labels service settings (``LUMENAL_LABELS_*`` plus the shared ``LUMENAL_DB_URL``)."""

from __future__ import annotations

from dataclasses import dataclass

from lumenal.core.config import CommonSettings, env, from_env, lumenal_home


@dataclass(frozen=True)
class LabelsSettings(CommonSettings):
    # "" = SQLite file under LUMENAL_HOME; PostgreSQL e.g. postgresql+psycopg://user:pw@host/db
    db_url: str = env("LUMENAL_DB_URL", "")
    metrics_port: int = env("LUMENAL_LABELS_METRICS_PORT", 9103)
    # Project defaults, written to the database on first start; later changed with UpdateProject.
    lease_ttl_s: int = env("LUMENAL_LABELS_LEASE_TTL_S", 300)
    overlap_fraction: float = env("LUMENAL_LABELS_OVERLAP_FRACTION", 0.1)
    overlap_k: int = env("LUMENAL_LABELS_OVERLAP_K", 3)
    class_names: str = env("LUMENAL_LABELS_CLASS_NAMES", "informative,non_informative")
    strategy: str = env("LUMENAL_LABELS_STRATEGY", "")
    token_ttl_s: int = env("LUMENAL_LABELS_TOKEN_TTL_S", 12 * 3600)
    # First start only: create this admin when the database has no annotators.
    admin_user: str = env("LUMENAL_LABELS_ADMIN_USER", "admin")
    admin_password: str = env("LUMENAL_LABELS_ADMIN_PASSWORD", "")
    # Candidate ranking: how many frames to ask inference for, and how long to wait.
    topk_candidates: int = env("LUMENAL_LABELS_TOPK_CANDIDATES", 32)
    inference_timeout_s: float = env("LUMENAL_LABELS_INFERENCE_TIMEOUT_S", 2.0)
    # After a failed TopK call, use the fallback ordering for this long before retrying.
    inference_retry_s: float = env("LUMENAL_LABELS_INFERENCE_RETRY_S", 10.0)
    # Background work: consume frames.ingested, drain the event outbox.
    consume_frames: bool = env("LUMENAL_LABELS_CONSUME_FRAMES", True)
    publish_events: bool = env("LUMENAL_LABELS_PUBLISH_EVENTS", True)
    outbox_interval_s: float = env("LUMENAL_LABELS_OUTBOX_INTERVAL_S", 0.2)
    consumer_session_ms: int = env("LUMENAL_LABELS_CONSUMER_SESSION_MS", 10000)
    db_pool_size: int = env("LUMENAL_LABELS_DB_POOL_SIZE", 20)
    # Handler threads. More than a few only adds GIL contention (the work is CPU-bound Python);
    # extra calls wait in gRPC's queue instead.
    grpc_workers: int = env("LUMENAL_LABELS_GRPC_WORKERS", 32)

    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{lumenal_home() / 'labels.db'}"

    def class_list(self) -> list[str]:
        return [c.strip() for c in self.class_names.split(",") if c.strip()]


def load() -> LabelsSettings:
    return from_env(LabelsSettings)
