"""Modelserver settings (env vars only)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lumenal.core.config import CommonSettings, env, from_env, lumenal_home


@dataclass(frozen=True)
class ModelServerSettings(CommonSettings):
    # Root holding <model_name>/<version>/ folders (same variable the training service writes to).
    model_base_path: str = env("LUMENAL_MODEL_BASE_PATH", str(lumenal_home() / "models"))
    # Optional text-format ModelServerConfig (TF Serving's --model_config_file);
    # without it every subfolder of the base path is served with the latest-N policy.
    model_config_file: str = env("LUMENAL_MODELSERVER_CONFIG_FILE", "")
    poll_interval_s: float = env("LUMENAL_MODELSERVER_POLL_S", 2.0)
    latest_versions: int = env("LUMENAL_MODELSERVER_LATEST_N", 1)
    drain_timeout_s: float = env("LUMENAL_MODELSERVER_DRAIN_S", 30.0)
    metrics_port: int = env("LUMENAL_MODELSERVER_METRICS_PORT", 9105)

    @property
    def base_path(self) -> Path:
        return Path(self.model_base_path or lumenal_home() / "models").expanduser()


def load() -> ModelServerSettings:
    return from_env(ModelServerSettings)
