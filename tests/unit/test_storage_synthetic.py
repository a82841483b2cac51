"""The SYNTHETIC demo video: labels, determinism, file format, and that the classes are learnable."""

from __future__ import annotations

import csv

import av
import numpy as np

from lumenal.demo import synthetic as sy


def test_class_set_is_exposed():
    assert sy.CLASSES[0] == "informative" and set(sy.NON_INFORMATIVE) == {"bubbles", "blur", "dark", "debris"}
    assert set(sy.BINARY.values()) == {"informative", "non_informative"}


def test_render_is_deterministic_and_covers_every_class():
    a = list(sy.render(400, seed=3, size=64))
    b = list(sy.render(400, seed=3, size=64))
    assert all(np.array_equal(x, y) and la == lb for (x, la), (y, lb) in zip(a, b, strict=True))
    labels = [lab for _, lab in a]
    assert set(labels) == set(sy.CLASSES)
    assert a[0][0].shape == (64, 64, 3) and a[0][0].dtype == np.uint8
    c = list(sy.render(50, seed=4, size=64))
    assert not np.array_equal(a[0][0], c[0][0])


def test_generate_writes_a_marked_video_and_ground_truth(tmp_path):
    demo = sy.generate(tmp_path, frames=120, seed=1, size=64, fps=5)
    with av.open(str(demo.video)) as c:
        assert "SYNTHETIC" in c.metadata.get("title", "")
        s = c.streams.video[0]
        assert (s.codec_context.name, s.width, s.height) == ("h264", 64, 64)
        assert sum(1 for _ in c.decode(s)) == 120
    with open(demo.ground_truth) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["frame_index", "label"] and len(rows) == 121
    assert [r[1] for r in rows[1:]] == demo.labels
    assert "SYNTHETIC" in (tmp_path / "SYNTHETIC.json").read_text()


def test_cli_rejects_odd_sizes(tmp_path, capsys):
    assert sy.main([str(tmp_path), "--size", "63"]) == 2
    assert "even size" in capsys.readouterr().err


def _features(f: np.ndarray) -> np.ndarray:
    c = f[16:48, 16:48].astype(np.float32) / 255
    grey = c.mean(2)
    sharpness = np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean()
    return np.concatenate([c.mean((0, 1)), c.std((0, 1)), [sharpness, (grey > 0.85).mean()]])


def test_classes_are_learnable():
    """Colour, contrast and sharpness of the frame centre separate the classes, so a small CNN
    (which learns such filters first) can learn them from labels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frames = list(sy.render(900, seed=7, size=64))
    x = np.stack([_features(f) for f, _ in frames])
    y = np.array([lab for _, lab in frames])
    # Split by time (runs are contiguous) so test frames are not neighbours of training frames.
    cut = int(len(y) * 0.6)
    assert set(y[:cut]) == set(y[cut:]) == set(sy.CLASSES)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x[:cut], y[:cut])
    acc = (clf.predict(x[cut:]) == y[cut:]).mean()
    majority = max((y[cut:] == c).mean() for c in sy.CLASSES)
    assert acc > 0.9 and acc > majority + 0.3, (acc, majority)
