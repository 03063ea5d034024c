"""metrics/evaluation.py, as a specification: Metrics against reference statistics written here
directly (FID, mFID, KMMD 0 for the reference data itself, positive for other images), every
metric from one feature pass, and every missing or damaged reference file named up front."""
import os

import numpy as np
import pytest
import torch

import utils
from conftest import TinyBackbone
from metrics import evaluation, kmmd, precision_recall, reference
from test_features import batches_of


def write_reference(data_root, net, images, labels, space="tiny"):
    """What calculate_inception_moments.py writes, computed directly."""
    with torch.no_grad():
        pool = net(images)[0].double().numpy()
    class_mu = np.stack([pool[labels.numpy() == c].mean(0) for c in range(3)])
    class_sigma = np.stack([np.cov(pool[labels.numpy() == c], rowvar=False)
                            for c in range(3)]).astype(np.float32)
    np.savez(os.path.join(data_root, reference.moments_filename("Toy32", space)), mu=pool.mean(0),
             sigma=np.cov(pool, rowvar=False), class_mu=class_mu, class_sigma=class_sigma,
             class_counts=np.bincount(labels.numpy()), class_names=np.array(["a", "b", "c"]),
             metric_space=np.array(space))
    np.savez(os.path.join(data_root, reference.features_filename("Toy32", space)),
             pool=pool.astype(np.float32),
             labels=labels.numpy())


def test_metrics_of_the_reference_data_itself(tmp_path):
    net = TinyBackbone()
    images, labels = torch.rand(60, 3, 16, 16) * 2 - 1, torch.arange(60) % 3
    write_reference(str(tmp_path), net, images, labels)
    get_metrics = evaluation.Metrics("Toy32", net=net, data_root=str(tmp_path), kmmd=True,
                                     mfid=True)
    for use_torch, tolerance in ((False, 1e-6), (True, 1e-3)):
        metrics = get_metrics(batches_of(images, labels, 16), 60, num_splits=3, use_torch=use_torch)
        assert metrics["FID"] == pytest.approx(0, abs=tolerance)
        assert metrics["mFID"] == pytest.approx(0, abs=tolerance)
        assert metrics["KMMD"] == pytest.approx(0, abs=1e-4)
        assert "precision" not in metrics
    assert np.isfinite(metrics["IS_mean"]) and metrics["IS_mean"] >= 1
    expected_acc = float((net(images)[1].argmax(1) == labels).float().mean())
    assert metrics["class_acc"] == pytest.approx(expected_acc)
    assert metrics["metric_space"] == "tiny"


def test_metrics_of_other_images_are_positive(tmp_path):
    net = TinyBackbone()
    images, labels = torch.rand(60, 3, 16, 16) * 2 - 1, torch.arange(60) % 3
    write_reference(str(tmp_path), net, images, labels)
    get_metrics = evaluation.Metrics("Toy32", net=net, data_root=str(tmp_path), kmmd=True)
    darker = batches_of(images * 0.5 - 0.5, labels, 20)
    metrics = get_metrics(darker, 60, num_splits=3)
    assert metrics["FID"] > 1e-3 and metrics["KMMD"] > 1e-3 and "mFID" not in metrics


def test_precision_and_recall_against_the_reference_features(tmp_path):
    net = TinyBackbone()
    images, labels = torch.rand(60, 3, 16, 16) * 2 - 1, torch.arange(60) % 3
    write_reference(str(tmp_path), net, images, labels)
    get_metrics = evaluation.Metrics("Toy32", net=net, data_root=str(tmp_path),
                                     precision_recall=True)
    same = get_metrics(batches_of(images, labels, 16), 60, num_splits=3)
    assert (same["precision"], same["recall"]) == (1.0, 1.0)  # the reference images themselves
    one_image = get_metrics(batches_of(images[:1].expand(60, -1, -1, -1), labels, 16), 60,
                            num_splits=3)
    assert one_image["recall"] <= 1 / 60  # a collapsed generator covers at most the image it copies


def test_missing_moments_say_how_to_make_them(tmp_path):
    with pytest.raises(utils.UsageError, match="prepare_data.sh"):
        evaluation.Metrics("Toy32_hdf5", net=TinyBackbone(), data_root=str(tmp_path))


def test_moments_of_another_metric_space_are_refused(tmp_path):
    net = TinyBackbone()
    images, labels = torch.rand(30, 3, 16, 16) * 2 - 1, torch.arange(30) % 3
    write_reference(str(tmp_path), net, images, labels, space="inception")
    path = os.path.join(str(tmp_path), reference.moments_filename("Toy32", "inception"))
    with pytest.raises(utils.UsageError, match="holds inception statistics"):
        evaluation.Metrics("Toy32", net=net, moments_path=path)


def test_no_fid_needs_no_moments(tmp_path):
    images, labels = torch.rand(30, 3, 16, 16) * 2 - 1, torch.arange(30) % 3
    get_metrics = evaluation.Metrics("Toy32", fid=False, net=TinyBackbone(),
                                     data_root=str(tmp_path))
    metrics = get_metrics(batches_of(images, labels, 10), 30, num_splits=3)
    assert np.isnan(metrics["FID"]) and metrics["class_acc"] is None and metrics["IS_mean"] >= 1


def test_damaged_reference_files_and_missing_kmmd_features_are_named_up_front(tmp_path):
    moments = tmp_path / "Toy32_tiny_moments.npz"
    np.savez(moments, mu=np.zeros(8), sigma=np.eye(8), metric_space="tiny")
    with pytest.raises(utils.UsageError, match="features \\(needed for KMMD\\)"):
        evaluation.Metrics("Toy32", net=TinyBackbone(), data_root=str(tmp_path), kmmd=True)
    with pytest.raises(utils.UsageError, match="features \\(needed for precision and recall\\)"):
        evaluation.Metrics("Toy32", net=TinyBackbone(), data_root=str(tmp_path),
                           precision_recall=True)
    with pytest.raises(utils.UsageError, match="mFID needs per-class statistics"):
        evaluation.Metrics("Toy32", net=TinyBackbone(), data_root=str(tmp_path), mfid=True)
    moments.write_bytes(moments.read_bytes()[:100])  # a truncated file
    with pytest.raises(utils.UsageError, match="is damaged .*calculate_inception_moments.py"):
        evaluation.Metrics("Toy32", net=TinyBackbone(), data_root=str(tmp_path))


class CountingBackbone(TinyBackbone):
    """TinyBackbone that counts the images it is given."""

    def __init__(self):
        super().__init__()
        self.images_seen = 0

    def forward(self, x):
        self.images_seen += x.shape[0]
        return super().forward(x)


def test_every_metric_of_an_evaluation_reads_one_pass_of_the_samples(tmp_path):
    net = CountingBackbone()
    images, labels = torch.rand(60, 3, 16, 16) * 2 - 1, torch.arange(60) % 3
    write_reference(str(tmp_path), net, images, labels)
    net.images_seen = 0
    get_metrics = evaluation.Metrics("Toy32", net=net, data_root=str(tmp_path), kmmd=True,
                                     mfid=True, precision_recall=True)
    assert get_metrics.names == list(evaluation.REGISTRY)  # every registered metric asked for
    results = get_metrics(batches_of(images, labels, 20), 60, num_splits=3)
    assert net.images_seen == 60
    assert set(results) == {"IS_mean", "IS_std", "FID", "metric_space", "mFID", "KMMD",
                            "precision", "recall", "class_acc"}
    assert all(isinstance(results[key], float) for key in results if key != "metric_space")


def test_the_real_side_computed_once_gives_each_evaluation_the_values_of_a_fresh_computation(
        tmp_path):
    net = TinyBackbone()
    images, labels = torch.rand(60, 3, 16, 16) * 2 - 1, torch.arange(60) % 3
    write_reference(str(tmp_path), net, images, labels)
    get_metrics = evaluation.Metrics("Toy32", net=net, data_root=str(tmp_path), kmmd=True,
                                     precision_recall=True)
    real = torch.from_numpy(np.load(tmp_path / "Toy32_tiny_features.npz")["pool"])
    for shift in (0.5, -0.3):  # the second evaluation reuses the real side of the first
        fake = (images * 0.5 + shift).clamp(-1, 1)
        results = get_metrics(batches_of(fake, labels, 20), 60, num_splits=3)
        with torch.no_grad():
            pool = net(fake)[0]
        assert results["KMMD"] == kmmd.calc_mmd(real, pool)  # bit for bit
        expected = precision_recall.precision_recall(real, pool)
        assert (results["precision"], results["recall"]) == (expected["precision"],
                                                             expected["recall"])
