"""UI settings: the service addresses every client shares, plus a few UI knobs."""

from __future__ import annotations

from dataclasses import dataclass

from lumenal.core.config import CommonSettings, env, from_env


@dataclass(frozen=True)
class UISettings(CommonSettings):
    grpc_timeout_s: float = env("LUMENAL_UI_GRPC_TIMEOUT_S", 10.0)
    upload_chunk_bytes: int = env("LUMENAL_UI_UPLOAD_CHUNK_BYTES", 1024 * 1024)
    upload_max_mb: int = env("LUMENAL_UI_UPLOAD_MAX_MB", 2048)
    adjudication_limit: int = env("LUMENAL_UI_ADJUDICATION_LIMIT", 200)


def load() -> UISettings:
    return from_env(UISettings)
