"""Frame bytes -> model input array.

One decoder for storage, inference and training so a frame looks the same to
the model wherever it is scored.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError


def decode(data: bytes, size: int, channels: int = 3) -> np.ndarray:
    """Decode JPEG/PNG/... bytes to float32 ``[size, size, channels]`` in [0, 1].

    Raises ``ValueError`` on empty, truncated or unrecognised bytes.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if not data:
        raise ValueError("empty image bytes")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            img = img.convert("L" if channels == 1 else "RGB")
            if img.size != (size, size):
                img = img.resize((size, size), Image.BILINEAR)
            arr = np.asarray(img, dtype=np.float32)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"cannot decode image: {exc}") from exc
    if channels == 1:
        arr = arr[:, :, None]
    return arr / 255.0


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
