"""Drift between the code and the deployment: variables, ports, image, requirements.

The required variables come from the services' settings dataclasses
(``lumenal.<service>.settings``, ``ui/settings.py``), discovered at test
time: a setting added to the code fails these tests until compose and the
Kubernetes base set it, and a LUMENAL_* variable the code does not read fails
them too.
"""

from __future__ import annotations

import http.server
import importlib.util
import re
import subprocess
import sys
import threading
import tomllib
from pathlib import Path
from typing import Any

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from test_deploy_support import (
    CONTAINERS,
    DEPLOY,
    ENV_DIR,
    ROOT,
    SERVICES,
    by_kind,
    compose,
    compose_env,
    container_env,
    containers_by_name,
    image_tag,
    is_secret,
    known_vars,
    metrics_var,
    read_env_file,
    render,
    required_vars,
    service_settings,
    variables,
)

from lumenal.core import grpc_server
from lumenal.core.config import CommonSettings, env_vars, listen_port
from lumenal.stack.components import UI_DEFAULT_PORT, UI_PORT_VAR

GRPC_SERVICES = ("storage", "inference", "labels", "training")
DOCKERFILE = DEPLOY / "Dockerfile"


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def default_addr(service: str) -> str:
    return getattr(CommonSettings, f"{service}_addr")


def base_env(container: str, overlay: str = "base") -> dict[str, Any]:
    docs = render(overlay)
    return container_env(containers_by_name(docs)[container], docs)


# ------------------------------------------------------------------ variables

@pytest.mark.parametrize("service", SERVICES)
def test_service_settings_are_discoverable(service: str) -> None:
    names = variables(service_settings(service))
    assert set(env_vars(CommonSettings)) <= set(names)
    assert all(name.startswith("LUMENAL_") for name in names)


@pytest.mark.parametrize("container", CONTAINERS)
def test_compose_sets_every_variable_the_code_reads(container: str) -> None:
    missing = set(required_vars()[container]) - set(compose_env(container))
    assert not missing, f"compose service {container} does not set {sorted(missing)}"


@pytest.mark.parametrize("container", CONTAINERS)
def test_k8s_base_sets_every_variable_the_code_reads(container: str) -> None:
    missing = set(required_vars()[container]) - set(base_env(container))
    assert not missing, f"k8s base container {container} does not set {sorted(missing)}"


@pytest.mark.parametrize("container", CONTAINERS)
def test_no_lumenal_variable_unknown_to_the_code(container: str) -> None:
    reads = set(required_vars()[container])
    envs = [("compose", compose_env(container))]
    envs += [(overlay, base_env(container, overlay)) for overlay in ("base", "overlays/dev", "overlays/prod")]
    for where, env in envs:
        unknown = {k for k in env if k.startswith("LUMENAL_")} - reads
        assert not unknown, f"{where} {container} sets {sorted(unknown)}, which its code never reads"


def test_env_files_hold_known_non_secret_variables() -> None:
    for path in sorted(ENV_DIR.glob("*.env")):
        env = read_env_file(path)
        assert not set(env) - known_vars(), f"{path.name}: unknown {sorted(set(env) - known_vars())}"
        assert not [k for k in env if is_secret(k)], f"{path.name} holds credentials"


def test_image_environment_is_read_by_the_code() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "services").rglob("*.py"))
    names = set(re.findall(r"\b(LUMENAL_[A-Z0-9_]+)=", DOCKERFILE.read_text()))
    assert names, "expected LUMENAL_HOME / LUMENAL_UI_APP in the image"
    for name in names:
        assert f'"{name}"' in source, f"Dockerfile sets {name}, which no code reads"


# ---------------------------------------------------------------------- ports

@pytest.mark.parametrize("service", GRPC_SERVICES)
def test_grpc_ports_match_the_code(service: str) -> None:
    port = listen_port(default_addr(service))
    common = read_env_file(ENV_DIR / "common.env")
    assert common[f"LUMENAL_{service.upper()}_ADDR"] == f"{service}:{port}"
    assert f"grpc:127.0.0.1:{port}" in compose()["services"][service]["healthcheck"]["test"]
    docs = render("base")
    svc = by_kind(docs, "Service")[service]
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]}["grpc"] == port
    container = containers_by_name(docs)[service]
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["grpc"] == port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == port, probe


@pytest.mark.parametrize("service", GRPC_SERVICES)
def test_metrics_ports_match_the_code(service: str) -> None:
    var, default = metrics_var(service)
    assert compose_env(service)[var] == str(default)
    docs = render("base")
    container = containers_by_name(docs)[service]
    assert container_env(container, docs)[var] == str(default)
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"] == default
    deployment = by_kind(docs, "Deployment")[service]
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(default)


def test_model_server_address_is_tf_serving() -> None:
    port = listen_port(default_addr("modelserver"))
    assert read_env_file(ENV_DIR / "common.env")["LUMENAL_MODELSERVER_ADDR"] == f"tensorflow-serving:{port}"
    docs = render("base")
    ports = {p["name"]: p["port"] for p in by_kind(docs, "Service")["tensorflow-serving"]["spec"]["ports"]}
    assert ports["grpc"] == port
    serving = containers_by_name(docs)["tensorflow-serving"]
    assert f"--port={port}" in serving["args"]
    assert f"--port={port}" in compose()["services"]["tensorflow-serving"]["command"]
    model = read_env_file(ENV_DIR / "common.env")["LUMENAL_MODEL_NAME"]
    assert f"--model_name={model}" in serving["args"]
    assert serving["readinessProbe"]["httpGet"]["path"] == f"/v1/models/{model}"


def test_ui_port_matches_the_code() -> None:
    port = UI_DEFAULT_PORT
    assert read_env_file(ENV_DIR / "ui.env")[UI_PORT_VAR] == str(port)
    ui = compose()["services"]["ui"]
    assert any(str(p).endswith(f"{port}:{port}") for p in ui["ports"])
    assert f"http:http://127.0.0.1:{port}/_stcore/health" in ui["healthcheck"]["test"]
    docs = render("base")
    assert {p["name"]: p["containerPort"] for p in containers_by_name(docs)["ui"]["ports"]}["http"] == port
    assert by_kind(docs, "Service")["ui"]["spec"]["ports"][0]["port"] == port


def test_dockerfile_exposes_every_service_port() -> None:
    exposed = {int(p) for line in re.findall(r"^EXPOSE (.+)$", DOCKERFILE.read_text(), re.M)
               for p in line.split()}
    wanted = {listen_port(default_addr(s)) for s in (*GRPC_SERVICES, "modelserver")}
    wanted |= {metrics_var(s)[1] for s in SERVICES} | {UI_DEFAULT_PORT}
    assert wanted <= exposed, f"not exposed: {wanted - exposed}"


# ---------------------------------------------------------------------- image

def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_image_tag_is_the_package_version() -> None:
    version = pyproject()["project"]["version"]
    for name in CONTAINERS:
        assert compose()["services"][name]["image"] == f"lumenal:{version}"
    for overlay in ("base", "overlays/dev", "overlays/prod"):
        for c in containers_by_name(render(overlay)).values():
            if c["image"].startswith("lumenal"):
                assert image_tag(c["image"]) == version, f"{overlay}: {c['name']}: {c['image']}"


def test_dockerfile_is_multistage_non_root_pinned_with_the_serve_entrypoint() -> None:
    text = DOCKERFILE.read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))
    stages = re.findall(r"^FROM (\S+) AS (\w+)$", text, re.M)
    assert len(stages) >= 2, "multi-stage build expected"
    for image, _ in stages:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        tag = image_tag(image)
        assert tag and tag != "latest" and re.match(r"\d+\.\d+\.\d+", tag), image
    python = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], stages[0][0])
    assert f"python:{sys.version_info.major}.{sys.version_info.minor}." in python, \
        "the image's Python must be the one pyproject targets"
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root"), "the runtime stage must drop root"
    assert 'ENTRYPOINT ["lumenal", "serve"]' in text
    assert "pip install --no-deps -r /tmp/reqs/requirements-nodeps.txt" in text


def test_image_requirements_keep_every_pin_and_swap_in_cpu_tensorflow(tmp_path: Path) -> None:
    reqs = _load("deploy_image_requirements", DEPLOY / "image_requirements.py")
    main, no_deps = reqs.image_requirements(ROOT / "pyproject.toml")
    deps = pyproject()["project"]["dependencies"]
    tf = next(d for d in deps if reqs.dist_name(d) == "tensorflow")
    assert tf.replace("tensorflow", "tensorflow-cpu", 1) in main
    assert not [r for r in main if reqs.dist_name(r) == "tensorflow"], "full tensorflow must not be installed"
    assert [reqs.dist_name(r) for r in no_deps] == ["tensorflow-serving-api"]
    kept = set(main) | set(no_deps)
    for dep in deps:
        name = reqs.dist_name(dep)
        if name not in reqs.EMBEDDED_ONLY and name not in reqs.RENAMES:
            assert dep in kept, f"{dep} lost on the way into the image"
    gpu_main, _ = reqs.image_requirements(ROOT / "pyproject.toml", gpu=True)
    assert tf.replace("tensorflow", "tensorflow[and-cuda]", 1) in gpu_main
    assert reqs.main([str(ROOT / "pyproject.toml"), str(tmp_path)]) == 0
    assert (tmp_path / "requirements.txt").read_text().splitlines() == main


# ------------------------------------------------------------- healthcheck.py

def run_healthcheck(*checks: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(DEPLOY / "healthcheck.py"), *checks],
                          capture_output=True, text=True, timeout=60)


def test_healthcheck_follows_grpc_health() -> None:
    server = grpc_server.start("deploy-test", 0, [], metrics_port=-1)
    try:
        target = f"grpc:127.0.0.1:{server.port}"
        assert run_healthcheck(target).returncode == 0
        server.set_serving(False)
        failed = run_healthcheck(target)
        assert failed.returncode == 1 and "NOT_SERVING" in failed.stderr
        # What the Kubernetes liveness/startup probes ask: alive despite NOT_SERVING.
        with grpc_server.channel(f"127.0.0.1:{server.port}") as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=grpc_server.LIVENESS_SERVICE), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    finally:
        server.stop(0)
    down = run_healthcheck(target)
    assert down.returncode == 1 and "UNAVAILABLE" in down.stderr


def test_healthcheck_http_tcp_dir_and_usage(tmp_path: Path) -> None:
    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            self.send_response(200 if self.path == "/ok" else 503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    port = httpd.server_address[1]
    try:
        assert run_healthcheck(f"http:http://127.0.0.1:{port}/ok", f"tcp:127.0.0.1:{port}",
                               f"dir:{tmp_path}").returncode == 0
        assert run_healthcheck(f"http:http://127.0.0.1:{port}/down").returncode == 1
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert run_healthcheck(f"tcp:127.0.0.1:{port}").returncode == 1
    assert run_healthcheck(f"dir:{tmp_path / 'missing'}").returncode == 1
    assert run_healthcheck("bogus:x").returncode == 1
    assert run_healthcheck().returncode == 2


def test_build_context_filter_keeps_what_the_dockerfile_copies() -> None:
    """deploy/Dockerfile.dockerignore excludes everything by default: every COPY source
    must be re-included, or the build fails with a missing file."""
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    included = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copies = re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE.read_text(), re.M)
    sources = [src.rstrip("/") for line in copies for src in line.split()]
    assert sources
    for src in sources:
        assert src in included, f"COPY {src} is filtered out of the build context"
