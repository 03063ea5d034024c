"""Specification of inception_utils: FID, IS, KMMD, class consistency, backbones, the metrics entry point."""
import importlib.util
import math
import os
import urllib.error

import numpy as np
import pytest
import scipy.linalg
import torch
import torchvision

import inception_utils as iu
from conftest import TinyBackbone
import utils


def calc_mmd_dense(real_feats, fake_feats, sigma: float = 1.0) -> float:
    """The official cGANTransfer formula on full distance matrices, in float64 (written here from its
    definition, as a reference for small inputs)."""
    x = torch.as_tensor(real_feats).double().cpu()
    y = torch.as_tensor(fake_feats).double().cpu()
    squared_distances = lambda a, b: (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.t()
    m_xx, m_yy, m_xy = squared_distances(x, x), squared_distances(y, y), squared_distances(x, y)
    scale = m_xx.mean()
    kernel = lambda m: torch.exp(-m / (scale * 2 * sigma * sigma))
    return math.sqrt(kernel(m_xx).mean() + kernel(m_yy).mean() - 2 * kernel(m_xy).mean())


def frechet_formula(mu1, sigma1, mu2, sigma2):
    """||mu1 - mu2||^2 + tr(s1 + s2 - 2 sqrtm(s1 s2)), written out plainly."""
    diff = mu1 - mu2
    return diff @ diff + np.trace(sigma1 + sigma2 - 2 * scipy.linalg.sqrtm(sigma1 @ sigma2).real)


def two_feature_sets(n=600, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(n, dim)) @ rng.normal(size=(dim, dim))
    fake = 1.3 * rng.normal(size=(n, dim)) @ rng.normal(size=(dim, dim)) + 0.5
    return real, fake


def moments(feats):
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


# ----------------------------------------------------------------------------- FID

def test_numpy_fid_equals_the_frechet_formula():
    real, fake = two_feature_sets()
    expected = frechet_formula(*moments(real), *moments(fake))
    assert iu.numpy_calculate_frechet_distance(*moments(real), *moments(fake)) == pytest.approx(expected, rel=1e-6)


def test_newton_schulz_fid_is_within_a_thousandth_of_the_formula():
    real, fake = two_feature_sets()
    expected = frechet_formula(*moments(real), *moments(fake))
    tensors = [torch.as_tensor(a, dtype=torch.float32) for a in (*moments(real), *moments(fake))]
    assert float(iu.torch_calculate_frechet_distance(*tensors)) == pytest.approx(expected, rel=1e-3)


def test_newton_schulz_square_root_squares_back():
    a = torch.randn(2, 12, 12, dtype=torch.float64)
    spd = a @ a.transpose(1, 2) + torch.eye(12, dtype=torch.float64)
    root = iu.sqrt_newton_schulz(spd, 50)
    torch.testing.assert_close(root @ root, spd, rtol=1e-6, atol=1e-6)


def test_fid_of_a_gaussian_to_itself_is_zero():
    real, _ = two_feature_sets()
    assert iu.numpy_calculate_frechet_distance(*moments(real), *moments(real)) == pytest.approx(0, abs=1e-6)


def test_torch_fid_leaves_its_inputs_unchanged():
    sigma = torch.eye(3)
    iu.torch_calculate_frechet_distance(torch.zeros(3), sigma, torch.ones(3), sigma)
    assert torch.equal(sigma, torch.eye(3))


# ----------------------------------------------------------------------------- IS

def test_uniform_predictions_score_1():
    pred = np.full((1000, 7), 1 / 7)
    mean, std = iu.calculate_inception_score(pred)
    assert mean == pytest.approx(1.0) and std == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("k", [2, 5, 10])
def test_confident_balanced_predictions_over_k_classes_score_k(k):
    pred = np.eye(k)[np.arange(1000) % k]  # every split of 100 holds each class equally often
    mean, _ = iu.calculate_inception_score(pred, num_splits=10)
    assert mean == pytest.approx(k)


def test_inception_score_needs_a_sample_per_split():
    with pytest.raises(utils.UsageError, match="num_splits"):
        iu.calculate_inception_score(np.full((5, 3), 1 / 3), num_splits=10)


# ----------------------------------------------------------------------------- KMMD

def test_blockwise_kmmd_equals_the_dense_official_formula():
    generator = torch.Generator().manual_seed(0)
    real = torch.rand(2000, 512, generator=generator).pow(2) * 3  # non-negative, like pool features
    fake = torch.rand(2000, 512, generator=generator).pow(2) * 3.1 + 0.01
    dense = calc_mmd_dense(real, fake)
    assert dense > 0.01
    # 300 does not divide 2000: ragged edge blocks, and 7 x 7 blocks per kernel matrix
    assert iu.calc_mmd(real, fake, block_size=300) == pytest.approx(dense, abs=1e-6)


def test_kmmd_takes_unequal_set_sizes_and_numpy_input():
    real, fake = two_feature_sets(n=300)
    assert iu.calc_mmd(real, fake[:170], block_size=64) == pytest.approx(calc_mmd_dense(real, fake[:170]), abs=1e-6)


def test_kmmd_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    real, _ = two_feature_sets(n=300)
    assert iu.calc_mmd(real, real, block_size=64) == pytest.approx(0, abs=1e-5)
    assert iu.calc_mmd(real, real + 0.5) < iu.calc_mmd(real, real + 2.0)


def test_kmmd_scale_is_the_mean_real_real_squared_distance():
    x = torch.randn(100, 5, dtype=torch.float64)
    assert iu.mean_squared_distance(x, block_size=7) == pytest.approx(float((torch.cdist(x, x) ** 2).mean()), rel=1e-9)


# ----------------------------------------------------------------------------- precision and recall

def brute_force_precision_recall(real, fake, k):
    """Kynkäänniemi et al.'s definition on full float64 distance matrices: a point's radius is the
    distance to its k-th nearest other point of its own set; a point counts when it lies within the
    radius of some point of the other set."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    dist = lambda a, b: np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    def radii(x):
        d = dist(x, x)
        np.fill_diagonal(d, np.inf)
        return np.sort(d, axis=1)[:, k - 1]

    precision = (dist(fake, real) <= radii(real)[None, :]).any(axis=1).mean()
    recall = (dist(real, fake) <= radii(fake)[None, :]).any(axis=1).mean()
    return precision, recall


def test_blockwise_precision_recall_equals_the_brute_force_definition():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(45, 6))
    fake = 1.2 * rng.normal(size=(38, 6)) + 1.0  # overlapping, neither inside the other
    expected = brute_force_precision_recall(real, fake, k=3)
    assert 0.1 < expected[0] < 0.9 and 0.1 < expected[1] < 0.9  # a case where counting matters
    # block_size 7 divides neither set: ragged blocks, and the k nearest carried across blocks
    got = iu.precision_recall(real, fake, k=3, block_size=7)
    assert (got["precision"], got["recall"]) == pytest.approx(expected, abs=1e-12)


def test_precision_recall_of_hand_placed_points_on_a_line():
    # k = 1. Real radii: 0,1,2,3 -> 1 and 10 -> 7. Fake radii: all 1 (0.5-1.5 and 40-41 pairs).
    # Fakes 0.5 and 1.5 lie within 1 of a real point; 40 and 41 are 30 from 10 (radius 7): precision 2/4.
    # Reals 0, 1, 2 lie within 1 of 0.5 or 1.5; 3 is 1.5 from 1.5; 10 is far from all: recall 3/5.
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0]])
    fake = torch.tensor([[0.5], [1.5], [40.0], [41.0]])
    assert iu.precision_recall(real, fake, k=1) == pytest.approx({"precision": 0.5, "recall": 0.6})


def test_a_point_on_the_boundary_of_a_ball_is_inside_it():
    # k = 1: both real radii are 2 and the fake 4 lies exactly 2 from the real 2; the fake 5 does not
    real, fake = torch.tensor([[0.0], [2.0]]), torch.tensor([[4.0], [5.0]])
    assert iu.precision_recall(real, fake, k=1) == {"precision": 0.5, "recall": 0.0}


def test_a_set_against_itself_has_precision_and_recall_1():
    real = torch.randn(300, 16)
    assert iu.precision_recall(real, real.clone(), block_size=64) == {"precision": 1.0, "recall": 1.0}


def test_a_collapsed_fake_set_is_precise_but_recalls_almost_nothing():
    real = torch.randn(200, 8, generator=torch.Generator().manual_seed(1))
    fake = real[0] + 1e-3 * torch.randn(50, 8)  # every sample within a tiny ball around one real point
    result = iu.precision_recall(real, fake)
    # each fake is ~0.003 from real[0], whose ball reaches its 3rd neighbour (~1 away): all precise.
    # The fake balls are ~0.003 wide, so they hold at most real[0] itself: recall <= 1/200.
    assert result["precision"] == 1.0 and result["recall"] <= 1 / 200


def test_fakes_far_from_every_real_feature_have_precision_and_recall_0():
    real = torch.randn(100, 4)
    assert iu.precision_recall(real, real + 100.0) == {"precision": 0.0, "recall": 0.0}


def test_precision_recall_needs_more_features_than_k():
    with pytest.raises(utils.UsageError, match=r"k=3 needs more than 3 real features .* got 3"):
        iu.precision_recall(torch.randn(3, 2), torch.randn(10, 2), k=3)
    with pytest.raises(utils.UsageError, match=r"k=5 needs more than 5 fake features"):
        iu.precision_recall(torch.randn(10, 2), torch.randn(4, 2), k=5)


# ----------------------------------------------------------------------------- class consistency

def test_class_consistency_maps_target_names_to_backbone_classes():
    class_map = iu.target_to_backbone_classes(["cat", "dog"], ["dog", "fish", "cat"])
    assert class_map.tolist() == [2, 0]
    probs = torch.eye(3)[[2, 2, 0, 1]]  # predicted: cat, cat, dog, fish
    labels = torch.tensor([0, 1, 1, 1])  # made for: cat, dog, dog, dog
    assert iu.class_consistency(probs, labels, class_map) == pytest.approx(0.5)


def test_class_consistency_is_skipped_when_names_do_not_match():
    assert iu.target_to_backbone_classes(["cat", "zebra"], ["dog", "cat"]) is None
    assert iu.target_to_backbone_classes(["cat"], None) is None


# ----------------------------------------------------------------------------- backbones

@pytest.fixture
def offline_empty_hub(tmp_path, monkeypatch):
    """No cached weights, and any download fails."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)


def test_missing_inception_weights_offline_is_a_clear_usage_error(offline_empty_hub, tmp_path):
    with pytest.raises(utils.UsageError) as err:
        iu.load_inception_net("inception")
    message = str(err.value)
    expected_file = os.path.join(str(tmp_path / "torch_home"), "hub", "checkpoints", "inception_v3_google-0cc3c7bd.pth")
    assert expected_file in message and "--inception_weights" in message


def test_inception_weights_from_a_local_state_dict(tmp_path):
    net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=False)
    path = str(tmp_path / "inception.pth")
    torch.save(net.state_dict(), path)
    backbone = iu.load_inception_net("inception", weights=path)
    pool, logits = backbone(torch.rand(2, 3, 32, 32) * 2 - 1)  # resized to 299 inside
    assert pool.shape == (2, 2048) and logits.shape == (2, 1000)
    assert backbone.metric_space == "inception" and len(backbone.class_names) == 1000
    assert not any(p.requires_grad for p in backbone.parameters()) and not backbone.training


def test_bad_inception_weights_files_are_usage_errors(tmp_path):
    with pytest.raises(utils.UsageError, match="does not exist"):
        iu.load_inception_net("inception", weights=str(tmp_path / "missing.pth"))
    foreign = str(tmp_path / "foreign.pth")
    torch.save({"weight": torch.zeros(1)}, foreign)
    with pytest.raises(utils.UsageError, match="do not fit"):
        iu.load_inception_net("inception", weights=foreign)


def test_unknown_backbone_and_classifier_without_checkpoint_are_usage_errors():
    with pytest.raises(utils.UsageError, match="unknown backbone"):
        iu.load_inception_net("resnet")
    with pytest.raises(utils.UsageError, match="--inception_weights"):
        iu.load_inception_net("classifier")


def test_tf_inception_without_pytorch_fid_is_a_usage_error():
    if importlib.util.find_spec("pytorch_fid") is not None:
        pytest.skip("pytorch-fid is installed")
    with pytest.raises(utils.UsageError, match="pip install pytorch-fid"):
        iu.load_inception_net("tf_inception")


# ----------------------------------------------------------------------------- the metrics entry point

def batches_of(images, labels, batch_size):
    """A sample() that walks (images, labels) in order, batch by batch, round and round."""
    state = {"start": 0}

    def sample():
        start = state["start"]
        state["start"] = (start + batch_size) % len(images)
        return images[start:start + batch_size], labels[start:start + batch_size]

    return sample


def test_accumulate_returns_exactly_the_number_asked_for():
    images, labels = torch.rand(50, 3, 8, 8) * 2 - 1, torch.arange(50) % 3
    pool, probs, got_labels = iu.accumulate_inception_activations(batches_of(images, labels, 16), TinyBackbone(), 40)
    assert pool.shape == (40, 8) and probs.shape == (40, 3) and got_labels.tolist() == labels[:40].tolist()
    torch.testing.assert_close(probs.sum(1), torch.ones(40))


def write_reference(data_root, net, images, labels, space="tiny"):
    """What calculate_inception_moments.py writes, computed directly."""
    with torch.no_grad():
        pool = net(images)[0].double().numpy()
    class_mu = np.stack([pool[labels.numpy() == c].mean(0) for c in range(3)])
    class_sigma = np.stack([np.cov(pool[labels.numpy() == c], rowvar=False) for c in range(3)]).astype(np.float32)
    np.savez(os.path.join(data_root, iu.moments_filename("Toy32", space)), mu=pool.mean(0),
             sigma=np.cov(pool, rowvar=False), class_mu=class_mu, class_sigma=class_sigma,
             class_counts=np.bincount(labels.numpy()), class_names=np.array(["a", "b", "c"]),
             metric_space=np.array(space))
    np.savez(os.path.join(data_root, iu.features_filename("Toy32", space)), pool=pool.astype(np.float32),
             labels=labels.numpy())


def test_metrics_of_the_reference_data_itself(tmp_path):
    net = TinyBackbone()
    images, labels = torch.rand(60, 3, 16, 16) * 2 - 1, torch.arange(60) % 3
    write_reference(str(tmp_path), net, images, labels)
    get_metrics = iu.Metrics("Toy32", net=net, data_root=str(tmp_path), kmmd=True, mfid=True)
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
    get_metrics = iu.Metrics("Toy32", net=net, data_root=str(tmp_path), kmmd=True)
    darker = batches_of(images * 0.5 - 0.5, labels, 20)
    metrics = get_metrics(darker, 60, num_splits=3)
    assert metrics["FID"] > 1e-3 and metrics["KMMD"] > 1e-3 and "mFID" not in metrics


def test_precision_and_recall_against_the_reference_features(tmp_path):
    net = TinyBackbone()
    images, labels = torch.rand(60, 3, 16, 16) * 2 - 1, torch.arange(60) % 3
    write_reference(str(tmp_path), net, images, labels)
    get_metrics = iu.Metrics("Toy32", net=net, data_root=str(tmp_path), precision_recall=True)
    same = get_metrics(batches_of(images, labels, 16), 60, num_splits=3)
    assert (same["precision"], same["recall"]) == (1.0, 1.0)  # the reference images themselves
    one_image = get_metrics(batches_of(images[:1].expand(60, -1, -1, -1), labels, 16), 60, num_splits=3)
    assert one_image["recall"] <= 1 / 60  # a collapsed generator covers at most the image it copies


def test_missing_moments_say_how_to_make_them(tmp_path):
    with pytest.raises(utils.UsageError, match="prepare_data.sh"):
        iu.Metrics("Toy32_hdf5", net=TinyBackbone(), data_root=str(tmp_path))


def test_moments_of_another_metric_space_are_refused(tmp_path):
    net = TinyBackbone()
    images, labels = torch.rand(30, 3, 16, 16) * 2 - 1, torch.arange(30) % 3
    write_reference(str(tmp_path), net, images, labels, space="inception")
    path = os.path.join(str(tmp_path), iu.moments_filename("Toy32", "inception"))
    with pytest.raises(utils.UsageError, match="holds inception statistics"):
        iu.Metrics("Toy32", net=net, moments_path=path)


def test_no_fid_needs_no_moments(tmp_path):
    images, labels = torch.rand(30, 3, 16, 16) * 2 - 1, torch.arange(30) % 3
    get_metrics = iu.Metrics("Toy32", fid=False, net=TinyBackbone(), data_root=str(tmp_path))
    metrics = get_metrics(batches_of(images, labels, 10), 30, num_splits=3)
    assert np.isnan(metrics["FID"]) and metrics["class_acc"] is None and metrics["IS_mean"] >= 1


def test_damaged_reference_files_and_missing_kmmd_features_are_named_up_front(tmp_path):
    moments = tmp_path / "Toy32_tiny_moments.npz"
    np.savez(moments, mu=np.zeros(8), sigma=np.eye(8), metric_space="tiny")
    with pytest.raises(utils.UsageError, match="features \\(needed for KMMD\\)"):
        iu.Metrics("Toy32", net=TinyBackbone(), data_root=str(tmp_path), kmmd=True)
    with pytest.raises(utils.UsageError, match="features \\(needed for precision and recall\\)"):
        iu.Metrics("Toy32", net=TinyBackbone(), data_root=str(tmp_path), precision_recall=True)
    with pytest.raises(utils.UsageError, match="mFID needs per-class statistics"):
        iu.Metrics("Toy32", net=TinyBackbone(), data_root=str(tmp_path), mfid=True)
    moments.write_bytes(moments.read_bytes()[:100])  # a truncated file
    with pytest.raises(utils.UsageError, match="is damaged .*calculate_inception_moments.py"):
        iu.Metrics("Toy32", net=TinyBackbone(), data_root=str(tmp_path))
