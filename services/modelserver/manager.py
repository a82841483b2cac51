"""Model versions on disk -> loaded, warmed, servable versions (TF Serving semantics).

The manager owns which versions are served. ``reconcile`` compares the
numeric version folders under each model's base path with its version
policy and loads/unloads to match, preserving availability:

1. wanted = the policy applied to loadable versions (latest N / specific / all);
2. every wanted version not yet loaded goes START -> LOADING -> (load + warm
   every signature) -> AVAILABLE, and only then joins the served map;
3. only after that does an unwanted version go UNLOADING (leaves the served
   map, waits for its in-flight requests) -> END.

A version that fails to load (half-written or corrupt folder) ends in END with
an error status and is left out of the policy until its files change, so it
never blocks later versions nor evicts the version already serving.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf
from prometheus_client import Counter, Gauge, Histogram
from tensorflow.core.protobuf import error_codes_pb2, meta_graph_pb2, saved_model_pb2
from tensorflow_serving.config import model_server_config_pb2

from lumenal.core import errors

log = logging.getLogger(__name__)

# Warm-up batch sizes: one row traces each signature; 64 (the inference service's batch) builds
# the kernels real traffic uses, so the first requests to a new version are not the slow ones.
WARM_BATCHES = (1, 64)
START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"

VERSIONS = Gauge("lumenal_modelserver_available_versions", "Versions AVAILABLE per model", ["model"])
LATEST = Gauge("lumenal_modelserver_latest_version", "Highest AVAILABLE version per model", ["model"])
LOADS = Counter("lumenal_modelserver_loads_total", "Version load attempts", ["model", "result"])
LOAD_SECONDS = Histogram("lumenal_modelserver_load_seconds", "Load + warm-up time per version",
                         buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60))
UNLOADS = Counter("lumenal_modelserver_unloads_total", "Versions unloaded", ["model"])


@dataclass(frozen=True)
class ModelConfig:
    """One served model: where its versions live and which to serve."""

    name: str
    base_path: Path
    policy: str = "latest"  # latest | specific | all
    latest_n: int = 1
    specific: frozenset[int] = frozenset()
    labels: tuple[tuple[str, int], ...] = ()

    def choose(self, candidates: set[int]) -> set[int]:
        if self.policy == "all":
            return set(candidates)
        if self.policy == "specific":
            return candidates & set(self.specific)
        return set(sorted(candidates)[-self.latest_n:]) if self.latest_n > 0 else set()

    @classmethod
    def from_proto(cls, cfg: model_server_config_pb2.ModelConfig, default_latest: int) -> ModelConfig:
        if not cfg.name:
            raise errors.InvalidArgument("model config without a name")
        if not cfg.base_path:
            raise errors.InvalidArgument(f"model {cfg.name!r}: base_path is empty")
        if cfg.model_platform not in ("", "tensorflow"):
            raise errors.InvalidArgument(f"model {cfg.name!r}: platform {cfg.model_platform!r} not supported")
        which = cfg.model_version_policy.WhichOneof("policy_choice")
        labels = tuple(sorted((k, int(v)) for k, v in cfg.version_labels.items()))
        base = Path(cfg.base_path.removeprefix("file://"))
        if which == "all":
            return cls(cfg.name, base, "all", labels=labels)
        if which == "specific":
            versions = frozenset(int(v) for v in cfg.model_version_policy.specific.versions)
            if not versions:
                raise errors.InvalidArgument(f"model {cfg.name!r}: specific policy lists no versions")
            return cls(cfg.name, base, "specific", specific=versions, labels=labels)
        n = cfg.model_version_policy.latest.num_versions if which == "latest" else 0
        return cls(cfg.name, base, "latest", latest_n=int(n or default_latest), labels=labels)


@dataclass
class LoadedVersion:
    """A loaded SavedModel: its signature functions and SignatureDefs."""

    model: str
    version: int
    path: Path
    obj: object
    functions: dict[str, object]
    signature_defs: dict[str, meta_graph_pb2.SignatureDef]
    inputs: dict[str, dict[str, tf.TensorSpec]]
    _in_flight: int = 0
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def enter(self) -> None:
        with self._cond:
            self._in_flight += 1

    def exit(self) -> None:
        with self._cond:
            self._in_flight -= 1
            self._cond.notify_all()

    def drain(self, timeout_s: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._in_flight == 0, timeout_s)


@dataclass
class VersionState:
    state: str
    error_code: int = 0
    error_message: str = ""
    fingerprint: tuple = ()


def _fingerprint(path: Path) -> tuple:
    """Names, sizes and mtimes of a version's files: changes when a writer is still at work."""
    try:
        return tuple(sorted((str(p.relative_to(path)), st.st_size, st.st_mtime_ns)
                            for p in path.rglob("*") if p.is_file() for st in [p.stat()]))
    except OSError:
        return ("unreadable", time.time_ns())


def _signature_defs(path: Path) -> dict[str, meta_graph_pb2.SignatureDef]:
    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((path / "saved_model.pb").read_bytes())
    graph = next((mg for mg in sm.meta_graphs if "serve" in mg.meta_info_def.tags), sm.meta_graphs[0])
    return {k: v for k, v in graph.signature_def.items() if not k.startswith("__")}


def load_version(model: str, version: int, path: Path) -> LoadedVersion:
    """Load a SavedModel and warm every signature with batches of zeros (``WARM_BATCHES``)."""
    if not (path / "saved_model.pb").exists():
        raise FileNotFoundError(f"{path}: no saved_model.pb (half-written or not a SavedModel)")
    obj = tf.saved_model.load(str(path), tags=["serve"])
    functions = dict(obj.signatures)
    if not functions:
        raise ValueError(f"{path}: SavedModel has no signatures")
    inputs = {name: dict(fn.structured_input_signature[1]) for name, fn in functions.items()}
    for name, fn in functions.items():  # warm: trace + allocate before taking traffic
        for batch in WARM_BATCHES:
            specs = inputs[name].values()
            if batch > 1 and any(None in spec.shape[1:] for spec in specs):
                continue  # only the batch dimension may be left open for a larger warm-up batch
            fn(**{key: tf.constant(zeros_for(spec, batch)) for key, spec in inputs[name].items()})
    gc.collect()  # the load's garbage is collected now, not in a pause during the first requests
    return LoadedVersion(model, version, path, obj, functions, _signature_defs(path), inputs)


class ModelManager:
    """Served models, their version states, and the poll/reconcile loop."""

    def __init__(self, configs: list[ModelConfig], discover_root: Path | None = None,
                 default_latest: int = 1, drain_timeout_s: float = 30.0) -> None:
        self.discover_root = discover_root
        self.default_latest = default_latest
        self.drain_timeout_s = drain_timeout_s
        self._configs: dict[str, ModelConfig] = {c.name: c for c in configs}
        self._served: dict[str, dict[int, LoadedVersion]] = {}  # replaced, never mutated
        self._labels: dict[str, dict[str, int]] = {c.name: dict(c.labels) for c in configs}
        self._states: dict[str, dict[int, VersionState]] = {}
        self.history: deque[tuple[str, int, str]] = deque(maxlen=10_000)
        self._lock = threading.Lock()  # guards the dicts above
        self._reconcile_lock = threading.Lock()  # one reconcile at a time
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_poll_ok = True

    # ---- configuration -------------------------------------------------
    def configs(self) -> dict[str, ModelConfig]:
        with self._lock:
            found = dict(self._configs)
        if self.discover_root is not None and self.discover_root.is_dir():
            for d in sorted(self.discover_root.iterdir()):
                if d.is_dir() and not d.name.startswith(".") and d.name not in found:
                    found[d.name] = ModelConfig(d.name, d, latest_n=self.default_latest)
        return found

    def reload(self, configs: list[ModelConfig]) -> None:
        """Replace the served set (HandleReloadConfigRequest): load first, then labels.

        Models left out are unloaded; discovery stops (the config is now explicit).
        Labels must point at AVAILABLE versions, as TF Serving requires.
        """
        names = [c.name for c in configs]
        if len(set(names)) != len(names):
            raise errors.InvalidArgument(f"duplicate model names in config: {names}")
        with self._reconcile_lock:
            with self._lock:
                self._configs = {c.name: c for c in configs}
                self.discover_root = None
            self._reconcile_locked()
            bad = [(c.name, label, v) for c in configs for label, v in c.labels
                   if v not in self._served.get(c.name, {})]
            if bad:
                raise errors.FailedPrecondition(
                    "version labels must point at available versions: "
                    + ", ".join(f"{m}:{label}->{v}" for m, label, v in bad))
            with self._lock:
                self._labels = {c.name: dict(c.labels) for c in configs}
        log.info("config reloaded", extra={"models": names})

    # ---- lookups used by the servicers ---------------------------------
    def _pick(self, name: str, version: int | None, label: str | None) -> LoadedVersion:
        """The version a request asks for, with TF Serving's error codes (caller holds the lock)."""
        served = self._served.get(name, {})
        if label:
            labels = self._labels.get(name, {})
            if label not in labels:
                raise errors.InvalidArgument(f"Unrecognized servable version label: {label}")
            version = labels[label]
        if version is None:
            if not served:
                raise errors.NotFound(f"Servable not found for request: Latest({name})")
            return served[max(served)]
        if version not in served:
            raise errors.NotFound(f"Servable not found for request: Specific({name}, {version})")
        return served[version]

    def resolve(self, name: str, version: int | None, label: str | None) -> LoadedVersion:
        with self._lock:
            return self._pick(name, version, label)

    @contextmanager
    def acquire(self, name: str, version: int | None, label: str | None) -> Iterator[LoadedVersion]:
        """Resolve and count the request in flight in one step.

        Unloading removes a version from the served map under the same lock
        before draining, so once it drains no request can still pick it.
        """
        with self._lock:
            loaded = self._pick(name, version, label)
            loaded.enter()
        try:
            yield loaded
        finally:
            loaded.exit()

    def status(self, name: str, version: int | None = None) -> list[tuple[int, VersionState]]:
        with self._lock:
            states = dict(self._states.get(name, {}))
        if not states:
            raise errors.NotFound(f"Could not find any versions of model {name}")
        if version is not None:
            if version not in states:
                raise errors.NotFound(f"Could not find version {version} of model {name}")
            return [(version, states[version])]
        return sorted(states.items())

    def available(self, name: str) -> list[int]:
        with self._lock:
            return sorted(self._served.get(name, {}))

    # ---- state changes ---------------------------------------------------
    def _set(self, name: str, version: int, state: str, code: int = 0, message: str = "",
             fingerprint: tuple | None = None) -> None:
        with self._lock:
            old = self._states.setdefault(name, {}).get(version)
            fp = fingerprint if fingerprint is not None else (old.fingerprint if old else ())
            self._states[name][version] = VersionState(state, code, message, fp)
            self.history.append((name, version, state))
        log.info("version state", extra={"model": name, "version": version, "state": state,
                                         "error": message or None})

    def _publish(self, name: str, served: dict[int, LoadedVersion]) -> None:
        with self._lock:
            if served:
                self._served[name] = served
            else:
                self._served.pop(name, None)
        VERSIONS.labels(name).set(len(served))
        LATEST.labels(name).set(max(served) if served else 0)

    def _scan(self, cfg: ModelConfig) -> dict[int, Path]:
        return {int(p.name): p for p in cfg.base_path.iterdir() if p.is_dir() and p.name.isdigit()}

    def _load(self, cfg: ModelConfig, version: int, path: Path, fp: tuple) -> bool:
        self._set(cfg.name, version, START, fingerprint=fp)
        self._set(cfg.name, version, LOADING)
        started = time.perf_counter()
        try:
            loaded = load_version(cfg.name, version, path)
        except Exception as exc:  # noqa: BLE001 - any load failure is reported, never fatal
            code = error_codes_pb2.NOT_FOUND if isinstance(exc, FileNotFoundError) else error_codes_pb2.UNKNOWN
            LOADS.labels(cfg.name, "error").inc()
            self._set(cfg.name, version, END, code, f"load failed: {type(exc).__name__}: {exc}")
            log.warning("version failed to load", extra={"model": cfg.name, "version": version})
            return False
        LOAD_SECONDS.observe(time.perf_counter() - started)
        LOADS.labels(cfg.name, "ok").inc()
        with self._lock:
            served = dict(self._served.get(cfg.name, {}))
        served[version] = loaded
        self._publish(cfg.name, served)
        self._set(cfg.name, version, AVAILABLE)
        return True

    def _unload(self, name: str, version: int) -> None:
        self._set(name, version, UNLOADING)
        with self._lock:
            served = dict(self._served.get(name, {}))
        loaded = served.pop(version, None)
        self._publish(name, served)
        if loaded is not None and not loaded.drain(self.drain_timeout_s):
            log.warning("unloading with requests still in flight", extra={"model": name, "version": version})
        UNLOADS.labels(name).inc()
        self._set(name, version, END)

    def _reconcile_model(self, cfg: ModelConfig) -> None:
        if not cfg.base_path.is_dir():
            # A missing base path (unmounted volume, typo) must not unload what serves.
            if self.available(cfg.name):
                log.warning("model base path missing; keeping loaded versions",
                            extra={"model": cfg.name, "base_path": str(cfg.base_path)})
            return
        on_disk = self._scan(cfg)
        fps = {v: _fingerprint(p) for v, p in on_disk.items()}
        while True:
            with self._lock:
                states = dict(self._states.get(cfg.name, {}))
                loaded = set(self._served.get(cfg.name, {}))
            failed = {v for v, s in states.items()
                      if s.state == END and s.error_code and s.fingerprint == fps.get(v)}
            wanted = cfg.choose(set(on_disk) - failed)
            missing = sorted(wanted - loaded, reverse=True)  # newest first: serve it soonest
            if not missing:
                break
            self._load(cfg, missing[0], on_disk[missing[0]], fps[missing[0]])
        for version in sorted(loaded - wanted):
            self._unload(cfg.name, version)

    def _reconcile_locked(self) -> None:
        configs = self.configs()
        for cfg in configs.values():
            self._reconcile_model(cfg)
        with self._lock:
            dropped = [n for n in self._served if n not in configs]
        for name in dropped:
            for version in self.available(name):
                self._unload(name, version)

    def reconcile(self) -> None:
        """One poll: bring every model in line with its folder and policy."""
        with self._reconcile_lock:
            self._reconcile_locked()

    # ---- poll loop ---------------------------------------------------------
    def start(self, interval_s: float) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.reconcile()
                    self.last_poll_ok = True
                except Exception:  # noqa: BLE001 - keep polling; health reports it
                    self.last_poll_ok = False
                    log.exception("reconcile failed")
                self._wake.wait(interval_s)
                self._wake.clear()

        self._thread = threading.Thread(target=loop, daemon=True, name="model-poll")
        self._thread.start()

    def poll_now(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def healthy(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self.last_poll_ok


def zeros_for(spec: tf.TensorSpec, batch: int = 1) -> np.ndarray:
    """A zero batch matching ``spec`` (unknown dims -> ``batch``)."""
    return np.zeros([d if d is not None else batch for d in spec.shape], spec.dtype.as_numpy_dtype)
