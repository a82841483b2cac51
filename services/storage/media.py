"""Decoding, sampling and near-duplicate detection, independent of S3 and Kafka.

Videos are decoded with PyAV (FFmpeg). Every decoded frame is offered to a
``Sampler`` (keeps ``fps`` frames per second of presentation time) and then
to a ``Deduper`` (drops a frame whose 64-bit dHash is within a Hamming
threshold of the last kept frame: capsule cameras often sit still).
Images are read with Pillow and hashed the same way.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import simplejpeg
from av.video.reformatter import VideoReformatter
from PIL import Image

from lumenal.core.errors import InvalidArgument

HASH_GRID = (64, 72)  # (h, w) grey thumbnail images are hashed from
CENTER_FRACTION = 0.6  # share of each dimension the hash looks at
_LUMA_FORMATS = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "gray"}


def _area_resize(gray: np.ndarray, h: int, w: int) -> np.ndarray:
    """Mean over a ``h`` x ``w`` grid of equal cells (box filter; no aliasing)."""
    a = np.asarray(gray, dtype=np.float32)
    if a.shape[0] < h or a.shape[1] < w:  # tiny input: repeat pixels first
        a = np.repeat(np.repeat(a, math.ceil(h / a.shape[0]), 0), math.ceil(w / a.shape[1]), 1)
    ch, cw = a.shape[0] // h, a.shape[1] // w
    return a[: h * ch, : w * cw].reshape(h, ch, w, cw).mean(axis=(1, 3))


def center(gray: np.ndarray, frac: float = CENTER_FRACTION) -> np.ndarray:
    """The central part of a frame: capsule images are circular with a vignette and text in
    the corners, which would otherwise dominate the hash of every frame alike."""
    h, w = gray.shape[:2]
    my, mx = int(h * (1 - frac) / 2), int(w * (1 - frac) / 2)
    return gray[my: h - my, mx: w - mx]


def dhash(gray: np.ndarray) -> int:
    """64-bit difference hash of the frame's centre: is each cell of an 8x9 grid brighter
    than its left neighbour."""
    small = _area_resize(center(gray), 8, 9)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def frame_luma(frame: av.VideoFrame) -> np.ndarray:
    """A subsampled grey view of a decoded frame: the Y plane without copying when the
    pixel format has one (most codecs), else a conversion."""
    if frame.format.name in _LUMA_FORMATS:
        plane = frame.planes[0]
        y = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[: frame.height, : frame.width]
    else:
        y = frame.to_ndarray(format="gray")
    step = max(1, min(y.shape[0] // HASH_GRID[0], y.shape[1] // HASH_GRID[1]))
    return y[::step, ::step]


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def hash_hex(h: int) -> str:
    return f"{h:016x}"


@dataclass
class Sampler:
    """Keeps the first frame of each 1/fps slot of presentation time; fps <= 0 keeps all."""

    fps: float
    _last: int | None = None

    def take(self, t: float) -> bool:
        if self.fps <= 0:
            return True
        slot = math.floor(t * self.fps + 1e-6)
        if self._last is not None and slot <= self._last:
            return False
        self._last = slot
        return True


@dataclass
class Deduper:
    """Drops frames within ``threshold`` bits of the last kept one; threshold < 0 keeps all."""

    threshold: int
    _last: int | None = None

    def duplicate(self, h: int) -> bool:
        if self.threshold >= 0 and self._last is not None and hamming(h, self._last) <= self.threshold:
            return True
        self._last = h
        return False


@dataclass
class Counts:
    decoded: int = 0
    unsampled: int = 0
    duplicates: int = 0
    skipped: list[str] = field(default_factory=list)  # "<file>: <reason>"


@dataclass
class KeptFrame:
    """A frame to store: a decoded video frame or image to encode, or original bytes to keep."""

    index: int
    time_s: float
    phash: int
    width: int
    height: int
    image: Image.Image | None = None
    frame: av.VideoFrame | None = None
    data: bytes | None = None
    content_type: str = ""
    source: str = ""
    ground_truth: str = ""


@dataclass(frozen=True)
class VideoProbe:
    packets: int
    declared_frames: int
    fps: float
    width: int
    height: int
    codec: str


def probe_video(path: Path) -> VideoProbe:
    """Open and demux (no decoding, ~100x faster) to reject non-videos and damaged files
    before anything is stored or published."""
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise InvalidArgument(f"{path.name}: no video stream in this file")
            s = c.streams.video[0]
            packets = 0
            for p in c.demux(s):
                if p.size == 0:
                    continue
                if p.is_corrupt:
                    raise InvalidArgument(f"{path.name}: corrupt or truncated video "
                                          f"(damaged packet {packets})")
                packets += 1
            declared = int(s.frames or 0)
            fps = float(s.average_rate or s.guessed_rate or 0)
            w, h, codec = s.codec_context.width, s.codec_context.height, s.codec_context.name
    except av.FFmpegError as exc:
        raise InvalidArgument(f"{path.name}: not a readable video ({exc.strerror or exc})") from None
    if packets == 0:
        raise InvalidArgument(f"{path.name}: the video has no frames")
    if declared and packets < declared:
        raise InvalidArgument(f"{path.name}: corrupt or truncated video: the container declares "
                              f"{declared} frames but only {packets} are present")
    return VideoProbe(packets, declared, fps, w, h, codec)


def iter_video(path: Path, sample_fps: float, dedup: int, counts: Counts,
               ground_truth: dict[int, str] | None = None) -> Iterator[KeptFrame]:
    """Decode, sample and de-duplicate; yields kept frames as soon as they are decoded."""
    sampler, deduper = Sampler(sample_fps), Deduper(dedup)
    gt = ground_truth or {}
    index = -1
    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            rate = float(s.average_rate or s.guessed_rate or 0) or 25.0
            for index, frame in enumerate(c.decode(s)):
                counts.decoded += 1
                t = float(frame.time) if frame.time is not None else index / rate
                if not sampler.take(t):
                    counts.unsampled += 1
                    continue
                ph = dhash(frame_luma(frame))
                if deduper.duplicate(ph):
                    counts.duplicates += 1
                    continue
                yield KeptFrame(index, t, ph, frame.width, frame.height, frame=frame,
                                source=path.name, ground_truth=gt.get(index, ""))
    except av.FFmpegError as exc:
        raise InvalidArgument(f"{path.name}: corrupt video: decoding failed after frame "
                              f"{index}: {exc.strerror or exc}") from None
    if counts.decoded == 0:
        raise InvalidArgument(f"{path.name}: no frame could be decoded")


IMAGE_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}


def read_image(data: bytes) -> tuple[Image.Image, str]:
    """Decode fully (catches truncation); returns the RGB image and its format."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            fmt = im.format or ""
            return im.convert("RGB"), fmt
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"not a readable image ({exc})") from None


def image_hash(im: Image.Image) -> int:
    h, w = HASH_GRID
    return dhash(np.asarray(im.convert("L").resize((w, h), Image.Resampling.BOX)))


def iter_images(items: list[tuple[Path, str, str]], dedup: int, counts: Counts) -> Iterator[KeptFrame]:
    """``items`` = (file, source label, ground truth) in frame order. Unreadable files are
    skipped and reported in ``counts.skipped``; JPEG/PNG bytes are stored unchanged."""
    deduper = Deduper(dedup)
    for index, (path, source, gt) in enumerate(items):
        try:
            data = path.read_bytes()
            im, fmt = read_image(data)
        except (OSError, ValueError) as exc:
            counts.skipped.append(f"{source}: {exc}")
            continue
        counts.decoded += 1
        ph = image_hash(im)
        if deduper.duplicate(ph):
            counts.duplicates += 1
            continue
        keep = fmt in IMAGE_TYPES
        yield KeptFrame(index, 0.0, ph, im.width, im.height, image=None if keep else im,
                        data=data if keep else None, content_type=IMAGE_TYPES.get(fmt, ""),
                        source=source, ground_truth=gt)


def encode_kept(kept: KeptFrame, fmt: str, quality: int) -> tuple[bytes, str]:
    """The bytes to store for ``kept`` (runs in upload workers: colour conversion and
    encoding release the GIL, so they overlap with decoding)."""
    if kept.data is not None:
        return kept.data, kept.content_type
    if kept.image is not None:
        return encode(kept.image, fmt, quality)
    assert kept.frame is not None
    if fmt == "jpeg" and jpeg_direct(kept.frame):
        return encode_yuv420(kept.frame, quality), "image/jpeg"
    # Bilinear chroma upsampling: a third of the CPU of swscale's default (bicubic).
    rgb = _reformatter().reformat(kept.frame, format="rgb24", interpolation="BILINEAR").to_ndarray()
    return encode(Image.fromarray(rgb), fmt, quality)


# Colour matrices a baseline JPEG (JFIF: BT.601 YCbCr) represents exactly:
# unspecified (2), BT.470BG (5) and SMPTE 170M (6) are all BT.601.
_BT601 = {2, 5, 6}


def jpeg_direct(frame: av.VideoFrame) -> bool:
    """Can the decoded 4:2:0 planes go into a JPEG as they are? A JPEG is YCbCr 4:2:0 too,
    so this skips the RGB round trip (~4x less CPU per frame than RGB + encode). BT.709
    (HD) sources take the RGB path: their colours would shift in a BT.601 JPEG."""
    return frame.format.name in ("yuv420p", "yuvj420p") and frame.colorspace in _BT601


_local = threading.local()


def _reformatter() -> VideoReformatter:
    """One swscale context per thread, reused: ``frame.reformat`` builds a new one per call,
    which cost more than the JPEG encode itself."""
    if not hasattr(_local, "reformatter"):
        _local.reformatter = VideoReformatter()
    return _local.reformatter


def encode_yuv420(frame: av.VideoFrame, quality: int) -> bytes:
    """JPEG straight from the Y, U, V planes. Video is usually limited range (Y 16-235),
    JFIF full range: swscale stretches it first (no chroma resampling), else blacks
    would turn grey."""
    if frame.format.name != "yuvj420p":
        frame = _reformatter().reformat(frame, format="yuvj420p")
    y, u, v = (np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[: p.height, : p.width]
               for p in frame.planes)
    return simplejpeg.encode_jpeg_yuv_planes(y, u, v, quality=quality)


def encode(im: Image.Image, fmt: str, quality: int) -> tuple[bytes, str]:
    buf = io.BytesIO()
    if fmt == "png":
        im.save(buf, "PNG", compress_level=1)
        return buf.getvalue(), "image/png"
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue(), "image/jpeg"
