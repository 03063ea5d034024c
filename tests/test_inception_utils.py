"""inception_utils.py, as a specification: BigGAN-PyTorch's module keeps the names its users and
this project's scripts call, each the one implementation in the package metrics/ (whose modules
tests/metrics/ specifies)."""
import pytest

import inception_utils
from metrics import backbones, classes, evaluation, features, fid, inception_score, kmmd
from metrics import precision_recall, reference

BIGGAN_PYTORCH = {"torch_cov": fid, "sqrt_newton_schulz": fid,
                  "numpy_calculate_frechet_distance": fid, "torch_calculate_frechet_distance": fid,
                  "calculate_inception_score": inception_score,
                  "accumulate_inception_activations": features, "load_inception_net": backbones}
PROJECT = {"Metrics": evaluation, "REGISTRY": evaluation, "BACKBONES": backbones,
           "metric_space_of": backbones, "calc_mmd": kmmd, "KMMD_BLOCK_SIZE": kmmd,
           "precision_recall": precision_recall, "class_consistency": classes,
           "target_to_backbone_classes": classes, "check_classifier_covers": classes,
           "check_classifier_resolution": classes, "moments_filename": reference,
           "features_filename": reference}


@pytest.mark.parametrize("name,module", [*BIGGAN_PYTORCH.items(), *PROJECT.items()])
def test_each_name_is_the_package_s_one_implementation(name, module):
    assert getattr(inception_utils, name) is getattr(module, name)


def test_it_names_nothing_else():
    assert sorted(inception_utils.__all__) == sorted({**BIGGAN_PYTORCH, **PROJECT})
