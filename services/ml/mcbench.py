"""Measure the MC-dropout design: trunk once + head T times vs T full passes.

``python -m lumenal.ml.mcbench [--input-size 64] [--samples 20] [--batch 64]``
prints images/s for deterministic predict, the exported ``mc_dropout``
computation and naive MC (T full forward passes), plus the ratios.

``--fashion N`` also trains the 28x28x1 model on N Fashion-MNIST images
(Debian ``dataset-fashion-mnist``) and checks that the cheap estimator (shared
stateless masks) ranks test images like naive MC with independent per-image
masks: Spearman of BALD against naive, next to naive against itself.
"""

from __future__ import annotations

import argparse
import gzip
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from lumenal.ml.model import ModelSpec, ServingModule, build_classifier, compile_classifier
from lumenal.ml.uncertainty import mc_statistics

FASHION = Path("/usr/share/datasets/fashion-mnist")


def naive_mc(module: ServingModule) -> tf.types.experimental.GenericFunction:
    """T complete forward passes with Keras dropout on (BN stays in inference mode)."""

    @tf.function(input_signature=[tf.TensorSpec([None, *module.model.input_shape[1:]], tf.float32)])
    def run(images: tf.Tensor) -> tf.Tensor:
        samples = []
        for _ in range(module.mc_samples):
            x = module.trunk(images, training=False)
            for layer in module.head:
                x = layer(x, training=isinstance(layer, keras.layers.Dropout))
            samples.append(x)
        return tf.stack(samples)

    return run


def _rate(fn, x: tf.Tensor, repeats: int) -> float:  # noqa: ANN001
    fn(x)  # trace + warm
    start = time.perf_counter()
    for _ in range(repeats):
        fn(x)
    return repeats * int(x.shape[0]) / (time.perf_counter() - start)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def measure(spec: ModelSpec, batch: int = 64, repeats: int = 10, seed: int = 0) -> dict[str, float]:
    """Images/s of each path and the two ratios the issue asks about."""
    model = build_classifier(spec, seed=seed)
    module = ServingModule(model, spec)
    x = tf.constant(np.random.default_rng(seed).random((batch, *spec.input_shape), dtype=np.float32))
    det = _rate(module.serving_default, x, repeats)
    mc = _rate(module.mc_dropout, x, repeats)
    naive = _rate(naive_mc(module), x, max(1, repeats // 4))
    return {"deterministic_img_s": det, "mc_img_s": mc, "naive_mc_img_s": naive,
            "mc_vs_deterministic": mc / det, "naive_vs_deterministic": naive / det,
            "mc_speedup_vs_naive": mc / naive}


def _idx(path: Path) -> np.ndarray:
    """Read an IDX (MNIST format) gzip file."""
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def ranking_check(n_train: int, samples: int, epochs: int = 8, seed: int = 0) -> dict[str, float]:
    """Train on Fashion-MNIST, then compare BALD rankings of the three estimators."""
    x = _idx(FASHION / "train-images-idx3-ubyte.gz")[:n_train, :, :, None].astype(np.float32) / 255
    y = _idx(FASHION / "train-labels-idx1-ubyte.gz")[:n_train].astype(np.int64)
    xt = _idx(FASHION / "t10k-images-idx3-ubyte.gz")[:2000, :, :, None].astype(np.float32) / 255
    yt = _idx(FASHION / "t10k-labels-idx1-ubyte.gz")[:2000].astype(np.int64)
    spec = ModelSpec(class_names=tuple(str(i) for i in range(10)), input_size=28, channels=1,
                     mc_samples=samples)
    model = compile_classifier(build_classifier(spec, seed=seed))
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    module = ServingModule(model, spec)
    xt_t = tf.constant(xt)
    cheap = module.mc_dropout(xt_t)
    naive = naive_mc(module)
    naive_a = mc_statistics(naive(xt_t).numpy())
    naive_b = mc_statistics(naive(xt_t).numpy())
    det = module.serving_default(xt_t)["probabilities"].numpy()
    return {"test_accuracy_deterministic": float((det.argmax(1) == yt).mean()),
            "test_accuracy_mc_mean": float((cheap["probabilities"].numpy().argmax(1) == yt).mean()),
            "spearman_bald_cheap_vs_naive": _spearman(cheap["bald"].numpy(), naive_a["bald"]),
            "spearman_bald_naive_vs_naive": _spearman(naive_a["bald"], naive_b["bald"]),
            "spearman_entropy_cheap_vs_naive": _spearman(cheap["entropy"].numpy(), naive_a["entropy"])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input-size", type=int, default=64)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--fashion", type=int, default=0, help="train on N Fashion-MNIST images and compare rankings")
    args = ap.parse_args(argv)
    spec = ModelSpec(class_names=tuple(f"c{i}" for i in range(10)), input_size=args.input_size,
                     channels=args.channels, mc_samples=args.samples)
    for key, value in measure(spec, args.batch, args.repeats).items():
        print(f"{key:>32}: {value:10.2f}")
    if args.fashion:
        for key, value in ranking_check(args.fashion, args.samples).items():
            print(f"{key:>32}: {value:10.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
