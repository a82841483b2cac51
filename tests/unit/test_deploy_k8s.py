"""Kubernetes manifests: every overlay renders, validates offline, and keeps its promises.

Schemas: ``kubernetes-validate`` ships the built-in kinds' JSON schemas (strict:
unknown fields fail). Custom resources (Strimzi, External Secrets) have no
schema there; they are checked against the small schemas below, which cover
the fields these manifests use, and any other unknown kind fails the test.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import kubernetes_validate.utils
import pytest
from test_deploy_support import (
    K8S,
    OVERLAYS,
    buckets_in_script,
    by_kind,
    containers_by_name,
    image_tag,
    is_secret,
    kustomize,
    pod_containers,
    render,
    topics_in_script,
    workloads,
)

from lumenal.core import topics
from lumenal.core.grpc_server import LIVENESS_SERVICE
from lumenal.core.objectstore import BUCKETS

# kubernetes-validate re-reads and re-parses the 1.3 MB definitions file for every
# object; caching the (read-only) schema documents makes validation ~15x faster.
kubernetes_validate.utils.schema_contents = functools.cache(kubernetes_validate.utils.schema_contents)

# grpc: probes are GA since 1.27: the oldest version the manifests must be valid for.
K8S_VERSION = "1.27.0"

_STRIMZI_META = {"type": "object", "required": ["name", "labels"],
                 "properties": {"labels": {"type": "object", "required": ["strimzi.io/cluster"]}}}
CRD_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("kafka.strimzi.io/v1beta2", "Kafka"): {
        "type": "object", "required": ["spec"],
        "properties": {"spec": {
            "type": "object", "required": ["kafka", "entityOperator"], "additionalProperties": False,
            "properties": {
                "kafka": {"type": "object", "required": ["version", "listeners"],
                          "additionalProperties": False,
                          "properties": {"version": {"type": "string"}, "metadataVersion": {"type": "string"},
                                         "config": {"type": "object"},
                                         "listeners": {"type": "array", "minItems": 1, "items": {
                                             "type": "object", "required": ["name", "port", "type", "tls"],
                                             "properties": {"port": {"type": "integer"}, "tls": {"type": "boolean"},
                                                            "type": {"enum": ["internal", "route", "loadbalancer",
                                                                              "nodeport", "ingress",
                                                                              "cluster-ip"]}}}}}},
                "entityOperator": {"type": "object"}}}}},
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"): {
        "type": "object", "required": ["metadata", "spec"],
        "properties": {"metadata": _STRIMZI_META, "spec": {
            "type": "object", "required": ["replicas", "roles", "storage"],
            "properties": {"replicas": {"type": "integer", "minimum": 1},
                           "roles": {"type": "array", "items": {"enum": ["controller", "broker"]}},
                           "storage": {"type": "object", "required": ["type"]}}}}},
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): {
        "type": "object", "required": ["metadata", "spec"],
        "properties": {"metadata": _STRIMZI_META, "spec": {
            "type": "object", "required": ["partitions", "replicas"], "additionalProperties": False,
            "properties": {"topicName": {"type": "string"}, "partitions": {"type": "integer", "minimum": 1},
                           "replicas": {"type": "integer", "minimum": 1}, "config": {"type": "object"}}}}},
    ("external-secrets.io/v1", "ExternalSecret"): {
        "type": "object", "required": ["spec"],
        "properties": {"spec": {
            "type": "object", "required": ["secretStoreRef", "target", "data"],
            "properties": {"secretStoreRef": {"type": "object", "required": ["kind", "name"]},
                           "target": {"type": "object", "required": ["name"]},
                           "data": {"type": "array", "items": {
                               "type": "object", "required": ["secretKey", "remoteRef"],
                               "properties": {"remoteRef": {"type": "object", "required": ["key"]}}}}}}}},
}


def validate(doc: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        key = (doc["apiVersion"], doc["kind"])
        assert key in CRD_SCHEMAS, f"{key} has no schema here: add one to CRD_SCHEMAS"
        jsonschema.validate(doc, CRD_SCHEMAS[key])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_validates(overlay: str) -> None:
    docs = render(overlay)
    assert docs
    for doc in docs:
        try:
            validate(doc)
        except jsonschema.ValidationError as exc:
            pytest.fail(f"{overlay}: {doc['kind']}/{doc['metadata']['name']}: {exc.message} "
                        f"at {'.'.join(map(str, exc.absolute_path))}")


def test_validation_rejects_a_broken_object() -> None:
    """The validator is live: a typo'd field and a wrong CRD field both fail."""
    deployment = by_kind(render("base"), "Deployment")["storage"]
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)
    topic = next(iter(by_kind(render("overlays/prod"), "KafkaTopic").values()))
    with pytest.raises(jsonschema.ValidationError):
        validate({**topic, "spec": {**topic["spec"], "partitions": "six"}})


def test_gpu_component_renders(tmp_path: Path) -> None:
    rel = os.path.relpath(K8S, tmp_path)  # kustomize refuses absolute resource roots
    (tmp_path / "kustomization.yaml").write_text(
        f"resources: [{rel}/overlays/prod]\ncomponents: [{rel}/components/gpu]\n")
    docs = kustomize(tmp_path)
    for doc in docs:
        validate(doc)
    deployments = by_kind(docs, "Deployment")
    for name, image in (("training", "lumenal:"), ("tensorflow-serving", "tensorflow/serving:")):
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        assert container["image"].startswith(image) and container["image"].endswith("-gpu")
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    inference = deployments["inference"]["spec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in inference["resources"]["limits"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_has_deployment_service_probes_and_resources(overlay: str) -> None:
    docs = render(overlay)
    deployments, services = by_kind(docs, "Deployment"), by_kind(docs, "Service")
    for name in ("storage", "inference", "labels", "training", "ui", "tensorflow-serving"):
        assert name in deployments and name in services, name
        selector = services[name]["spec"]["selector"]
        assert selector.items() <= deployments[name]["spec"]["template"]["metadata"]["labels"].items()
    for workload in workloads(docs):
        for c in pod_containers(workload):
            where = f"{overlay}: {workload['metadata']['name']}/{c['name']}"
            assert {"requests", "limits"} <= set(c.get("resources", {})), f"{where}: resources"
            assert {"cpu", "memory"} <= set(c["resources"]["limits"]), f"{where}: limits"
    for name in ("storage", "inference", "labels", "training"):
        c = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        # Readiness follows the dependency probe; startup/liveness only the process,
        # so an outage elsewhere never restart-loops the pods.
        assert c["readinessProbe"]["grpc"].get("service", "") == "", name
        for probe in ("startupProbe", "livenessProbe"):
            assert c[probe]["grpc"]["service"] == LIVENESS_SERVICE, f"{name}: {probe}"


def test_pods_run_as_non_root() -> None:
    for workload in workloads(render("overlays/dev")):
        spec = workload["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, workload["metadata"]["name"]
        for c in pod_containers(workload):
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, c["name"]


def test_tf_serving_has_model_sync_sidecar_sharing_an_emptydir() -> None:
    deployment = by_kind(render("base"), "Deployment")["tensorflow-serving"]
    spec = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    containers = {c["name"]: c for c in spec["containers"]}
    assert set(containers) == {"tensorflow-serving", "model-sync"}
    serving, sync = containers["tensorflow-serving"], containers["model-sync"]
    assert sync["args"] == ["model-sync"]
    mounts = {c: {m["name"]: m["mountPath"] for m in containers[c]["volumeMounts"]} for c in containers}
    base_path = next(e["value"] for e in sync["env"] if e["name"] == "LUMENAL_MODEL_BASE_PATH")
    volume = next(name for name, path in mounts["model-sync"].items() if path == base_path)
    assert "emptyDir" in volumes[volume], "the models volume must be an emptyDir"
    assert volume in mounts["tensorflow-serving"], "TF Serving must mount the models volume"
    args = dict(a.lstrip("-").split("=", 1) for a in serving["args"])
    assert args["model_base_path"] == f"{mounts['tensorflow-serving'][volume]}/{args['model_name']}"


def test_inference_hpa_max_replicas_equals_frames_ingested_partitions() -> None:
    for overlay in OVERLAYS:
        hpa = by_kind(render(overlay), "HorizontalPodAutoscaler")["inference"]
        assert hpa["spec"]["scaleTargetRef"]["name"] == "inference"
        assert hpa["spec"]["maxReplicas"] == topics.PARTITIONS[topics.FRAMES_INGESTED], overlay


def test_pod_disruption_budgets_cover_every_service() -> None:
    docs = render("base")
    covered = {p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
               for p in by_kind(docs, "PodDisruptionBudget").values()}
    assert set(by_kind(docs, "Deployment")) <= covered


def test_dev_topics_job_and_prod_kafka_topics_match_the_code() -> None:
    dev = by_kind(render("overlays/dev"), "Job")["kafka-topics"]
    script = "\n".join(pod_containers(dev)[0]["command"])
    assert topics_in_script(script) == topics.PARTITIONS
    prod = by_kind(render("overlays/prod"), "KafkaTopic").values()
    assert {t["spec"].get("topicName", t["metadata"]["name"]): t["spec"]["partitions"] for t in prod} \
        == topics.PARTITIONS
    assert all(t["metadata"]["namespace"] == "kafka" for t in prod)


def test_dev_bucket_job_creates_the_code_buckets() -> None:
    job = by_kind(render("overlays/dev"), "Job")["minio-buckets"]
    script = "\n".join(pod_containers(job)[0]["command"])
    assert buckets_in_script(script) == set(BUCKETS)


def test_prod_has_no_in_cluster_stateful_stand_ins_and_no_literal_secret() -> None:
    docs = render("overlays/prod")
    assert not by_kind(docs, "StatefulSet"), "prod must use operator-run/managed stateful services"
    assert not by_kind(docs, "Secret"), "prod credentials come from the external secret store"
    assert "lumenal" in by_kind(docs, "Kafka")
    names = {c["name"] for w in workloads(docs) for c in pod_containers(w)}
    assert not names & {"kafka", "minio", "postgres"}


def _secret_refs(docs: list[dict[str, Any]]) -> dict[str, set[str]]:
    refs: dict[str, set[str]] = {}
    for c in containers_by_name(docs).values():
        for e in c.get("env", []):
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                refs.setdefault(ref["name"], set()).add(ref["key"])
    return refs


def test_base_holds_no_credentials() -> None:
    docs = render("base")
    assert not by_kind(docs, "Secret")
    for cm in by_kind(docs, "ConfigMap").values():
        leaked = [k for k in cm.get("data", {}) if is_secret(k)]
        assert not leaked, f"ConfigMap {cm['metadata']['name']} holds credentials {leaked}"
    for name, c in containers_by_name(docs).items():
        for e in c.get("env", []):
            if is_secret(e["name"]):
                assert "secretKeyRef" in e.get("valueFrom", {}), f"{name}: {e['name']} must come from a Secret"


def test_every_referenced_secret_key_exists_in_dev_and_prod() -> None:
    dev = render("overlays/dev")
    secrets = by_kind(dev, "Secret")
    for name, keys in _secret_refs(dev).items():
        assert name in secrets, f"dev: Secret {name} not generated"
        assert keys <= set(secrets[name]["data"]), f"dev: {name} lacks {keys - set(secrets[name]['data'])}"
    prod = render("overlays/prod")
    external = {e["spec"]["target"]["name"]: {d["secretKey"] for d in e["spec"]["data"]}
                for e in by_kind(prod, "ExternalSecret").values()}
    for name, keys in _secret_refs(prod).items():
        assert name in external, f"prod: nothing provides Secret {name}"
        assert keys <= external[name], f"prod: ExternalSecret {name} lacks {keys - external[name]}"


# ------------------------------------------------------------ network policies

Pod = tuple[str, str, dict[str, str]]  # (name, namespace, labels)
NS_LABELS = lambda ns: {"kubernetes.io/metadata.name": ns}  # noqa: E731

APP = ("storage", "inference", "labels", "training")
GRPC = {"storage": 50051, "inference": 50052, "labels": 50053, "training": 50054, "tensorflow-serving": 8500}
METRICS = {"storage": 9101, "inference": 9102, "labels": 9103, "training": 9104, "tensorflow-serving": 8501}
# The architecture's flows (docs/deploy.md). training -> tensorflow-serving:
# training waits for a synced version to be AVAILABLE before it reports a run done.
EXPECTED = {
    *{("ui", s, GRPC[s]) for s in APP},
    ("labels", "inference", 50052),
    ("inference", "storage", 50051), ("inference", "tensorflow-serving", 8500),
    ("training", "storage", 50051), ("training", "labels", 50053), ("training", "tensorflow-serving", 8500),
    *{(s, "kafka", 9092) for s in APP},
    *{(s, "minio", 9000) for s in (*APP, "tensorflow-serving")},
    ("labels", "postgres", 5432),
    ("kafka-topics", "kafka", 9092), ("minio-buckets", "minio", 9000),
    *{("prometheus", s, p) for s, p in METRICS.items()},
    # The UI is the public entry point: open to every client (the ingress path).
    ("ingress-controller", "ui", 8501), ("prometheus", "ui", 8501),
}


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] == "In", expr
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def _peer_matches(peer: dict[str, Any], own_ns: str, other: Pod) -> bool:
    _, ns, labels = other
    if "ipBlock" in peer:
        return False
    if "namespaceSelector" in peer:
        if not _selects(peer["namespaceSelector"], NS_LABELS(ns)):
            return False
    elif ns != own_ns:
        return False
    return _selects(peer.get("podSelector", {}), labels)


def _allowed(policies: list[dict[str, Any]], pod: Pod, other: Pod, port: int, direction: str) -> bool:
    """Kubernetes semantics: isolated once any policy selects the pod for ``direction``."""
    name, ns, labels = pod
    kind, rules, peers = (("Egress", "egress", "to") if direction == "egress" else ("Ingress", "ingress", "from"))
    selecting = [p for p in policies if p["metadata"]["namespace"] == ns
                 and kind in p["spec"].get("policyTypes", ["Ingress"])
                 and _selects(p["spec"]["podSelector"], labels)]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(rules, []):
            ports = {p["port"] for p in rule.get("ports", [])}
            if ports and port not in ports:
                continue
            if not rule.get(peers) or any(_peer_matches(peer, ns, other) for peer in rule[peers]):
                return True
    return False


def test_network_policies_allow_exactly_the_architecture_flows() -> None:
    docs = render("overlays/dev")
    ns = "lumenal-dev"
    policies = list(by_kind(docs, "NetworkPolicy").values())
    pods: dict[str, Pod] = {}
    ports: dict[str, set[int]] = {}
    for w in workloads(docs):
        labels = w["spec"]["template"]["metadata"]["labels"]
        name = labels["app.kubernetes.io/name"]
        pods[name] = (name, ns, labels)
        ports[name] = {p["containerPort"] for c in pod_containers(w) for p in c.get("ports", [])}
    pods["prometheus"] = ("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"})
    pods["ingress-controller"] = ("ingress-controller", "ingress-nginx", {"app": "ingress-nginx"})
    dns = ("coredns", "kube-system", {"k8s-app": "kube-dns"})

    allowed = set()
    for src in pods.values():
        for dst_name, dst in pods.items():
            if dst[1] != ns or dst is src:
                continue
            for port in ports[dst_name]:
                if _allowed(policies, src, dst, port, "egress") and _allowed(policies, dst, src, port, "ingress"):
                    allowed.add((src[0], dst_name, port))
    assert allowed - EXPECTED == set(), "flows allowed beyond the architecture"
    assert EXPECTED - allowed == set(), "architecture flows blocked"
    for pod in pods.values():
        if pod[1] == ns:
            assert _allowed(policies, pod, dns, 53, "egress"), f"{pod[0]}: DNS blocked"


def test_network_policies_cover_the_addresses_the_code_dials() -> None:
    """Each service's code references ``<callee>_addr`` only for flows the policies allow."""
    root = Path(__file__).resolve().parents[2] / "services"
    callee_of = {"storage_addr": "storage", "inference_addr": "inference", "labels_addr": "labels",
                 "training_addr": "training", "modelserver_addr": "tensorflow-serving"}
    allowed = {(s, d) for s, d, _ in EXPECTED}
    for svc in APP:
        source = "\n".join(p.read_text() for p in (root / svc).rglob("*.py"))
        for attr in set(re.findall(r"\b(\w+_addr)\b", source)) & set(callee_of):
            callee = callee_of[attr]
            if callee != svc:
                assert (svc, callee) in allowed, f"{svc} dials {attr} but no policy allows {svc} -> {callee}"


def test_every_image_is_pinned() -> None:
    for overlay in OVERLAYS:
        for name, c in containers_by_name(render(overlay)).items():
            tag = image_tag(c["image"])
            assert tag and tag != "latest" and any(ch.isdigit() for ch in tag), f"{overlay}: {name}: {c['image']}"
