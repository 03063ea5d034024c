"""classifier.py and the shipped assets/toy_classifier.pth: the offline evaluation backbone."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

import classifier
import inception_utils
from worlds import toy
import train_classifier
import utils
from conftest import TinyBackbone

SHIPPED = os.path.join(os.path.dirname(__file__), "..", "assets", "toy_classifier.pth")


def as_model_input(images):
    """uint8 [N, 32, 32, 3] -> float [N, 3, 32, 32] in [-1, 1], the generator's range."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.5)


def test_forward_gives_pooled_features_and_logits_over_all_toy_classes():
    model = classifier.build_classifier(toy.ALL_CLASSES).eval()
    features, logits = model(torch.zeros(2, 3, 32, 32))
    assert features.shape == (2, classifier.FEATURE_DIM) and logits.shape == (2, 16)
    assert model.class_names == toy.ALL_CLASSES


def test_shipped_weights_are_small_and_name_the_toy_classes():
    assert os.path.getsize(SHIPPED) < 2_000_000
    model = classifier.load_classifier(SHIPPED)
    assert not model.training
    assert model.class_names == toy.ALL_CLASSES


def test_shipped_classifier_recognises_freshly_generated_images():
    images, labels = toy.render_dataset(toy.ALL_CLASSES, 25, seed=12345)
    model = classifier.load_classifier(SHIPPED)
    with torch.no_grad():
        _, logits = model(as_model_input(images))
    accuracy = (logits.argmax(1) == torch.from_numpy(labels)).float().mean().item()
    assert accuracy > 0.9


def test_save_and_load_round_trip(tmp_path):
    model = classifier.build_classifier(toy.ALL_CLASSES).eval()
    path = str(tmp_path / "clf.pth")
    utils.atomic_save(classifier.checkpoint_of(model), path)
    loaded = classifier.load_classifier(path)
    x = torch.randn(3, 3, 32, 32).clamp(-1, 1)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(model(x), loaded(x)))


def test_missing_checkpoint_says_how_to_make_one(tmp_path):
    with pytest.raises(utils.UsageError, match="train_classifier.py"):
        classifier.load_classifier(str(tmp_path / "nope.pth"))


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(b"definitely not torch")
    with pytest.raises(utils.UsageError, match="not a readable classifier checkpoint"):
        classifier.load_classifier(str(path))


def test_a_checkpoint_without_the_classifier_keys_is_refused(tmp_path):
    path = str(tmp_path / "G.pth")
    utils.atomic_save({"linear.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(utils.UsageError, match="not a classifier checkpoint"):
        classifier.load_classifier(path)


def test_weights_of_another_shape_are_refused(tmp_path):
    checkpoint = classifier.checkpoint_of(classifier.build_classifier(toy.ALL_CLASSES))
    checkpoint["class_names"] = toy.NEW_CLASSES  # 4 names for a 16-way head
    path = str(tmp_path / "clf.pth")
    utils.atomic_save(checkpoint, path)
    with pytest.raises(utils.UsageError, match="does not fit"):
        classifier.load_classifier(path)


def test_the_shipped_checkpoint_loads_its_weights_unchanged_at_32_px():
    saved = torch.load(SHIPPED, weights_only=True)
    model = classifier.load_classifier(SHIPPED)
    assert model.resolution == saved["resolution"] == 32
    assert model.feature_dim == saved["feature_dim"] == 128
    loaded = model.state_dict()
    assert loaded.keys() == saved["state_dict"].keys()
    assert all(torch.equal(loaded[name], saved["state_dict"][name]) for name in loaded)


# --- Any image-folder dataset

COLOURS = {"blue": (40, 60, 220), "green": (40, 200, 60), "red": (220, 40, 40)}


def write_squares(root, per_class, seed, classes=tuple(COLOURS), size=16):
    """root/<colour>/<i>.png: a coloured square at a random place on a dark noisy background."""
    rng = np.random.default_rng(seed)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
            top, left = rng.integers(0, size // 2, size=2)
            image[top:top + size // 2, left:left + size // 2] = COLOURS[name]
            Image.fromarray(image).save(root / name / f"{i}.png")
    return str(root)


def read_as_model_input(folder, name):
    """Every PNG of folder/name as [N, 3, R, R] in [-1, 1] ((x / 255 - 0.5) / 0.5, the data's
    mapping)."""
    paths = sorted(p for p in (folder / name).iterdir())
    images = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])
    return (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5


@pytest.fixture(scope="module")
def squares(tmp_path_factory):
    root = tmp_path_factory.mktemp("squares")
    return write_squares(root / "train", 12, seed=0), write_squares(root / "test", 4, seed=1), root


def train_on(squares, out, *flags):
    train, test, _ = squares
    train_classifier.main(["--train_folder", train, "--test_folder", test, "--resolution", "16",
                           "--out", str(out), "--epochs", "2", "--batch_size", "8", *flags])


def test_a_classifier_trained_on_folders_keeps_their_class_names_resolution_and_accuracy(squares,
                                                                                         tmp_path):
    out = tmp_path / "squares.pth"
    train_on(squares, out)
    checkpoint = torch.load(out, weights_only=True)
    model = classifier.load_classifier(str(out))
    # sorted folder names
    assert model.class_names == ["blue", "green", "red"] and model.resolution == 16
    assert squares[1] in checkpoint["trained_on"]
    # the stored held-out accuracy is what the saved model scores on the test folder
    test_root = squares[2] / "test"
    with torch.no_grad():
        per_class = {name: (model(read_as_model_input(test_root, name))[1].argmax(1) == label)
                     .float().mean().item()
                     for label, name in enumerate(model.class_names)}
    assert checkpoint["test_accuracy"]["per_class"] == pytest.approx(per_class)
    assert checkpoint["test_accuracy"]["overall"] == pytest.approx(sum(per_class.values()) / 3)


def test_no_flip_trains_without_ever_mirroring(squares, tmp_path, monkeypatch):
    def refuse(x):
        raise AssertionError("an image was mirrored")

    monkeypatch.setattr(train_classifier, "random_flips", refuse)
    train_on(squares, tmp_path / "a.pth", "--no_flip")
    with pytest.raises(AssertionError, match="mirrored"):
        train_on(squares, tmp_path / "b.pth")


def test_train_and_test_folders_must_hold_the_same_classes(squares, tmp_path):
    other_test = write_squares(tmp_path / "test", 2, seed=2, classes=("blue", "red"))
    with pytest.raises(utils.UsageError,
                       match="only in --train_folder: green; only in --test_folder: none"):
        train_classifier.main(["--train_folder", squares[0], "--test_folder", other_test,
                               "--resolution", "16", "--out", str(tmp_path / "c.pth")])


@pytest.mark.parametrize("flags, message", [
    (["--train_folder", "A", "--resolution", "16", "--out", "x.pth"],
     "--train_folder needs --test_folder"),
    (["--train_folder", "A", "--test_folder", "B", "--out", "x.pth"], "needs --resolution"),
    (["--train_folder", "A", "--test_folder", "B", "--resolution", "16"], "needs --out"),
    (["--train_folder", "A", "--test_folder", "B", "--resolution", "16", "--out", "x.pth",
      "--images_per_class", "5"], "--images_per_class is for --world toy only"),
    (["--world", "toy", "--train_folder", "A", "--test_folder", "B"], "drop --train_folder"),
    (["--world", "toy", "--resolution", "64", "--out", "x.pth"], "the toy world is 32 px"),
])
def test_flags_that_do_not_fit_together_are_one_clear_error(flags, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(utils.UsageError, match=message):
        train_classifier.main(flags)


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(utils.UsageError, match="--train_folder .*nowhere is not a folder"):
        train_classifier.main(["--train_folder", str(tmp_path / "nowhere"), "--test_folder",
                               str(tmp_path), "--resolution", "16", "--out",
                               str(tmp_path / "x.pth")])


# --- What a classifier backbone may evaluate

def saved_classifier(tmp_path, class_names, resolution):
    path = str(tmp_path / "clf.pth")
    trained = classifier.build_classifier(class_names, resolution)
    utils.atomic_save(classifier.checkpoint_of(trained), path)
    return inception_utils.load_inception_net("classifier", path)


def write_moments(data_root, class_names, dim=classifier.FEATURE_DIM, space="classifier"):
    """Toy32 reference moments naming class_names (their values do not matter here)."""
    np.savez(os.path.join(data_root, inception_utils.moments_filename("Toy32", space)),
             mu=np.zeros(dim), sigma=np.eye(dim), class_names=np.array(class_names),
             metric_space=np.array(space))


def test_a_classifier_backbone_that_never_saw_some_evaluated_classes_is_refused_naming_them(
        tmp_path):
    net = saved_classifier(tmp_path, ["blue", "green"], 32)
    write_moments(str(tmp_path), ["blue", "red", "yellow"])
    message = (r"not trained on 2 class\(es\) of Toy32 \(reference .*\): red, yellow "
               r".*train_classifier.py")
    with pytest.raises(utils.UsageError, match=message):
        inception_utils.Metrics("Toy32", net=net, data_root=str(tmp_path))


def test_a_classifier_backbone_that_knows_more_classes_evaluates_class_consistency(tmp_path):
    net = saved_classifier(tmp_path, ["blue", "green", "red", "yellow"], 32)
    write_moments(str(tmp_path), ["green", "red"])
    get_metrics = inception_utils.Metrics("Toy32", net=net, data_root=str(tmp_path))
    images, labels = torch.rand(20, 3, 32, 32) * 2 - 1, torch.arange(20) % 2
    metrics = get_metrics(lambda: (images, labels), 20, num_splits=2, prints=False, use_torch=False)
    with torch.no_grad():
        predicted = net(images)[1].argmax(1)
    # green and red are the backbone's classes 1, 2
    expected = (predicted == labels + 1).float().mean().item()
    assert metrics["class_acc"] == pytest.approx(expected)


def test_an_inception_like_backbone_is_not_refused_for_classes_it_does_not_name(tmp_path):
    # a generic feature space, not the project classifier
    net = TinyBackbone(class_names=("a", "b", "c"))
    write_moments(str(tmp_path), ["red", "yellow"], dim=8, space="tiny")
    get_metrics = inception_utils.Metrics("Toy32", net=net, data_root=str(tmp_path))
    images, labels = torch.rand(10, 3, 32, 32) * 2 - 1, torch.arange(10) % 2
    assert get_metrics(lambda: (images, labels), 10, num_splits=2,
                       prints=False)["class_acc"] is None


def test_a_classifier_of_another_resolution_is_refused_before_and_during_evaluation(tmp_path):
    net = saved_classifier(tmp_path, ["blue", "green"], 16)
    write_moments(str(tmp_path), ["blue", "green"])
    with pytest.raises(utils.UsageError, match="trained on 16 px images but Toy32 is 32 px"):
        inception_utils.Metrics("Toy32", net=net, data_root=str(tmp_path))
    with pytest.raises(utils.UsageError,
                       match="trained on 16 px images but is given 32x32 px ones"):
        net(torch.zeros(1, 3, 32, 32))
