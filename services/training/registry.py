"""The model registry in S3 (bucket ``lumenal-models``), one prefix per model name.

Layout (``<m>`` = model name, versions zero-padded so keys sort):

    <m>/state.json                         pending request, interrupted run, CEAL round, cursor
    <m>/runs/<run_id>.json                 every run: parameters, metrics, duration, outcome
    <m>/runs/<run_id>.labels.json          the labels it used (frame id, label, sequence, split)
    <m>/versions/<v>/saved_model/...       the exported SavedModel (what TF Serving loads)
    <m>/versions/<v>/model.keras           Keras copy for warm starts
    <m>/versions/<v>/metadata.json         written LAST: a version exists once this exists

Only promoted (or rolled-back-to) versions are uploaded, so every version in
the registry is one that was, at some point, the serving model.
"""

from __future__ import annotations

import threading
from pathlib import Path

from lumenal.core.errors import NotFound
from lumenal.core.objectstore import MODELS_BUCKET, ObjectStore


def version_dir(version: int) -> str:
    return f"{version:08d}"


class Registry:
    def __init__(self, store: ObjectStore, model_name: str) -> None:
        self.store = store
        self.model = model_name
        self._runs: dict[str, dict] | None = None
        self._lock = threading.Lock()

    # -- keys -------------------------------------------------------------
    def _key(self, *parts: str) -> str:
        return "/".join([self.model, *parts])

    def version_prefix(self, version: int) -> str:
        return self._key("versions", version_dir(version)) + "/"

    def saved_model_prefix(self, version: int) -> str:
        return self.version_prefix(version) + "saved_model/"

    # -- state ------------------------------------------------------------
    def load_state(self) -> dict:
        try:
            return dict(self.store.get_json(MODELS_BUCKET, self._key("state.json")))  # type: ignore[arg-type]
        except NotFound:
            return {}

    def save_state(self, state: dict) -> None:
        self.store.put_json(MODELS_BUCKET, self._key("state.json"), state)

    # -- runs -------------------------------------------------------------
    def _load_runs(self) -> dict[str, dict]:
        if self._runs is None:
            runs = {}
            for key in self.store.list_keys(MODELS_BUCKET, self._key("runs") + "/"):
                if key.endswith(".json") and not key.endswith(".labels.json"):
                    run = self.store.get_json(MODELS_BUCKET, key)
                    runs[run["run_id"]] = run
            self._runs = runs
        return self._runs

    def save_run(self, run: dict) -> None:
        self.store.put_json(MODELS_BUCKET, self._key("runs", f"{run['run_id']}.json"), run)
        with self._lock:
            self._load_runs()[run["run_id"]] = dict(run)

    def get_run(self, run_id: str) -> dict:
        with self._lock:
            run = self._load_runs().get(run_id)
        if run is None:
            raise NotFound(f"no training run {run_id!r}")
        return dict(run)

    def list_runs(self, limit: int = 0) -> list[dict]:
        """Newest first (run ids start with a UTC timestamp)."""
        with self._lock:
            runs = sorted(self._load_runs().values(), key=lambda r: (r.get("started_at") or r.get("queued_at") or 0, r["run_id"]),
                          reverse=True)
        return [dict(r) for r in (runs[:limit] if limit > 0 else runs)]

    def save_labels(self, run_id: str, labels: list[dict]) -> None:
        self.store.put_json(MODELS_BUCKET, self._key("runs", f"{run_id}.labels.json"), labels)

    def get_labels(self, run_id: str) -> list[dict]:
        return list(self.store.get_json(MODELS_BUCKET, self._key("runs", f"{run_id}.labels.json")))  # type: ignore[arg-type]

    # -- versions ---------------------------------------------------------
    def versions(self) -> list[dict]:
        """Metadata of every complete version, oldest first."""
        out = []
        for key in self.store.list_keys(MODELS_BUCKET, self._key("versions") + "/"):
            if key.endswith("/metadata.json"):
                out.append(self.store.get_json(MODELS_BUCKET, key))
        return sorted(out, key=lambda m: m["version"])

    def version_numbers(self) -> list[int]:
        """Complete versions without reading their metadata (cheap: one listing)."""
        prefix = self._key("versions") + "/"
        nums = []
        for key in self.store.list_keys(MODELS_BUCKET, prefix):
            if key.endswith("/metadata.json"):
                nums.append(int(key[len(prefix):].split("/", 1)[0]))
        return sorted(nums)

    def latest_version(self) -> int:
        nums = self.version_numbers()
        return nums[-1] if nums else 0

    def get_version(self, version: int) -> dict:
        try:
            return dict(self.store.get_json(MODELS_BUCKET, self.version_prefix(version) + "metadata.json"))  # type: ignore[arg-type]
        except NotFound:
            raise NotFound(f"model version {version} is not in the registry") from None

    def put_version(self, version: int, saved_model: Path, keras_file: Path | None, metadata: dict) -> dict:
        """Upload a version; metadata.json goes last so readers never see half a version."""
        files = sorted(p for p in saved_model.rglob("*") if p.is_file())
        rel = [p.relative_to(saved_model).as_posix() for p in files]
        for path, name in zip(files, rel, strict=True):
            self.store.put_bytes(MODELS_BUCKET, self.saved_model_prefix(version) + name, path.read_bytes())
        if keras_file is not None:
            self.store.put_bytes(MODELS_BUCKET, self.version_prefix(version) + "model.keras",
                                 keras_file.read_bytes())
        meta = {**metadata, "version": version, "files": rel, "has_keras": keras_file is not None,
                "registry_key": self.saved_model_prefix(version)}
        self.store.put_json(MODELS_BUCKET, self.version_prefix(version) + "metadata.json", meta)
        return meta

    def copy_version(self, src: int, dst: int, metadata: dict) -> dict:
        """Copy version ``src`` as a new version ``dst`` (rollback re-publishes an old model)."""
        old = self.get_version(src)
        for name in old["files"]:
            data = self.store.get_bytes(MODELS_BUCKET, self.saved_model_prefix(src) + name)
            self.store.put_bytes(MODELS_BUCKET, self.saved_model_prefix(dst) + name, data)
        if old.get("has_keras"):
            data = self.store.get_bytes(MODELS_BUCKET, self.version_prefix(src) + "model.keras")
            self.store.put_bytes(MODELS_BUCKET, self.version_prefix(dst) + "model.keras", data)
        meta = {**old, **metadata, "version": dst, "registry_key": self.saved_model_prefix(dst)}
        self.store.put_json(MODELS_BUCKET, self.version_prefix(dst) + "metadata.json", meta)
        return meta

    def download_saved_model(self, version: int, dest: Path) -> None:
        meta = self.get_version(version)
        for name in meta["files"]:
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.store.get_bytes(MODELS_BUCKET, self.saved_model_prefix(version) + name))

    def download_keras(self, version: int, dest: Path) -> Path | None:
        """The version's Keras copy, or None when it has none (e.g. not trained here)."""
        try:
            data = self.store.get_bytes(MODELS_BUCKET, self.version_prefix(version) + "model.keras")
        except NotFound:
            return None
        dest.write_bytes(data)
        return dest


