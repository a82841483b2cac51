"""Model-sync: mirror registry versions from S3 into the serving base path.

TF Serving cannot read ``s3://`` since 2.7, so something must copy versions
onto the volume it watches. Each version is downloaded into a hidden temp
folder next to its final place and renamed into ``<base>/<model>/<version>``:
the rename is atomic on one filesystem, and TF Serving (and the embedded
modelserver) ignore non-numeric folder names, so a half-copied version is
never loaded.

The training service calls ``sync_version`` right after promoting (local
stack, shared base path). In Kubernetes, ``python -m lumenal.training.sync``
runs as a sidecar of TF Serving and mirrors the newest versions in a loop.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from prometheus_client import Counter

from lumenal.core import logs
from lumenal.core.config import from_env
from lumenal.core.objectstore import ObjectStore
from lumenal.training.registry import Registry
from lumenal.training.settings import TrainingSettings

log = logging.getLogger(__name__)

SYNCED = Counter("lumenal_model_sync_versions_total", "versions copied into the serving base path")


def sync_version(registry: Registry, version: int, base_path: Path) -> Path:
    """Copy one version into ``<base>/<model>/<version>`` atomically; no-op when present."""
    model_dir = base_path / registry.model
    final = model_dir / str(version)
    if final.exists():
        return final
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=model_dir))
    try:
        registry.download_saved_model(version, tmp)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    SYNCED.inc()
    log.info("model version synced", extra={"model": registry.model, "version": version, "path": str(final)})
    return final


def local_versions(base_path: Path, model: str) -> list[int]:
    model_dir = base_path / model
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def prune(base_path: Path, model: str, keep: int) -> list[int]:
    """Remove all but the newest ``keep`` local versions (rename away first, then delete)."""
    versions = local_versions(base_path, model)
    doomed = versions[:-keep] if keep > 0 else []
    for v in doomed:
        path = base_path / model / str(v)
        trash = path.with_name(f".del-{v}-{os.getpid()}")
        os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)
    return doomed


def remove_stale_temps(base_path: Path, model: str, older_than_s: float = 600) -> None:
    """Drop temp folders a killed sync left behind (never loaded: their names are not numeric)."""
    model_dir = base_path / model
    if not model_dir.is_dir():
        return
    for p in model_dir.iterdir():
        if p.name.startswith((".tmp-", ".del-")) and time.time() - p.stat().st_mtime > older_than_s:
            shutil.rmtree(p, ignore_errors=True)


def sync_all(registry: Registry, base_path: Path, keep: int = 3) -> list[int]:
    """Mirror the newest ``keep`` registry versions (all when ``keep`` <= 0); returns those copied."""
    remove_stale_temps(base_path, registry.model)
    wanted = registry.version_numbers()
    if keep > 0:
        wanted = wanted[-keep:]
    have = set(local_versions(base_path, registry.model))
    copied = []
    for v in wanted:
        if v not in have:
            sync_version(registry, v, base_path)
            copied.append(v)
    prune(base_path, registry.model, keep)
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lumenal.training.sync",
                                     description="mirror model versions from the S3 registry into the serving base path")
    parser.add_argument("--once", action="store_true", help="sync once and exit")
    args = parser.parse_args(argv)
    settings = from_env(TrainingSettings)
    logs.setup("model-sync", settings.log_level)
    if not settings.model_base_path:
        log.error("LUMENAL_MODEL_BASE_PATH is empty: nothing to sync into")
        return 2
    registry = Registry(ObjectStore.from_settings(settings), settings.model_name)
    base = Path(settings.model_base_path)
    while True:
        try:
            copied = sync_all(registry, base, settings.sync_keep_versions)
            if copied:
                log.info("synced", extra={"versions": copied})
        except Exception as exc:  # noqa: BLE001 - S3 may be away; keep the sidecar alive
            log.warning("sync failed; retrying", extra={"error": str(exc)})
            if args.once:
                return 1
        if args.once:
            return 0
        time.sleep(settings.sync_interval_s)


if __name__ == "__main__":
    sys.exit(main())
