"""datasets.py: image folders (or their HDF5 cache) -> batches, with BigGAN-PyTorch's sampling."""
import json
import os
import re

import numpy as np
import pytest
import torch
from PIL import Image

import datasets
import make_hdf5
from worlds import toy
import utils

CLASSES = ["red_circle", "blue_cross", "green_square"]  # written unsorted on purpose


@pytest.fixture
def data_root(tmp_path):
    """data_root with Toy32 = 3 classes x 4 images."""
    root = tmp_path / "data"
    toy.write_image_folder(str(root / "toy"), CLASSES, 4, seed=0)
    return str(root)


def batches(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


# ----------------------------------------------------------------------------------------------
# Classes, images, batches

def test_labels_follow_sorted_class_folders_and_are_printed(data_root, capsys):
    loader, = datasets.get_data_loaders("Toy32", data_root, batch_size=4)
    assert loader.dataset.classes == ["blue_cross", "green_square", "red_circle"]
    assert "0 blue_cross, 1 green_square, 2 red_circle" in capsys.readouterr().out
    assert datasets.class_names("Toy32", data_root) == loader.dataset.classes


def test_batches_are_float_images_in_minus_one_one_and_int64_labels(data_root):
    loader, = datasets.get_data_loaders("Toy32", data_root, batch_size=4, shuffle=True)
    x, y = next(iter(loader))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32
    assert y.shape == (4,) and y.dtype == torch.int64
    assert x.min() >= -1 and x.max() <= 1 and x.min() < -0.5 and x.max() > 0.5


def test_unshuffled_loader_walks_the_classes_in_label_order(data_root):
    loader, = datasets.get_data_loaders("Toy32", data_root, batch_size=4)
    assert [y.tolist() for _, y in loader] == [[0] * 4, [1] * 4, [2] * 4]


def test_images_are_center_cropped_on_the_long_edge_then_resized(tmp_path):
    # 64 x 32: red | green | blue bands of 16, 32 and 16 columns; the centre square is all green.
    bands = np.zeros((32, 64, 3), np.uint8)
    bands[:, :16, 0] = bands[:, 16:48, 1] = bands[:, 48:, 2] = 255
    (tmp_path / "ImageNet" / "green").mkdir(parents=True)
    Image.fromarray(bands).save(tmp_path / "ImageNet" / "green" / "a.png")
    loader, = datasets.get_data_loaders("I32", str(tmp_path), batch_size=1)
    x, _ = next(iter(loader))
    assert x.shape == (1, 3, 32, 32)
    assert torch.equal(x[0, 1], torch.ones(32, 32)) and x[0, [0, 2]].max() == -1


def test_augment_only_mirrors_images(data_root):
    plain = datasets.load_dataset("Toy32", data_root)
    augmented = datasets.load_dataset("Toy32", data_root, augment=True)
    torch.manual_seed(0)
    mirrored = []
    for i in range(len(plain)):
        x, original = augmented[i][0], plain[i][0]
        assert torch.equal(x, original) or torch.equal(x, original.flip(-1))
        mirrored.append(not torch.equal(x, original))
    assert any(mirrored) and not all(mirrored)


def test_non_image_and_hidden_files_are_ignored(data_root):
    (open(os.path.join(data_root, "toy", "red_circle", "notes.txt"), "w")).close()
    (open(os.path.join(data_root, "toy", "red_circle", ".DS_Store"), "w")).close()
    assert len(datasets.load_dataset("Toy32", data_root)) == 12


def test_unknown_keyword_arguments_are_ignored(data_root):
    loader, = datasets.get_data_loaders("Toy32", data_root, batch_size=4, G_lr=1e-4, parallel=True)
    assert len(loader) == 3


# ----------------------------------------------------------------------------------------------
# Datasets named by their folder

def write_folder(root, classes, size=20, dataset_json=None):
    """root/<class>/0.png, 1.png: size x size grey images; dataset_json written when given."""
    for name in classes:
        os.makedirs(os.path.join(root, name))
        for i in range(2):
            Image.fromarray(np.full((size, size), 40 * i, np.uint8)).save(
                os.path.join(root, name, f"{i}.png"))
    if dataset_json is not None:
        with open(os.path.join(root, "dataset.json"), "w") as f:
            json.dump(dataset_json, f)


def test_a_prepared_folder_loads_by_name_at_the_resolution_of_its_dataset_json(tmp_path):
    write_folder(str(tmp_path / "fmnist_new"), ["T-shirt_top", "Coat"], dataset_json={
        "format": 1, "resolution": 64, "class_names": ["Coat", "T-shirt/top"],
        "folders": ["Coat", "T-shirt_top"]})
    assert datasets.dataset_spec("fmnist_new", str(tmp_path)) == ("fmnist_new", 64)
    loader, = datasets.get_data_loaders("fmnist_new", str(tmp_path), batch_size=4)
    x, y = next(iter(loader))
    assert x.shape == (4, 3, 64, 64) and y.tolist() == [0, 0, 1, 1]
    assert loader.dataset.classes == ["Coat", "T-shirt_top"]  # dataset.json is no class
    assert datasets.class_display_names("fmnist_new", str(tmp_path)) == ["Coat", "T-shirt/top"]
    with pytest.raises(utils.UsageError, match="--resolution 32, but .*fmnist_new holds 64 px"):
        datasets.dataset_spec("fmnist_new", str(tmp_path), resolution=32)
    (tmp_path / "fmnist_new" / "dataset.json").write_text('{"format": 1}')
    no_resolution = r"dataset\.json is damaged: it has no resolution.*prepare_dataset\.py"
    with pytest.raises(utils.UsageError, match=no_resolution):
        datasets.dataset_spec("fmnist_new", str(tmp_path))


@pytest.mark.parametrize("change,named", [
    ({"resolution": "32"}, 'resolution must be an integer, got "32"'),
    ({"class_names": 5}, "class_names must be a list of strings, got 5"),
    ({"folders": ["Coat", 3]}, "folders must be a list of strings"),
    ({"reference": ["x"]}, "reference must be a string"),
])
def test_a_dataset_json_of_wrong_types_is_one_line_naming_the_file_and_the_key(tmp_path, change,
                                                                               named):
    info = {"format": 1, "resolution": 32, "class_names": ["Coat", "T-shirt/top"],
            "folders": ["Coat", "T-shirt_top"]}
    write_folder(str(tmp_path / "fmnist_new"), ["T-shirt_top", "Coat"],
                 dataset_json={**info, **change})
    damaged = re.escape(f"fmnist_new/dataset.json is damaged: {named}")
    for read in (datasets.dataset_spec, datasets.class_display_names,
                 datasets.reference_dataset_name):
        with pytest.raises(utils.UsageError, match=damaged):
            read("fmnist_new", str(tmp_path))


@pytest.mark.parametrize("key,value,outside", [
    ("reference", "../../../etc", "the data root"), ("reference", "../outside", "the data root"),
    ("reference", "/etc", "the data root"),
    ("folders", ["Coat", "../../elsewhere"], "the dataset folder"),
])
def test_a_folder_a_dataset_json_names_outside_the_data_root_is_refused(tmp_path, key, value,
                                                                        outside):
    data_root = tmp_path / "data"
    # a dataset outside the data root, which such a name reached
    write_folder(str(tmp_path / "outside"), ["Coat"], dataset_json={"resolution": 32})
    info = {"resolution": 32, "folders": ["Coat"], "reference": "mine_reference", key: value}
    write_folder(str(data_root / "mine"), ["Coat"], dataset_json=info)
    root = str(data_root / "mine") if key == "folders" else str(data_root)
    shown = value[-1] if isinstance(value, list) else value
    refused = re.escape(f"{key} {shown!r} points outside {outside} {root}")
    with pytest.raises(utils.UsageError, match=refused):
        datasets.reference_dataset_name("mine", str(data_root))


def test_a_folder_without_dataset_json_needs_resolution(tmp_path):
    write_folder(str(tmp_path / "mine"), ["a", "b"])
    with pytest.raises(utils.UsageError, match=r"mine has no dataset\.json.*give --resolution"):
        datasets.get_data_loaders("mine", str(tmp_path), batch_size=2)
    loader, = datasets.get_data_loaders("mine", str(tmp_path), batch_size=2, resolution=32)
    assert next(iter(loader))[0].shape == (2, 3, 32, 32)
    assert datasets.class_display_names("mine", str(tmp_path)) == ["a", "b"]


def test_a_table_name_wins_over_a_folder_and_keeps_its_display_names(data_root):
    assert datasets.dataset_spec("Toy32", data_root) == ("toy", 32)
    assert datasets.class_display_names("Toy32", data_root) == sorted(CLASSES)


def test_an_unknown_name_lists_the_table_names_and_the_folders_holding_images(data_root):
    os.makedirs(os.path.join(data_root, "empty", "a_class"))
    with pytest.raises(utils.UsageError) as err:
        datasets.get_data_loaders("fmnist_new", data_root, batch_size=2)
    message = str(err.value)
    assert "--dataset fmnist_new" in message and "I128" in message and "Toy32" in message
    assert message.endswith("the folders under " + data_root + " that hold images: toy")


def test_a_run_takes_a_prepared_folder_s_resolution_class_count_and_class_names(tmp_path):
    import run_spec
    write_folder(str(tmp_path / "fmnist_new"), ["a", "b", "c"],
                 dataset_json={"format": 1, "resolution": 64, "class_names": ["A/a", "B", "C"]})
    config = {"dataset": "fmnist_new", "data_root": str(tmp_path), "hdf5": False, "resolution": 0,
              "n_classes": 0}
    settled = run_spec.classes_and_resolution(config)
    assert settled == {"resolution": 64, "n_classes": 3, "class_names": ["A/a", "B", "C"]}


# ----------------------------------------------------------------------------------------------
# Bad input: one clear UsageError each

def test_missing_folder_says_where_and_how_to_get_data(tmp_path):
    with pytest.raises(utils.UsageError, match=r"prepare_data\.sh") as err:
        datasets.get_data_loaders("I128", str(tmp_path), batch_size=4)
    assert os.path.join(str(tmp_path), "ImageNet") in str(err.value)


def test_unknown_dataset_lists_the_known_ones(data_root):
    with pytest.raises(utils.UsageError, match="Toy32"):
        datasets.get_data_loaders("MNIST", data_root, batch_size=4)


def test_class_count_must_match_n_classes(data_root):
    with pytest.raises(utils.UsageError, match="n_classes is 5 but .* 3 classes "
                                               r"\(blue_cross, green_square, red_circle\)"):
        datasets.get_data_loaders("Toy32", data_root, batch_size=4, n_classes=5)


def test_empty_class_folder_is_named(data_root):
    os.mkdir(os.path.join(data_root, "toy", "yellow_cross"))
    with pytest.raises(utils.UsageError, match="yellow_cross holds no images"):
        datasets.get_data_loaders("Toy32", data_root, batch_size=4)


def test_unreadable_image_stops_loading_with_its_file_name(data_root):
    bad = os.path.join(data_root, "toy", "red_circle", "broken.png")
    with open(bad, "wb") as f:
        f.write(b"not a png")
    # Building the loader does not open the images; reading the bad one stops with its name.
    loader, = datasets.get_data_loaders("Toy32", data_root, batch_size=4, drop_last=False)
    with pytest.raises(utils.UsageError, match="broken.png"):
        batches(loader)


# ----------------------------------------------------------------------------------------------
# Image modes -> 8-bit: each file is written here with known pixel values, in a format Pillow
# writes, and opened again, so the test sees what Pillow really opens (its modes vary by version).

def png_16bit_rgb(path, pixels):
    """A 16-bit RGB PNG written from the format's definition (Pillow writes no 16-bit RGB)."""
    import struct
    import zlib
    height, width, _ = pixels.shape
    rows = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind, data):
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)  # 16 bits, colour type 2: RGB
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                + chunk(b"IEND", b""))
    return path


def saved(image, name, **options):
    """A writer of `image` to folder/name (with Pillow's save options), returning the path."""
    def write(folder):
        image.save(os.path.join(folder, name), **options)
        return os.path.join(folder, name)
    return write


def in_memory(image):
    return lambda folder: image


def palette_image(transparent_index=None):
    image = Image.fromarray(np.array([[0, 1, 2]], np.uint8), "P")
    image.putpalette([10, 20, 30, 200, 0, 0, 0, 0, 255] + [0] * 759)
    if transparent_index is not None:
        image.info["transparency"] = transparent_index
    return image


def pa_image():
    """Palette with alpha (Pillow makes PA from a palette image): index 0 opaque, 1 transparent."""
    image = palette_image().crop((0, 0, 2, 1)).convert("PA")
    image.putalpha(Image.fromarray(np.array([[255, 0]], np.uint8), "L"))
    return image


def pixels(values, mode=None):
    return Image.fromarray(np.array(values, np.uint8), mode)


GREY_16 = np.array([[0, 32768, 65535, 25700]], np.uint16)  # 25700 = 100 * 257
WHITE = [255, 255, 255]
MODES = {  # name: (writer, the modes Pillow may open it as, the pixels after eight_bit)
    "1 (bilevel PNG)": (saved(Image.fromarray(np.array([[True, False]])), "a.png"), {"1"},
                        [[255, 0]]),
    "16-bit grey PNG": (saved(Image.fromarray(GREY_16), "a.png"), {"I;16", "I"},
                        [[0, 128, 255, 100]]),
    "16-bit grey TIFF": (saved(Image.fromarray(GREY_16), "a.tif"), {"I;16", "I;16B", "I"},
                         [[0, 128, 255, 100]]),
    "32-bit integer TIFF (I) of 16-bit values": (
        saved(Image.fromarray(GREY_16.astype(np.int32)), "a.tif"), {"I"}, [[0, 128, 255, 100]]),
    # this Pillow opens a 16-bit RGB PNG as 8-bit RGB (the high bytes) itself
    "16-bit RGB PNG": (lambda folder: png_16bit_rgb(os.path.join(folder, "a.png"), np.array(
        [[[65535, 0, 32768], [2570, 65535, 0]]])), {"RGB", "RGB;16B"},
        [[[255, 0, 128], [10, 255, 0]]]),
    "float TIFF in [0, 1]": (
        saved(Image.fromarray(np.array([[0, 0.5, 1, 0.2]], np.float32)), "a.tif"), {"F"},
        [[0, 128, 255, 51]]),
    "float TIFF in [0, 255]": (
        saved(Image.fromarray(np.array([[0, 127.5, 255, 51]], np.float32)), "a.tif"), {"F"},
        [[0, 128, 255, 51]]),
    "palette PNG": (saved(palette_image(), "a.png"), {"P"},
                    [[[10, 20, 30], [200, 0, 0], [0, 0, 255]]]),
    "palette PNG with a transparent index": (
        saved(palette_image(1), "a.png", transparency=1), {"P", "PA"},
        [[[10, 20, 30], WHITE, [0, 0, 255]]]),
    "palette GIF with a transparent index": (
        saved(palette_image(2), "a.gif", transparency=2), {"P", "RGBA"},
        [[[10, 20, 30], [200, 0, 0], WHITE]]),
    "grey PNG with a transparent value": (saved(pixels([[7, 9]]), "a.png", transparency=7),
                                          {"L", "LA"}, [[255, 9]]),
    "RGB PNG with a transparent colour": (
        saved(pixels([[[1, 2, 3], [4, 5, 6]]]), "a.png", transparency=(1, 2, 3)), {"RGB", "RGBA"},
        [[WHITE, [4, 5, 6]]]),
    # 0 at alpha 51 (0.2) over white: 0.8 * 255 = 204
    "LA PNG": (saved(pixels([[[100, 255], [100, 0], [0, 51]]], "LA"), "a.png"), {"LA"},
               [[100, 255, 204]]),
    "RGBA PNG": (saved(pixels([[[10, 20, 30, 255], [10, 20, 30, 0], [0, 0, 0, 51]]]), "a.png"),
                 {"RGBA"}, [[[10, 20, 30], WHITE, [204, 204, 204]]]),
    "CMYK TIFF": (saved(pixels([[[0, 0, 0, 0], [255, 0, 0, 0], [0, 0, 0, 255]]], "CMYK"), "a.tif"),
                  {"CMYK"}, [[WHITE, [0, 255, 255], [0, 0, 0]]]),
    "RGBX in memory": (in_memory(Image.new("RGBX", (1, 1), (1, 2, 3, 0))), {"RGBX"}, [[[1, 2, 3]]]),
    "YCbCr in memory": (in_memory(Image.new("YCbCr", (1, 1), (255, 128, 128))), {"YCbCr"},
                        [[WHITE]]),
    "PA in memory": (lambda folder: pa_image(), {"PA"}, [[[10, 20, 30], WHITE]]),
    "premultiplied RGBa in memory": (in_memory(pixels([[[50, 0, 0, 255], [0, 0, 0, 0]]], "RGBa")),
                                     {"RGBa"}, [[[50, 0, 0], WHITE]]),
    "HSV in memory": (in_memory(pixels([[[0, 255, 255], [0, 0, 255]]], "HSV")), {"HSV"},
                      [[[255, 0, 0], WHITE]]),
}


@pytest.mark.parametrize("case", list(MODES))
def test_every_image_mode_pillow_opens_becomes_8_bit_with_its_values(tmp_path, case):
    write, opened_as, expected = MODES[case]
    written = write(str(tmp_path))
    image = Image.open(written) if isinstance(written, str) else written
    assert image.mode in opened_as, f"{case}: Pillow {Image.__version__} opened mode {image.mode}"
    converted = datasets.eight_bit(image, "x.png")
    assert converted.mode == ("L" if np.ndim(expected) == 2 else "RGB")
    assert np.asarray(converted).tolist() == expected, case


def test_the_loader_reads_a_16_bit_png_without_saturating_it(tmp_path):
    os.makedirs(tmp_path / "a")
    Image.fromarray(np.full((4, 4), 32768, np.uint16)).save(tmp_path / "a" / "0.png")  # mid grey
    assert datasets.read_image(str(tmp_path / "a" / "0.png"), 4).tolist() == \
        np.full((3, 4, 4), 128).tolist()


@pytest.mark.parametrize("values,problem", [
    (np.array([[0, 300]], np.float32), r"float image with values from 0 to 300"),
    (np.array([[0, np.nan]], np.float32), r"float image with NaN or inf"),
    (np.array([[-1, 70000]], np.int32),
     r"integer values from -1 to 70000, outside the 16-bit range"),
])
def test_an_image_without_a_faithful_8_bit_form_is_refused_naming_the_file(tmp_path, values,
                                                                           problem):
    Image.fromarray(values).save(tmp_path / "a.tif")
    with pytest.raises(utils.UsageError, match=f"image .*a.tif .*{problem}.*convert it to 8-bit"):
        datasets.read_image(str(tmp_path / "a.tif"), 4)


def test_a_mode_without_a_conversion_here_is_refused_naming_the_file():
    refused = r"image lab.tif has the pixel mode LAB.*convert it to 8-bit"
    with pytest.raises(utils.UsageError, match=refused):
        datasets.eight_bit(Image.new("LAB", (1, 1)), "lab.tif")


# ----------------------------------------------------------------------------------------------
# Sampling order

def test_each_epoch_is_a_fresh_seeded_permutation_chosen_by_set_epoch():
    sampler = datasets.EpochSampler(10, batch_size=2, shuffle=True, seed=0)
    first = list(sampler)
    # the epoch is whoever iterates over epochs' to set (DistributedSampler's way)
    assert list(sampler) == first
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(first) == sorted(second) == list(range(10)) and first != second
    assert list(datasets.EpochSampler(10, batch_size=2, shuffle=True, seed=0)) == first
    assert list(datasets.EpochSampler(10, batch_size=2, shuffle=True, seed=1)) != first
    sampler.set_epoch(1, skip_batches=2)  # resume mid-epoch
    assert list(sampler) == second[4:]


def test_resumable_batches_own_the_epoch_and_continue_where_they_stopped(tmp_path):
    toy.write_image_folder(str(tmp_path / "toy"), ["red_circle", "green_square"], 5, seed=0)
    loader, = datasets.get_data_loaders("Toy32", str(tmp_path), batch_size=4, shuffle=True)
    straight = datasets.ResumableBatches(loader, num_epochs=3)
    labels = [y.tolist() for _, y in straight]  # 10 images, batches of 4: 2 per epoch
    assert len(labels) == 6 and straight.position() == {"epoch": 3, "epoch_batches": 0}
    stopped = datasets.ResumableBatches(loader, num_epochs=3)
    seen = [batch[1].tolist() for _, batch in zip(range(3), stopped)]
    assert stopped.position() == {"epoch": 1, "epoch_batches": 1}
    resumed = datasets.ResumableBatches(loader, num_epochs=3, **stopped.position())
    assert seen + [y.tolist() for _, y in resumed] == labels
    # the data ran out before
    assert list(datasets.ResumableBatches(loader, num_epochs=3, epoch=3)) == []


def test_multi_epoch_sampler_is_num_epochs_seeded_permutations():
    sampler = datasets.MultiEpochSampler(10, batch_size=2, num_epochs=3, seed=0)
    order = list(sampler)
    assert len(order) == len(sampler) == 30
    assert all(sorted(order[i:i + 10]) == list(range(10)) for i in (0, 10, 20))
    assert list(datasets.MultiEpochSampler(10, batch_size=2, num_epochs=3, seed=0)) == order
    assert list(datasets.MultiEpochSampler(10, batch_size=2, num_epochs=3, seed=1)) != order


@pytest.mark.parametrize("start_itr", [1, 5, 7])
def test_resuming_at_start_itr_continues_the_same_sequence(start_itr):
    full = list(datasets.MultiEpochSampler(10, batch_size=3, num_epochs=4, seed=0))
    resumed = datasets.MultiEpochSampler(10, batch_size=3, num_epochs=4, start_itr=start_itr,
                                         seed=0)
    assert list(resumed) == full[start_itr * 3:] and len(resumed) == len(full) - start_itr * 3


def test_resumed_loader_yields_the_batches_the_full_run_would_have(data_root):
    config = dict(batch_size=4, use_multiepoch_sampler=True, num_epochs=2, seed=0)
    full = batches(datasets.get_data_loaders("Toy32", data_root, **config)[0])
    resumed = batches(datasets.get_data_loaders("Toy32", data_root, start_itr=2, **config)[0])
    assert len(full) == 6 and len(resumed) == 4
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
               for a, b in zip(full[2:], resumed))


@pytest.mark.parametrize("multi_epoch", [False, True])
def test_two_ranks_get_disjoint_slices_of_each_epoch(multi_epoch):
    def rank_order(rank):
        if multi_epoch:
            return list(datasets.MultiEpochSampler(11, 2, num_epochs=2, seed=3, rank=rank,
                                                   world_size=2))
        return list(datasets.EpochSampler(11, 2, shuffle=True, seed=3, rank=rank, world_size=2))

    r0, r1 = rank_order(0), rank_order(1)
    assert len(r0) == len(r1)
    for start in range(0, len(r0), 5):  # each epoch: 5 images per rank, 1 left over
        epoch0, epoch1 = set(r0[start:start + 5]), set(r1[start:start + 5])
        assert len(epoch0) == len(epoch1) == 5 and not epoch0 & epoch1


def test_few_shot_data_smaller_than_a_batch_still_gives_full_batches(tmp_path):
    toy.write_image_folder(str(tmp_path / "toy"), ["red_circle", "green_square"], 3, seed=0)
    loader, = datasets.get_data_loaders("Toy32", str(tmp_path), batch_size=16, shuffle=True)
    first = batches(loader)
    loader.sampler.set_epoch(1)
    second = batches(loader)
    assert len(first) == len(second) == 1
    assert first[0][0].shape[0] == 16 and not torch.equal(first[0][0], second[0][0])
    sampler = loader.sampler
    assert len(sampler) == 18  # three whole passes: every image three times per epoch
    assert np.bincount(sampler.epoch_order(0), minlength=6).tolist() == [3] * 6


# ----------------------------------------------------------------------------------------------
# HDF5 cache

def build_cache(data_root, *extra):
    argv = ["make_hdf5.py", "--dataset", "Toy32", "--data_root", data_root, "--num_workers", "0",
            "--batch_size", "5", "--chunk_size", "4", *extra]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.argv", argv)
        make_hdf5.main()


def test_hdf5_cache_gives_the_same_batches_as_the_folder(data_root):
    build_cache(data_root)
    assert os.path.isfile(os.path.join(data_root, "Toy32.hdf5"))
    assert not [name for name in os.listdir(data_root) if name.startswith(".tmp")]
    config = dict(batch_size=5, shuffle=True, seed=1, drop_last=False)
    folder, = datasets.get_data_loaders("Toy32", data_root, **config)
    cache, = datasets.get_data_loaders("Toy32", data_root, hdf5=True, **config)
    in_mem, = datasets.get_data_loaders("Toy32", data_root, hdf5=True, load_in_mem=True, **config)
    assert cache.dataset.classes == folder.dataset.classes
    for (xf, yf), (xc, yc), (xm, ym) in zip(folder, cache, in_mem, strict=True):
        assert torch.equal(xf, xc) and torch.equal(yf, yc)
        assert torch.equal(xf, xm) and torch.equal(yf, ym)


def test_make_hdf5_refuses_to_overwrite_without_the_flag(data_root):
    build_cache(data_root)
    with pytest.raises(utils.UsageError, match="--overwrite"):
        build_cache(data_root)
    build_cache(data_root, "--compression", "--overwrite")
    assert len(datasets.load_dataset("Toy32", data_root, hdf5=True)) == 12


def test_missing_hdf5_cache_says_how_to_build_it(data_root):
    with pytest.raises(utils.UsageError, match="make_hdf5.py --dataset Toy32"):
        datasets.get_data_loaders("Toy32", data_root, batch_size=4, hdf5=True)
