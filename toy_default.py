"""The offline default: transfer the shipped toy source BigGAN to four new toy classes, on CPU.

`bash train.sh` runs this when no real data and weights are prepared. Steps, each skipped when its
output already exists (nothing the user has is overwritten):
  1. write the few-shot target data: 25 images of each new class (toy_data.py) -> BASE/data/toy
  2. reference statistics of the new classes in the shipped classifier's feature space, from 500
     fresh images per class (the true class distribution, not the 25 training images)
  3. copy the shipped source model (assets/toy_source: a 12-class BigGAN made with
     `bash pretrain_toy_source.sh`) to BASE/weights/{G,D}.pth
  4. train.py --stage BN with in-loop metrics, then a plot of the metrics and where the files are.
The metrics live in the toy classifier's feature space (assets/toy_classifier.pth), not Inception's.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import torch

import datasets
import plots
import sampling
import stages
import toy_data
import train
import utils

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ASSETS = os.path.join(HERE, "assets", "toy_source")
CLASSIFIER = os.path.join(HERE, "assets", "toy_classifier.pth")
EXPERIMENT = "toy_default"
REFERENCE_IMAGES_PER_CLASS = 500  # fresh images per class behind the reference statistics

# The toy world's model: a CIFAR-style BigGAN (no shared embedding, no hierarchical z) at 32 px,
# small enough for CPUs; the official cifar variant of the knowledge-propagation layers.
# TOY_ARCHITECTURE is shared with pretrain_toy_source.sh, which made the source model.
TOY_ARCHITECTURE = ["--G_ch", "12", "--D_ch", "12", "--G_attn", "0", "--D_attn", "0", "--G_init", "N02",
                    "--D_init", "N02", "--SN_eps", "1e-8"]
TOY_MODEL = ["--dataset", "Toy32", "--n_classes", str(len(toy_data.NEW_CLASSES)),
             "--n_pretrain_classes", str(len(toy_data.OLD_CLASSES)), *TOY_ARCHITECTURE, "--kp_variant", "cifar"]
TOY_TRAINING = ["--stage", "BN", "--batch_size", "16", "--num_D_steps", "1", "--num_D_accumulations", "1",
                "--G_lr", "2e-4", "--D_lr", "2e-4", "--comb_l1_scale", "0.01", "--res_l2_scale", "0.01",
                "--num_iters", "1000", "--test_every", "100", "--save_every", "250", "--which_best", "FID",
                "--num_inception_images", "1000", "--mfid", "--kmmd",
                "--backbone", "classifier", "--inception_weights", CLASSIFIER,
                "--use_multiepoch_sampler", "--num_epochs", "100000", "--num_workers", "0",
                "--num_save_copies", "1", "--num_best_copies", "1", "--seed", "0",
                # Sheets and metrics from BN running statistics: a one-class batch in train mode
                # would normalize the class-specific shifts away.
                "--G_eval_mode"]


def prepare_target_data(data_root: str, images_per_class: int, seed: int) -> None:
    folder = os.path.join(data_root, "toy")
    if os.path.isdir(folder):
        print(f"[1/4] target data: using the existing {folder}")
        return
    toy_data.write_image_folder(folder, toy_data.NEW_CLASSES, images_per_class, seed)
    print(f"[1/4] target data: wrote {images_per_class} images of each of {', '.join(toy_data.NEW_CLASSES)} to {folder}")


def prepare_reference_statistics(data_root: str, seed: int, dataset: str = "Toy32",
                                 classes: list[str] | None = None) -> str:
    """Reference moments and features of `classes` (by default the new ones) in the shipped
    classifier's space, from fresh images of each class; returns the moments' path."""
    moments = os.path.join(data_root, f"{dataset}_classifier_moments.npz")
    if os.path.isfile(moments):
        print(f"[2/4] reference statistics: using the existing {moments}")
        return moments
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, datasets.dataset_spec(dataset).folder)
        toy_data.write_image_folder(folder, classes or toy_data.NEW_CLASSES, REFERENCE_IMAGES_PER_CLASS, seed + 1000)
        subprocess.run([sys.executable, os.path.join(HERE, "calculate_inception_moments.py"), "--dataset", dataset,
                        "--data_root", tmp, "--backbone", "classifier", "--inception_weights", CLASSIFIER,
                        "--batch_size", "250", "--num_workers", "0"], check=True)
        for name in os.listdir(tmp):
            if name.endswith(".npz"):
                shutil.move(os.path.join(tmp, name), os.path.join(data_root, name))
    print(f"[2/4] reference statistics: {moments} ({REFERENCE_IMAGES_PER_CLASS} fresh images per class of {dataset})")
    return moments


def install_source_weights(weights_root: str, source: str = "") -> None:
    """Copy the source model's G.pth and D.pth to weights_root: the shipped toy source, or those in
    the folder `source`."""
    os.makedirs(weights_root, exist_ok=True)
    for part in ("G", "D"):
        target = os.path.join(weights_root, f"{part}.pth")
        if os.path.isfile(target):
            print(f"[3/4] source model: using the existing {target}")
            continue
        origin = os.path.join(source or SOURCE_ASSETS, f"{part}.pth")
        if not os.path.isfile(origin):
            if source:
                raise utils.UsageError(f"the source model folder {source} holds no {part}.pth; give a folder "
                                       "with the source's G.pth and D.pth")
            raise utils.UsageError(f"the shipped toy source model {origin} is missing; restore it with "
                                   "`git checkout assets/` or rebuild it with `bash pretrain_toy_source.sh`")
        shutil.copy(origin, target)
        print(f"[3/4] source model: copied {'the shipped 12-class toy BigGAN' if not source else origin} to {target}")


def write_training_images_and_samples(config: dict, G, path: str) -> None:
    """The few-shot training images of each new class beside G's samples of it, in one figure."""
    data = datasets.load_dataset(config["dataset"], config["data_root"])
    real = datasets.first_images_per_class(data, config["n_classes"], 5)
    z = torch.randn(8, G.dim_z, generator=torch.Generator().manual_seed(config["seed"])) * config["z_var"] ** 0.5
    with sampling.sampling_mode(G, config["G_eval_mode"]):
        images, per_row = sampling.training_images_and_samples(real, G, z.to(next(G.parameters()).device))
    sampling.save_image_grid(images, path, nrow=per_row)


def report(config: dict, result: dict) -> None:
    name, metrics = config["experiment_name"], result["metrics"]
    log = os.path.join(config["logs_root"], f"{name}_log.jsonl")
    samples = os.path.join(config["samples_root"], name)
    png = os.path.join(samples, "metrics.png")
    plots.plot_metrics(log, png, title=f"{name}: {config['stage']} stage on the toy new classes", space="classifier")
    figure = os.path.join(samples, "training_images_and_samples.png")
    write_training_images_and_samples(config, sampling.sampling_G(result["G"], result["G_ema"], config), figure)
    sheets = sorted((f for f in os.listdir(samples) if f.startswith("class_sheet")),
                    key=lambda f: int(f[len("class_sheet"):-4]))
    print("\nFinal metrics (toy-classifier feature space, not Inception):")
    for key in ("FID", "mFID", "KMMD", "IS_mean", "class_acc"):
        if isinstance(metrics.get(key), float):
            print(f"  {key:10s} {metrics[key]:.4f}")
    print(f"\nPer-class sample sheets (one row per new class: {', '.join(toy_data.NEW_CLASSES)}):\n"
          f"  {os.path.join(samples, sheets[-1]) if sheets else samples}\n"
          f"Training images (left) beside samples (right), per class:\n  {figure}\n"
          f"Metrics plot:  {png}\nCheckpoints:   {os.path.join(config['weights_root'], name)}\n"
          f"Logs:          {log}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base_dir", default="base_dir")
    parser.add_argument("--images_per_class", type=int, default=25, help="few-shot target images per new class")
    parser.add_argument("--data_seed", type=int, default=0)
    parser.add_argument("--prepare_only", action="store_true", help="steps 1-3 only (bash prepare_data.sh)")
    args, train_args = parser.parse_known_args(argv)
    base = args.base_dir
    prepare_target_data(os.path.join(base, "data"), args.images_per_class, args.data_seed)
    prepare_reference_statistics(os.path.join(base, "data"), args.data_seed)
    install_source_weights(os.path.join(base, "weights"))
    if args.prepare_only:
        return {}
    # Later flags win in argparse, so the user's extra arguments override the defaults here.
    config = utils.finalize_config(vars(utils.prepare_parser().parse_args(
        ["--base_dir", base, "--experiment_name", EXPERIMENT, *TOY_MODEL, *TOY_TRAINING, *train_args])))
    stage = stages.get(config["stage"])
    print(f"[4/4] {'resuming' if config['resume'] else 'training'} {EXPERIMENT}: stage {stage.name} "
          f"({stage.summary}) ...")
    result = train.run(config)
    report(config, result)
    return result


if __name__ == "__main__":
    utils.run_main(main)
