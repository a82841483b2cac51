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


def _jpeg(rgb: np.ndarray, mode: str = "RGB") -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).convert(mode).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def _smooth(size: int) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] / size
    return (np.stack([x, y, (x + y) / 2], axis=2) * 255).astype(np.uint8)


@pytest.mark.parametrize("size", [64, 48, 128])
def test_jpeg_fast_path_matches_pillow_decode_and_resize(size: int) -> None:
    """libjpeg-turbo's DCT-scaled decode (128 -> 64 is one scale step; 48 also resizes)
    gives the picture Pillow's full decode + resize gives, to JPEG precision."""
    from PIL import Image

    data = _jpeg(_smooth(128))
    fast = images.decode(data, size)
    with Image.open(__import__("io").BytesIO(data)) as img:
        ref = np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR), np.float32) / 255
    assert fast.shape == (size, size, 3) and fast.dtype == np.float32
    assert np.abs(fast - ref).mean() < 0.01


def test_grayscale_and_cmyk_jpegs_decode() -> None:
    gray = images.decode(_jpeg(_smooth(32), "L"), 16, channels=1)
    assert gray.shape == (16, 16, 1)
    cmyk = images.decode(_jpeg(_smooth(32), "CMYK"), 16)  # libjpeg-turbo can't: Pillow does
    assert cmyk.shape == (16, 16, 3) and 0 <= cmyk.min() <= cmyk.max() <= 1


def test_truncated_jpeg_raises_value_error() -> None:
    data = _jpeg(_smooth(64))
    with pytest.raises(ValueError):
        images.decode(data[: len(data) // 2], 32)


def test_decode_uint8_is_decode_before_scaling() -> None:
    data = _jpeg(_smooth(64))
    raw = images.decode_uint8(data, 32)
    assert raw.dtype == np.uint8 and raw.shape == (32, 32, 3)
    np.testing.assert_allclose(images.to_unit_float(raw), images.decode(data, 32), atol=1e-7)
