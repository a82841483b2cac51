"""Inference service settings (``LUMENAL_INFERENCE_*``)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from lumenal.core.config import CommonSettings, env, lumenal_home


@dataclass(frozen=True)
class InferenceSettings(CommonSettings):
    metrics_port: int = env("LUMENAL_INFERENCE_METRICS_PORT", 9102)
    default_strategy: str = env("LUMENAL_INFERENCE_DEFAULT_STRATEGY", "diverse_margin")
    # Used while no model exists (kcenter runs on thumbnail descriptors).
    cold_start_strategy: str = env("LUMENAL_INFERENCE_COLD_START_STRATEGY", "kcenter")
    batch_size: int = env("LUMENAL_INFERENCE_BATCH_SIZE", 64)
    # Score with the mc_dropout signature (BALD, variation ratio) instead of serving_default.
    mc: bool = env("LUMENAL_INFERENCE_MC", True)
    cold_input_size: int = env("LUMENAL_INFERENCE_COLD_INPUT_SIZE", 64)
    # "" = <LUMENAL_HOME>/inference/pool-<instance>.npz ; "off" = no snapshot (replay all events).
    snapshot_path: str = env("LUMENAL_INFERENCE_SNAPSHOT_PATH", "")
    snapshot_interval_s: float = env("LUMENAL_INFERENCE_SNAPSHOT_INTERVAL_S", 60.0)
    instance: str = env("LUMENAL_INFERENCE_INSTANCE", "")
    group: str = env("LUMENAL_INFERENCE_GROUP", "inference")
    session_timeout_ms: int = env("LUMENAL_INFERENCE_SESSION_TIMEOUT_MS", 10000)
    model_poll_s: float = env("LUMENAL_INFERENCE_MODEL_POLL_S", 5.0)
    # How long a published version may stay unloaded on the model server before we keep the old one.
    version_wait_s: float = env("LUMENAL_INFERENCE_VERSION_WAIT_S", 300.0)
    serving_timeout_s: float = env("LUMENAL_INFERENCE_SERVING_TIMEOUT_S", 30.0)
    max_k: int = env("LUMENAL_INFERENCE_MAX_K", 1000)
    # Decoded model inputs kept for re-scores (lumenal.inference.framecache): 256 MB holds
    # ~21,800 frames at 64x64x3; frames beyond it are fetched and decoded each re-score. 0 = off.
    frame_cache_mb: int = env("LUMENAL_INFERENCE_FRAME_CACHE_MB", 256)

    def instance_id(self) -> str:
        return self.instance or f"{socket.gethostname()}-{os.getpid()}"

    def snapshot_file(self) -> Path | None:
        if self.snapshot_path == "off":
            return None
        if self.snapshot_path:
            return Path(self.snapshot_path)
        return lumenal_home() / "inference" / f"pool-{self.instance or 'default'}.npz"
