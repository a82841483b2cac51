"""What the embedded stack runs: the Lumenal services and the UI.

One table, used by ``lumenal up`` (which ones to start, in which order) and
``lumenal serve`` (how to run one in the foreground, e.g. in a container).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Component:
    name: str
    module: str            # run as ``python -m <module>``
    addr_var: str | None   # the CommonSettings address a gRPC server listens on
    default_port: int
    metrics_var: str | None
    default_metrics_port: int

    def available(self) -> bool:
        return importlib.util.find_spec(self.module) is not None


# Start order: the model server first (inference dials it), then the services
# whose events others consume.
SERVICES = (
    Component("modelserver", "lumenal.modelserver", "LUMENAL_MODELSERVER_ADDR", 8500,
              "LUMENAL_MODELSERVER_METRICS_PORT", 9105),
    Component("storage", "lumenal.storage", "LUMENAL_STORAGE_ADDR", 50051,
              "LUMENAL_STORAGE_METRICS_PORT", 9101),
    Component("labels", "lumenal.labels", "LUMENAL_LABELS_ADDR", 50053,
              "LUMENAL_LABELS_METRICS_PORT", 9103),
    Component("inference", "lumenal.inference", "LUMENAL_INFERENCE_ADDR", 50052,
              "LUMENAL_INFERENCE_METRICS_PORT", 9102),
    Component("training", "lumenal.training", "LUMENAL_TRAINING_ADDR", 50054,
              "LUMENAL_TRAINING_METRICS_PORT", 9104),
)
BY_NAME = {c.name: c for c in SERVICES}

UI_PORT_VAR = "LUMENAL_UI_PORT"
UI_DEFAULT_PORT = 8501


def ui_app() -> Path:
    """The Streamlit entry point (``LUMENAL_UI_APP`` overrides, e.g. in the image)."""
    return Path(os.environ.get("LUMENAL_UI_APP", REPO_ROOT / "ui" / "app.py"))


def ui_argv(python: str, port: int, host: str = "127.0.0.1") -> list[str]:
    return [python, "-m", "streamlit", "run", str(ui_app()), "--server.headless", "true",
            "--server.address", host, "--server.port", str(port),
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
