"""Datasets for the label-efficiency bench: Fashion-MNIST (IDX) or any ``<class>/<image>`` folder.

Images come back as float32 ``[N, H, W, C]`` in [0, 1], the model's input contract, so the
bench feeds the classifier exactly what the services feed it.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat",
                   "sandal", "shirt", "sneaker", "bag", "ankle-boot")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
INSTALL_HINT = ("Fashion-MNIST not found in {dir}. Install it with:\n"
                "  sudo apt-get install -y dataset-fashion-mnist\n"
                "or pass --dataset PATH with a <class>/<image> folder.")


class DatasetError(ValueError):
    """The dataset is missing or malformed; the message says how to fix it."""


@dataclass(frozen=True)
class Dataset:
    """A fixed pool (to be labeled by the simulated oracle) and a held-out test set."""

    name: str
    class_names: tuple[str, ...]
    x_pool: np.ndarray
    y_pool: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def input_size(self) -> int:
        return int(self.x_pool.shape[1])

    @property
    def channels(self) -> int:
        return int(self.x_pool.shape[3])

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "classes": list(self.class_names), "pool": len(self.y_pool),
                "test": len(self.y_test), "input_size": self.input_size, "channels": self.channels}


def read_idx(path: Path) -> np.ndarray:
    """Parse one (gzipped) IDX file: magic 0x0000 dtype ndim, big-endian dims, raw data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DatasetError(f"{path}: expected {int(np.prod(dims))} bytes of data, found {body.size}")
    return body.reshape(dims)


def load_fashion_mnist(root: Path = FASHION_DIR) -> Dataset:
    """The Debian package's train split is the pool; its official test split is the test set."""
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    paths = []
    for name in names:
        found = [p for p in (root / f"{name}.gz", root / name) if p.exists()]
        if not found:
            raise DatasetError(INSTALL_HINT.format(dir=root))
        paths.append(found[0])
    x_pool, y_pool, x_test, y_test = (read_idx(p) for p in paths)
    return Dataset("fashion-mnist", FASHION_CLASSES,
                   _to_float(x_pool), y_pool.astype(np.int64), _to_float(x_test), y_test.astype(np.int64))


def _to_float(images: np.ndarray) -> np.ndarray:
    return (images.astype(np.float32) / 255.0)[..., None]


def load_image_folder(root: Path, size: int = 64, channels: int = 3, test_fraction: float = 0.2,
                      seed: int = 0) -> Dataset:
    """``root/<class>/<image>``; a stratified pool/test split that depends only on ``seed``."""
    from lumenal.ml import images

    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    files = [(p, c) for c, name in enumerate(classes) for p in sorted((root / name).rglob("*"))
             if p.suffix.lower() in IMAGE_SUFFIXES]
    if len(classes) < 2 or not files:
        raise DatasetError(f"{root}: expected <class>/<image> folders with at least two classes")
    x = np.empty((len(files), size, size, channels), np.float32)
    y = np.empty(len(files), np.int64)
    for i, (path, c) in enumerate(files):
        try:
            x[i] = images.decode(path.read_bytes(), size, channels)
        except ValueError as exc:
            raise DatasetError(f"{path}: cannot decode image ({exc})") from exc
        y[i] = c
    test = stratified_test_mask(y, test_fraction, seed)
    return Dataset(root.name, tuple(classes), x[~test], y[~test], x[test], y[test])


def stratified_test_mask(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Per class, the same fraction goes to the test set, so rare classes stay measurable."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(y), bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        n_test = int(round(len(idx) * fraction))
        if len(idx) > 1:
            n_test = min(max(n_test, 1), len(idx) - 1)
        mask[rng.choice(idx, n_test, replace=False)] = True
    return mask


def load(path: str | None, size: int = 64, channels: int = 3, seed: int = 0) -> Dataset:
    """``None`` means Fashion-MNIST from the Debian package."""
    if path is None:
        return load_fashion_mnist()
    return load_image_folder(Path(path), size, channels, seed=seed)
