"""What the train.py tests share (tests/test_train.py, tests/test_train_resume.py): a base_dir
whose pretrained source is the c32 reference model, the flags of a fast toy run, and readers of
what a run left in base_dir."""
import os
import shutil

import train
import utils
from conftest import ROOT, fixture_path
from worlds import toy

# The c32 reference source model (8 classes, G_ch 16) plays the pretrained BigGAN.
SOURCE = ["--G_ch", "16", "--D_ch", "16", "--dim_z", "128", "--G_attn", "0", "--D_attn", "0",
          "--G_init", "N02", "--D_init", "N02", "--SN_eps", "1e-8", "--kp_variant", "cifar",
          "--n_pretrain_classes", "8"]
FAST = ["--dataset", "Toy32", "--batch_size", "4", "--num_D_steps", "1",
        "--num_D_accumulations", "2", "--num_workers", "0", "--no_fid",
        "--use_multiepoch_sampler", "--save_every", "1000", "--comb_l1_scale", "0.01",
        "--res_l2_scale", "0.01", "--G_lr", "1e-3", "--D_lr", "1e-3"]


def write_base_dir(base):
    """Two toy classes of 6 images under data/toy, the c32 reference G and D under weights/."""
    toy.write_image_folder(str(base / "data" / "toy"), toy.NEW_CLASSES[:2], 6, seed=0)
    (base / "weights").mkdir()
    for part in ("G", "D"):
        shutil.copy(fixture_path("biggan_pytorch", "c32_small", f"{part}.pth"), base / "weights")
    return base


def run_train(base_dir, *args):
    return train.main(["--base_dir", str(base_dir), *SOURCE, *FAST, *args])


def saved(base_dir, name, suffix="", parts=("G", "D", "state_dict")):
    import checkpoints
    return checkpoints.load_set(str(base_dir / "weights" / name), suffix, list(parts))


def metrics_records(base_dir, name):
    path = base_dir / "logs" / f"{name}_log.jsonl"
    return [(r["itr"], r["FID"]) for r in utils.read_jsonl(str(path))] if path.exists() else []


def metric_flags(base_dir) -> list[str]:
    """In-loop metrics in the shipped toy classifier's space (it knows the toy classes), with
    reference statistics of the training folder, computed once."""
    import calculate_inception_moments
    classifier = os.path.join(ROOT, "assets", "toy_classifier.pth")
    if not (base_dir / "data" / "Toy32_classifier_moments.npz").exists():
        calculate_inception_moments.run({
            "dataset": "Toy32", "base_dir": str(base_dir), "data_root": "", "batch_size": 16,
            "num_workers": 0, "shuffle": False, "seed": 0, "hdf5": False,
            "backbone": "classifier", "inception_weights": classifier, "device": "cpu",
            "parallel": False, "resolution": 0, "reference_dataset": ""})
    return ["--backbone", "classifier", "--inception_weights", classifier,
            "--num_inception_images", "40", "--which_best", "FID"]
