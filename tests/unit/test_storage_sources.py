"""Path rules, folder and Kvasir-Capsule layout parsing, ground-truth CSVs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lumenal.core.errors import InvalidArgument, NotFound
from lumenal.storage import sources


def _jpg(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.random.default_rng(seed).random((32, 32, 3)) * 255).astype(np.uint8)).save(path)


def test_resolve_accepts_inside_and_rejects_outside_roots(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "v.mp4").write_bytes(b"x")
    roots = [root.resolve()]
    assert sources.resolve(str(root / "sub" / "v.mp4"), roots) == (root / "sub" / "v.mp4").resolve()
    with pytest.raises(InvalidArgument, match="outside the allowed ingest roots"):
        sources.resolve(str(root / ".." / "elsewhere.mp4"), roots)
    with pytest.raises(InvalidArgument, match="outside"):
        sources.resolve("/etc/passwd", roots)
    (root / "link").symlink_to("/etc")
    with pytest.raises(InvalidArgument, match="outside"):
        sources.resolve(str(root / "link" / "passwd"), roots)
    with pytest.raises(NotFound):
        sources.resolve(str(root / "missing.mp4"), roots)
    with pytest.raises(InvalidArgument, match="absolute"):
        sources.resolve("relative/v.mp4", roots)
    with pytest.raises(InvalidArgument, match="required"):
        sources.resolve("", roots)


def test_kvasir_tree_keeps_class_folders_as_ground_truth(tmp_path):
    root = tmp_path / "kvasir"
    _jpg(root / "labelled_images" / "Ulcer" / "b.jpg", 1)
    _jpg(root / "labelled_images" / "Ulcer" / "a.jpg", 2)
    _jpg(root / "labelled_images" / "Normal clean mucosa" / "c.jpg", 3)
    _jpg(root / "labelled_images" / "stray.jpg", 4)  # not in a class folder: no label, ignored
    (root / "metadata.csv").write_text(
        "filename;video_id;frame_number;finding_category;finding_class;x1;y1\n"
        "a.jpg;04a78ef00c5245e0;1234;Lumen;Ulcer;;\n")
    assert sources.is_kvasir(root)
    s = sources.image_set(root, [tmp_path.resolve()])
    assert s.kind == "kvasir"
    assert [(i.path.name, i.ground_truth) for i in s.items] == [
        ("c.jpg", "Normal clean mucosa"), ("a.jpg", "Ulcer"), ("b.jpg", "Ulcer")]
    assert s.items[1].source == "labelled_images/Ulcer/a.jpg (video 04a78ef00c5245e0, frame 1234)"
    assert sources.image_set_sha256(s) == sources.image_set_sha256(sources.image_set(root, [tmp_path.resolve()]))


def test_kvasir_metadata_with_commas_and_without_filename_column(tmp_path):
    (tmp_path / "m.csv").write_text("filename,video_id,frame_number\nx.jpg,v,3\n")
    assert sources.read_kvasir_metadata(tmp_path / "m.csv")["x.jpg"]["frame_number"] == "3"
    (tmp_path / "bad.csv").write_text("name;class\nx.jpg;Ulcer\n")
    with pytest.raises(InvalidArgument, match="filename"):
        sources.read_kvasir_metadata(tmp_path / "bad.csv")


def test_plain_folder_is_sorted_recursively_and_must_hold_images(tmp_path):
    _jpg(tmp_path / "f" / "b" / "2.png")
    _jpg(tmp_path / "f" / "a.jpg")
    (tmp_path / "f" / "notes.txt").write_text("ignored")
    s = sources.image_set(tmp_path / "f", [tmp_path.resolve()])
    assert s.kind == "images" and [i.source for i in s.items] == ["a.jpg", "b/2.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidArgument, match="no images"):
        sources.image_set(tmp_path / "empty", [tmp_path.resolve()])


def test_symlinked_image_leaving_the_roots_is_skipped(tmp_path):
    outside = tmp_path / "outside.jpg"
    _jpg(outside)
    root = tmp_path / "root"
    _jpg(root / "in.jpg")
    (root / "out.jpg").symlink_to(outside)
    s = sources.image_set(root, [root.resolve()])
    assert [i.source for i in s.items] == ["in.jpg"] and "out.jpg" in s.outside[0]


def test_ground_truth_csv():
    assert sources.parse_ground_truth(b"frame_index,label\n0,informative\n2,dark\n") == {0: "informative", 2: "dark"}
    assert sources.parse_ground_truth(b"5,blur\r\n\r\n") == {5: "blur"}
    for bad, why in [(b"0,a\n0,b\n", "twice"), (b"x,a\n1\n", "expected"), (b"0,a\n-1,b\n", "non-negative"),
                     (b"0,\n", "empty label"), (b"", "no rows"), (b"\xff\xfe\x00", "UTF-8")]:
        with pytest.raises(InvalidArgument, match=why):
            sources.parse_ground_truth(bad)
