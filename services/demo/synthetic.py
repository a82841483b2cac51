"""``lumenal demo-video``: a SYNTHETIC capsule-like video with per-frame ground truth.

NOT real endoscopy. A procedural tissue texture (pink mucosa, folds, vessels,
a few lesion-like red spots) drifts past a circular capsule lens, with
stretches that a reader would call non-informative: bubbles, motion blur,
darkness and turbid debris. Each class has a distinct, learnable visual
signature (rims of bubbles, missing high frequencies, low light, green-brown
tint), so a small CNN improves visibly as labels arrive. The camera also
pauses now and then, which gives the storage service near-duplicates to drop.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

SYNTHETIC_MARKER = "SYNTHETIC"
INFORMATIVE = "informative"
CLASSES: tuple[str, ...] = (INFORMATIVE, "bubbles", "blur", "dark", "debris")
NON_INFORMATIVE: tuple[str, ...] = CLASSES[1:]
# The same labels collapsed to the binary triage task (labels service default class set).
BINARY: dict[str, str] = {c: c if c == INFORMATIVE else "non_informative" for c in CLASSES}
VIDEO_NAME = "synthetic_capsule.mp4"
GROUND_TRUTH_NAME = "ground_truth.csv"
TITLE = "SYNTHETIC capsule-like demo video - not real endoscopy"


@dataclass(frozen=True)
class DemoVideo:
    video: Path
    ground_truth: Path
    labels: list[str]


def _noise(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    """Periodic smooth noise (Gaussian-filtered in Fourier space), zero mean, unit std."""
    f = np.fft.fftfreq(n)
    r2 = f[:, None] ** 2 + f[None, :] ** 2
    spec = np.fft.fft2(rng.standard_normal((n, n))) * np.exp(-r2 * (scale * np.pi) ** 2 * 2)
    out = np.real(np.fft.ifft2(spec))
    return ((out - out.mean()) / (out.std() + 1e-9)).astype(np.float32)


def _tissue(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """An n x n tileable RGB mucosa texture in [0, 1]."""
    base = _noise(rng, n, n / 6)
    folds = np.exp(-(_noise(rng, n, n / 14) / 0.12) ** 2)            # dark ridges
    vessels = np.exp(-(_noise(rng, n, n / 28) / 0.05) ** 2) * (_noise(rng, n, n / 10) > -0.2)
    villi = _noise(rng, n, 1.2)
    pink = np.array([0.88, 0.52, 0.46], np.float32)
    img = pink * (0.85 + 0.08 * base[..., None] + 0.09 * villi[..., None])
    img *= 1 - 0.45 * folds[..., None]
    img = img * (1 - 0.7 * vessels[..., None]) + np.array([0.55, 0.08, 0.12], np.float32) * 0.7 * vessels[..., None]
    yy, xx = np.mgrid[:n, :n]
    for _ in range(max(2, n // 160)):                                  # lesion-like red spots
        cy, cx, r = rng.integers(0, n), rng.integers(0, n), rng.uniform(0.03, 0.07) * size
        d2 = ((yy - cy + n / 2) % n - n / 2) ** 2 + ((xx - cx + n / 2) % n - n / 2) ** 2
        spot = np.exp(-d2 / (2 * r * r))[..., None]
        img = img * (1 - 0.8 * spot) + np.array([0.6, 0.05, 0.08], np.float32) * 0.8 * spot
    return np.clip(img, 0, 1).astype(np.float32)


def _segments(rng: np.random.Generator, frames: int) -> list[str]:
    """Per-frame labels: informative runs alternating with artefact runs."""
    labels: list[str] = []
    while len(labels) < frames:
        for artefact in rng.permutation(NON_INFORMATIVE):  # every artefact once per cycle
            labels += [INFORMATIVE] * int(rng.integers(20, 60))
            labels += [str(artefact)] * int(rng.integers(12, 40))
    return labels[:frames]


class _Renderer:
    def __init__(self, rng: np.random.Generator, size: int) -> None:
        self.rng, self.size = rng, size
        n = 4 * size
        self.n = n
        self.tissue = np.pad(_tissue(rng, n, size), ((0, size), (0, size), (0, 0)), mode="wrap")
        murk = _noise(rng, n, n / 20)
        self.murk = np.pad(murk, ((0, size), (0, size)), mode="wrap")
        yy, xx = np.mgrid[:size, :size].astype(np.float32)
        self.yy, self.xx = yy, xx
        r = np.hypot(yy - size / 2 + 0.5, xx - size / 2 + 0.5) / (size / 2)
        # Circular capsule lens: bright centre, dark rim, black corners.
        self.lens = (np.clip(1.15 - 0.55 * r**2, 0, 1) * (r < 0.98))[..., None].astype(np.float32)
        self.pos = rng.uniform(0, n, 2)
        self.vel = np.zeros(2)
        self.bubble_fields = [self._bubble_field(2 * size) for _ in range(3)]
        self.bubble_layer, self.bubble_pos = 0, None

    def crop(self, pos: np.ndarray, src: np.ndarray | None = None) -> np.ndarray:
        y, x = int(pos[0]) % self.n, int(pos[1]) % self.n
        src = self.tissue if src is None else src
        return src[y: y + self.size, x: x + self.size]

    def step(self, label: str, pause: bool, severity: float = 1.0) -> np.ndarray:
        """Next frame; ``severity`` in (0, 1] scales the artefact (mild ones are the hard cases)."""
        s, rng = self.size, self.rng
        target = rng.normal(0, 0.05 * s, 2)
        self.vel = 0.8 * self.vel + 0.2 * target
        speed = 0.0 if pause else (3.5 if label == "blur" else 1.0)
        self.pos += self.vel * speed + (0 if pause else np.sign(self.vel) * 0.02 * s)
        img = self.crop(self.pos).copy()
        if label == "blur":
            img = self._blur(severity)
        elif label == "bubbles":
            img = self._bubbles(img, severity)
        elif label == "debris":
            img = self._debris(img, severity)
        if label != "bubbles":
            self.bubble_pos = None  # the next bubble run starts a new field
        img = img * self.lens * rng.uniform(0.93, 1.05)
        if label == "dark":
            img = img * (1 - severity * rng.uniform(0.8, 0.95))
        img = img + rng.normal(0, 0.008, img.shape).astype(np.float32)
        return (np.clip(img, 0, 1) * 255).astype(np.uint8)

    def _blur(self, severity: float) -> np.ndarray:
        """Motion blur: average of crops along a long streak in the direction of motion."""
        d = self.vel / (np.linalg.norm(self.vel) + 1e-9) * self.size * self.rng.uniform(0.25, 0.35) * severity
        taps = [self.crop(self.pos + d * t) for t in np.linspace(-0.5, 0.5, 9)]
        return np.mean(taps, axis=0)

    def _bubbles(self, img: np.ndarray, severity: float) -> np.ndarray:
        """A pre-rendered bubble field drifting slowly over the tissue (out = img * mul + add)."""
        if self.bubble_pos is None:
            self.bubble_layer = int(self.rng.integers(len(self.bubble_fields)))
            self.bubble_pos = self.rng.uniform(0, self.size, 2)
        self.bubble_pos = self.bubble_pos + self.rng.normal(0, 0.01 * self.size, 2)
        mul, add = self.bubble_fields[self.bubble_layer]
        y, x = (self.bubble_pos.astype(int) % self.size)
        sl = (slice(y, y + self.size), slice(x, x + self.size))
        return img * (1 - severity) + (img * mul[sl] + add[sl]) * severity

    def _bubble_field(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Random bubbles on an n x n tile (wrap-padded), as an affine map of the tissue."""
        s, rng = self.size, self.rng
        mul = np.full((n, n, 1), 0.85, np.float32)
        add = np.broadcast_to(np.array([0.75, 0.72, 0.55], np.float32) * 0.15, (n, n, 3)).copy()
        for _ in range(int(rng.integers(40, 90))):
            cy, cx = rng.uniform(0, n, 2)
            r = rng.uniform(0.05, 0.2) * s
            half = int(r * 1.3) + 2
            oy, ox = np.arange(int(cy) - half, int(cy) + half), np.arange(int(cx) - half, int(cx) + half)
            box = np.ix_(oy % n, ox % n)  # the bubble's bounding box, wrapping around the tile
            dy, dx = (oy - cy)[:, None], (ox - cx)[None, :]
            d = np.hypot(dy, dx)
            rim = (np.exp(-((d - r) / (0.06 * r + 0.6)) ** 2) * 0.8)[..., None]
            inside = (d < r)[..., None]
            glint = np.exp(-(np.hypot(dy + 0.4 * r, dx + 0.4 * r) / (0.18 * r + 0.5)) ** 2)[..., None]
            m, a = mul[box], add[box]
            mul[box] = np.where(inside, m * 0.9, m) * (1 - rim) * (1 - glint)
            add[box] = (np.where(inside, a * 0.9 + 0.08, a) * (1 - rim) + 0.97 * rim) * (1 - glint) + glint
        pad = ((0, s), (0, s), (0, 0))
        return np.pad(mul, pad, mode="wrap"), np.pad(add, pad, mode="wrap")

    def _debris(self, img: np.ndarray, severity: float) -> np.ndarray:
        alpha = severity * np.clip(0.55 + 0.25 * self.crop(self.pos * 0.7, self.murk), 0.2, 0.9)[..., None]
        turbid = np.array([0.42, 0.45, 0.16], np.float32)
        out = img * (1 - alpha) + turbid * alpha
        specks = self.rng.random((self.size, self.size)) > 1 - 0.015 * severity
        return np.where(specks[..., None], np.array([0.75, 0.7, 0.2], np.float32), out)


def render(frames: int, seed: int = 0, size: int = 128) -> Iterator[tuple[np.ndarray, str]]:
    """Yield (RGB uint8 frame, label) pairs, deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    labels = _segments(rng, frames)
    renderer = _Renderer(rng, size)
    pause_left, severity, previous = 0, 1.0, ""
    for label in labels:
        if label != previous:  # each artefact run has its own strength
            severity, previous = float(rng.uniform(0.3, 1.0)), label
        if pause_left == 0 and label == INFORMATIVE and rng.random() < 0.02:
            pause_left = int(rng.integers(4, 12))  # the capsule rests against the wall
        pause = pause_left > 0
        pause_left = max(0, pause_left - 1)
        yield renderer.step(label, pause, severity), label


def generate(out_dir: Path, frames: int = 1500, seed: int = 0, size: int = 128, fps: int = 5,
             progress: bool = False) -> DemoVideo:
    """Write the H.264 video, ``ground_truth.csv`` and a ``SYNTHETIC.json`` description."""
    if frames < 1 or size < 16 or size % 2 or fps < 1:
        raise ValueError("need frames >= 1, an even size >= 16 and fps >= 1")
    out_dir.mkdir(parents=True, exist_ok=True)
    video, gt = out_dir / VIDEO_NAME, out_dir / GROUND_TRUTH_NAME
    tmp = video.with_suffix(".tmp.mp4")
    labels: list[str] = []
    it = render(frames, seed, size)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, total=frames, unit="frame", desc="synthetic video")
    with av.open(str(tmp), "w") as c:
        c.metadata["title"] = TITLE
        c.metadata["comment"] = f"{SYNTHETIC_MARKER}: generated by lumenal demo-video (seed={seed})"
        s = c.add_stream("libx264", rate=fps)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        s.options = {"crf": "18", "preset": "veryfast"}
        for img, label in it:
            labels.append(label)
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(s.encode())
    tmp.replace(video)
    with open(gt, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["frame_index", "label"])
        w.writerows(enumerate(labels))
    (out_dir / "SYNTHETIC.json").write_text(json.dumps({
        "synthetic": True, "marker": SYNTHETIC_MARKER, "title": TITLE, "frames": frames, "seed": seed,
        "size": size, "fps": fps, "classes": list(CLASSES), "binary": BINARY,
        "counts": dict(Counter(labels)), "video": video.name, "ground_truth": gt.name}, indent=2))
    return DemoVideo(video, gt, labels)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lumenal demo-video", description=__doc__.splitlines()[0])
    p.add_argument("out_dir", type=Path)
    p.add_argument("--frames", type=int, default=1500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=128, help="frame edge in pixels (even)")
    p.add_argument("--fps", type=int, default=5)
    args = p.parse_args(argv)
    start = time.perf_counter()
    try:
        demo = generate(args.out_dir, args.frames, args.seed, args.size, args.fps, progress=sys.stderr.isatty())
    except (ValueError, OSError) as exc:
        print(f"lumenal demo-video: {exc}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{k} {v}" for k, v in sorted(Counter(demo.labels).items()))
    print(f"wrote {demo.video} ({len(demo.labels)} frames, {args.size}px, {time.perf_counter() - start:.1f}s) "
          f"and {demo.ground_truth}\n{SYNTHETIC_MARKER} data - not real endoscopy. classes: {counts}")
    return 0
