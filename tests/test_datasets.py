"""datasets.py: image folders (or their HDF5 cache) -> batches, with BigGAN-PyTorch's sampling."""
import json
import os

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
            Image.fromarray(np.full((size, size), 40 * i, np.uint8)).save(os.path.join(root, name, f"{i}.png"))
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
    with pytest.raises(utils.UsageError, match=r"dataset\.json is damaged \(resolution: KeyError.*prepare_dataset\.py"):
        datasets.dataset_spec("fmnist_new", str(tmp_path))


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
    import experiment
    write_folder(str(tmp_path / "fmnist_new"), ["a", "b", "c"],
                 dataset_json={"format": 1, "resolution": 64, "class_names": ["A/a", "B", "C"]})
    config = {"dataset": "fmnist_new", "data_root": str(tmp_path), "hdf5": False, "resolution": 0,
              "n_classes": 0}
    experiment.set_classes_and_resolution(config)
    assert (config["resolution"], config["n_classes"], config["class_names"]) == (64, 3, ["A/a", "B", "C"])


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
# Sampling order

def test_each_epoch_is_a_fresh_seeded_permutation_chosen_by_set_epoch():
    sampler = datasets.EpochSampler(10, batch_size=2, shuffle=True, seed=0)
    first = list(sampler)
    assert list(sampler) == first  # the epoch is whoever iterates over epochs' to set (DistributedSampler's way)
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
    assert list(datasets.ResumableBatches(loader, num_epochs=3, epoch=3)) == []  # the data ran out before


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
