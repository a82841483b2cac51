"""Storage service settings (``LUMENAL_STORAGE_*`` plus the shared connection settings)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from lumenal.core.config import CommonSettings, env, from_env, lumenal_home


@dataclass(frozen=True)
class StorageSettings(CommonSettings):
    metrics_port: int = env("LUMENAL_STORAGE_METRICS_PORT", 9101)
    # Frames per second kept from a video (capsule cameras record 2-6 fps).
    sample_fps: float = env("LUMENAL_STORAGE_SAMPLE_FPS", 5.0)
    # Max Hamming distance between 64-bit dHashes of consecutive kept frames
    # for the newer one to count as a near-duplicate and be dropped.
    dedup_threshold: int = env("LUMENAL_STORAGE_DEDUP_THRESHOLD", 4)
    batch_size: int = env("LUMENAL_STORAGE_BATCH_SIZE", 32)
    max_upload_bytes: int = env("LUMENAL_STORAGE_MAX_UPLOAD_BYTES", 4 * 1024**3)
    # os.pathsep-separated folders IngestPath may read; "" = home, LUMENAL_HOME and the temp dir.
    ingest_roots: str = env("LUMENAL_STORAGE_INGEST_ROOTS", "")
    presign_ttl_s: int = env("LUMENAL_STORAGE_PRESIGN_TTL_S", 3600)
    frame_format: str = env("LUMENAL_STORAGE_FRAME_FORMAT", "jpeg")  # jpeg | png
    jpeg_quality: int = env("LUMENAL_STORAGE_JPEG_QUALITY", 92)
    # Parallel encode+upload workers per ingest (S3 puts are latency-bound).
    upload_workers: int = env("LUMENAL_STORAGE_UPLOAD_WORKERS", 8)
    # Host:port browsers use to fetch presigned frame URLs ("" = LUMENAL_S3_ENDPOINT).
    public_s3_endpoint: str = env("LUMENAL_STORAGE_PUBLIC_S3_ENDPOINT", "")
    spool_dir: str = env("LUMENAL_STORAGE_SPOOL_DIR", "")  # "" = system temp dir

    def roots(self) -> list[Path]:
        """Resolved folders IngestPath may read from."""
        if self.ingest_roots.strip():
            raw = [p for p in self.ingest_roots.split(":") if p.strip()]
        else:
            raw = [str(Path.home()), str(lumenal_home()), tempfile.gettempdir()]
        return [Path(p).expanduser().resolve() for p in raw]


def load() -> StorageSettings:
    return from_env(StorageSettings)
