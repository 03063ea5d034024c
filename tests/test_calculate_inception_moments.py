"""Specification of calculate_inception_moments.py: the reference statistics, and the metrics built
on them."""
import json
import os
import shutil
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import calculate_inception_moments as moments_script
import classifier
import conftest
import datasets
import inception_utils as iu
import utils

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ("blue_square", "green_circle", "red_cross")
IMAGES_PER_CLASS = 12


def TinyBackbone(class_names=CLASSES):
    return conftest.TinyBackbone(class_names)


@pytest.fixture
def data_root(tmp_path):
    """A Toy32 image folder: data_root/toy/<class>/*.png, 32 px noise tinted per class."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(CLASSES):
        folder = tmp_path / "toy" / name
        folder.mkdir(parents=True)
        for i in range(IMAGES_PER_CLASS):
            pixels = rng.integers(0, 256, size=(32, 32, 3))
            pixels[..., label] = 255 - pixels[..., label] // 4
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
    return str(tmp_path)


def config_for(data_root, **overrides):
    args = ["--dataset", "Toy32", "--data_root", data_root, "--batch_size", "8",
            "--num_workers", "0", "--device", "cpu"]
    return {**vars(moments_script.prepare_parser().parse_args(args)), **overrides}


def load_npz(path):
    with np.load(path, allow_pickle=False) as f:
        return {key: f[key] for key in f.files}


def test_writes_overall_and_per_class_moments_and_the_features(data_root):
    paths = moments_script.run(config_for(data_root), net=TinyBackbone())
    assert paths["moments"] == os.path.join(data_root, "Toy32_tiny_moments.npz")
    stats, features = load_npz(paths["moments"]), load_npz(paths["features"])

    pool, labels = features["pool"], features["labels"]
    assert pool.shape == (len(CLASSES) * IMAGES_PER_CLASS, 8) and pool.dtype == np.float32
    np.testing.assert_allclose(stats["mu"], pool.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats["sigma"], np.cov(pool, rowvar=False), rtol=1e-6)
    assert stats["class_names"].tolist() == list(CLASSES) and str(stats["metric_space"]) == "tiny"
    assert stats["class_counts"].tolist() == [IMAGES_PER_CLASS] * len(CLASSES)
    for c in range(len(CLASSES)):
        np.testing.assert_allclose(stats["class_mu"][c], pool[labels == c].mean(0), rtol=1e-6)
        np.testing.assert_allclose(stats["class_sigma"][c], np.cov(pool[labels == c], rowvar=False),
                                   rtol=1e-5)


def test_features_are_the_backbone_outputs_of_the_images_in_label_order(data_root):
    paths = moments_script.run(config_for(data_root), net=TinyBackbone())
    loader = datasets.get_data_loaders("Toy32", data_root, batch_size=100, drop_last=False)[0]
    x, y = next(iter(loader))
    with torch.no_grad():
        expected = TinyBackbone()(x)[0].numpy()
    features = load_npz(paths["features"])
    np.testing.assert_allclose(features["pool"], expected, rtol=1e-5, atol=1e-6)
    assert features["labels"].tolist() == y.tolist()


def test_per_class_covariances_are_skipped_when_too_big(data_root, monkeypatch):
    monkeypatch.setattr(moments_script, "MAX_CLASS_SIGMA_BYTES", 100)
    paths = moments_script.run(config_for(data_root), net=TinyBackbone())
    assert "class_sigma" not in load_npz(paths["moments"])
    # before any image is sampled
    with pytest.raises(utils.UsageError, match="per-class statistics"):
        iu.Metrics("Toy32", net=TinyBackbone(), data_root=data_root, mfid=True)


def real_data_sampler(data_root):
    """sample() over the real images in the order the moments script reads them."""
    batches = iter(datasets.get_data_loaders("Toy32", data_root, batch_size=8, drop_last=False)[0])
    return lambda: next(batches)


@pytest.mark.parametrize("use_torch, tolerance", [(False, 1e-6), (True, 1e-3)])
def test_real_data_scored_against_its_own_moments_has_zero_fid(data_root, use_torch, tolerance):
    net = TinyBackbone()
    moments_script.run(config_for(data_root), net=net)
    get_metrics = iu.Metrics("Toy32", net=net, data_root=data_root, kmmd=True, mfid=True)
    metrics = get_metrics(real_data_sampler(data_root), len(CLASSES) * IMAGES_PER_CLASS,
                          num_splits=3, use_torch=use_torch)
    assert metrics["FID"] == pytest.approx(0, abs=tolerance)
    assert metrics["mFID"] == pytest.approx(0, abs=tolerance)
    assert metrics["KMMD"] == pytest.approx(0, abs=1e-4)
    assert np.isfinite(metrics["IS_mean"]) and metrics["IS_mean"] >= 1
    assert 0 <= metrics["class_acc"] <= 1 and metrics["metric_space"] == "tiny"


def test_generated_looking_data_has_a_positive_fid(data_root):
    net = TinyBackbone()
    moments_script.run(config_for(data_root), net=net)
    get_metrics = iu.Metrics("Toy32", net=net, data_root=data_root)
    real = real_data_sampler(data_root)
    washed_out = lambda: (lambda x, y: (x * 0.3, y))(*real())
    metrics = get_metrics(washed_out, 36, num_splits=3)
    assert np.isfinite(metrics["FID"]) and metrics["FID"] > 1e-3


# ----------------------------------------------------------------------------------------------
# A prepared dataset's statistics come from its held-out reference images

def write_prepared(root, name, per_class, reference=None, classes=CLASSES, seed=1):
    """root/<name>/<class>/*.png with a dataset.json as prepare_dataset.py writes it."""
    rng = np.random.default_rng(seed)
    for label, class_name in enumerate(classes):
        folder = root / name / class_name
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, size=(32, 32, 3))
            pixels[..., label % 3] = 255
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
    info = {"format": 1, "written_by": "prepare_dataset.py", "resolution": 32,
            "class_names": list(classes), "folders": list(classes)}
    (root / name / "dataset.json").write_text(json.dumps({**info, "reference": reference}
                                                         if reference else info))


def features_of(dataset, data_root):
    """TinyBackbone's features of every image of the dataset, as the loader reads them."""
    x, _ = next(iter(datasets.get_data_loaders(dataset, data_root, batch_size=1000,
                                               drop_last=False)[0]))
    with torch.no_grad():
        return TinyBackbone()(x)[0].numpy()


def test_the_moments_of_a_prepared_dataset_come_from_its_reference_folder(tmp_path, capsys):
    write_prepared(tmp_path, "mine_new", per_class=2, reference="mine_new_reference")
    write_prepared(tmp_path, "mine_new_reference", per_class=12, seed=2)
    paths = moments_script.run(config_for(str(tmp_path), dataset="mine_new"), net=TinyBackbone())
    assert paths["moments"] == os.path.join(str(tmp_path), "mine_new_tiny_moments.npz")
    expected = features_of("mine_new_reference", str(tmp_path))
    assert expected.shape == (36, 8)
    np.testing.assert_allclose(load_npz(paths["features"])["pool"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(load_npz(paths["moments"])["mu"], expected.mean(0), rtol=1e-5,
                               atol=1e-6)
    out, err = capsys.readouterr()
    assert "Statistics of mine_new from 36 images of mine_new_reference (3 classes" in out
    assert "warning" not in err  # 36 images and 12 per class: more than the 8 feature dimensions


def test_a_dataset_folder_holding_only_its_dataset_json_takes_the_statistics_of_its_reference(
        tmp_path):
    # As the old classes of a transfer are kept: no training images, their held-out ones beside.
    write_prepared(tmp_path, "mine_old", per_class=2, reference="mine_old_reference")
    write_prepared(tmp_path, "mine_old_reference", per_class=12, seed=2)
    for class_name in CLASSES:
        shutil.rmtree(tmp_path / "mine_old" / class_name)
    paths = moments_script.run(config_for(str(tmp_path), dataset="mine_old"), net=TinyBackbone())
    np.testing.assert_allclose(load_npz(paths["moments"])["mu"],
                               features_of("mine_old_reference", str(tmp_path)).mean(0), rtol=1e-5,
                               atol=1e-6)
    info = json.loads((tmp_path / "mine_old" / "dataset.json").read_text())
    (tmp_path / "mine_old" / "dataset.json").write_text(
        json.dumps({**info, "folders": ["a", "b", "c"]}))
    with pytest.raises(utils.UsageError,
                       match="the reference mine_old_reference has the classes .* but mine_old has "
                             "a, b, c"):
        moments_script.run(config_for(str(tmp_path), dataset="mine_old"), net=TinyBackbone())


def test_a_reference_smaller_than_the_feature_dimension_is_warned_about_once(tmp_path, capsys):
    write_prepared(tmp_path, "mine_new", per_class=2, reference="mine_new_reference")
    write_prepared(tmp_path, "mine_new_reference", per_class=12, seed=2)
    # the 6 shots themselves
    config = config_for(str(tmp_path), dataset="mine_new", reference_dataset="mine_new")
    paths = moments_script.run(config, net=TinyBackbone())
    np.testing.assert_allclose(load_npz(paths["moments"])["mu"],
                               features_of("mine_new", str(tmp_path)).mean(0), rtol=1e-5, atol=1e-6)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning")]
    assert len(warnings) == 2
    assert "mine_new has 6 images for 8-d features" in warnings[0] and "singular" in warnings[0]
    assert "3 of 3 classes of mine_new have at most 8 images" in warnings[1]
    assert "mFID" in warnings[1]


def test_a_reference_with_other_classes_is_refused(tmp_path):
    write_prepared(tmp_path, "mine_new", per_class=2, reference="other")
    write_prepared(tmp_path, "other", per_class=2, classes=("a", "b", "c"))
    with pytest.raises(utils.UsageError,
                       match="the reference other has the classes a, b, c but mine_new has"):
        moments_script.run(config_for(str(tmp_path), dataset="mine_new"), net=TinyBackbone())
    (tmp_path / "mine_new" / "dataset.json").write_text(json.dumps({"resolution": 32,
                                                                    "reference": "gone"}))
    with pytest.raises(utils.UsageError,
                       match="names the reference images gone, which are not under"):
        moments_script.run(config_for(str(tmp_path), dataset="mine_new"), net=TinyBackbone())


def test_a_reference_outside_the_data_root_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    data_root = tmp_path / "data"
    write_prepared(tmp_path, "etc", per_class=2)  # outside the data root; such a name reached it
    write_prepared(data_root, "mine_new", per_class=2, reference="../etc")
    monkeypatch.setattr(sys, "argv", ["calculate_inception_moments.py", "--dataset", "mine_new",
                                      "--data_root", str(data_root), "--device", "cpu"])
    with pytest.raises(SystemExit) as exit_:
        utils.run_main(moments_script.main)
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1, lines
    assert (f"mine_new/dataset.json: reference '../etc' points outside the data root {data_root}"
            in lines[0])
    assert not [name for name in os.listdir(data_root) if name.endswith(".npz")]


@pytest.mark.slow  # a command line, forked from a server that imported torch (conftest)
def test_missing_inception_weights_offline_exits_with_a_clear_message(data_root, tmp_path,
                                                                       command_lines):
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "empty_torch_home"),
           # an unreachable proxy: even on a machine with internet the download must fail
           "https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
           "http_proxy": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "no_proxy": "",
           "NO_PROXY": ""}
    result = command_lines.run(["calculate_inception_moments.py", "--dataset", "Toy32",
                                "--data_root", data_root, "--num_workers", "0", "--device", "cpu"],
                               env=env)
    assert result.returncode == 2
    assert "error:" in result.stderr and "inception_v3_google-0cc3c7bd.pth" in result.stderr
    assert "--inception_weights" in result.stderr
    assert not os.path.exists(os.path.join(data_root, "Toy32_inception_moments.npz"))


def test_a_classifier_backbone_without_some_dataset_classes_writes_nothing(data_root, tmp_path):
    path = str(tmp_path / "clf.pth")
    trained = classifier.build_classifier(["blue_square", "red_cross"])
    utils.atomic_save(classifier.checkpoint_of(trained), path)
    net = iu.load_inception_net("classifier", path)
    with pytest.raises(utils.UsageError,
                       match="not trained on 1 class\\(es\\) of Toy32: green_circle"):
        moments_script.run(config_for(data_root), net=net)
    assert not os.path.exists(os.path.join(data_root, iu.moments_filename("Toy32", "classifier")))
