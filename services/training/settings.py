"""Training service settings (``LUMENAL_TRAINING_*`` plus the shared model base path)."""

from __future__ import annotations

from dataclasses import dataclass

from lumenal.core.config import CommonSettings, env, from_env, lumenal_home


@dataclass(frozen=True)
class TrainingSettings(CommonSettings):
    metrics_port: int = env("LUMENAL_TRAINING_METRICS_PORT", 9104)
    # Retrain policy: a run every N new resolved labels, never closer than the interval.
    retrain_every: int = env("LUMENAL_TRAINING_RETRAIN_EVERY", 50)
    min_interval_s: float = env("LUMENAL_TRAINING_MIN_INTERVAL_S", 60.0)
    min_labels: int = env("LUMENAL_TRAINING_MIN_LABELS", 20)
    # Model and optimisation.
    warm_start: bool = env("LUMENAL_TRAINING_WARM_START", True)
    epochs: int = env("LUMENAL_TRAINING_EPOCHS", 30)
    patience: int = env("LUMENAL_TRAINING_PATIENCE", 4)
    batch_size: int = env("LUMENAL_TRAINING_BATCH_SIZE", 32)
    # Fitting stops once past this many seconds, after at least one full epoch (0 = no
    # limit); it bounds label-to-serving latency on small CPUs.
    max_train_s: float = env("LUMENAL_TRAINING_MAX_TRAIN_S", 30.0)
    learning_rate: float = env("LUMENAL_TRAINING_LEARNING_RATE", 3e-3)
    input_size: int = env("LUMENAL_TRAINING_INPUT_SIZE", 64)
    class_weights: bool = env("LUMENAL_TRAINING_CLASS_WEIGHTS", True)
    seed: int = env("LUMENAL_TRAINING_SEED", 0)
    # Fallback class set when the labels project has none ("a,b,c").
    class_names: str = env("LUMENAL_TRAINING_CLASS_NAMES", "")
    # Stable split: share of labelled frames (by hash of frame id) held out for validation.
    val_fraction: float = env("LUMENAL_TRAINING_VAL_FRACTION", 0.2)
    # CEAL pseudo-labels for confident unlabelled frames (entropy < delta * decay**round).
    ceal: bool = env("LUMENAL_TRAINING_CEAL", False)
    ceal_delta: float = env("LUMENAL_TRAINING_CEAL_DELTA", 0.05)
    ceal_decay: float = env("LUMENAL_TRAINING_CEAL_DECAY", 0.9)
    ceal_max_unlabeled: int = env("LUMENAL_TRAINING_CEAL_MAX_UNLABELED", 2000)
    ceal_max_ratio: float = env("LUMENAL_TRAINING_CEAL_MAX_RATIO", 1.0)
    ceal_epochs: int = env("LUMENAL_TRAINING_CEAL_EPOCHS", 3)
    # Validation gate: promote unless macro-F1 drops more than this below the serving model.
    promotion_tolerance: float = env("LUMENAL_TRAINING_PROMOTION_TOLERANCE", 0.01)
    # A corrupt frame fails the run (default); set to skip such frames and train on the rest.
    skip_corrupt_frames: bool = env("LUMENAL_TRAINING_SKIP_CORRUPT_FRAMES", False)
    # Decoded frames kept in memory between runs (frames never change; ~12 KB each at 64 px).
    frame_cache_frames: int = env("LUMENAL_TRAINING_FRAME_CACHE_FRAMES", 20000)
    # Model-sync target shared with the model server ("" = no local sync; a sidecar does it).
    model_base_path: str = env("LUMENAL_MODEL_BASE_PATH", str(lumenal_home() / "models"))
    # How long to wait for the model server to report a synced version AVAILABLE.
    serving_wait_s: float = env("LUMENAL_TRAINING_SERVING_WAIT_S", 120.0)
    consumer_session_ms: int = env("LUMENAL_TRAINING_CONSUMER_SESSION_MS", 10000)
    grpc_timeout_s: float = env("LUMENAL_TRAINING_GRPC_TIMEOUT_S", 60.0)
    # Standalone sync loop (Kubernetes sidecar): poll interval and local versions kept.
    sync_interval_s: float = env("LUMENAL_TRAINING_SYNC_INTERVAL_S", 5.0)
    sync_keep_versions: int = env("LUMENAL_TRAINING_SYNC_KEEP_VERSIONS", 3)

    def class_list(self) -> tuple[str, ...]:
        return tuple(c.strip() for c in self.class_names.split(",") if c.strip())


def load() -> TrainingSettings:
    return from_env(TrainingSettings)
