"""The Keras classifier, the MC-dropout computation and the atomic export."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from lumenal.ml import model as M
from lumenal.ml import uncertainty as U

SPEC = M.ModelSpec(class_names=("a", "b", "c"), input_size=16, filters=(4, 8), embedding_dim=8,
                   mc_samples=7, dropout=0.5)


@pytest.fixture(scope="module")
def clf() -> keras.Model:
    return M.build_classifier(SPEC, seed=3)


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(0).random((5, 16, 16, 3), dtype=np.float32)


def test_classifier_outputs_probabilities(clf: keras.Model, x: np.ndarray) -> None:
    p = clf.predict(x, verbose=0)
    assert p.shape == (5, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)


def test_grayscale_28px_for_fashion_mnist() -> None:
    spec = M.ModelSpec(class_names=tuple(str(i) for i in range(10)), input_size=28, channels=1,
                       filters=(4, 8), embedding_dim=8, mc_samples=3)
    out = M.predict_all(M.build_classifier(spec), spec, np.zeros((2, 28, 28, 1), np.float32))
    assert out["probabilities"].shape == (2, 10) and out["embedding"].shape == (2, 8)


def test_trunk_is_deterministic_and_head_starts_at_first_dropout(clf: keras.Model) -> None:
    trunk, head = M.split_at_first_dropout(clf)
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in trunk.layers)
    assert isinstance(head[0], keras.layers.Dropout)
    assert [layer.name for layer in head] == ["mc_dropout_1", "embedding", "mc_dropout_2", "probabilities"]


def test_predict_all_matches_numpy_statistics_of_its_samples(clf: keras.Model, x: np.ndarray) -> None:
    out = M.predict_all(clf, SPEC, x)
    assert set(out) == set(M.MC_OUTPUTS)
    module = M.serving_module(clf, SPEC)
    samples = module._run_head_mc(module.trunk(tf.constant(x), training=False)).numpy()
    assert samples.shape == (7, 5, 3)
    assert not np.allclose(samples[0], samples[1])  # dropout really samples
    ref = U.mc_statistics(samples)
    for key in ("probabilities", "entropy", "bald", "variation_ratio"):
        np.testing.assert_allclose(out[key], ref[key], atol=1e-5)
    np.testing.assert_allclose(out["embedding"], M.predict_embedding(clf, SPEC, x), atol=1e-6)


def test_mc_scores_do_not_depend_on_batch_composition(clf: keras.Model, x: np.ndarray) -> None:
    full = M.predict_all(clf, SPEC, x)
    one = M.predict_all(clf, SPEC, x[3:4])
    small_batches = M.predict_all(clf, SPEC, x, batch_size=2)
    for key in M.MC_OUTPUTS:
        np.testing.assert_allclose(full[key][3:4], one[key], atol=1e-6)
        np.testing.assert_allclose(full[key], small_batches[key], atol=1e-6)


def test_mc_samples_override_changes_t(clf: keras.Model, x: np.ndarray) -> None:
    one = M.predict_all(clf, SPEC, x, mc_samples=1)
    np.testing.assert_allclose(one["bald"], 0.0, atol=1e-6)  # one pass cannot disagree with itself
    np.testing.assert_allclose(one["variation_ratio"], 0.0)


def test_wrong_input_shape_is_rejected(clf: keras.Model) -> None:
    with pytest.raises(ValueError, match="expected images"):
        M.predict_all(clf, SPEC, np.zeros((2, 8, 8, 3), np.float32))


@pytest.mark.parametrize("kwargs", [{"class_names": ("only",)}, {"channels": 2}, {"dropout": 0.0},
                                    {"mc_samples": 0}, {"input_size": 2}])
def test_spec_validation(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        M.ModelSpec(**{"class_names": ("a", "b"), **kwargs})


def test_spec_json_round_trip() -> None:
    assert M.ModelSpec.from_json(SPEC.to_json()) == SPEC
    raw = json.loads(SPEC.to_json())
    raw["future_field"] = 1  # newer writers must not break older readers
    assert M.ModelSpec.from_json(json.dumps(raw)) == SPEC


def test_export_is_atomic_and_matches_in_process(clf: keras.Model, x: np.ndarray, tmp_path: Path) -> None:
    base = tmp_path / "frame_triage"
    version_dir = M.export_version(clf, SPEC, base, 4)
    assert version_dir == base / "4"
    assert sorted(p.name for p in base.iterdir()) == ["4"]  # no temp folder left behind
    assert (version_dir / "saved_model.pb").exists()
    assert M.read_spec(version_dir) == SPEC
    loaded = tf.saved_model.load(str(version_dir))
    assert set(loaded.signatures) == set(M.SIGNATURES)
    images = tf.constant(x)
    served = {name: {k: v.numpy() for k, v in loaded.signatures[name](images=images).items()}
              for name in M.SIGNATURES}
    np.testing.assert_allclose(served["serving_default"]["probabilities"],
                               clf.predict(x, verbose=0), atol=1e-5)
    np.testing.assert_allclose(served["embedding"]["embedding"], M.predict_embedding(clf, SPEC, x), atol=1e-5)
    local = M.predict_all(clf, SPEC, x)
    for key in M.MC_OUTPUTS:
        np.testing.assert_allclose(served["mc_dropout"][key], local[key], atol=1e-5)
    with pytest.raises(FileExistsError):
        M.export_version(clf, SPEC, base, 4)


def test_read_spec_of_foreign_folder_fails(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a Lumenal export"):
        M.read_spec(tmp_path)
