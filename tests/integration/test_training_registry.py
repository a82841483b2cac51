"""The S3 model registry and model-sync against a real S3 (SeaweedFS)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lumenal.core.errors import NotFound
from lumenal.ml.model import ModelSpec, build_classifier, export_version, read_spec
from lumenal.training import sync
from lumenal.training.registry import Registry

pytestmark = pytest.mark.integration

SPEC = ModelSpec(class_names=("informative", "non_informative"), input_size=16, filters=(8, 16))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One small exported SavedModel and its Keras copy."""
    root = tmp_path_factory.mktemp("export")
    model = build_classifier(SPEC, seed=0)
    vdir = export_version(model, SPEC, root / "m", 1)
    model.save(root / "model.keras")
    return vdir, root / "model.keras"


def _publish(reg: Registry, version: int, exported: tuple[Path, Path], **meta: object) -> dict:
    return reg.put_version(version, exported[0], exported[1], {
        "run_id": f"r{version}", "created_at": 1.0 * version, "metrics": {"macro_f1": 0.5 + version / 100},
        "class_names": list(SPEC.class_names), "input_size": 16, "train_labels": 10 * version,
        "reason": "promoted", **meta})


def test_versions_runs_and_state_round_trip(object_store, unique, exported):
    reg = Registry(object_store, f"m{unique}")
    assert reg.latest_version() == 0 and reg.load_state() == {} and reg.list_runs() == []
    meta = _publish(reg, 1, exported)
    _publish(reg, 2, exported)
    assert reg.version_numbers() == [1, 2] and reg.latest_version() == 2
    assert "saved_model.pb" in meta["files"] and "assets/lumenal.json" in meta["files"]
    assert meta["registry_key"] == f"m{unique}/versions/00000001/saved_model/"
    assert [m["version"] for m in reg.versions()] == [1, 2]
    with pytest.raises(NotFound):
        reg.get_version(9)
    copy = reg.copy_version(1, 3, {"reason": "rollback", "rollback_of": 1})
    assert copy["version"] == 3 and copy["rollback_of"] == 1 and copy["metrics"]["macro_f1"] == 0.51
    assert reg.download_keras(3, exported[1].parent / "k3.keras").stat().st_size > 0

    reg.save_run({"run_id": "a", "state": "PROMOTED", "started_at": 1.0})
    reg.save_run({"run_id": "b", "state": "FAILED", "started_at": 2.0, "error": "NaN"})
    reg.save_labels("b", [{"frame_id": "v:000001", "label": "informative", "sequence": 1, "split": "train"}])
    fresh = Registry(object_store, f"m{unique}")  # a restarted service reads the same
    assert [r["run_id"] for r in fresh.list_runs()] == ["b", "a"]
    assert fresh.list_runs(1)[0]["error"] == "NaN"
    assert fresh.get_labels("b")[0]["frame_id"] == "v:000001"
    reg.save_state({"pending": {"reason": "x"}, "trained_sequence": 7})
    assert fresh.load_state()["trained_sequence"] == 7


def test_sync_is_atomic_idempotent_and_prunes(object_store, unique, exported, tmp_path):
    reg = Registry(object_store, f"s{unique}")
    for v in (1, 2, 3):
        _publish(reg, v, exported)
    base = tmp_path / "models"
    path = sync.sync_version(reg, 1, base)
    assert path == base / f"s{unique}" / "1" and (path / "saved_model.pb").exists()
    assert read_spec(path).class_names == SPEC.class_names
    assert sync.sync_version(reg, 1, base) == path  # already there: no-op
    assert sync.sync_all(reg, base, keep=2) == [2, 3]
    assert sync.local_versions(base, reg.model) == [2, 3]  # v1 pruned
    assert not [p for p in (base / reg.model).iterdir() if p.name.startswith(".")]


def test_sync_failure_leaves_no_version_folder(object_store, unique, exported, tmp_path):
    reg = Registry(object_store, f"f{unique}")
    _publish(reg, 1, exported)
    object_store.remove("lumenal-models", reg.saved_model_prefix(1) + "saved_model.pb")
    with pytest.raises(NotFound):
        sync.sync_version(reg, 1, tmp_path)
    assert list((tmp_path / reg.model).iterdir()) == []  # neither "1" nor a temp folder


def test_sync_sidecar_command_mirrors_the_registry(object_store, unique, exported, tmp_path, s3_server):
    reg = Registry(object_store, f"c{unique}")
    _publish(reg, 4, exported)
    env = {**os.environ, "LUMENAL_S3_ENDPOINT": s3_server.endpoint, "LUMENAL_S3_ACCESS_KEY": s3_server.access_key,
           "LUMENAL_S3_SECRET_KEY": s3_server.secret_key, "LUMENAL_MODEL_NAME": reg.model,
           "LUMENAL_MODEL_BASE_PATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "lumenal.training.sync", "--once"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / reg.model / "4" / "saved_model.pb").exists()
