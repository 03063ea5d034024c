"""toy.py: a deterministic, class-compositional 32 px world written as image folders."""
import os

import numpy as np
import pytest
from PIL import Image

from worlds import toy
import utils


def test_there_are_16_classes_12_old_and_4_new():
    assert len(toy.ALL_CLASSES) == 16
    assert len(toy.OLD_CLASSES) == 12 and len(toy.NEW_CLASSES) == 4
    assert sorted(toy.OLD_CLASSES + toy.NEW_CLASSES) == toy.ALL_CLASSES
    assert toy.ALL_CLASSES == sorted(toy.ALL_CLASSES)  # list order = folder order


def test_every_new_class_recombines_a_shape_and_a_colour_that_old_classes_show():
    old = [toy.parse_class(name) for name in toy.OLD_CLASSES]
    for name in toy.NEW_CLASSES:
        shape, colour = toy.parse_class(name)
        assert sum(s == shape for s, _ in old) == 3
        assert sum(c == colour for _, c in old) == 3


def test_new_classes_hold_out_one_colour_per_shape_and_one_shape_per_colour():
    parts = [toy.parse_class(name) for name in toy.NEW_CLASSES]
    assert sorted(shape for shape, _ in parts) == sorted(toy.SHAPES)
    assert sorted(colour for _, colour in parts) == sorted(toy.COLOURS)


def test_render_image_is_a_32px_rgb_image():
    image = toy.render_image("cross", "yellow", np.random.default_rng(0))
    assert image.mode == "RGB" and image.size == (32, 32)


def test_same_seed_same_images_other_seed_other_images():
    a, labels_a = toy.render_dataset(["red_circle", "blue_cross"], 5, seed=3)
    b, labels_b = toy.render_dataset(["red_circle", "blue_cross"], 5, seed=3)
    c, _ = toy.render_dataset(["red_circle", "blue_cross"], 5, seed=4)
    assert a.shape == (10, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and np.array_equal(labels_a, labels_b)
    assert not np.array_equal(a, c)
    assert labels_a.tolist() == [0] * 5 + [1] * 5


def test_a_class_looks_the_same_whichever_other_classes_are_rendered():
    alone, _ = toy.render_dataset(["green_square"], 4, seed=0)
    together, _ = toy.render_dataset(["red_circle", "green_square"], 4, seed=0)
    assert np.array_equal(alone, together[4:])


def test_the_shape_takes_the_class_colour():
    red, _ = toy.render_dataset(["red_square"], 20, seed=0)
    blue, _ = toy.render_dataset(["blue_square"], 20, seed=0)
    # Same seed, same layout and background: only the paint differs.
    assert red[..., 0].mean() > blue[..., 0].mean()
    assert blue[..., 2].mean() > red[..., 2].mean()


def test_write_image_folder_writes_one_png_folder_per_class(tmp_path):
    root = tmp_path / "toy"
    toy.write_image_folder(str(root), ["red_circle", "green_square"], 3, seed=0)
    assert sorted(os.listdir(root)) == ["green_square", "red_circle"]
    assert sorted(os.listdir(root / "red_circle")) == ["00000.png", "00001.png", "00002.png"]
    written = np.asarray(Image.open(root / "red_circle" / "00001.png"))
    rendered, _ = toy.render_dataset(["red_circle"], 3, seed=0)
    assert np.array_equal(written, rendered[1])  # PNG is lossless
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".tmp")]


def test_write_image_folder_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(utils.UsageError, match="not empty"):
        toy.write_image_folder(str(tmp_path), ["red_circle"], 1, seed=0)
    assert os.listdir(tmp_path) == ["mine.txt"]


def test_overwrite_replaces_an_earlier_toy_folder(tmp_path):
    root = str(tmp_path / "toy")
    toy.write_image_folder(root, ["red_circle", "blue_cross"], 3, seed=0)
    toy.write_image_folder(root, ["red_circle"], 2, seed=1, overwrite=True)
    assert os.listdir(root) == ["red_circle"]
    assert len(os.listdir(os.path.join(root, "red_circle"))) == 2


def test_overwrite_never_deletes_folders_that_are_not_toy_data(tmp_path):
    (tmp_path / "vacation_photos").mkdir()
    with pytest.raises(utils.UsageError, match="not toy classes"):
        toy.write_image_folder(str(tmp_path), ["red_circle"], 1, seed=0, overwrite=True)
    assert os.listdir(tmp_path) == ["vacation_photos"]


def test_cli_writes_source_with_old_and_target_with_new_classes(tmp_path, monkeypatch):
    argv = ["data", "--base_dir", str(tmp_path), "--source_images_per_class", "2",
            "--target_images_per_class", "1"]
    toy.main(argv)
    assert sorted(os.listdir(tmp_path / "data" / "toy_source")) == toy.OLD_CLASSES
    assert sorted(os.listdir(tmp_path / "data" / "toy")) == toy.NEW_CLASSES
    assert len(os.listdir(tmp_path / "data" / "toy" / "red_circle")) == 1
    with pytest.raises(utils.UsageError, match="not empty"):
        toy.main(argv)  # a second run does not touch the first one's data
