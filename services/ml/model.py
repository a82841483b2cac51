"""The Keras frame classifier and its versioned SavedModel export.

The network is a small CNN (conv-BN-ReLU blocks, global average pooling) with
an MC-dropout head::

    trunk (deterministic)            head (from the first dropout onward)
    conv blocks -> GAP  ---------->  Dropout -> Dense "embedding" -> Dropout -> Dense softmax

Because every stochastic layer sits in the cheap head, MC dropout runs the
trunk ONCE and repeats only the head T times (broadcast into one batched call). The
exported ``mc_dropout`` signature and the in-process ``predict_all`` run the
same ``ServingModule`` code, so serving and training-time scores agree.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

SPEC_ASSET = "lumenal.json"
INPUT_KEY = "images"
SIGNATURES = ("serving_default", "mc_dropout", "embedding")
MC_OUTPUTS = ("probabilities", "entropy", "bald", "variation_ratio", "embedding")
EMBEDDING_LAYER = "embedding"
EPS = 1e-12


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild, serve and interpret a model version."""

    class_names: tuple[str, ...]
    input_size: int = 64
    channels: int = 3
    mc_samples: int = 20
    dropout: float = 0.3
    filters: tuple[int, ...] = (32, 64, 128)
    convs_per_block: int = 1
    embedding_dim: int = 128
    mc_seed: int = 0
    bn_momentum: float = 0.9  # see build_classifier: small label sets give few BN updates
    name: str = "frame_triage"

    def __post_init__(self) -> None:
        # JSON round trips give lists; keep the dataclass hashable and comparable.
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "filters", tuple(int(f) for f in self.filters))
        if len(self.class_names) < 2:
            raise ValueError("a classifier needs at least two classes")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.input_size < 2 ** len(self.filters):
            raise ValueError(f"input_size {self.input_size} too small for {len(self.filters)} pooling blocks")
        if not 0.0 < self.dropout < 1.0:
            raise ValueError("dropout must be in (0, 1) so MC sampling has something to sample")
        if self.mc_samples < 1:
            raise ValueError("mc_samples must be >= 1")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.input_size, self.input_size, self.channels)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        raw: dict[str, Any] = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


def build_classifier(spec: ModelSpec, seed: int | None = None) -> keras.Model:
    """Input float32 [N, H, W, C] in [0, 1] -> softmax probabilities [N, classes]."""
    if seed is not None:
        keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=spec.input_shape, name=INPUT_KEY, dtype="float32")
    x = inputs
    for b, width in enumerate(spec.filters):
        for c in range(spec.convs_per_block):
            x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"conv{b}_{c}")(x)
            # momentum 0.9 (Keras default 0.99): with a few hundred labels a retrain is only
            # ~100 steps, too few for 0.99 moving statistics to converge (test accuracy stays
            # at chance with training=False); measured by `lumenal bench al`.
            x = keras.layers.BatchNormalization(momentum=spec.bn_momentum, name=f"bn{b}_{c}")(x)
            x = keras.layers.ReLU(name=f"relu{b}_{c}")(x)
        x = keras.layers.MaxPooling2D(name=f"pool{b}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="features")(x)
    # Head: every layer from here on is re-run per MC sample.
    x = keras.layers.Dropout(spec.dropout, name="mc_dropout_1")(x)
    x = keras.layers.Dense(spec.embedding_dim, activation="relu", name=EMBEDDING_LAYER)(x)
    x = keras.layers.Dropout(spec.dropout, name="mc_dropout_2")(x)
    outputs = keras.layers.Dense(spec.num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=spec.name)


def compile_classifier(model: keras.Model, learning_rate: float = 1e-3) -> keras.Model:
    """Adam + sparse categorical cross-entropy: the one training setup everyone uses."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def split_at_first_dropout(model: keras.Model) -> tuple[keras.Model, list[keras.layers.Layer]]:
    """(trunk model up to the first dropout, the head layers in call order).

    The head must be a simple chain (true for ``build_classifier``), so it can
    be applied layer by layer with ``training=True`` for the dropouts only.
    """
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    first = next((i for i, layer in enumerate(layers) if isinstance(layer, keras.layers.Dropout)), None)
    if first is None:
        raise ValueError(f"model {model.name!r} has no Dropout layer to sample")
    trunk = keras.Model(model.inputs, layers[first].input, name=f"{model.name}_trunk")
    return trunk, layers[first:]


def _mc_tf(samples: tf.Tensor) -> dict[str, tf.Tensor]:
    """TF twin of ``uncertainty.mc_statistics`` for samples [T, N, C]."""
    t = tf.cast(tf.shape(samples)[0], tf.float32)
    mean = tf.reduce_mean(samples, axis=0)
    total = -tf.reduce_sum(mean * tf.math.log(mean + EPS), axis=1)
    expected = tf.reduce_mean(-tf.reduce_sum(samples * tf.math.log(samples + EPS), axis=2), axis=0)
    votes = tf.reduce_sum(tf.one_hot(tf.argmax(samples, axis=2), tf.shape(samples)[2]), axis=0)
    return {
        "probabilities": mean,
        "entropy": total,
        "bald": tf.maximum(total - expected, 0.0),
        "variation_ratio": 1.0 - tf.reduce_max(votes, axis=1) / t,
    }


class ServingModule(tf.Module):
    """The three serving signatures over one Keras model (exported and in-process)."""

    def __init__(self, model: keras.Model, spec: ModelSpec, mc_samples: int | None = None) -> None:
        super().__init__(name="lumenal_classifier")
        self.model = model
        # Keras does not expose every variable (e.g. Dropout seed state) to TF
        # tracking; list them all so a SavedModel never misses a captured one.
        self.tracked_variables = [getattr(v, "value", v) for v in model.variables]
        self.trunk, self.head = split_at_first_dropout(model)
        names = [layer.name for layer in self.head]
        if EMBEDDING_LAYER not in names:
            raise ValueError(f"head has no {EMBEDDING_LAYER!r} layer: {names}")
        self._emb_end = names.index(EMBEDDING_LAYER) + 1
        self.mc_samples = int(mc_samples or spec.mc_samples)
        self.mc_seed = int(spec.mc_seed)
        sig = [tf.TensorSpec([None, *spec.input_shape], tf.float32, name=INPUT_KEY)]
        self.serving_default = tf.function(self._probabilities, input_signature=sig)
        self.embedding = tf.function(self._embedding, input_signature=sig)
        self.mc_dropout = tf.function(self._mc_dropout, input_signature=sig)

    def _run_head(self, x: tf.Tensor, stop: int | None = None) -> tf.Tensor:
        """Deterministic head (dropout off), up to layer index ``stop``."""
        for layer in self.head[:stop]:
            x = layer(x, training=False)
        return x

    def _run_head_mc(self, features: tf.Tensor) -> tf.Tensor:
        """T stochastic head passes as one batched call: [N, D] -> [T, N, C].

        Dropout masks are stateless with a fixed seed and shared by all rows
        of the batch ([T, 1, D]). So the same frame gets the same scores in any
        batch, in-process and served alike, and all frames are ranked under
        the same T sampled sub-networks (common random numbers: less ranking
        noise than independent masks per frame). Across T the masks are still
        independent draws, which is all MC dropout needs per frame.
        """
        t = self.mc_samples
        x = tf.broadcast_to(features[None], tf.concat([[t], tf.shape(features)], axis=0))
        for i, layer in enumerate(self.head):
            if isinstance(layer, keras.layers.Dropout):
                width = x.shape[-1]
                keep = tf.random.stateless_uniform([t, 1, width], seed=[self.mc_seed, i]) >= layer.rate
                x = x * tf.cast(keep, x.dtype) / (1.0 - layer.rate)
            else:
                x = layer(x, training=False)
        return x

    def _probabilities(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"probabilities": self.model(images, training=False)}

    def _embedding(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        features = self.trunk(images, training=False)
        return {"embedding": self._run_head(features, self._emb_end)}

    def _mc_dropout(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        features = self.trunk(images, training=False)  # the expensive part, once
        out = _mc_tf(self._run_head_mc(features))
        out["embedding"] = self._run_head(features, self._emb_end)
        return out

    def signatures(self) -> dict[str, Any]:
        return {name: getattr(self, name).get_concrete_function() for name in SIGNATURES}


def serving_module(model: keras.Model, spec: ModelSpec, mc_samples: int | None = None) -> ServingModule:
    """Cached per model so repeated ``predict_all`` calls reuse the traced graph.

    The cache lives on the model (bypassing Keras attribute tracking), so it
    dies with the model instead of pinning every model a benchmark builds.
    """
    t = int(mc_samples or spec.mc_samples)
    cache = model.__dict__.get("_lumenal_modules")
    if cache is None:
        cache = {}
        object.__setattr__(model, "_lumenal_modules", cache)
    key = (t, spec.input_shape)
    if key not in cache:
        cache[key] = ServingModule(model, spec, t)
    return cache[key]


def _check_images(x: np.ndarray, spec: ModelSpec) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4 or tuple(x.shape[1:]) != spec.input_shape:
        raise ValueError(f"expected images [N, {', '.join(map(str, spec.input_shape))}], got {x.shape}")
    return x


def predict_all(model: keras.Model, spec: ModelSpec, x: np.ndarray, mc_samples: int | None = None,
                batch_size: int = 256) -> dict[str, np.ndarray]:
    """In-process ``mc_dropout``: mean probabilities, entropy, BALD, variation ratio, embedding."""
    x = _check_images(x, spec)
    module = serving_module(model, spec, mc_samples)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in MC_OUTPUTS}
    for start in range(0, max(len(x), 1), batch_size):
        out = module.mc_dropout(tf.constant(x[start:start + batch_size]))
        for k in MC_OUTPUTS:
            parts[k].append(out[k].numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


def _run_signature(model: keras.Model, spec: ModelSpec, x: np.ndarray, signature: str, output: str,
                   batch_size: int) -> np.ndarray:
    """One exported signature, in-process and in batches (same graph as the served model)."""
    x = _check_images(x, spec)
    fn = getattr(serving_module(model, spec), signature)
    out = [fn(tf.constant(x[s:s + batch_size]))[output].numpy() for s in range(0, max(len(x), 1), batch_size)]
    return np.concatenate(out)


def predict_probabilities(model: keras.Model, spec: ModelSpec, x: np.ndarray,
                          batch_size: int = 256) -> np.ndarray:
    """Deterministic class probabilities (the ``serving_default`` computation)."""
    return _run_signature(model, spec, x, "serving_default", "probabilities", batch_size)


def predict_embedding(model: keras.Model, spec: ModelSpec, x: np.ndarray,
                      batch_size: int = 256) -> np.ndarray:
    """Deterministic penultimate features (the ``embedding`` computation)."""
    return _run_signature(model, spec, x, "embedding", "embedding", batch_size)


def export_version(model: keras.Model, spec: ModelSpec, base_path: str | Path, version: int) -> Path:
    """Write ``<base_path>/<version>/`` atomically; returns the version folder.

    ``base_path`` is the model's folder (``<models>/<model_name>``). The
    SavedModel and ``assets/lumenal.json`` go to a hidden temp folder on the
    same filesystem and are renamed into place in one step, so a poller (our
    modelserver or tensorflow/serving) never sees a half-written numeric
    folder. Refuses to overwrite an existing version.
    """
    if int(version) < 1:
        raise ValueError("versions are positive integers")
    base = Path(base_path)
    base.mkdir(parents=True, exist_ok=True)
    final = base / str(int(version))
    if final.exists():
        raise FileExistsError(f"version already exists: {final}")
    tmp = base / f".tmp-{int(version)}-{uuid.uuid4().hex[:8]}"
    try:
        module = ServingModule(model, spec)
        tf.saved_model.save(module, str(tmp), signatures=module.signatures())
        (tmp / "assets").mkdir(exist_ok=True)
        (tmp / "assets" / SPEC_ASSET).write_text(spec.to_json())
        os.replace(tmp, final)  # atomic on one filesystem; fails if final appeared meanwhile
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def read_spec(version_dir: str | Path) -> ModelSpec:
    """The ``ModelSpec`` stored with an exported version."""
    path = Path(version_dir) / "assets" / SPEC_ASSET
    try:
        return ModelSpec.from_json(path.read_text())
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"no {SPEC_ASSET} in {version_dir}: not a Lumenal export") from exc
