"""prepare_dataset.py: a labelled dataset -> old / new (few shots) / held-out reference folders.

The IDX fixture is written here from the format's definition (big-endian magic 0x00000803 for
images, 0x00000801 for labels, then the sizes, then unsigned bytes). Every source image is one
flat grey value that names it (train image i: value i, test image i: 100 + i), so what a folder
holds can be checked from its pixels, independently of file names."""
import gzip
import json
import os

import numpy as np
import pytest
from PIL import Image

import datasets
import prepare_dataset
import utils

# Label order of the source; the folder names sort differently: Ant, T-shirt_top, bird, cat.
NAMES = ["cat", "T-shirt/top", "bird", "Ant"]
TRAIN_PER_CLASS, TEST_PER_CLASS = 12, 6


def write_idx(path, array, magic, gz):
    header = magic.to_bytes(4, "big") + b"".join(size.to_bytes(4, "big") for size in array.shape)
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_idx_folder(folder, gz_train=True, gz_test=False):
    """4 classes x 12 train (gzip'd) + 6 test (plain) images of 10 x 10; labels interleave."""
    os.makedirs(folder, exist_ok=True)
    n_train, n_test = TRAIN_PER_CLASS * len(NAMES), TEST_PER_CLASS * len(NAMES)
    for prefix, values, gz in (("train", np.arange(n_train), gz_train),
                               ("t10k", 100 + np.arange(n_test), gz_test)):
        images = np.broadcast_to(values[:, None, None], (len(values), 10, 10))
        suffix = ".gz" if gz else ""
        write_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte{suffix}"), images, 0x00000803,
                  gz)
        write_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte{suffix}"),
                  np.arange(len(values)) % 4, 0x00000801, gz)
    return str(folder)


@pytest.fixture
def idx(tmp_path):
    return write_idx_folder(tmp_path / "idx")


def prepare(tmp_path, *args, source=None, name="toy4"):
    source = source or ["--idx", str(tmp_path / "idx"), "--class_names", ",".join(NAMES)]
    return prepare_dataset.main([*source, "--name", name, "--data_root", str(tmp_path / "data"),
                                 *args])


def contents(folder):
    """{class folder: sorted file names}."""
    return {name: sorted(os.listdir(os.path.join(folder, name)))
            for name in sorted(os.listdir(folder))
            if os.path.isdir(os.path.join(folder, name))}


def pixel_values(folder):
    """{class folder: sorted grey values of its images}: which source images it holds."""
    values = {}
    for name, files in contents(folder).items():
        values[name] = sorted(int(np.asarray(Image.open(os.path.join(folder, name, f))).flat[0])
                              for f in files)
    return values


def values_in_train_split(label):
    return [i for i in range(TRAIN_PER_CLASS * len(NAMES)) if i % 4 == label]


def values_in_test_split(label):
    return [100 + i for i in range(TEST_PER_CLASS * len(NAMES)) if i % 4 == label]


def read_json(folder):
    with open(os.path.join(folder, "dataset.json")) as f:
        return json.load(f)


def run_cli(argv, capsys):
    """prepare_dataset's command line in-process: (exit code, stderr lines)."""
    with pytest.raises(SystemExit) as exit_:
        utils.run_main(lambda: prepare_dataset.main(argv))
    return exit_.value.code, capsys.readouterr().err.strip().splitlines()


# ----------------------------------------------------------------------------------------------
# The split

def test_new_by_names_or_by_indices_and_the_rest_old(idx, tmp_path):
    by_name = prepare(tmp_path, "--new", "bird,Ant", "--shots", "3", name="names")
    by_index = prepare(tmp_path, "--new", "3, 2", "--shots", "3", name="indices")
    for role in ("old", "old_reference", "new", "new_reference"):
        assert contents(by_name[f"names_{role}"]) == contents(by_index[f"indices_{role}"])
    assert list(contents(by_name["names_new"])) == ["Ant", "bird"]
    assert pixel_values(by_name["names_old"]) == {"T-shirt_top": values_in_train_split(1),
                                                  "cat": values_in_train_split(0)}
    assert pixel_values(by_name["names_old_reference"]) == {"T-shirt_top": values_in_test_split(1),
                                                            "cat": values_in_test_split(0)}
    assert pixel_values(by_name["names_new_reference"]) == {"Ant": values_in_test_split(3),
                                                            "bird": values_in_test_split(2)}


def test_old_names_a_subset_and_the_other_classes_are_left_out(idx, tmp_path):
    paths = prepare(tmp_path, "--new", "2", "--old", "cat", "--shots", "2", "--classifier_data")
    assert list(contents(paths["toy4_old"])) == ["cat"]
    assert list(contents(paths["toy4_new"])) == ["bird"]
    assert list(contents(paths["toy4_classifier_train"])) == ["bird", "cat"]
    assert pixel_values(paths["toy4_classifier_test"]) == {"bird": values_in_test_split(2),
                                                           "cat": values_in_test_split(0)}
    assert read_json(paths["toy4_new"])["split"] == {"old": ["cat"], "new": ["bird"]}


def test_the_fashion_mnist_preset_makes_pullover_coat_ankle_boot_new():
    args = prepare_dataset.prepare_parser().parse_args(["--idx", "x", "--preset", "fashion-mnist",
                                                        "--shots", "1", "--name", "f"])
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
             "Bag", "Ankle boot"]
    old, new = prepare_dataset.choose_split(args, names, prepare_dataset.class_folders(names))
    assert new == [2, 4, 9] and old == [0, 1, 3, 5, 6, 7, 8]


# ----------------------------------------------------------------------------------------------
# Shots and references

def test_shots_are_n_training_images_per_new_class_chosen_by_the_seed(idx, tmp_path):
    first = contents(prepare(tmp_path, "--new", "bird,Ant", "--shots", "4", name="a")["a_new"])
    again = contents(prepare(tmp_path, "--new", "bird,Ant", "--shots", "4", name="b")["b_new"])
    other = contents(prepare(tmp_path, "--new", "bird,Ant", "--shots", "4", "--seed", "1",
                             name="c")["c_new"])
    assert first == again and first != other
    for folder, label in (("bird", 2), ("Ant", 3)):
        indices = [int(name[len("train_"):-len(".png")]) for name in first[folder]]
        assert len(indices) == 4 and all(name.startswith("train_") for name in first[folder])
        # file name = source index = the pixel value
        assert set(indices) <= set(values_in_train_split(label))
    values = pixel_values(os.path.join(tmp_path, "data", "a_new"))
    assert values == {folder: sorted(int(f[6:12]) for f in files)
                      for folder, files in first.items()}


def test_references_are_test_images_and_never_shots(idx, tmp_path):
    paths = prepare(tmp_path, "--new", "Ant", "--shots", "12", "--reference_per_class", "4")
    shots = pixel_values(paths["toy4_new"])["Ant"]
    reference = pixel_values(paths["toy4_new_reference"])["Ant"]
    assert shots == values_in_train_split(3)  # every training image of the class is a shot ...
    # ... and none a reference
    assert len(reference) == 4 and set(reference) <= set(values_in_test_split(3))
    assert all(name.startswith("test_") for name in contents(paths["toy4_new_reference"])["Ant"])


def write_image_folder(root, per_class=8):
    """3 classes of flat grey images, value 10 * class + image, under their own names."""
    for c, name in enumerate(["a", "b", "c"]):
        os.makedirs(root / name)
        for i in range(per_class):
            Image.fromarray(np.full((12, 12), 10 * c + i,
                                    np.uint8)).save(root / name / f"img{i}.png")


def test_image_folder_references_are_held_out_apart_from_the_shots(tmp_path):
    write_image_folder(tmp_path / "images")
    paths = prepare(tmp_path, "--new", "c", "--shots", "5", "--reference_per_class", "3",
                    "--classifier_data", source=["--image_folder", str(tmp_path / "images")])
    shots = pixel_values(paths["toy4_new"])["c"]
    reference = pixel_values(paths["toy4_new_reference"])["c"]
    assert len(shots) == 5 and len(reference) == 3 and not set(shots) & set(reference)
    assert set(shots) | set(reference) == set(range(20, 28))
    old, old_reference = pixel_values(paths["toy4_old"]), pixel_values(paths["toy4_old_reference"])
    for name, first in (("a", 0), ("b", 10)):
        assert len(old_reference[name]) == 3 and not set(old[name]) & set(old_reference[name])
        assert set(old[name]) | set(old_reference[name]) == set(range(first, first + 8))
    assert pixel_values(paths["toy4_classifier_test"]) == {**old_reference, "c": reference}
    # names kept
    assert all(f in [f"img{i}.png" for i in range(8)] for f in contents(paths["toy4_new"])["c"])


# ----------------------------------------------------------------------------------------------
# Images, dataset.json, what the loader sees

def test_grey_images_stay_one_channel_at_the_resolution(idx, tmp_path):
    paths = prepare(tmp_path, "--new", "Ant", "--shots", "1", "--resolution", "64")
    folder = os.path.join(paths["toy4_new"], "Ant")
    with Image.open(os.path.join(folder, os.listdir(folder)[0])) as image:
        assert image.mode == "L" and image.size == (64, 64)


def test_colour_images_are_center_cropped_then_resized(tmp_path):
    # 48 x 24: red | green | blue bands of 12, 24 and 12 columns; the centre square is all green.
    bands = np.zeros((24, 48, 3), np.uint8)
    bands[:, :12, 0] = bands[:, 12:36, 1] = bands[:, 36:, 2] = 255
    for name in ("x", "y"):
        os.makedirs(tmp_path / "images" / name)
        for i in range(2):
            Image.fromarray(bands).save(tmp_path / "images" / name / f"{i}.png")
    paths = prepare(tmp_path, "--new", "y", "--shots", "1", "--reference_per_class", "1",
                    source=["--image_folder", str(tmp_path / "images")])
    image = Image.open(os.path.join(paths["toy4_new"], "y",
                                    os.listdir(os.path.join(paths["toy4_new"], "y"))[0]))
    assert image.mode == "RGB" and image.size == (32, 32)
    assert np.array_equal(np.asarray(image), np.broadcast_to([0, 255, 0], (32, 32, 3)))


def write_deep_image_folder(root, bad=None):
    """Class 'deep': 16-bit grey PNGs of 32768 (mid grey); 'float': float TIFFs of 0.5 in [0, 1];
    'clear': RGBA PNGs, transparent black; bad: (file name, image) put into 'deep'."""
    classes = {"deep": (Image.fromarray(np.full((8, 8), 32768, np.uint16)), "png"),
               "float": (Image.fromarray(np.full((8, 8), 0.5, np.float32)), "tif"),
               "clear": (Image.fromarray(np.zeros((8, 8, 4), np.uint8)), "png")}
    for name, (image, extension) in classes.items():
        os.makedirs(root / name)
        for i in range(3):
            image.save(root / name / f"{i}.{extension}")
    if bad:
        bad[1].save(root / "deep" / bad[0])


def test_16_bit_float_and_transparent_images_are_prepared_with_their_values(tmp_path):
    write_deep_image_folder(tmp_path / "images")
    paths = prepare(tmp_path, "--new", "deep,float", "--shots", "2", "--reference_per_class", "1",
                    source=["--image_folder", str(tmp_path / "images")])
    for folder, name, value in ((paths["toy4_new"], "deep", 128), (paths["toy4_new"], "float", 128),
                                (paths["toy4_old"], "clear", 255)):
        for file in os.listdir(os.path.join(folder, name)):
            with Image.open(os.path.join(folder, name, file)) as image:
                expected = np.full((32, 32, 3), value).tolist()
                assert np.asarray(image.convert("RGB")).tolist() == expected, name


def test_an_image_that_has_no_8_bit_form_stops_the_preparation_naming_it(tmp_path, capsys):
    hot = Image.fromarray(np.full((8, 8), 900, np.float32))
    write_deep_image_folder(tmp_path / "images", bad=("hot.tif", hot))
    code, lines = run_cli(["--image_folder", str(tmp_path / "images"), "--new", "deep",
                           "--shots", "1", "--reference_per_class", "1", "--name", "x",
                           "--data_root", str(tmp_path / "data")], capsys)
    assert code == 2 and len(lines) == 1
    assert ("hot.tif is a float image with values from 900 to 900, neither in [0, 1] nor in "
            "[0, 255]" in lines[0])
    assert not [name for name in os.listdir(tmp_path / "data") if not name.startswith(".")]


def test_dataset_json_follows_the_label_order_of_the_sorted_folders(idx, tmp_path):
    paths = prepare(tmp_path, "--new", "bird", "--shots", "2", "--seed", "5")
    info = read_json(paths["toy4_old"])
    assert info["folders"] == ["Ant", "T-shirt_top", "cat"]
    assert info["class_names"] == ["Ant", "T-shirt/top", "cat"]
    assert info["source_labels"] == [3, 1, 0] and info["images_per_class"] == [12, 12, 12]
    assert (info["format"], info["resolution"], info["role"], info["reference"]) == (
        1, 32, "old", "toy4_old_reference")
    assert (info["shots"], info["seed"], info["split"]) == (
        2, 5, {"old": ["cat", "T-shirt/top", "Ant"], "new": ["bird"]})
    assert read_json(paths["toy4_new"])["reference"] == "toy4_new_reference"
    assert read_json(paths["toy4_new_reference"])["role"] == "new_reference"
    # The loader's labels are these positions, and the folder's true names come from dataset.json.
    data_root = os.path.dirname(paths["toy4_old"])
    loader, = datasets.get_data_loaders("toy4_old", data_root, batch_size=12)
    assert loader.dataset.classes == info["folders"]
    x, y = next(iter(loader))
    assert x.shape == (12, 3, 32, 32) and y.tolist() == [0] * 12
    assert datasets.class_display_names("toy4_old", data_root) == info["class_names"]


def test_torchvision_source_names_classes_by_its_classes(tmp_path):
    write_idx_folder(tmp_path / "tv" / "FashionMNIST" / "raw", gz_train=False)
    paths = prepare(tmp_path, "--new", "Pullover", "--old", "0,1", "--shots", "2",
                    source=["--torchvision", "FashionMNIST", "--torchvision_root",
                            str(tmp_path / "tv")])
    assert list(contents(paths["toy4_old"])) == ["T-shirt_top", "Trouser"]
    assert pixel_values(paths["toy4_old_reference"])["Trouser"] == values_in_test_split(1)
    assert set(pixel_values(paths["toy4_new"])["Pullover"]) <= set(values_in_train_split(2))


# ----------------------------------------------------------------------------------------------
# Never overwriting what the user has

def test_outputs_are_replaced_only_with_overwrite(idx, tmp_path, capsys):
    args = ["--new", "bird", "--shots", "2"]
    paths = prepare(tmp_path, *args)
    before = contents(paths["toy4_new"])
    code, err = run_cli(["--idx", idx, "--name", "toy4", "--data_root", str(tmp_path / "data"),
                         *args], capsys)
    assert code == 2 and len(err) == 1 and "--overwrite" in err[0]
    assert contents(paths["toy4_new"]) == before
    prepare(tmp_path, *args, "--seed", "3", "--overwrite")
    assert contents(paths["toy4_new"]) != before
    # no staging left
    assert not [name for name in os.listdir(tmp_path / "data") if name.startswith(".")]


def test_a_folder_this_tool_did_not_write_is_never_replaced(idx, tmp_path, capsys):
    mine = tmp_path / "data" / "toy4_new_reference" / "bird"
    mine.mkdir(parents=True)
    (mine / "precious.png").write_bytes(b"mine")
    code, err = run_cli(["--idx", idx, "--new", "bird", "--shots", "2", "--name", "toy4",
                         "--data_root", str(tmp_path / "data"), "--overwrite"], capsys)
    assert code == 2 and len(err) == 1 and "not written by prepare_dataset.py" in err[0]
    assert os.listdir(tmp_path / "data") == ["toy4_new_reference"]
    assert os.listdir(mine) == ["precious.png"]


# ----------------------------------------------------------------------------------------------
# Bad input: one line, exit code 2, nothing written

def swap_magic(idx):
    path = os.path.join(idx, "t10k-images-idx3-ubyte")
    with open(path, "r+b") as f:
        f.write((0x00000801).to_bytes(4, "big"))
    return path


@pytest.mark.parametrize("args, expected", [
    (["--new", "bird,Dog", "--shots", "2"],
     "--new: unknown class 'Dog'; the classes (label, name) are: 0 cat"),
    (["--new", "bird", "--shots", "13"],
     "--shots 13, but new class bird has only 12 training images"),
    (["--new", "bird", "--old", "cat,2", "--shots", "1"], "--old and --new both name bird"),
    (["--new", "bird", "--shots", "1", "--reference_per_class", "7"],
     "--reference_per_class 7, but class"),
    (["--new", "bird,", "--shots", "1"], "--new 'bird,' has an empty class"),
    (["--new", "0,1,2,3", "--shots", "1"], "--new names every class"),
    (["--shots", "1"], "give the new classes with --new"),
])
def test_a_bad_input_is_one_line_naming_the_flag(idx, tmp_path, capsys, args, expected):
    argv = ["--idx", idx, "--class_names", ",".join(NAMES), "--name", "toy4", "--data_root",
            str(tmp_path / "data")]
    code, err = run_cli([*argv, *args], capsys)
    assert code == 2 and len(err) == 1 and expected in err[0]
    assert not os.path.exists(tmp_path / "data") or not os.listdir(tmp_path / "data")


@pytest.mark.parametrize("args, expected", [
    (["--new", "bird", "--shots", "0"], "argument --shots: must be at least 1, got 0"),
    (["--new", "bird", "--shots", "1", "--resolution", "28"],
     "argument --resolution: invalid choice: 28"),
    (["--new", "bird", "--shots", "1", "--name", "a/b"], "argument --name: must be a folder name"),
    (["--new", "bird", "--shots", "1", "--image_folder", "x"],
     "argument --image_folder: not allowed with argument --idx"),
])
def test_a_bad_flag_value_is_refused_by_argparse_naming_the_flag(idx, tmp_path, capsys, args,
                                                                 expected):
    argv = ["--idx", idx, "--name", "toy4", "--data_root", str(tmp_path / "data")]
    code, err = run_cli([*argv, *args], capsys)
    assert code == 2 and expected in err[-1]


def test_a_bad_magic_number_is_one_line_naming_the_file(idx, tmp_path, capsys):
    path = swap_magic(idx)
    code, err = run_cli(["--idx", idx, "--new", "1", "--shots", "1", "--name", "toy4",
                         "--data_root", str(tmp_path / "data")], capsys)
    assert code == 2 and len(err) == 1
    assert (f"{path} is not an IDX file of images: its magic number is 0x00000801, expected "
            "0x00000803") in err[0]


@pytest.mark.parametrize("source, expected", [
    (["--class_names", "a,b,c"], "--class_names gives 3 class names but the labels of --idx"),
    (["--preset", "fashion-mnist"], "--preset fashion-mnist gives 10 class names"),
    (["--torchvision_root", "x"], "--torchvision_root and --download only apply to --torchvision"),
])
def test_class_names_must_fit_the_labels(idx, tmp_path, capsys, source, expected):
    code, err = run_cli(["--idx", idx, *source, "--new", "1", "--shots", "1", "--name", "toy4",
                         "--data_root", str(tmp_path / "data")], capsys)
    assert code == 2 and len(err) == 1 and expected in err[0]


def test_an_image_folder_needs_reference_per_class(tmp_path, capsys):
    write_image_folder(tmp_path / "images")
    code, err = run_cli(["--image_folder", str(tmp_path / "images"), "--new", "c", "--shots", "1",
                         "--name", "x", "--data_root", str(tmp_path / "data")], capsys)
    assert code == 2 and len(err) == 1 and "give --reference_per_class" in err[0]
    code, err = run_cli(["--image_folder", str(tmp_path / "images"), "--new", "c", "--shots", "6",
                         "--reference_per_class", "3", "--name", "x", "--data_root",
                         str(tmp_path / "data")], capsys)
    assert code == 2 and ("--shots 6, but new class c has only 5 training images besides its "
                          "references") in err[0]


def test_torchvision_without_the_files_says_where_and_about_download(tmp_path, capsys):
    code, err = run_cli(["--torchvision", "FashionMNIST", "--torchvision_root",
                         str(tmp_path / "none"), "--new", "1", "--shots", "1", "--name", "x",
                         "--data_root", str(tmp_path / "data")], capsys)
    assert code == 2 and len(err) == 1 and "--torchvision_root" in err[0] and "--download" in err[0]
    code, err = run_cli(["--torchvision", "SVHN", "--new", "1", "--shots", "1", "--name", "x",
                         "--data_root", str(tmp_path / "data")], capsys)
    assert code == 2
    assert "SVHN is not a torchvision.datasets class with train and test splits" in err[0]
