"""Perceptual hashing, sampling and de-duplication (no S3, no Kafka)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from lumenal.core.errors import InvalidArgument
from lumenal.storage import keys, media


def _texture(seed: int, n: int = 96) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((n, n)) * 255).astype(np.uint8)


def test_dhash_is_stable_under_noise_and_separates_different_images():
    a = _texture(1)
    noisy = np.clip(a + np.random.default_rng(2).normal(0, 3, a.shape), 0, 255)
    assert media.dhash(a) == media.dhash(a.copy())
    assert media.hamming(media.dhash(a), media.dhash(noisy)) <= 4
    assert media.hamming(media.dhash(a), media.dhash(_texture(3))) > 16
    assert len(media.hash_hex(media.dhash(a))) == 16


def test_dhash_ignores_the_border():
    """Capsule frames share a dark rim and corner overlays; only the centre counts."""
    a = _texture(4)
    b = a.copy()
    b[:8, :] = 0
    b[:, :8] = 255
    assert media.dhash(a) == media.dhash(b)


def test_dhash_of_tiny_images():
    assert media.dhash(np.arange(12, dtype=np.uint8).reshape(3, 4)) >= 0


def test_sampler_keeps_one_frame_per_slot():
    ts = [i / 30 for i in range(300)]  # 10 s at 30 fps
    s = media.Sampler(5)
    kept = [i for i, t in enumerate(ts) if s.take(t)]
    assert len(kept) == 50 and kept[:3] == [0, 6, 12]
    everything = media.Sampler(-1)
    assert all(everything.take(t) for t in ts)
    faster_than_source = media.Sampler(100)
    assert all(faster_than_source.take(t) for t in ts)


def test_deduper_compares_with_the_last_kept_frame():
    d = media.Deduper(2)
    assert [d.duplicate(h) for h in (0b0, 0b1, 0b11, 0b111, 0b1111)] == [False, True, True, False, True]
    exact = media.Deduper(0)
    assert [exact.duplicate(h) for h in (5, 5, 6)] == [False, True, False]
    off = media.Deduper(-2)
    assert not any(off.duplicate(h) for h in (1, 1, 1))


def _write_video(path: Path, frames: list[np.ndarray], fps: int = 10) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())


def test_iter_video_samples_dedups_and_carries_ground_truth(tmp_path):
    rng = np.random.default_rng(0)
    distinct = [(rng.random((64, 64, 3)) * 255).astype(np.uint8) for _ in range(10)]
    frames = [f for f in distinct for _ in range(3)]  # each scene held for 3 frames
    path = tmp_path / "v.mp4"
    _write_video(path, frames, fps=10)
    counts = media.Counts()
    kept = list(media.iter_video(path, -1, 4, counts, {0: "a", 3: "b"}))
    assert counts.decoded == 30
    assert [k.index for k in kept] == list(range(0, 30, 3))
    assert counts.duplicates == 20
    assert kept[0].ground_truth == "a" and kept[1].ground_truth == "b" and kept[2].ground_truth == ""
    assert kept[1].time_s == pytest.approx(0.3)
    counts = media.Counts()
    sampled = list(media.iter_video(path, 2, -2, counts))
    assert [k.index for k in sampled] == [0, 5, 10, 15, 20, 25] and counts.unsampled == 24


def test_probe_rejects_non_videos_and_truncated_files(tmp_path):
    rng = np.random.default_rng(1)
    good = tmp_path / "good.avi"
    with av.open(str(good), "w") as c:  # AVI declares its frame count in the header
        s = c.add_stream("mpeg4", rate=10)
        s.width = s.height = 64
        s.pix_fmt = "yuv420p"
        for _ in range(40):
            c.mux(s.encode(av.VideoFrame.from_ndarray((rng.random((64, 64, 3)) * 255).astype(np.uint8))))
        c.mux(s.encode())
    assert media.probe_video(good).packets == 40
    data = good.read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.avi").write_text("not a video\n" * 50)
    (tmp_path / "empty.avi").write_bytes(b"")
    for name in ("cut.avi", "text.avi", "empty.avi"):
        with pytest.raises(InvalidArgument) as e:
            media.probe_video(tmp_path / name)
        assert name in str(e.value)


def test_read_image_rejects_corrupt_bytes():
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    Image.fromarray(_texture(5)).save(buf, "JPEG")
    im, fmt = media.read_image(buf.getvalue())
    assert fmt == "JPEG" and im.mode == "RGB"
    with pytest.raises(ValueError):
        media.read_image(buf.getvalue()[: len(buf.getvalue()) // 3])
    with pytest.raises(ValueError):
        media.read_image(b"GIF89a broken")


@pytest.mark.parametrize("bad", ["", "a/b", "../x", "a..b", ".hidden", "x" * 65, "a:b", "a b"])
def test_video_ids_cannot_escape_their_prefix(bad):
    with pytest.raises(InvalidArgument):
        keys.check_video_id(bad)


@pytest.mark.parametrize("bad", ["", "v1", "v1:12", "v1:abc", "../../etc:000001", "v1:000001/../x", ":000001"])
def test_malformed_frame_ids_are_rejected(bad):
    with pytest.raises(InvalidArgument):
        keys.parse_frame_id(bad)


def test_frame_ids_and_keys():
    assert keys.frame_id("vid-1", 7) == "vid-1:000007"
    assert keys.parse_frame_id("vid-1:000007") == ("vid-1", 7)
    assert keys.frame_key("vid-1", 7) == "videos/vid-1/frames/000007"
    assert keys.content_video_id("ab" * 32) == "v" + "ab" * 8


def _yuv_frame(rgb: np.ndarray, colorspace: int | None = None) -> av.VideoFrame:
    """A limited-range 4:2:0 frame as a decoder returns it."""
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    if colorspace is not None:
        frame.colorspace = colorspace
    return frame


def _kept(frame: av.VideoFrame) -> media.KeptFrame:
    return media.KeptFrame(0, 0.0, 0, frame.width, frame.height, frame=frame)


def test_jpeg_from_yuv_planes_keeps_colours_and_full_range():
    """The direct 4:2:0 -> JPEG path must look like the RGB path: blacks stay black, whites
    white (range stretch), and colours match within JPEG noise."""
    rgb = np.zeros((64, 96, 3), np.uint8)
    rgb[:, 32:64] = (200, 60, 40)     # tissue red
    rgb[:, 64:] = 255
    data, ctype = media.encode_kept(_kept(_yuv_frame(rgb)), "jpeg", 92)
    assert ctype == "image/jpeg" and data[:2] == b"\xff\xd8"
    out = np.asarray(media.read_image(data)[0]).astype(int)
    assert out.shape == rgb.shape
    assert np.abs(out[8:-8, 4:28]).max() <= 6                     # black, not grey (16)
    assert np.abs(out[8:-8, 70:] - 255).max() <= 6                # white
    assert np.abs(out[8:-8, 40:56] - (200, 60, 40)).mean() <= 6   # colour


def test_bt709_frames_take_the_rgb_path():
    frame = _yuv_frame(np.full((32, 32, 3), 128, np.uint8), colorspace=1)  # BT.709
    assert not media.jpeg_direct(frame)
    assert media.jpeg_direct(_yuv_frame(np.full((32, 32, 3), 128, np.uint8)))
    data, _ = media.encode_kept(_kept(frame), "jpeg", 92)
    assert np.abs(np.asarray(media.read_image(data)[0]).astype(int) - 128).max() <= 6
