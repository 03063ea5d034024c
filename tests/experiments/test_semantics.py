"""experiments/semantics.py: is a new class's combination ranked like the old classes' similarity to it?
The oracles are written out here: Spearman's rho of a one-hot share vector against a similarity
ranking, computed by hand from the rank vectors, and exp(entropy) of simple share vectors."""
import math

import numpy as np
import pytest

from experiments import semantics
from test_explain import N_NEW, N_OLD, NEW, OLD, save_experiment


def test_the_effective_number_of_old_classes_counts_equal_shares():
    assert semantics.effective_number([0.0, 0.0, 1.0, 0.0]) == pytest.approx(1.0)
    assert semantics.effective_number([0.5, 0.5, 0.0, 0.0]) == pytest.approx(2.0)
    assert semantics.effective_number([0.25] * 4) == pytest.approx(4.0)


def test_a_class_drawing_on_its_most_similar_old_class_has_positive_rho_and_on_its_least_negative(tmp_path):
    # New class c takes old class (3, 0, 4)[c] alone (tests/test_explain.py), no residual.
    save_experiment(tmp_path, "kp", suffix="", class_names=NEW, old_class_names=OLD)
    similarity = np.array([[0.1, 0.2, 0.3, 0.9, 0.4],    # old class 3 the most similar to new class 0
                           [0.1, 0.2, 0.3, 0.9, 0.4],    # old class 0 the least similar to new class 1
                           [0.5, 0.4, 0.3, 0.2, 0.1]])   # old class 4 the least similar to new class 2
    assert similarity.shape == (N_NEW, N_OLD)
    rows = semantics.analyse_run(str(tmp_path / "weights" / "kp"), similarity)
    # Ranks of a one-hot share vector: the chosen class 5, the others tied at 2.5; centred, (2, -0.5 x 4).
    # Centred similarity ranks of row 0: (-2, -1, 0, 2, 1). rho = 5 / sqrt(5 * 10) = 1/sqrt(2).
    assert [row["class"] for row in rows] == NEW
    assert [row["rho"] for row in rows] == pytest.approx([1 / math.sqrt(2), -1 / math.sqrt(2), -1 / math.sqrt(2)])
    assert [row["top"] for row in rows] == [OLD[3], OLD[0], OLD[4]]
    assert [row["residual_share"] for row in rows] == pytest.approx([0.0] * N_NEW)
    assert [row["effective_old_classes"] for row in rows] == pytest.approx([1.0] * N_NEW)
