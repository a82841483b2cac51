"""docker-compose.yml: valid against the Compose Specification and wired as documented.

The schema is the copy vendored in check-jsonschema
(``--builtin-schema vendor.compose-spec``), read from the installed package:
no network, no Docker engine.
"""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from typing import Any

import jsonschema
from test_deploy_support import (
    CONTAINERS,
    buckets_in_script,
    compose,
    compose_env,
    image_tag,
    is_secret,
    topics_in_script,
)

from lumenal.core import topics
from lumenal.core.objectstore import BUCKETS
from lumenal.stack.components import BY_NAME
from lumenal.stack.serve import EXTRA

INIT_JOBS = {"kafka-init", "minio-init"}
SERVE_NAMES = {*BY_NAME, *EXTRA, "ui"}


def compose_schema() -> dict[str, Any]:
    path = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return json.loads(path.read_text())


def schema_errors(doc: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(compose_schema())
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def test_compose_validates_against_the_compose_spec() -> None:
    assert schema_errors(compose()) == []


def test_schema_check_is_live() -> None:
    broken = copy.deepcopy(compose())
    broken["services"]["storage"]["healthcheck"]["retries"] = "many"
    broken["services"]["ui"]["depends_on"]["labels"]["condition"] = "service_ready"
    assert len(schema_errors(broken)) >= 2


def test_every_container_has_a_healthcheck() -> None:
    for name, svc in services().items():
        check = svc.get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), f"{name}: no healthcheck"


def test_depends_on_uses_conditions() -> None:
    for name, svc in services().items():
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on must use the long form with conditions"
        for dep, spec in deps.items():
            assert dep in services(), f"{name} depends on unknown {dep}"
            expected = ({"service_completed_successfully"} if dep in INIT_JOBS
                        else {"service_healthy", "service_started"})
            assert spec["condition"] in expected, f"{name} -> {dep}: {spec['condition']}"


def test_volumes_are_named_and_configuration_is_environment_only() -> None:
    declared = set(compose().get("volumes", {}))
    used = set()
    for name, svc in services().items():
        assert "configs" not in svc and "secrets" not in svc, f"{name}: configuration must be env vars"
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume["source"]
            assert not source.startswith((".", "/", "~")), f"{name}: bind mount {source}; use a named volume"
            assert source in declared, f"{name}: volume {source} not declared"
            used.add(source)
    assert used == declared, f"declared but unused volumes: {declared - used}"


def test_kafka_init_creates_the_code_topics() -> None:
    script = "\n".join(services()["kafka-init"]["command"])
    assert topics_in_script(script) == topics.PARTITIONS


def test_kafka_runs_in_kraft_mode_on_the_official_image() -> None:
    kafka = services()["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "ZOOKEEPER" not in json.dumps(env).upper()
    assert env["KAFKA_ADVERTISED_LISTENERS"].endswith("kafka:9092")
    for name in CONTAINERS:
        if name in ("storage", "inference", "labels", "training"):
            assert compose_env(name)["LUMENAL_KAFKA_BOOTSTRAP"] == "kafka:9092"


def test_minio_init_creates_the_code_buckets() -> None:
    script = "\n".join(services()["minio-init"]["command"])
    assert buckets_in_script(script) == set(BUCKETS)


def _flags(args: list[str]) -> dict[str, str]:
    return dict(a.lstrip("-").split("=", 1) for a in args if a.startswith("--") and "=" in a)


def test_tf_serving_reads_what_model_sync_writes() -> None:
    serving = services()["tensorflow-serving"]
    assert re.fullmatch(r"tensorflow/serving:\d+\.\d+\.\d+", serving["image"]), "pinned CPU tag"
    flags = _flags(serving["command"])
    sync_env = compose_env("model-sync")
    model = sync_env["LUMENAL_MODEL_NAME"]
    assert flags["model_name"] == model
    for name in CONTAINERS:
        assert compose_env(name)["LUMENAL_MODEL_NAME"] == model, name
    base = sync_env["LUMENAL_MODEL_BASE_PATH"]
    assert flags["model_base_path"] == f"{base}/{model}"
    mounts = {svc: {v.split(":")[0]: v.split(":")[1] for v in services()[svc]["volumes"]}
              for svc in ("tensorflow-serving", "model-sync")}
    shared = set(mounts["tensorflow-serving"]) & set(mounts["model-sync"])
    assert any(mounts["model-sync"][v] == base == mounts["tensorflow-serving"][v] for v in shared)
    assert "AVAILABLE" in " ".join(serving["healthcheck"]["test"]) and f"/v1/models/{model}" in " ".join(
        serving["healthcheck"]["test"])
    host, port = compose_env("inference")["LUMENAL_MODELSERVER_ADDR"].split(":")
    assert (host, flags["port"]) == ("tensorflow-serving", port)


def test_lumenal_containers_run_the_image_entrypoint_with_a_known_component() -> None:
    images = set()
    for name in CONTAINERS:
        svc = services()[name]
        images.add(svc["image"])
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile"
        assert svc["command"] == [name] and name in SERVE_NAMES, name
    assert len(images) == 1, f"one image for all services, got {images}"


def test_credentials_come_from_the_environment() -> None:
    for name in CONTAINERS:
        raw = services()[name].get("environment", {})
        for var, value in raw.items():
            if is_secret(var):
                assert "${" in str(value), f"{name}: {var} must be interpolated from the environment"


def test_every_image_is_pinned() -> None:
    for name, svc in services().items():
        tag = image_tag(svc["image"])
        assert tag and tag != "latest" and any(c.isdigit() for c in tag), f"{name}: {svc['image']}"

