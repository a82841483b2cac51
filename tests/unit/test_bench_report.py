"""bench al pieces that need no TensorFlow: data loaders, recipe helpers, the report maths."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from lumenal.bench import cli, data, report
from lumenal.bench.al import MODAL, Config, Round, RunResult
from lumenal.bench.recipe import augment, class_weights


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_read_idx_round_trip_and_rejects_garbage(tmp_path: Path) -> None:
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a.gz", arr)
    assert np.array_equal(data.read_idx(tmp_path / "a.gz"), arr)
    (tmp_path / "b").write_bytes(b"not an idx file")
    with pytest.raises(data.DatasetError, match="IDX"):
        data.read_idx(tmp_path / "b")
    (tmp_path / "c").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\x01\x02")
    with pytest.raises(data.DatasetError, match="expected 10 bytes"):
        data.read_idx(tmp_path / "c")


def test_fashion_mnist_layout_and_missing_hint(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (6, 28, 28)))
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(6) % 10)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (4, 28, 28)))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(4))
    ds = data.load_fashion_mnist(tmp_path)
    assert ds.x_pool.shape == (6, 28, 28, 1) and ds.x_pool.dtype == np.float32
    assert ds.x_pool.min() >= 0.0 and ds.x_pool.max() <= 1.0
    assert list(ds.y_test) == [0, 1, 2, 3] and len(ds.class_names) == 10
    with pytest.raises(data.DatasetError, match="apt-get install -y dataset-fashion-mnist"):
        data.load_fashion_mnist(tmp_path / "nowhere")


def test_image_folder_split_is_stratified_and_fixed(tmp_path: Path) -> None:
    from lumenal.ml.images import encode_png

    for c, n in (("cat", 10), ("dog", 5)):
        (tmp_path / c).mkdir()
        for i in range(n):
            (tmp_path / c / f"{i}.png").write_bytes(encode_png(np.full((8, 8, 3), i / n, np.float32)))
    (tmp_path / "dog" / "notes.txt").write_text("ignored")
    a = data.load_image_folder(tmp_path, size=16, channels=3, test_fraction=0.2, seed=3)
    b = data.load_image_folder(tmp_path, size=16, channels=3, test_fraction=0.2, seed=3)
    assert a.class_names == ("cat", "dog")
    assert a.x_pool.shape[1:] == (16, 16, 3)
    assert np.bincount(a.y_test).tolist() == [2, 1]
    assert len(a.y_pool) == 12 and np.array_equal(a.x_test, b.x_test)
    (tmp_path / "cat" / "broken.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(data.DatasetError, match="broken.png"):
        data.load_image_folder(tmp_path, size=16)
    with pytest.raises(data.DatasetError, match="two classes"):
        data.load_image_folder(tmp_path / "dog", size=16)


def test_augment_keeps_shape_and_mass_and_class_weights() -> None:
    rng = np.random.default_rng(0)
    x = np.zeros((50, 10, 10, 1), np.float32)
    x[:, 4:6, 4:6] = 1.0  # a centred blob survives any shift of <= 2 px
    out = augment(x, rng, shift=2, flip=True)
    assert out.shape == x.shape and np.allclose(out.sum(axis=(1, 2, 3)), 4.0)
    assert not np.array_equal(out, x)
    w = class_weights(np.array([0, 0, 0, 1]), 3)
    assert w[0] == pytest.approx(4 / 6) and w[1] == pytest.approx(2.0) and w[2] == 1.0


def _run(name: str, seed: int, accs: list[float], start: int = 100, step: int = 100) -> RunResult:
    return RunResult(name, seed, [Round(start + i * step, a, a - 0.01, 1.0, 0.5, 0.2)
                                  for i, a in enumerate(accs)])


CFG = Config(strategies=("random", "margin", MODAL), seeds=(0, 1), budget=500,
             checkpoints=(300, 500), thresholds=(0.80, 0.85))


def test_summary_definitions_exact_ratio() -> None:
    results = [
        _run("random", 0, [0.5, 0.6, 0.7, 0.75, 0.8, 0.82, 0.84, 0.86]),  # extends past budget to 800
        _run("random", 1, [0.5, 0.6, 0.7, 0.78, 0.81, 0.83, 0.85]),
        _run("margin", 0, [0.5, 0.7, 0.81, 0.86, 0.87]),
        _run("margin", 1, [0.5, 0.72, 0.83, 0.85, 0.88]),
        _run(MODAL, 0, [0.5, 0.65, 0.8, 0.84, 0.86]),
        _run(MODAL, 1, [0.5, 0.66, 0.8, 0.84, 0.86]),
    ]
    s = report.summarize(results, CFG)
    per, comp = s["strategies"], s["comparison"]
    assert per["random"]["labels_to"]["0.85"] == {"per_seed": [800, 700], "reached": 2, "of": 2,
                                                   "mean": 750.0, "lower_bound": None}
    assert per["margin"]["labels_to"]["0.85"]["mean"] == 400.0
    assert per["margin"]["at_labels"]["300"]["accuracy"]["mean"] == pytest.approx(0.82)
    # area over [100, 500] only, even though random ran further
    assert per["margin"]["auc"]["mean"] == pytest.approx(np.mean([
        np.trapezoid([0.5, 0.7, 0.81, 0.86, 0.87], dx=100) / 400,
        np.trapezoid([0.5, 0.72, 0.83, 0.85, 0.88], dx=100) / 400]))
    assert comp["best_lumenal"] == "margin"
    assert comp["label_ratio"]["0.85"] == {"ratio": 400 / 750, "kind": "exact", "best_labels": 400.0,
                                           "random_labels": 750.0}
    assert comp["target_label_ratio_le_0_6"] is True
    assert comp["target_auc_beats_modal"] is True
    text = report.table(s, CFG)
    assert "margin" in text and "400" in text and "0.53 (exact)" in text
    json.dumps(s, allow_nan=False)


def test_summary_upper_bound_when_random_never_reaches() -> None:
    results = [_run("random", 0, [0.5, 0.6, 0.7, 0.75, 0.8, 0.82]),
               _run("margin", 0, [0.5, 0.7, 0.81, 0.86, 0.87])]
    cfg = Config(strategies=("random", "margin"), seeds=(0,), budget=500, checkpoints=(300,))
    comp = report.summarize(results, cfg)["comparison"]
    assert comp["label_ratio"]["0.85"] == {"ratio": 400 / 600, "kind": "upper_bound", "best_labels": 400.0,
                                           "random_labels_lower_bound": 600}
    assert comp["label_ratio"]["0.80"]["kind"] == "exact"
    assert "target_auc_beats_modal" not in comp


def test_summary_lower_bound_when_only_random_reaches() -> None:
    results = [_run("random", 0, [0.5, 0.6, 0.7, 0.8, 0.84, 0.86]),
               _run("margin", 0, [0.5, 0.7, 0.81, 0.82, 0.84])]
    cfg = Config(strategies=("random", "margin"), seeds=(0,), budget=500, checkpoints=(300,))
    s = report.summarize(results, cfg)
    r = s["comparison"]["label_ratio"]["0.85"]
    assert r["kind"] == "lower_bound" and r["ratio"] == pytest.approx(500 / 600)
    assert s["comparison"]["target_label_ratio_le_0_6"] is False
    assert ">0.83 (lower_bound)" in report.table(s, cfg)


def test_plot_writes_png(tmp_path: Path) -> None:
    results = [_run(n, s, [0.5, 0.6, 0.7, 0.8, 0.86]) for n in CFG.strategies for s in CFG.seeds]
    report.plot(report.summarize(results, CFG), CFG, tmp_path / "img" / "c.png", "t")
    assert (tmp_path / "img" / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_rejects_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["al", "--strategies", "random,nonsense"]) == 2
    assert "unknown strategy 'nonsense'" in capsys.readouterr().err
    assert cli.main(["al", "--dataset", str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert cli.main(["al", "--budget", "50"]) == 2
    assert cli.main(["nope"]) == 2


def _doc(cfg: Config, runs: list[RunResult]) -> dict[str, object]:
    return {"benchmark": "al", "argv": ["lumenal", "bench", "al"], "dataset": {"name": "toy"},
            "machine": {"cpus": 2}, "started": 0.0, "elapsed_s": 10.0, "config": cfg.to_dict(),
            "runs": report.raw(runs)}


def test_merge_combines_runs_of_the_same_configuration(tmp_path: Path) -> None:
    a = Config(strategies=("random", "margin"), seeds=(0,), budget=500, checkpoints=(300, 500))
    b = Config(strategies=(MODAL,), seeds=(0,), budget=500, checkpoints=(300, 500))
    (tmp_path / "a.json").write_text(json.dumps(_doc(a, [_run("random", 0, [0.5, 0.7, 0.8, 0.84, 0.86]),
                                                         _run("margin", 0, [0.5, 0.8, 0.86, 0.87, 0.88])])))
    (tmp_path / "b.json").write_text(json.dumps(_doc(b, [_run(MODAL, 0, [0.5, 0.75, 0.85, 0.86, 0.87])])))
    out = tmp_path / "m.json"
    assert cli.main(["al", "--merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                     "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert list(doc["strategies"]) == ["random", "margin", MODAL]
    assert doc["comparison"]["target_auc_beats_modal"] is True and doc["elapsed_s"] == 20.0
    assert cli.main(["al", "--merge", str(tmp_path / "a.json"), str(tmp_path / "a.json")]) == 2
    c = Config(strategies=(MODAL,), seeds=(0,), budget=900)
    (tmp_path / "c.json").write_text(json.dumps(_doc(c, [])))
    assert cli.main(["al", "--merge", str(tmp_path / "a.json"), str(tmp_path / "c.json")]) == 2


def test_default_strategies_all_and_run_time() -> None:
    from lumenal.bench.al import DEFAULT_STRATEGIES
    from lumenal.ml import strategies

    cfg, _, _ = cli.config_from_args(cli.al_parser().parse_args([]))
    assert cfg.strategies == DEFAULT_STRATEGIES and cfg.seeds == (0, 1, 2)
    cfg, _, _ = cli.config_from_args(cli.al_parser().parse_args(["--strategies", "all"]))
    assert cfg.strategies == (*strategies.names(), MODAL)
    t = cli.run_time([_run("random", 0, [0.5, 0.6])], 10.0, 15.0, [1.0, 3.0])
    assert t["rounds"] == 2 and t["wall_s_per_round"] == 5.0 and t["cpu_s_per_round"] == 7.5
    assert t["load_1min"] == {"start": 1.0, "end": 3.0, "mean": 2.0, "max": 3.0}
    assert "5.0 s wall / 7.5 s CPU per round" in cli.describe_run_time(t)
