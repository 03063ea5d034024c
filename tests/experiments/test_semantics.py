"""experiments/semantics.py: is a new class's combination ranked like the old classes' similarity to
it? The oracles are written out here: Spearman's rho of a one-hot share vector against a similarity
ranking, computed by hand from the rank vectors, and exp(entropy) of simple share vectors."""
import json
import math

import numpy as np
import pytest

import utils
from experiments import semantics
from fashion_split import split_study  # noqa: F401 (a fixture)
from worlds import fashion, registry
from test_explain import N_NEW, N_OLD, NEW, OLD, save_experiment


def test_the_effective_number_of_old_classes_counts_equal_shares():
    assert semantics.effective_number([0.0, 0.0, 1.0, 0.0]) == pytest.approx(1.0)
    assert semantics.effective_number([0.5, 0.5, 0.0, 0.0]) == pytest.approx(2.0)
    assert semantics.effective_number([0.25] * 4) == pytest.approx(4.0)


def test_a_class_drawing_on_its_most_similar_old_class_has_positive_rho_and_on_its_least_negative(
        tmp_path):
    # New class c takes old class (3, 0, 4)[c] alone (tests/test_explain.py), no residual.
    save_experiment(tmp_path, "kp", suffix="", class_names=NEW, old_class_names=OLD)
    # old class 3 the most similar to new class 0
    similarity = np.array([[0.1, 0.2, 0.3, 0.9, 0.4],
                           # old class 0 the least similar to new class 1
                           [0.1, 0.2, 0.3, 0.9, 0.4],
                           # old class 4 the least similar to new class 2
                           [0.5, 0.4, 0.3, 0.2, 0.1]])
    assert similarity.shape == (N_NEW, N_OLD)
    rows = semantics.analyse_run(str(tmp_path / "weights" / "kp"),
                                 semantics.Similarity(similarity, NEW, OLD))
    # Ranks of a one-hot share vector: the chosen class 5, the others tied at 2.5; centred, (2, -0.5
    # x 4). Centred similarity ranks of row 0: (-2, -1, 0, 2, 1). rho = 5 / sqrt(5 * 10) =
    # 1/sqrt(2).
    assert [row["class"] for row in rows] == NEW
    assert [row["rho"] for row in rows] == pytest.approx([1 / math.sqrt(2), -1 / math.sqrt(2),
                                                          -1 / math.sqrt(2)])
    assert [row["top"] for row in rows] == [OLD[3], OLD[0], OLD[4]]
    assert [row["residual_share"] for row in rows] == pytest.approx([0.0] * N_NEW)
    assert [row["effective_old_classes"] for row in rows] == pytest.approx([1.0] * N_NEW)


def test_old_classes_are_matched_by_name_not_by_label(tmp_path):
    """The similarity's classes in another order (another data folder's labels): the same rho."""
    save_experiment(tmp_path, "kp", suffix="", class_names=NEW, old_class_names=OLD)
    similarity = np.array([[0.1, 0.2, 0.3, 0.9, 0.4], [0.1, 0.2, 0.3, 0.9, 0.4],
                           [0.5, 0.4, 0.3, 0.2, 0.1]])
    order = [4, 2, 0, 3, 1]
    shuffled = semantics.Similarity(similarity[::-1][:, order], NEW[::-1], [OLD[j] for j in order])
    folder = str(tmp_path / "weights" / "kp")
    assert semantics.analyse_run(folder, shuffled) == semantics.analyse_run(
        folder, semantics.Similarity(similarity, NEW, OLD))


def test_a_run_of_another_split_is_refused(tmp_path):
    save_experiment(tmp_path, "kp", suffix="", class_names=NEW, old_class_names=OLD)
    other = semantics.Similarity(np.zeros((N_NEW, N_OLD)), NEW, [*OLD[:-1], "another old class"])
    with pytest.raises(utils.UsageError, match="another split"):
        semantics.analyse_run(str(tmp_path / "weights" / "kp"), other)


def test_a_study_folder_without_its_world_description_is_refused_with_what_to_do(tmp_path):
    with pytest.raises(utils.UsageError, match="holds no world.json") as err:
        semantics.main(["--study", str(tmp_path), "--shots", "1"])
    assert f"python -m experiments.study --out {tmp_path} --world fashion" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_a_world_other_than_the_study_s_is_refused(tmp_path):
    registry.record_study_world(str(tmp_path), registry.get("fashion"))
    with pytest.raises(utils.UsageError, match="--world toy: the study .* is of the fashion world"):
        semantics.main(["--study", str(tmp_path), "--world", "toy"])


@pytest.mark.slow
def test_a_study_of_another_split_is_analysed_against_its_own_classes(split_study, monkeypatch):
    """The split study (fashion_split.py): its old classes' reference folder is prepared from the
    raw data into its data folder, of its split; the analysis names the split's classes."""
    monkeypatch.setenv("FASHION_MNIST_DIR", str(split_study.raw))
    numbers = semantics.main(["--study", str(split_study.out), "--shots", "1"])
    # Label order: the class folders' sorted names (T-shirt/top's folder is T-shirt_top).
    assert numbers["new_classes"] == ["Bag", "Shirt", "Sneaker"]
    assert numbers["old_classes"] == ["Ankle boot", "Coat", "Dress", "Pullover", "Sandal",
                                      "T-shirt/top", "Trouser"]
    rows = numbers["methods"]["BN"]["classes"]
    assert [row["class"] for row in rows] == ["Bag", "Shirt", "Sneaker"]
    assert all(math.isfinite(row["rho"]) and row["top"] in numbers["old_classes"] for row in rows)
    data = split_study.out / "shots1" / "data"
    reference = json.loads((data / f"{fashion.OLD_DATASET}_reference" / "dataset.json").read_text())
    assert sorted(reference["split"]["new"]) == ["Bag", "Shirt", "Sneaker"]
    table = (split_study.out / "semantics_shots1.md").read_text()
    assert "new ones (Shirt, Sneaker, Bag)" in table and "| BN | 1 |" in table
