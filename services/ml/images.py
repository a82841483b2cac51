"""Frame bytes -> model input array.

One decoder for storage, inference and training so a frame looks the same to
the model wherever it is scored.

JPEG (what storage writes) goes through libjpeg-turbo (``simplejpeg``) with
DCT-domain downscaling: a 128 px frame for a 64 px model is decoded at half
scale straight away instead of decoded whole and then resized. That is ~5x
less CPU per frame than Pillow's decode + resize + float conversion, and
decoding was the largest cost of the inference service after the model
itself (see docs/inference.md). Other formats, and JPEGs libjpeg-turbo
cannot convert (CMYK), go through Pillow.
"""

from __future__ import annotations

import io

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

JPEG_SOI = b"\xff\xd8"


def decode(data: bytes, size: int, channels: int = 3) -> np.ndarray:
    """Decode JPEG/PNG/... bytes to float32 ``[size, size, channels]`` in [0, 1].

    Raises ``ValueError`` on empty, truncated or unrecognised bytes.
    """
    return to_unit_float(decode_uint8(data, size, channels))


def decode_uint8(data: bytes, size: int, channels: int = 3) -> np.ndarray:
    """Like ``decode`` but uint8 ``[size, size, channels]`` (what caches keep: 4x smaller)."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if not data:
        raise ValueError("empty image bytes")
    arr = _decode_jpeg(data, size, channels) if data[:2] == JPEG_SOI else None
    if arr is None:
        arr = _decode_pillow(data, size, channels)
    return arr if arr.ndim == 3 else arr[:, :, None]


def to_unit_float(arr: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [0, 1]."""
    return np.multiply(arr, np.float32(1 / 255), dtype=np.float32)


def _decode_jpeg(data: bytes, size: int, channels: int) -> np.ndarray | None:
    """libjpeg-turbo at the smallest DCT scale that is still >= ``size``; None = let Pillow try."""
    try:
        arr = simplejpeg.decode_jpeg(data, colorspace="GRAY" if channels == 1 else "RGB",
                                     min_height=size, min_width=size)
    except ValueError:
        return None  # truncated, corrupt or CMYK: Pillow either decodes it or says why
    if arr.shape[:2] != (size, size):
        img = Image.fromarray(arr[:, :, 0] if channels == 1 else arr)
        arr = np.asarray(img.resize((size, size), Image.BILINEAR))
    return arr


def _decode_pillow(data: bytes, size: int, channels: int) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            img = img.convert("L" if channels == 1 else "RGB")
            if img.size != (size, size):
                img = img.resize((size, size), Image.BILINEAR)
            return np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"cannot decode image: {exc}") from exc


def encode_png(image: np.ndarray) -> bytes:
    """float [H, W, C] in [0, 1] (or uint8) -> PNG bytes (tests, demo data)."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()
