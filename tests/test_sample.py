"""sample.py: truncated z, npz/sheets/interpolations, metrics labelled with their feature space,
and clear errors for missing or mismatching checkpoints."""
import csv
import errno
import json
import math
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

import BigGAN
import checkpoints
import run_spec
import run_start
import iw_critic
import layers
import sample
import sampling
import utils
from conftest import ROOT, inject_write_failure
from metrics import backbones

# A tiny transfer G (3 old classes -> 2 new ones) and the flags that rebuild it.
TRANSFER = ["--dataset", "Toy32", "--G_ch", "4", "--D_ch", "4", "--G_attn", "0", "--D_attn", "0",
            "--dim_z", "16", "--n_pretrain_classes", "3", "--kp_variant", "cifar", "--G_init",
            "N02", "--device", "cpu", "--G_batch_size", "8", "--num_workers", "0"]
SOURCE = ["--dataset", "Toy32", "--G_ch", "4", "--D_ch", "4", "--G_attn", "0", "--D_attn", "0",
          "--dim_z", "20", "--G_shared", "--hier", "--shared_dim", "8", "--n_pretrain_classes", "0",
          "--device", "cpu", "--G_batch_size", "8", "--num_workers", "0"]
SUFFIX = "best0"


def save_experiment(base, flags, name, n_classes):
    """Weights as train.py lays them out: weights/<name>/{G,G_ema,state_dict}_best0.pth."""
    os.makedirs(os.path.join(str(base), "weights", name))  # the experiment, no checkpoint yet
    config = sample.parse_config(["--base_dir", str(base), *flags, "--experiment_name", name,
                                  "--n_classes", str(n_classes), "--sample_random"])
    G, _ = run_start.build_models(config, "cpu")
    G.train()
    with torch.no_grad():  # move the BN statistics and SN vectors off their initial values
        for _ in range(2):
            y = torch.randint(0, n_classes, (4,))
            G(torch.randn(4, G.dim_z), G.class_input(y))
    G_ema = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v
             for k, v in G.state_dict().items()}
    checkpoints.save_set(os.path.join(str(base), "weights", name),
                         {"G": G.state_dict(), "G_ema": G_ema,
                          "state_dict": {"itr": 7, "config": dict(config)}}, 7, SUFFIX)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("base")
    save_experiment(base, TRANSFER, "tiny", n_classes=2)
    save_experiment(base, SOURCE, "source", n_classes=3)
    save_experiment(base, [*TRANSFER, "--stage", "finetune"], "baseline", n_classes=2)
    return base


def run_sample(base_dir, *args, flags=TRANSFER, name="tiny"):
    return sample.main(["--base_dir", str(base_dir), *flags, "--experiment_name", name,
                        "--load_weights", SUFFIX, *args])


# --- Truncation

def test_truncation_resamples_out_of_range_entries_instead_of_clipping():
    torch.manual_seed(0)
    z = torch.randn(200_000)
    out = sampling.truncate(z, 1.0)
    assert out.abs().max() <= 1.0
    inside = z.abs() <= 1.0
    assert torch.equal(out[inside], z[inside])  # only the entries outside are drawn again
    # Clamping would put ~32% of the mass on +-1; the truncated normal has almost none there.
    assert (out.abs() > 0.999).float().mean() < 0.005
    truncated_std = math.sqrt(1 - 2 * math.exp(-0.5) / math.sqrt(2 * math.pi)
                              / math.erf(1 / math.sqrt(2)))
    assert abs(out.std().item() - truncated_std) < 0.01
    assert sampling.truncate(torch.randn(1000) * 2, 0.5, z_var=4.0).abs().max() <= 0.5
    assert torch.equal(sampling.truncate(z, 0.0), z)


def test_trunc_curve_spec_gives_start_to_end_inclusive():
    assert sample.trunc_curve_values("0.05_0.05_1.0") == [round(0.05 * i, 10) for i in range(1, 21)]
    with pytest.raises(utils.UsageError, match="start_step_end"):
        sample.trunc_curve_values("0.5-1.0")


# --- Class inputs that interpolate

def test_class_interpolation_mixes_one_hots_of_a_transfer_G_and_embeddings_of_a_shared_source():
    transfer = BigGAN.Generator(resolution=32, G_ch=4, G_attn="0", dim_z=16, n_classes=2,
                                n_pretrain_classes=3, G_shared=False, kp_variant="cifar")
    source = BigGAN.Generator(resolution=32, G_ch=4, G_attn="0", dim_z=20, n_classes=3,
                              G_shared=True, hier=True, shared_dim=8)
    plain = BigGAN.Generator(resolution=32, G_ch=4, G_attn="0", dim_z=16, n_classes=3,
                             G_shared=False)
    y = torch.tensor([0, 1])
    assert torch.equal(sampling.mixable_classes(transfer, y), F.one_hot(y, 2).float())
    assert torch.equal(sampling.mixable_classes(source, y), source.shared(y))
    assert sampling.mixable_classes(plain, y) is None
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    path = sampling.lerp_rows(a, b, 5)
    assert torch.equal(path[0], a[0]) and torch.equal(path[-1], b[0])
    assert torch.allclose(path.sum(1), torch.ones(5))  # soft one-hots stay on the simplex


# --- A full run

class PooledColours(nn.Module):
    """Stands in for the metric network (unlike conftest.TinyBackbone, features that follow the
    images' colours, so that metrics of real and generated toy images differ): 12-d pooled colours
    as features, a linear head."""
    metric_space = "classifier"

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(12, 4)

    def forward(self, x):
        features = F.adaptive_avg_pool2d(x, 2).flatten(1)
        return features, self.head(features)


@pytest.fixture
def tiny_backbone(base_dir, monkeypatch):
    net = PooledColours().eval()
    # Both names, inception_utils imported first: a first import of it under the patch would bind
    # its re-export to the stand-in for the rest of the session.
    import inception_utils
    for module in (backbones, inception_utils):
        monkeypatch.setattr(module, "load_inception_net", lambda *args, **kwargs: net)
    with torch.no_grad():
        reference = net(torch.rand(200, 3, 32, 32) * 2 - 1)[0].double().numpy()
    data = base_dir / "data"
    data.mkdir(exist_ok=True)
    np.savez(data / "Toy32_classifier_moments.npz", mu=reference.mean(0),
             sigma=np.cov(reference, rowvar=False), metric_space="classifier")
    np.savez(data / "Toy32_classifier_features.npz", pool=reference.astype(np.float32),
             labels=np.zeros(len(reference), dtype=np.int64))
    return net


def test_a_full_run_writes_every_output(base_dir, tiny_backbone, capsys):
    result = run_sample(base_dir, "--sample_npz", "--sample_num_npz", "10", "--sample_sheets",
                        "--sample_interps", "--sample_num_interps", "2", "--sample_random",
                        "--sample_inception_metrics", "--sample_trunc_curves", "0.5_0.5_1.0",
                        "--truncation", "0.8", "--use_ema", "--G_eval_mode", "--backbone",
                        "classifier", "--num_inception_images", "20", "--G_batch_size", "20",
                        "--kmmd")
    out = capsys.readouterr().out
    folder = base_dir / "samples" / "tiny" / "G_ema_best0"
    assert result["folder"] == str(folder) and result["itr"] == 7

    with np.load(base_dir / "samples" / "tiny" / "samples.npz") as npz:
        x, y = npz["x"], npz["y"]
    assert x.shape == (10, 32, 32, 3) and x.dtype == np.uint8
    assert y.shape == (10,) and y.min() >= 0 and y.max() < 2  # n_classes came from the checkpoint
    for name in ("samples0.png", "interpZY0.png", "interpZ0.png", "interpY0.png",
                 "random_samples.png"):
        assert (folder / name).stat().st_size > 0, name

    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["metric_space"] == "classifier" and metrics["truncation"] == 0.8
    for key in ("IS_mean", "IS_std", "FID", "KMMD"):
        assert math.isfinite(metrics[key]), key
    assert "classifier FID" in out and "Inception FID" not in out and "Inception IS" not in out

    curve = json.loads((folder / "trunc_curves.json").read_text())["rows"]
    assert [row["truncation"] for row in curve] == [0.5, 1.0]
    assert all(math.isfinite(row["FID"]) and row["metric_space"] == "classifier" for row in curve)
    with open(folder / "trunc_curves.csv") as f:
        assert [float(row["truncation"]) for row in csv.DictReader(f)] == [0.5, 1.0]


def test_a_shared_source_model_gets_class_interpolations(base_dir):
    result = run_sample(base_dir, "--sample_interps", "--sample_num_interps", "2",
                        "--sample_sheets", "--G_batch_size", "32", flags=SOURCE, name="source")
    for name in ("interpY0.png", "interpZY0.png", "samples0.png"):
        assert os.path.getsize(os.path.join(result["folder"], name)) > 0


def test_standing_stats_work_on_a_checkpoint_trained_without_mybn(base_dir):
    result = run_sample(base_dir, "--sample_random", "--mybn", "--accumulate_stats",
                        "--num_standing_accumulations", "3", "--G_eval_mode",
                        "--sample_sheet_folder_num", "3")
    assert os.path.isfile(os.path.join(result["folder"], "random_samples.png"))
    # The statistics were gathered: 3 batches counted in every BN, the means are no longer the
    # checkpoint's running means.
    trained = torch.load(base_dir / "weights" / "tiny" / f"G_{SUFFIX}.pth", weights_only=True)
    mybns = {name: m for name, m in result["G"].named_modules() if isinstance(m, layers.myBN)}
    assert mybns
    for name, bn in mybns.items():
        assert bn.accumulation_counter.item() == 3
        running_mean = trained[f"{name[:-len('.bn')]}.stored_mean"]
        assert not torch.allclose(bn.stored_mean / 3, running_mean)


def test_a_baseline_is_sampled_as_the_plain_model_it_was_trained_as(base_dir):
    # the stage comes from the checkpoint
    result = run_sample(base_dir, "--sample_sheets", name="baseline")
    assert os.path.isfile(os.path.join(result["folder"], "samples0.png"))
    assert not result["G"].has_knowledge_propagation
    with pytest.raises(utils.UsageError,
                       match=r"trained with --stage finetune, a plain G; you gave --stage BN"):
        run_sample(base_dir, "--sample_sheets", "--sample_sheet_folder_num", "1", "--stage", "BN",
                   name="baseline")


# --- The IW critic on a transferred G

def write_image_folder(folder, classes, per_class, seed):
    """Class folders of flat-coloured 32 px PNGs, a colour per class with a little noise."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            colour = np.array([200, 60, 30]) if label == 0 else np.array([30, 90, 210])
            image = np.clip(colour + rng.normal(0, 10, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(image).save(folder / name / f"{i}.png")


@pytest.fixture
def iw_data_root(base_dir, tiny_backbone, tmp_path):
    """The tiny transfer's two classes as a prepared folder naming its held-out reference images."""
    root = tmp_path / "data"
    write_image_folder(root / "toy", ["a", "b"], 2, seed=0)  # Toy32's folder (datasets.DATASETS)
    (root / "toy" / "dataset.json").write_text(
        json.dumps({"resolution": 32, "reference": "Toy32_reference"}))
    write_image_folder(root / "Toy32_reference", ["a", "b"], 20, seed=1)
    for name in ("Toy32_classifier_moments.npz", "Toy32_classifier_features.npz"):
        shutil.copy(base_dir / "data" / name, root / name)
    return root


@pytest.mark.slow  # samples, scores with the classifier and trains a critic: ~2 s
def test_iw_scores_a_transferred_G_against_the_held_out_images_of_its_classes(
        base_dir, iw_data_root, monkeypatch):
    """The critic trains 60 steps here instead of its fixed 600 (~10 s on one thread): which images
    it compares, how many, where the value goes and its sign need no more (the critic itself is
    tested in test_iw_critic.py)."""
    monkeypatch.setattr(iw_critic, "STEPS", 60)
    result = run_sample(base_dir, "--data_root", str(iw_data_root), "--sample_inception_metrics",
                        "--iw", "--backbone", "classifier", "--num_inception_images", "16",
                        "--G_batch_size", "8", "--sample_sheet_folder_num", "20")
    metrics = json.loads((base_dir / "samples" / "tiny" / "20" / "metrics.json").read_text())
    assert metrics["IW"] == result["metrics"]["IW"]
    assert metrics["IW_images"] == 40  # every held-out image of both classes, as many samples
    # TransferGAN's sign: an untrained G's samples are far from flat colours
    assert metrics["IW"] < 0


def test_iw_without_held_out_images_names_the_flag(base_dir, iw_data_root):
    (iw_data_root / "toy" / "dataset.json").write_text(json.dumps({"resolution": 32}))
    with pytest.raises(utils.UsageError, match="give --iw_reference DATASET"):
        run_sample(base_dir, "--data_root", str(iw_data_root), "--sample_inception_metrics", "--iw",
                   "--backbone", "classifier", "--sample_sheet_folder_num", "21")
    write_image_folder(iw_data_root / "Other_reference", ["a", "c"], 2, seed=2)
    with pytest.raises(utils.UsageError, match="holds the classes a, c, not those of Toy32"):
        run_sample(base_dir, "--data_root", str(iw_data_root), "--sample_inception_metrics", "--iw",
                   "--iw_reference", "Other_reference", "--backbone", "classifier",
                   "--sample_sheet_folder_num", "22")
    write_image_folder(iw_data_root / "Few_reference", ["a", "b"], 19, seed=3)
    with pytest.raises(utils.UsageError, match="holds 38 images, and the critic needs at least 40"):
        run_sample(base_dir, "--data_root", str(iw_data_root), "--sample_inception_metrics", "--iw",
                   "--iw_reference", "Few_reference", "--backbone", "classifier",
                   "--sample_sheet_folder_num", "23")
    assert not (base_dir / "samples" / "tiny" / "23").exists()  # refused before any sampling


# --- Old classes from a transferred G

@pytest.fixture
def old_reference(base_dir, tiny_backbone):
    """Moments of 3 'source' classes in the stand-in backbone's space."""
    with torch.no_grad():
        features = tiny_backbone(torch.rand(150, 3, 32, 32) * 2 - 1)[0].double().numpy()
    path = base_dir / "data" / "Source_classifier_moments.npz"
    np.savez(path, mu=features.mean(0), sigma=np.cov(features, rowvar=False),
             metric_space="classifier", class_counts=np.array([50, 50, 50]))
    return str(path)


def test_classes_all_writes_the_new_and_the_old_classes_each_to_its_own_files(base_dir,
                                                                              old_reference):
    result = run_sample(base_dir, "--classes", "all", "--old_reference", old_reference,
                        "--sample_npz", "--sample_num_npz", "12", "--sample_sheets",
                        "--sample_interps", "--sample_num_interps", "2",
                        "--sample_inception_metrics", "--backbone", "classifier",
                        "--num_inception_images", "16", "--G_eval_mode",
                        "--sample_sheet_folder_num", "10", "--overwrite")
    folder = base_dir / "samples" / "tiny" / "10"
    with np.load(base_dir / "samples" / "tiny" / "samples_old.npz") as npz:
        # 3 old classes
        assert npz["x"].shape == (12, 32, 32, 3) and set(npz["y"].tolist()) <= {0, 1, 2}
    with np.load(base_dir / "samples" / "tiny" / "samples.npz") as npz:
        assert set(npz["y"].tolist()) <= {0, 1}  # the 2 new ones, the official file name
    for name in ("samples0.png", "samples0_old.png", "interpY0.png", "interpY0_old.png"):
        assert (folder / name).stat().st_size > 0, name
    old = json.loads((folder / "metrics_old.json").read_text())
    assert old["classes"] == "old" and math.isfinite(old["FID"])
    assert json.loads((folder / "metrics.json").read_text())["classes"] == "new"
    # measured against each set's reference
    assert result["metrics_old"]["FID"] != result["metrics"]["FID"]


def test_an_old_class_sheet_is_the_old_class_path_of_G():
    G = BigGAN.Generator(resolution=32, G_ch=4, G_attn="0", dim_z=16, n_classes=2,
                         n_pretrain_classes=3, G_shared=False, kp_variant="cifar").eval()
    z = torch.randn(4, 16)
    sheet = sampling.class_sheet(G, [2, 0], z, batch_size=3, old_classes=True)
    with torch.no_grad():
        expected = torch.cat([G(z, torch.full((4,), c), old_classes=True) for c in (2, 0)])
        new_class_rows = G(z.repeat(2, 1), torch.tensor([1] * 4 + [0] * 4))
    assert torch.allclose(sheet, expected, atol=1e-6)
    assert not torch.allclose(sheet, new_class_rows, atol=1e-3)


def test_each_class_set_gets_standing_statistics_of_its_own(base_dir):
    config = sample.parse_config(["--base_dir", str(base_dir), *TRANSFER, "--experiment_name",
                                  "tiny", "--load_weights", SUFFIX, "--sample_random", "--mybn",
                                  "--num_standing_accumulations", "4"])
    G = sample.load_generator(config)
    means = {}
    for old in (False, True):
        torch.manual_seed(0)
        sampling.accumulate_standing_stats(G, run_spec.draws_of(config), "cpu", old_classes=old)
        means[old] = [m.stored_mean.clone() for m in G.modules() if isinstance(m, layers.myBN)]
    assert all(not torch.allclose(a, b) for a, b in zip(means[False][1:], means[True][1:]))


def test_old_classes_need_a_knowledge_propagation_G_and_their_reference_statistics(base_dir,
                                                                                   old_reference):
    with pytest.raises(utils.UsageError,
                       match=r"--classes old needs a knowledge-propagation G.*--stage finetune"):
        run_sample(base_dir, "--classes", "old", "--sample_sheets", name="baseline")
    with pytest.raises(utils.UsageError, match="give --old_reference PATH"):
        run_sample(base_dir, "--classes", "old", "--sample_inception_metrics")
    wrong = base_dir / "data" / "two_classes_moments.npz"
    with np.load(old_reference) as f:
        np.savez(wrong, **{**dict(f), "class_counts": np.array([5, 5])})
    with pytest.raises(utils.UsageError,
                       match="holds statistics of 2 classes, but G has 3 old classes"):
        run_sample(base_dir, "--classes", "old", "--sample_inception_metrics", "--old_reference",
                   str(wrong), "--backbone", "classifier", "--sample_sheet_folder_num", "11")


# --- Bad inputs

def test_earlier_outputs_are_kept_unless_overwrite_is_given(base_dir):
    run_sample(base_dir, "--sample_random", "--sample_sheet_folder_num", "5")
    sheet = base_dir / "samples" / "tiny" / "5" / "random_samples.png"
    before = sheet.read_bytes()
    with pytest.raises(utils.UsageError, match="--overwrite"):
        run_sample(base_dir, "--sample_random", "--sample_sheet_folder_num", "5")
    assert sheet.read_bytes() == before
    run_sample(base_dir, "--sample_random", "--sample_sheet_folder_num", "5", "--overwrite",
               "--seed", "1")
    assert sheet.read_bytes() != before


def test_missing_checkpoint_names_the_path(base_dir):
    expected = os.path.join(str(base_dir), "weights", "tiny", "G_best9.pth")
    with pytest.raises(utils.UsageError, match=re.escape(expected) + ".*--load_weights"):
        sample.main(["--base_dir", str(base_dir), *TRANSFER, "--n_classes", "2",
                     "--experiment_name", "tiny", "--load_weights", "best9", "--sample_random"])


def test_mismatching_flags_are_named(base_dir):
    with pytest.raises(utils.UsageError,
                       match=r"--G_ch 8 \(trained with 4\); leave these flags out"):
        run_sample(base_dir, "--sample_random", "--G_ch", "8")


def test_the_model_flags_come_from_the_checkpoint(base_dir, capsys):
    # Only the experiment and what to produce: the checkpoint's saved config gives the rest.
    result = sample.main(["--base_dir", str(base_dir), "--experiment_name", "tiny",
                          "--load_weights", SUFFIX, "--device", "cpu", "--sample_random",
                          "--sample_sheet_folder_num", "11"])
    G = result["G"]
    assert (G.ch, G.dim_z, G.n_classes, G.n_pretrain_classes) == (4, 16, 2,
                                                                  3) and G.has_knowledge_propagation
    assert "--G_ch 4" in capsys.readouterr().out


def test_weights_without_a_saved_config_fall_back_to_the_flags(base_dir, tmp_path):
    # A bare G.pth (e.g. the official release): the model flags given are used, and a wrong one is
    # named.
    os.makedirs(tmp_path / "weights" / "bare")
    shutil.copy(base_dir / "weights" / "tiny" / f"G_{SUFFIX}.pth",
                tmp_path / "weights" / "bare" / "G.pth")
    flags = ["--base_dir", str(tmp_path), *TRANSFER, "--n_classes", "2", "--experiment_name",
             "bare", "--sample_random"]
    assert sample.main(flags)["G"].ch == 4
    with pytest.raises(utils.UsageError, match="do not fit the generator built from the flags"):
        sample.main([*flags, "--G_ch", "8", "--overwrite"])


@pytest.mark.slow  # a command line, forked from the server that imported torch once (~0.3 s)
def test_cli_missing_checkpoint_exits_with_one_error_line(base_dir, command_lines):
    cmd = [os.path.join(ROOT, "sample.py"), "--base_dir", str(base_dir), *TRANSFER,
           "--n_classes", "2", "--experiment_name", "nowhere", "--sample_random"]
    result = command_lines.run(cmd)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    folder = os.path.join(str(base_dir), "weights", "nowhere")
    missing = f"experiment nowhere does not exist: there is no folder {folder};"
    assert len(errors) == 1 and missing in errors[0], result.stderr[-2000:]


@pytest.mark.parametrize("name", ["nope", "tiny_typo"])
def test_a_missing_experiment_is_named_as_missing_not_as_a_config_problem(base_dir, capsys, name):
    with pytest.raises(SystemExit) as exit_:
        utils.run_main(lambda: sample.main(["--base_dir", str(base_dir), "--experiment_name", name,
                                            "--device", "cpu", "--sample_random"]))
    lines = capsys.readouterr().err.strip().splitlines()
    folder = os.path.join(str(base_dir), "weights", name)
    assert exit_.value.code == 2 and len(lines) == 1 and "number of classes" not in lines[0]
    missing = f"error: experiment {name} does not exist: there is no folder {folder};"
    assert lines[0].startswith(missing) and "--experiment_name" in lines[0]
    assert "the experiments there: baseline, source, tiny" in lines[0]


def test_sample_sh_without_a_trained_model_says_what_to_run(tmp_path):
    env = {**os.environ, "BASE_DIR": str(tmp_path), "SETUP": "", "PYTHON": sys.executable}
    result = subprocess.run(["bash", os.path.join(ROOT, "sample.sh")], capture_output=True,
                            text=True, timeout=60, env=env)
    assert result.returncode == 1
    assert "bash train.sh" in result.stderr and str(tmp_path) in result.stderr


# --- Failures while writing: one line, nothing lost, no partial file under a final name

@pytest.mark.parametrize("output,flags,when", [
    ("the npz", ["--sample_npz", "--sample_num_npz", "10"],
     lambda path: path.endswith("samples.npz")),
    ("a class sheet", ["--sample_sheets"], lambda path: path.endswith("samples0.png")),
    ("the metrics",
     ["--sample_inception_metrics", "--backbone", "classifier", "--num_inception_images", "20",
      "--G_batch_size", "20"], lambda path: path.endswith("metrics.json")),
])
def test_a_failed_write_is_one_line_and_keeps_the_earlier_outputs(base_dir, tiny_backbone,
                                                                  monkeypatch, capsys,
                                                                    output, flags, when):
    args = [*flags, "--sample_sheet_folder_num", "21", "--overwrite"]
    run_sample(base_dir, *args)
    outputs = [p for p in (base_dir / "samples" / "tiny").rglob("*")
               # this run's outputs
               if p.is_file() and when(str(p)) and p.parent.name in ("21", "tiny")]
    assert len(outputs) == 1
    before = outputs[0].read_bytes()
    capsys.readouterr()
    inject_write_failure(monkeypatch, utils, errno.ENOSPC, when=when, after_bytes=100)
    with pytest.raises(SystemExit) as exited:
        utils.run_main(lambda: run_sample(base_dir, *args, "--seed", "3"))
    stderr = capsys.readouterr().err
    # besides tqdm's progress bar
    err = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert exited.value.code == 2 and len(err) == 1 and "Traceback" not in stderr, stderr[-2000:]
    assert err[0].startswith("error: no space left on device"), err
    assert f"{outputs[0]} is unchanged" in err[0]
    assert outputs[0].read_bytes() == before
    assert not [p for p in outputs[0].parent.iterdir() if p.name.startswith(".tmp_")]


@pytest.mark.slow
def test_a_killed_sample_run_leaves_no_partial_file_and_the_next_run_cleans_up(
        base_dir, command_lines):
    """Three sample.py processes, two SIGKILLed: each forked from the server that imported torch
    once (conftest.CommandLines, ~0.5 s each instead of ~5 s)."""
    folder = base_dir / "samples" / "tiny" / "31"
    cmd = [os.path.join(ROOT, "sample.py"), "--base_dir", str(base_dir), "--experiment_name",
           "tiny", "--load_weights", SUFFIX, "--device", "cpu", "--sample_sheet_folder_num", "31",
           "--sample_sheets", "--sample_interps", "--sample_num_interps", "2", "--sample_random"]
    for kill_at in (1, 3):  # the first sheet written but not yet renamed into place; the third
        result = command_lines.run(cmd, env={**os.environ, "CGT_KILL_AT_OUTPUT": str(kill_at)})
        assert result.returncode == -9, result.stderr[-2000:]
        final = [p for p in folder.iterdir() if not p.name.startswith(".")]
        assert len(final) == kill_at - 1 and len([p for p in folder.iterdir()
                                                  if p.name.startswith(".tmp_")]) >= 1
        for path in final:  # every file under a final name is whole
            with Image.open(path) as image:
                image.load()
        cmd_again = cmd + ["--overwrite"]
    result = command_lines.run(cmd_again)
    assert result.returncode == 0, result.stderr[-2000:]
    names = sorted(p.name for p in folder.iterdir())
    assert "samples0.png" in names and "random_samples.png" in names and not [n for n in names
                                                                              if n.startswith(".")]
