"""Frame decoding: shape, range, channels, and corrupt bytes."""

from __future__ import annotations

import numpy as np
import pytest

from lumenal.ml import images


def test_decode_resizes_and_scales_to_unit_range() -> None:
    rgb = np.zeros((40, 30, 3), dtype=np.uint8)
    rgb[:, :, 0] = 255
    out = images.decode(images.encode_png(rgb), size=16)
    assert out.shape == (16, 16, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, :, 0], 1.0)
    np.testing.assert_allclose(out[:, :, 1:], 0.0)


def test_round_trip_is_exact_at_native_size() -> None:
    img = np.random.default_rng(0).integers(0, 256, (8, 8, 3)).astype(np.uint8)
    np.testing.assert_allclose(images.decode(images.encode_png(img), 8), img / 255.0, atol=1e-6)


def test_grayscale_has_one_channel() -> None:
    out = images.decode(images.encode_png(np.full((8, 8, 3), 128, np.uint8)), 28, channels=1)
    assert out.shape == (28, 28, 1)
    assert out.max() == pytest.approx(128 / 255, abs=1e-6)


@pytest.mark.parametrize("data", [b"", b"not an image", None])
def test_corrupt_bytes_raise_value_error(data: bytes | None) -> None:
    if data is None:  # a truncated PNG
        data = images.encode_png(np.zeros((32, 32, 3), np.uint8))[:40]
    with pytest.raises(ValueError):
        images.decode(data, 16)


def test_bad_channel_count_is_rejected() -> None:
    with pytest.raises(ValueError):
        images.decode(images.encode_png(np.zeros((4, 4, 3), np.uint8)), 4, channels=2)
