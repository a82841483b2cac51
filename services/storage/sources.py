"""What IngestPath may read and how a path becomes a list of frames.

A path is a video file, a folder of images, or a Kvasir-Capsule tree
(``labelled_images/<class>/*.jpg`` plus ``metadata.csv``). Paths are resolved
(symlinks followed) and must stay inside the configured ingest roots.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

from lumenal.core.errors import InvalidArgument, NotFound

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
KVASIR_DIR = "labelled_images"
KVASIR_METADATA = "metadata.csv"


def inside(path: Path, roots: list[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def resolve(raw: str, roots: list[Path], what: str = "path") -> Path:
    """The real path of ``raw`` if it lies inside ``roots`` and exists."""
    if not raw:
        raise InvalidArgument(f"{what} is required")
    if "\x00" in raw:
        raise InvalidArgument(f"{what} contains a NUL byte")
    p = Path(raw).expanduser()
    if not p.is_absolute():
        raise InvalidArgument(f"{what} {raw!r} must be absolute (the service resolves it on its own host)")
    real = p.resolve()
    if not inside(real, roots):
        listed = ", ".join(str(r) for r in roots)
        raise InvalidArgument(f"{what} {raw!r} is outside the allowed ingest roots ({listed}); "
                              "upload the file instead or set LUMENAL_STORAGE_INGEST_ROOTS")
    if not real.exists():
        raise NotFound(f"{what} {raw!r} does not exist")
    return real


def sha256_file(path: Path, h: hashlib._Hash | None = None) -> str:
    h = h or hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class ImageItem:
    path: Path
    source: str        # path relative to the ingested folder
    ground_truth: str


@dataclass(frozen=True)
class ImageSet:
    kind: str                  # "images" | "kvasir"
    items: list[ImageItem]
    outside: list[str]         # files skipped because a symlink leaves the roots


def is_kvasir(folder: Path) -> bool:
    return (folder / KVASIR_DIR).is_dir()


def _image_files(folder: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        out += [Path(dirpath) / n for n in sorted(filenames) if Path(n).suffix.lower() in IMAGE_SUFFIXES]
    return out


def _split_outside(files: list[Path], roots: list[Path]) -> tuple[list[Path], list[str]]:
    keep, outside = [], []
    for f in files:
        (keep if inside(f.resolve(), roots) else outside).append(f)
    return keep, [f"{f}: outside the allowed ingest roots" for f in outside]


def read_kvasir_metadata(path: Path) -> dict[str, dict[str, str]]:
    """filename -> row of Kvasir-Capsule's ``metadata.csv`` (';' or ',' separated)."""
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    first = text.splitlines()[0] if text else ""
    delim = ";" if first.count(";") >= first.count(",") else ","
    rows = list(csv.DictReader(io.StringIO(text), delimiter=delim))
    if not rows:
        return {}
    cols = {c.strip().lower() for c in rows[0] if c}
    if "filename" not in cols:
        raise InvalidArgument(f"{path.name}: no 'filename' column (found {sorted(cols)})")
    out = {}
    for row in rows:
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        out[row["filename"]] = row
    return out


def image_set(folder: Path, roots: list[Path]) -> ImageSet:
    """The frames of a folder in a stable order (sorted relative paths; Kvasir: by class)."""
    if is_kvasir(folder):
        base = folder / KVASIR_DIR
        meta_path = next((p for p in (folder / KVASIR_METADATA, base / KVASIR_METADATA) if p.is_file()), None)
        meta = read_kvasir_metadata(meta_path) if meta_path else {}
        files, outside = _split_outside(_image_files(base), roots)
        items = []
        for f in files:
            rel = f.relative_to(base)
            if len(rel.parts) < 2:
                continue  # only images inside a class folder carry a label
            row = meta.get(f.name, {})
            where = f" (video {row['video_id']}, frame {row['frame_number']})" \
                if row.get("video_id") and row.get("frame_number") else ""
            items.append(ImageItem(f, f"{KVASIR_DIR}/{rel.as_posix()}{where}", rel.parts[0]))
        kind = "kvasir"
    else:
        files, outside = _split_outside(_image_files(folder), roots)
        items = [ImageItem(f, f.relative_to(folder).as_posix(), "") for f in files]
        kind = "images"
    if not items:
        raise InvalidArgument(f"{folder}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))}"
                              + (f" in {KVASIR_DIR}/<class>/" if kind == "kvasir" else "") + ")")
    return ImageSet(kind, items, outside)


def image_set_sha256(images: ImageSet) -> str:
    """Content hash of a folder: same files and labels, same video id."""
    h = hashlib.sha256()
    for item in images.items:
        h.update(f"{item.source}\x00{item.ground_truth}\x00".encode())
        h.update(bytes.fromhex(sha256_file(item.path)))
    return h.hexdigest()


def parse_ground_truth(data: bytes, name: str = "ground truth CSV") -> dict[int, str]:
    """``frame_index,label`` rows (an optional header) -> {frame_index: label}."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidArgument(f"{name}: not UTF-8 text") from None
    out: dict[int, str] = {}
    for n, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) < 2:
            raise InvalidArgument(f"{name} line {n}: expected 'frame_index,label', got {row!r}")
        idx, label = row[0].strip(), row[1].strip()
        if n == 1 and not idx.lstrip("-").isdigit():
            continue  # header
        if not idx.isdigit():
            raise InvalidArgument(f"{name} line {n}: frame_index {idx!r} is not a non-negative integer")
        if not label:
            raise InvalidArgument(f"{name} line {n}: empty label")
        if int(idx) in out:
            raise InvalidArgument(f"{name} line {n}: frame_index {idx} appears twice")
        out[int(idx)] = label
    if not out:
        raise InvalidArgument(f"{name}: no rows")
    return out
