"""train.py: the stages train exactly the official parameter sets, runs resume exactly, data
parallelism keeps ranks identical, and bad inputs stop with one clear message."""
import errno
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch

import flags
import run_spec
import run_start
import train
import utils
from conftest import ROOT, calling, fixture_path, inject_write_failure
from helpers.faults import killed_at_change
from test_stages import OFFICIAL_BN_SET, OFFICIAL_FT_SET
from worlds import toy

pytestmark = pytest.mark.slow  # every test here runs train.py

# The c32 reference source model (8 classes, G_ch 16) plays the pretrained BigGAN.
SOURCE = ["--G_ch", "16", "--D_ch", "16", "--dim_z", "128", "--G_attn", "0", "--D_attn", "0",
          "--G_init", "N02", "--D_init", "N02", "--SN_eps", "1e-8", "--kp_variant", "cifar",
          "--n_pretrain_classes", "8"]
FAST = ["--dataset", "Toy32", "--batch_size", "4", "--num_D_steps", "1", "--num_D_accumulations", "2",
        "--num_workers", "0", "--no_fid", "--use_multiepoch_sampler", "--save_every", "1000",
        "--comb_l1_scale", "0.01", "--res_l2_scale", "0.01", "--G_lr", "1e-3", "--D_lr", "1e-3"]


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("base")
    toy.write_image_folder(str(base / "data" / "toy"), toy.NEW_CLASSES[:2], 6, seed=0)
    (base / "weights").mkdir()
    for part in ("G", "D"):
        shutil.copy(fixture_path("biggan_pytorch", "c32_small", f"{part}.pth"), base / "weights")
    return base


def run_train(base_dir, *args):
    return train.main(["--base_dir", str(base_dir), *SOURCE, *FAST, *args])


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def loaded_models(base_dir, *args):
    """G (in eval mode) and D of a new experiment, right after the pretrained weights are loaded."""
    config = {**flags.parse(["--base_dir", str(base_dir), *SOURCE, *FAST, *args]), "n_classes": 2, "resolution": 32}
    utils.seed_rng(config["seed"])  # as train.run: the same random combination init
    G, D = run_start.build_models(config, "cpu")
    run_start.load_source(G, D, run_spec.read_source_model(config), config)
    return G.eval(), D


def changed_sets(base_dir, stage, *extra):
    """(names of G's parameters changed by 3 iterations, same for D, all of D's names)."""
    G0, D0 = loaded_models(base_dir, "--stage", stage, *extra)
    before_G, before_D = snapshot(G0), snapshot(D0)
    out = run_train(base_dir, "--stage", stage, "--num_iters", "3", "--experiment_name", f"sets_{stage}{extra}", *extra)
    after_G, after_D = snapshot(out["G"]), snapshot(out["D"])
    changed_G = {n for n in before_G if not torch.equal(before_G[n], after_G[n])}
    changed_D = {n for n in before_D if not torch.equal(before_D[n], after_D[n])}
    return changed_G, changed_D, set(before_D)


def test_the_knowledge_propagation_stages_train_the_official_sets_and_all_of_D(base_dir):
    # The c32 reference model of tests/test_stages.py: the literal official sets apply.
    for stage, official in (("BN", OFFICIAL_BN_SET), ("FT", OFFICIAL_FT_SET)):
        changed_G, changed_D, all_D = changed_sets(base_dir, stage)
        assert changed_G == official, stage
        assert changed_D == all_D


def test_finetune_trains_all_of_G_and_D(base_dir):
    changed_G, changed_D, all_D = changed_sets(base_dir, "finetune")
    G0, _ = loaded_models(base_dir, "--stage", "finetune")
    assert changed_G == {n for n, _ in G0.named_parameters()} and changed_D == all_D


def test_BN_only_trains_only_the_new_classes_own_BN_parameters_and_all_of_D(base_dir):
    changed_G, changed_D, all_D = changed_sets(base_dir, "BN_only")
    # The c32 model: 3 G blocks, each with two conditional BNs whose gains and biases are class embeddings.
    assert changed_G == {f"blocks.{b}.0.bn{i}.{part}.weight" for b in range(3) for i in (1, 2) for part in ("gain", "bias")}
    assert changed_D == all_D


def test_freezeD_keeps_the_first_blocks_of_D(base_dir):
    _, changed_D, all_D = changed_sets(base_dir, "finetune", "--freezeD_layer", "2")
    assert changed_D == {n for n in all_D if not n.startswith(("blocks.0.", "blocks.1."))}


def test_baselines_start_new_classes_at_the_old_classes_mean(base_dir):
    G, _ = loaded_models(base_dir, "--stage", "finetune")
    source = torch.load(fixture_path("biggan_pytorch", "c32_small", "G.pth"), weights_only=True)
    for key in ("blocks.0.0.bn1.gain.weight", "blocks.2.0.bn2.bias.weight"):
        assert torch.allclose(G.state_dict()[key], source[key].mean(0, keepdim=True).expand(2, -1))
    assert torch.equal(G.state_dict()["blocks.1.0.conv1.weight"], source["blocks.1.0.conv1.weight"])


def test_comb_init_mean_starts_knowledge_propagation_where_the_baselines_start(base_dir):
    transfer, _ = loaded_models(base_dir, "--stage", "BN", "--comb_init", "mean")
    baseline, _ = loaded_models(base_dir, "--stage", "BN_only")
    official, _ = loaded_models(base_dir, "--stage", "BN")
    torch.manual_seed(0)
    z, y = torch.randn(4, transfer.dim_z), torch.tensor([0, 1, 0, 1])
    with torch.no_grad():
        assert torch.allclose(transfer(z, transfer.class_input(y)), baseline(z, baseline.class_input(y)), atol=1e-5)
        assert not torch.allclose(official(z, official.class_input(y)), baseline(z, baseline.class_input(y)), atol=1e-2)


def test_resume_takes_the_model_flags_from_the_checkpoint(base_dir, capsys):
    run_train(base_dir, "--num_iters", "1", "--experiment_name", "adopt")
    without_model_flags = [f for i, f in enumerate(SOURCE) if f not in ("--G_ch", "--D_ch") and SOURCE[i - 1] not in ("--G_ch", "--D_ch")]
    out = train.main(["--base_dir", str(base_dir), *without_model_flags, *FAST, "--num_iters", "2",
                      "--experiment_name", "adopt", "--resume"])
    assert out["state_dict"]["itr"] == 2 and out["G"].ch == 16
    assert "--G_ch 16" in capsys.readouterr().out


def test_resume_refuses_model_flags_unlike_the_checkpoint(base_dir):
    run_train(base_dir, "--num_iters", "1", "--experiment_name", "unlike")
    with pytest.raises(utils.UsageError, match=r"--G_ch 32 \(trained with 16\)"):
        run_train(base_dir, "--num_iters", "2", "--experiment_name", "unlike", "--resume", "--G_ch", "32")
    with pytest.raises(utils.UsageError, match="--stage finetune trains a plain G"):
        run_train(base_dir, "--num_iters", "2", "--experiment_name", "unlike", "--resume", "--stage", "finetune")


def test_resume_honours_new_learning_rates_and_refuses_a_passed_budget(base_dir, capsys):
    run_train(base_dir, "--num_iters", "2", "--experiment_name", "new_lr")
    with pytest.raises(utils.UsageError, match="--num_iters 2: the checkpoint is at iteration 2"):
        run_train(base_dir, "--num_iters", "2", "--experiment_name", "new_lr", "--resume")
    out = run_train(base_dir, "--num_iters", "3", "--experiment_name", "new_lr", "--resume",
                    "--G_lr", "5e-4", "--D_B2", "0.99")
    assert "--G_lr 0.0005 (checkpoint: 0.001)" in capsys.readouterr().out
    G_optim = torch.load(base_dir / "weights" / "new_lr" / "G_optim.pth", weights_only=True)
    D_optim = torch.load(base_dir / "weights" / "new_lr" / "D_optim.pth", weights_only=True)
    assert G_optim["param_groups"][0]["lr"] == 5e-4 and D_optim["param_groups"][0]["betas"][1] == 0.99
    assert out["state_dict"]["itr"] == 3


def test_epoch_mode_saves_the_final_state(base_dir):
    # 12 images, batches of 8: one iteration per epoch, two epochs; save_every far away.
    out = run_train(base_dir, "--num_iters", "0", "--num_epochs", "2", "--experiment_name", "epochs")
    saved = torch.load(base_dir / "weights" / "epochs" / "state_dict.pth", weights_only=True)
    assert saved["itr"] == out["state_dict"]["itr"] > 0


def test_a_new_experiment_never_overwrites_an_existing_one(base_dir):
    run_train(base_dir, "--num_iters", "1", "--experiment_name", "taken")
    with pytest.raises(utils.UsageError, match="--resume"):
        run_train(base_dir, "--num_iters", "1", "--experiment_name", "taken")


def file_state(path) -> tuple:
    return path.read_bytes(), path.stat().st_mtime_ns


@pytest.mark.parametrize("name", [".", "..", "../escaped", "sub/dir", ".hidden", "G.pth", "D.pth"])
def test_no_experiment_name_writes_onto_the_source_model_or_outside_its_own_folder(base_dir, name):
    weights = base_dir / "weights"
    before = {entry: file_state(weights / entry) for entry in ("G.pth", "D.pth")}
    listing = sorted(os.listdir(weights))
    with pytest.raises(utils.UsageError, match=re.escape(f"--experiment_name {name!r}") + ".*choose another name"):
        run_train(base_dir, "--num_iters", "1", "--experiment_name", name)
    assert sorted(os.listdir(weights)) == listing
    assert {entry: file_state(weights / entry) for entry in before} == before


def test_a_linked_experiment_folder_is_refused_and_training_never_writes_the_source_model(base_dir, tmp_path):
    weights = base_dir / "weights"
    before = {entry: file_state(weights / entry) for entry in ("G.pth", "D.pth")}
    os.symlink(weights, weights / "loop")  # e.g. a link back onto weights/ itself
    try:
        with pytest.raises(utils.UsageError, match="'loop' is a link"):
            run_train(base_dir, "--num_iters", "1", "--experiment_name", "loop")
    finally:
        os.remove(weights / "loop")
    run_train(base_dir, "--num_iters", "2", "--save_every", "1", "--experiment_name", "reads_the_source")
    assert {entry: file_state(weights / entry) for entry in before} == before


def test_a_new_run_refuses_a_folder_holding_only_a_copy_or_a_best_set(base_dir):
    run_train(base_dir, "--num_iters", "2", "--save_every", "2", "--num_save_copies", "1",
              "--experiment_name", "only_a_copy")
    folder = base_dir / "weights" / "only_a_copy"
    for name in ["latest", *(f"{part}.pth" for part in ("G", "G_optim", "D", "D_optim", "state_dict"))]:
        os.remove(folder / name)  # the latest set gone (removed by hand, or never written): copy0 is left
    copy = file_state(folder / "G_copy0.pth")
    with pytest.raises(utils.UsageError, match=r"already has checkpoints .*\(copy0\); continue it with --resume"):
        run_train(base_dir, "--num_iters", "4", "--experiment_name", "only_a_copy")
    assert file_state(folder / "G_copy0.pth") == copy
    os.rename(folder / "copy0", folder / "best1")  # a best set alone is refused alike
    with pytest.raises(utils.UsageError, match=r"already has checkpoints .*\(best1\)"):
        run_train(base_dir, "--num_iters", "4", "--experiment_name", "only_a_copy")


def test_resume_without_a_saved_set_says_to_start_without_resume(base_dir):
    with pytest.raises(utils.UsageError, match="nothing was saved there yet .*start it without --resume"):
        run_train(base_dir, "--num_iters", "1", "--experiment_name", "never_saved", "--resume")
    assert not (base_dir / "weights" / "never_saved").exists()  # a failed start leaves no folder (nor a .lock)


def test_a_batch_larger_than_the_data_is_warned_once_with_the_numbers(base_dir, capsys):
    run_train(base_dir, "--num_iters", "2", "--batch_size", "30", "--num_D_accumulations", "1",
              "--experiment_name", "big_batch")
    warnings = [line for line in capsys.readouterr().err.splitlines() if "--batch_size 30" in line]
    assert len(warnings) == 1 and "12 training images" in warnings[0] and "2.5 times" in warnings[0]


# --- Every write failure is one line, and costs nothing saved before.

def nth_time(n: int, predicate):
    """A path predicate that holds the n-th time predicate holds (and only then)."""
    calls = []

    def check(path: str) -> bool:
        if predicate(path):
            calls.append(path)
            return len(calls) == n
        return False
    return check


WRITE_PATHS = {  # (fresh predicates each time) at iteration 4 a resumed run saves the latest set, its copy,
    # then evaluates, logs the metrics and saves a best set
    "the training log": lambda: lambda path: path.endswith("train_log.jsonl"),
    "a sample sheet": lambda: lambda path: f"{os.sep}samples{os.sep}" in path,
    "the latest set": lambda: nth_time(1, lambda path: path.endswith(f"{os.sep}G.pth")),
    "a copy set": lambda: nth_time(2, lambda path: path.endswith(f"{os.sep}G.pth")),
    "a best set": lambda: nth_time(3, lambda path: path.endswith(f"{os.sep}G.pth")),
    "the metrics log": lambda: lambda path: path.endswith("_log.jsonl") and not path.endswith("train_log.jsonl"),
}


@pytest.mark.parametrize("what,code,reason", [(what, errno.ENOSPC, "no space left on device") for what in WRITE_PATHS]
                         + [("the training log", errno.EROFS, "read-only file system")])
def test_a_failed_write_stops_training_in_one_line_and_keeps_the_last_checkpoint(base_dir, monkeypatch, capsys,
                                                                                  what, code, reason):
    import checkpoints
    name = f"fails_{what.replace(' ', '_')}_{code}"
    run_flags = ["--save_every", "2", "--num_save_copies", "1", "--experiment_name", name, "--test_every", "4",
             *metric_flags(base_dir)]
    train_with_metrics = lambda *args: train.main(["--base_dir", str(base_dir), *SOURCE,
                                                   *[f for f in FAST if f != "--no_fid"], *args])
    train_with_metrics("--num_iters", "2", *run_flags, "--no_fid")  # so that any FID at iteration 4 is a best one
    folder = base_dir / "weights" / name
    saved = {part: file_state(folder / f"{part}.pth") for part in ("G", "D", "state_dict")}
    log = (base_dir / "logs" / name / "train_log.jsonl").read_text()
    capsys.readouterr()
    when = WRITE_PATHS[what]()
    for module in (train.utils, checkpoints):
        inject_write_failure(monkeypatch, module, code, when=when)
    with pytest.raises(SystemExit) as exited:
        train.utils.run_main(lambda: train_with_metrics("--num_iters", "4", "--resume", *run_flags))
    monkeypatch.undo()
    stderr = capsys.readouterr().err
    err = [line for line in stderr.splitlines() if line.startswith("error: ")]  # besides tqdm's progress bar
    assert exited.value.code == 2 and len(err) == 1 and "Traceback" not in stderr, stderr[-2000:]
    assert reason in err[0] and "training stopped" in err[0]
    if what in ("the training log", "the latest set"):  # before anything of iteration 4 was saved
        assert "iteration 2" in err[0] and "--resume continues" in err[0]
        assert {part: file_state(folder / f"{part}.pth") for part in saved} == saved  # nothing lost
    else:  # the copy, the sheets, the metrics and best sets come after this iteration's latest set: it is kept
        assert "iteration 4" in err[0] and "--resume continues" in err[0]
    assert (base_dir / "logs" / name / "train_log.jsonl").read_text().startswith(log)
    assert checkpoints.has_checkpoint(str(folder)) and not [n for n in os.listdir(folder) if n.startswith(".tmp")]


# --- Bad inputs: one clear message, non-zero exit, nothing overwritten.

def run_cli(base_dir, *args):
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--base_dir", str(base_dir), *SOURCE, *FAST,
           "--num_iters", "1", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)


def broken_copy(base_dir, tmp_path, damage):
    base = tmp_path / "base"
    shutil.copytree(base_dir, base, ignore=shutil.ignore_patterns("BigGAN*", "logs", "samples"), symlinks=True)
    damage(base)
    return base


def remove_weights(base):
    os.remove(base / "weights" / "G.pth")


def empty_a_class(base):
    for f in os.listdir(base / "data" / "toy" / toy.NEW_CLASSES[0]):
        os.remove(base / "data" / "toy" / toy.NEW_CLASSES[0] / f)


def corrupt_an_image(base):
    folder = base / "data" / "toy" / toy.NEW_CLASSES[0]
    (folder / sorted(os.listdir(folder))[0]).write_bytes(b"not a png")


@pytest.mark.parametrize("damage,args,message", [
    (lambda base: shutil.rmtree(base / "data" / "toy"), [], "prepare_data.sh"),
    (lambda base: None, ["--n_classes", "5"], "--n_classes 5"),
    (empty_a_class, [], toy.NEW_CLASSES[0]),
    (corrupt_an_image, ["--batch_size", "6", "--num_D_accumulations", "2"], "cannot read|unreadable|not an image"),
    (remove_weights, [], "G.pth"),
    (lambda base: None, ["--n_pretrain_classes", "10"], "n_pretrain_classes"),
    (lambda base: None, ["--comb_init", "mean", "--kp_variant", "imagenet"], "--kp_variant cifar"),
])
def test_bad_inputs_stop_with_one_clear_message(base_dir, tmp_path, damage, args, message):
    base = broken_copy(base_dir, tmp_path, damage)
    result = run_cli(base, *args)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    import re
    assert re.search(message, result.stderr), result.stderr[-2000:]


def test_resumes_an_experiment_written_by_biggan_pytorch(tmp_path):
    """The c32 fixture folder holds BigGAN-PyTorch's own G/D/G_ema/optimizer/state_dict files."""
    toy.write_image_folder(str(tmp_path / "data" / "toy_source"), toy.OLD_CLASSES[:8], 4, seed=0)
    shutil.copytree(fixture_path("biggan_pytorch", "c32_small"), tmp_path / "weights" / "official",
                    ignore=shutil.ignore_patterns("golden.pt", "keys.json"))
    out = train.main(["--base_dir", str(tmp_path), *SOURCE[:-2], *FAST, "--dataset", "ToySource32",
                      "--stage", "pretrain", "--experiment_name", "official", "--resume", "--ema",
                      "--num_iters", "1001", "--num_epochs", "1000"])
    assert out["state_dict"]["itr"] == 1001 and out["state_dict"]["best_FID"] == 120.0


# --- Exact resume: a run stopped or killed at any moment resumes to the uninterrupted run's bits.
# fp32 (--amp none): bf16 autocast rounds away the layout difference these tests once missed
# (a transposed prior matrix after a start, a contiguous one after a resume).
EXACT = ["--amp", "none", "--G_batch_size", "4", "--num_epochs", "50"]


def tensors_of(obj) -> dict:
    return obj.state_dict() if hasattr(obj, "state_dict") else obj


def assert_identical(final, reference, name, parts=("G", "D")):
    """Equal bits and equal memory layout (strides) of every tensor of each part: models returned by
    train.main, or sets read from disk (torch.save keeps strides)."""
    for part in parts:
        ours, theirs = tensors_of(final[part]), tensors_of(reference[part])
        assert ours.keys() == theirs.keys(), (name, part)
        for key, value in theirs.items():
            assert torch.equal(ours[key], value), (name, part, key)
            assert ours[key].stride() == value.stride(), (name, part, key, "layout")


def saved(base_dir, name, suffix="", parts=("G", "D", "state_dict")):
    import checkpoints
    return checkpoints.load_set(str(base_dir / "weights" / name), suffix, list(parts))


def metrics_records(base_dir, name):
    path = base_dir / "logs" / f"{name}_log.jsonl"
    return [(r["itr"], r["FID"]) for r in utils.read_jsonl(str(path))] if path.exists() else []


def best_sets(base_dir, name):
    """{slot: (iteration, G)} of the experiment's best sets."""
    import checkpoints
    folder = str(base_dir / "weights" / name)
    return {slot: (checkpoints.saved_iteration(folder, slot),
                   saved(base_dir, name, slot, ["G"])["G"])
            for slot in checkpoints.best_sets(folder)}


def assert_same_best_sets(base_dir, name, reference):
    ours, theirs = best_sets(base_dir, name), best_sets(base_dir, reference)
    iterations = lambda sets: {slot: itr for slot, (itr, _) in sets.items()}
    assert iterations(ours) == iterations(theirs), name
    for slot, (_, G) in theirs.items():
        assert_identical({"G": ours[slot][1]}, {"G": G}, (name, slot), parts=("G",))


@pytest.mark.parametrize("stage", ["BN", "pretrain"])
def test_a_run_stopped_at_4_and_resumed_to_10_equals_an_uninterrupted_one_bit_for_bit(base_dir,
                                                                                      stage):
    """The acceptance check of exact resume: G, G_ema and D by torch.equal after 10 iterations (GAN
    training amplifies a difference in the last bit: one in the prior matrices' layout grew to
    1e-3).
    pretrain runs with channels_last and fused resampling (as the Fashion-MNIST world's transfers):
    a resumed run converts the loaded models, an uninterrupted one the built ones."""
    pretrain = ["--n_pretrain_classes", "0", "--channels_last", "--fused_resampling"]
    stage_flags = ["--stage", stage, *(pretrain if stage == "pretrain" else [])]
    train_10 = lambda name, itrs, *extra: run_train(base_dir, *EXACT, "--ema", *stage_flags,
                                                     "--num_iters", str(itrs),
                                                     "--experiment_name", name, *extra)
    uninterrupted = train_10(f"straight_{stage}", 10)
    train_10(f"stopped_{stage}", 4)
    resumed = train_10(f"stopped_{stage}", 10, "--resume")
    assert resumed["state_dict"]["itr"] == 10
    assert_identical(resumed, uninterrupted, stage, parts=("G", "D", "G_ema"))


@pytest.mark.parametrize("sampler", [[], ["--shuffle"], ["--use_multiepoch_sampler"],
                                     ["--shuffle", "--load_in_mem"], ["--shuffle", "--hdf5"]])
def test_resume_is_exact_with_every_sampler_and_train_mode_sheets(base_dir, sampler):
    # 6 images per class, batches of 8: an epoch is one batch short of 2, so resuming at
    # iteration 2 lands mid-epoch. Sheets are drawn in train mode after every save (save_every 1),
    # which moves G's spectral-norm vectors: they must not change the run.
    loading = [f for f in FAST if f != "--use_multiepoch_sampler"] + sampler
    common = [*EXACT, "--batch_size", "2", "--num_D_accumulations", "2", "--save_every", "1"]
    train_flags = lambda *extra: ["--base_dir", str(base_dir), *SOURCE, *loading, *common, *extra]
    if "--hdf5" in sampler:
        write_hdf5(base_dir)
    tag = "".join(sampler) or "default"
    uninterrupted = train.main(train_flags("--num_iters", "5", "--experiment_name", f"all{tag}"))
    train.main(train_flags("--num_iters", "3", "--experiment_name", f"split{tag}"))
    resumed = train.main(train_flags("--num_iters", "5", "--experiment_name", f"split{tag}",
                                     "--resume"))
    assert resumed["state_dict"]["itr"] == 5
    assert_identical(resumed, uninterrupted, tag)


def write_hdf5(base_dir):
    if not (base_dir / "data" / "Toy32.hdf5").exists():
        import datasets
        import make_hdf5
        folder = datasets.ImageFolderDataset(str(base_dir / "data" / "toy"), 32, dataset="Toy32")
        make_hdf5.write_hdf5(folder, str(base_dir / "data" / "Toy32.hdf5"), 8, 0, 8, None)


def test_sheets_and_metrics_leave_training_untouched(base_dir):
    # Saving (and drawing sheets) every iteration or never gives the same run.
    often = run_train(base_dir, "--num_iters", "3", "--experiment_name", "sheets_often",
                      "--save_every", "1")
    never = run_train(base_dir, "--num_iters", "3", "--experiment_name", "sheets_never",
                      "--save_every", "1000")
    for key, value in often["G"].state_dict().items():
        assert torch.equal(value, never["G"].state_dict()[key]), key


def metric_flags(base_dir) -> list[str]:
    """In-loop metrics in the shipped toy classifier's space (it knows the toy classes), with
    reference statistics of the training folder, computed once."""
    import calculate_inception_moments
    classifier = os.path.join(ROOT, "assets", "toy_classifier.pth")
    if not (base_dir / "data" / "Toy32_classifier_moments.npz").exists():
        calculate_inception_moments.run({"dataset": "Toy32", "base_dir": str(base_dir), "data_root": "",
                                         "batch_size": 16, "num_workers": 0, "shuffle": False, "seed": 0,
                                         "hdf5": False, "backbone": "classifier", "inception_weights": classifier,
                                         "device": "cpu", "parallel": False, "resolution": 0, "reference_dataset": ""})
    return ["--backbone", "classifier", "--inception_weights", classifier, "--num_inception_images", "40",
            "--which_best", "FID"]


def train_process(command_lines, argv, kill_at=None, kill_after=None):
    """`python train.py *argv` in a process of its own, forked from the server that imported torch
    once (conftest.CommandLines); killed for real at its kill_at-th checkpoint write
    (helpers/faults.py) or after kill_after seconds, if it runs that long. Returns
    its returncode (-9 when killed) and its output (stdout, then stderr)."""
    result = command_lines.run(killed_at_change(kill_at, ["train.py", *argv]), kill_after=kill_after)
    return result.returncode, result.stdout + result.stderr


def killed_and_finished(command_lines, base_dir, argv, kill_at=None, kill_after=None):
    """train.py killed at its kill_at-th checkpoint write (or after kill_after seconds), then run
    again as the default run does (experiments/runs.py: --resume when a checkpoint exists, else a
    new start); both in processes of their own. Returns the finished latest set, the output of
    the run that finished it, and whether it resumed (the killed run had saved a set)."""
    import checkpoints
    code, output = train_process(command_lines, argv, kill_at, kill_after)
    assert code == -9 or (kill_after and code == 0), (code, output[-2000:])
    name = argv[argv.index("--experiment_name") + 1]
    resumed = bool(checkpoints.existing_sets(str(base_dir / "weights" / name)))
    finished = command_lines.run([*calling("experiments.runs:train_or_load"), *argv])
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, output[-2000:]
    assert "Traceback" not in output, output[-2000:]
    folder = base_dir / "weights" / name
    leftovers = [n for n in os.listdir(folder) if n.startswith((".staging", ".tmp_", ".link-", ".saving"))]
    leftovers += [n for n in os.listdir(folder / "sets") if n.startswith(".staging")]
    assert not leftovers, (name, leftovers)
    parts = ("G", "D", "state_dict", *(["G_ema"] if "--ema" in argv else []))
    final = saved(base_dir, name, parts=parts)
    return {**final, "output": output, "resumed": resumed}


def test_killed_BN_runs_resume_to_the_uninterrupted_bits(base_dir, command_lines):
    """10 iterations with --ema, saves (the latest set, one copy) at 4, 8 and 10. The folder's
    changes (6 parts): at 4 the latest set 1-15 (swap 9) and copy0 16-30; at 8 the latest 31-40
    (swap 39) and the copy 41-50; at 10 the latest 51-60 and the copy 61-70 (swap 69). Killed
    before the first save's naming (8: nothing saved, started again), in the second save before its
    swap (35: resumed from 4) and in its copy (45), at the very end (70), and at a random moment,
    each run finishes with the bits of a run never killed (tests/test_checkpoints.py kills at every
    change of a save). 11 forked runs of about 0.5 s."""
    import random
    argv = lambda name: ["--base_dir", str(base_dir), *SOURCE, *FAST, *EXACT, "--ema",
                         "--num_iters", "10", "--save_every", "4", "--num_save_copies", "1",
                         "--experiment_name", name]
    train.main(argv("bn_reference"))
    reference = saved(base_dir, "bn_reference", parts=("G", "D", "G_ema", "state_dict"))
    at_random = random.Random(0).uniform(0.5, 2)
    for kill_at, kill_after in ((8, None), (35, None), (45, None), (70, None), (None, at_random)):
        name = f"bn_killed_at{kill_at or 'random'}"
        final = killed_and_finished(command_lines, base_dir, argv(name), kill_at, kill_after)
        assert final["state_dict"]["itr"] == 10, name
        assert_identical(final, reference, name, parts=("G", "D", "G_ema"))
        # a resumed run logs the losses of the iterations after its checkpoint once (the killed
        # run's records of them go); one started again (nothing saved) logs after the killed one's.
        # The random kill may land before the first save on a busy machine: then it started again.
        assert final["resumed"] == (kill_at != 8) or kill_at is None, name
        log = utils.read_jsonl(str(base_dir / "logs" / name / "train_log.jsonl"))
        log = [record["itr"] for record in log]
        assert log[-10:] == list(range(1, 11)), (name, log)
        assert not final["resumed"] or len(log) == 10, (name, log)


def test_killed_FT_runs_with_ema_hdf5_and_best_sets_resume_to_the_uninterrupted_bits(
        base_dir, command_lines):
    """FT continues a BN checkpoint (iteration 2) to 10 with --ema, --hdf5 and in-loop metrics at
    4, 8 and 10 that save best sets (at 4 and 8). Killed after the first best set's swap (its
    evaluation owed: made up, into the same slot), in the second best set before its swap, after
    the final latest set's swap (the final evaluation owed), at a random moment, or stopped cleanly
    at 8: the latest set, the best sets (slots, iterations, bits) and the metrics log equal an
    uninterrupted run's. The clean stop needs the resumed run to replay the evaluation of 8 from
    the log: the set of 8 was saved before it, and without it the evaluation at 10 counted as an
    improvement. 9 forked runs of about 1 s."""
    import random
    write_hdf5(base_dir)
    common = ["--base_dir", str(base_dir), *SOURCE, *[f for f in FAST if f != "--no_fid"],
              *metric_flags(base_dir), *EXACT, "--ema", "--ema_start", "0", "--ema_decay", "0.9",
              "--hdf5", "--num_save_copies", "1", "--num_best_copies", "2", "--save_every", "4",
              "--test_every", "4"]
    train.main([*common, "--experiment_name", "bn_start", "--num_iters", "2"])  # what FT continues

    def ft_flags(name, itrs=10):
        if not (base_dir / "weights" / name).exists():
            shutil.copytree(base_dir / "weights" / "bn_start", base_dir / "weights" / name,
                            symlinks=True)
        return [*common, "--experiment_name", name, "--num_iters", str(itrs), "--stage", "FT",
                "--resume"]
    train.main(ft_flags("ft_reference"))
    reference = saved(base_dir, "ft_reference", parts=("G", "D", "G_ema", "state_dict"))
    assert [itr for itr, _ in metrics_records(base_dir, "ft_reference")] == [4, 8, 10]
    # The FT run's file-system changes (6 parts with G_ema): at 4 the latest set 1-10 (swap 9), its
    # copy 11-20, best1 21-36 (swap 29); at 8 the latest 37-45, the copy 46-55, best0 56-65 (swap
    # 64); at 10 the latest 67-75 (swap 74) and the copy 76-85.
    at_random = random.Random(1).uniform(1, 3)
    for kill_at, kill_after in ((30, None), (60, None), (75, None), (None, at_random)):
        name = f"ft_killed_at{kill_at or 'random'}"
        final = killed_and_finished(command_lines, base_dir, ft_flags(name), kill_at,
                                    kill_after)
        if kill_at:
            assert "saved but not evaluated" in final["output"], name
        assert_identical(final, reference, name, parts=("G", "D", "G_ema"))
        assert_same_best_sets(base_dir, name, "ft_reference")
        assert metrics_records(base_dir, name) == metrics_records(base_dir, "ft_reference"), name
    train.main(ft_flags("ft_stopped", 8))
    resumed = train.main([*ft_flags("ft_stopped"), "--load_weights", ""])
    assert_identical(resumed, reference, "ft_stopped", parts=("G", "D", "G_ema"))
    assert_same_best_sets(base_dir, "ft_stopped", "ft_reference")
    assert metrics_records(base_dir, "ft_stopped") == metrics_records(base_dir, "ft_reference")


def test_a_run_killed_anywhere_between_its_final_save_and_its_evaluation_makes_it_up(
        base_dir, command_lines):
    """One iteration, saved (the latest set: 13 file-system changes, its swap the 8th), evaluated,
    and saved as best0 (13 more): killed before every change from the latest set's first link (9)
    to the best set's last (26), `train.py --resume` (the checkpoint is at --num_iters already)
    makes up the evaluation: the best set (one, best0) and the metrics log (one record) are an
    uninterrupted run's, and then the run is finished (--resume again: "already", exit code 2).
    18 kills and reruns, each about 0.5 s of training, saving and evaluating: one for each state a
    kill leaves here."""
    with_metrics = [*[f for f in FAST if f != "--no_fid"], *metric_flags(base_dir)]
    argv = lambda name: ["--base_dir", str(base_dir), *SOURCE, *with_metrics, *EXACT,
                         "--num_iters", "1", "--save_every", "1", "--num_save_copies", "0",
                         "--num_best_copies", "2", "--experiment_name", name]
    train.main(argv("window_reference"))
    reference = saved(base_dir, "window_reference")
    for kill_at in range(9, 27):
        name = f"window_killed_at{kill_at}"
        code, output = train_process(command_lines, argv(name), kill_at=kill_at)
        assert code == -9, (kill_at, code, output[-2000:])
        assert saved(base_dir, name)["state_dict"]["itr"] == 1
        assert not metrics_records(base_dir, name)
        code, output = train_process(command_lines, [*argv(name), "--resume"])
        assert code == 0, (kill_at, output[-2000:])
        assert "saved but not evaluated" in output, kill_at
        assert_identical(saved(base_dir, name), reference, name)
        assert_same_best_sets(base_dir, name, "window_reference")
        assert metrics_records(base_dir, name) == metrics_records(base_dir, "window_reference")
    code, output = train_process(command_lines, [*argv("window_killed_at9"), "--resume"])
    assert code == 2 and "iteration 1 already" in output, output


def test_killed_torchrun_runs_resume_exactly_with_ranks_identical(base_dir, tmp_path):
    """Two torchrun processes (gloo): the ranks stay identical, and a run killed in rank 0's second
    save (before its swap: resumed from iteration 4) ends with the uninterrupted run's bits, each
    rank's random state restored. Three torchrun launches, the reference dumping both ranks."""
    import checkpoints
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533"]
    argv = lambda name: ["--base_dir", str(base_dir), *SOURCE, *FAST, *EXACT, "--num_iters", "10",
                         "--save_every", "4", "--num_save_copies", "0", "--experiment_name", name]

    def torchrun(script, *args, kill_at=None):
        return subprocess.run([*launcher, *killed_at_change(kill_at, [script, *args])], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
    dump = os.path.join(ROOT, "tests", "helpers", "train_and_dump.py")
    result = torchrun(dump, str(tmp_path), *argv("ddp_reference"))
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pth", weights_only=True) for r in (0, 1)]
    assert ranks[0]["itr"] == ranks[1]["itr"] == 10
    assert_identical(ranks[1], ranks[0], "rank 1")
    # rank 0's changes: the save at 4 1-13, the one at 8 14-22 (swap 21)
    killed = torchrun(os.path.join(ROOT, "train.py"), *argv("ddp_killed"), kill_at=20)
    folder = str(base_dir / "weights" / "ddp_killed")
    assert killed.returncode != 0 and checkpoints.saved_iteration(folder, "") == 4
    result = torchrun(os.path.join(ROOT, "train.py"), *argv("ddp_killed"), "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    assert_identical(saved(base_dir, "ddp_killed"), saved(base_dir, "ddp_reference"), "ddp_killed")


def test_a_diverged_run_stops_with_one_message_and_keeps_its_good_checkpoint(base_dir):
    run_train(base_dir, "--num_iters", "2", "--experiment_name", "diverges", "--save_every", "2")
    with pytest.raises(utils.UsageError, match="diverged .*the last checkpoint in .* stays"):
        run_train(base_dir, "--num_iters", "6", "--experiment_name", "diverges", "--resume", "--save_every", "1",
                  "--G_lr", "1e38", "--D_lr", "1e38")
    import checkpoints
    saved = checkpoints.load_set(str(base_dir / "weights" / "diverges"), "", ["G", "state_dict"])
    assert checkpoints.all_finite(saved["G"]) and saved["state_dict"]["itr"] >= 2


def test_source_weights_with_nan_are_refused(base_dir, tmp_path):
    base = tmp_path / "nan_source"
    shutil.copytree(base_dir / "data", base / "data")
    os.makedirs(base / "weights")
    G = torch.load(base_dir / "weights" / "G.pth", weights_only=True)
    G["linear.weight"][0, 0] = float("nan")
    torch.save(G, base / "weights" / "G.pth")
    shutil.copy(base_dir / "weights" / "D.pth", base / "weights" / "D.pth")
    with pytest.raises(utils.UsageError, match="G.pth holds non-finite values"):
        run_train(base, "--num_iters", "1", "--experiment_name", "nan_source")


def test_two_processes_never_train_one_experiment(base_dir):
    import checkpoint_lock
    with checkpoint_lock.ExperimentLock(str(base_dir / "weights" / "busy")):
        with pytest.raises(utils.UsageError, match="in use by process"):
            run_train(base_dir, "--num_iters", "1", "--experiment_name", "busy")


def test_DiffAugment_reaches_the_training_step(base_dir):
    plain = run_train(base_dir, "--num_iters", "2", "--experiment_name", "no_diffaug")
    augmented = run_train(base_dir, "--num_iters", "2", "--experiment_name", "diffaug",
                          "--DiffAugment", "color,translation,cutout")
    assert augmented["state_dict"]["config"]["DiffAugment"] == "color,translation,cutout"
    differs = [k for k, v in plain["D"].state_dict().items() if not torch.equal(v, augmented["D"].state_dict()[k])]
    assert differs  # D saw other images


# --patience: the FID of each in-loop evaluation is scripted by iteration (the metrics are the
# test's; best sets, the log and the stop are train.py's). FID improves at 1, 2 and 4 and not at
# 3, 5, 6, 7: with --patience 3 the run stops at 7, its best set is 4's (FID 6.0).
SCRIPTED_FID = {1: 9.0, 2: 7.0, 3: 8.0, 4: 6.0, 5: 6.5, 6: 6.2, 7: 7.0, 8: 5.0, 9: 4.0}
PATIENCE = ["--which_best", "FID", "--test_every", "1", "--save_every", "2", "--patience", "3",
            "--num_save_copies", "0"]


class Stopped(BaseException):
    """A stop (a kill, as far as the folder is concerned) where the test puts it."""


@pytest.fixture
def scripted_fid(monkeypatch):
    """In-loop metrics that give SCRIPTED_FID[iteration]; returns the iterations evaluated."""
    import inception_utils
    import train_fns
    evaluated, real_test = [], train_fns.test

    def test(models, state, config, metrics, *args):
        scripted = lambda sample, count: evaluated.append(state["itr"]) or {
            "FID": SCRIPTED_FID[state["itr"]]}
        return real_test(models, state, config, scripted, *args)
    monkeypatch.setattr(inception_utils.Metrics, "from_config", lambda config, device: None)
    monkeypatch.setattr(train_fns, "test", test)
    return evaluated


def patience_argv(base_dir, name, num_iters=20, *extra):
    return ["--base_dir", str(base_dir), *SOURCE, *[f for f in FAST if f != "--no_fid"], *PATIENCE,
            "--num_iters", str(num_iters), "--experiment_name", name, *extra]


def patience_run(base_dir, name, num_iters=20, *extra):
    return train.main(patience_argv(base_dir, name, num_iters, *extra))


def assert_stopped_at_7_with_4_best(base_dir, name):
    """The latest set at 7 counts its evaluation; the best set (what the study reports) is 4's."""
    import checkpoints
    from experiments import runs
    folder = str(base_dir / "weights" / name)
    latest = saved(base_dir, name)["state_dict"]
    assert latest["itr"] == 7 and latest["evaluation_due"] is False
    assert [itr for itr, _ in metrics_records(base_dir, name)] == list(range(1, 8))
    assert checkpoints.saved_iteration(folder, checkpoints.best_slot(folder)) == 4
    config = latest["config"]  # the run's, as train.run returns it with its result
    assert runs.best_or_last(config, {})["metrics"]["FID"] == 6.0
    assert runs.has_finished(config, folder)


def test_patience_stops_when_FID_has_not_improved_for_K_evaluations(base_dir, scripted_fid,
                                                                     capsys):
    result = patience_run(base_dir, "patience")
    assert result["state_dict"]["itr"] == 7 and scripted_fid == list(range(1, 8))
    assert ("Stopped at iteration 7: FID has not improved for 3 evaluations (--patience 3); "
            "the best, FID 6, is iteration 4's") in capsys.readouterr().out
    assert_stopped_at_7_with_4_best(base_dir, "patience")
    records = utils.read_jsonl(str(base_dir / "logs" / "patience_log.jsonl"))
    seconds = [record["train_seconds"] for record in records]
    assert seconds == sorted(seconds) and 0 < seconds[0] and seconds[-1] < records[-1]["time"]
    with pytest.raises(utils.UsageError, match="iteration 7, where the run stopped: FID has not "
                                               "improved for 3 .*give a larger --patience"):
        patience_run(base_dir, "patience", 20, "--resume")
    resumed = patience_run(base_dir, "patience", 9, "--resume", "--patience", "5")
    assert resumed["state_dict"]["itr"] == 9  # 8 improves: a larger patience trains on


def test_a_run_resumed_within_its_patience_count_stops_where_an_uninterrupted_one_does(
        base_dir, scripted_fid, monkeypatch, capsys):
    """Resumed after 5 (the first run's cap: one evaluation without improvement counted), after the
    evaluation of 6 was cut short (owed: made up), and after the evaluation of 7 that stops it but
    before its stop set was saved (the set of 6 and the log's record of 6 replayed, 7 again); then
    the study's runner (experiments/runs.py) loads it as finished."""
    import train_fns
    from experiments import runs
    patience_run(base_dir, "patience_capped", 5)
    patience_run(base_dir, "patience_capped", 20, "--resume")
    assert_stopped_at_7_with_4_best(base_dir, "patience_capped")
    real_evaluate = train.evaluate

    def cut_short_at_6(models, state, *args):
        if state["itr"] == 6:
            raise Stopped()
        return real_evaluate(models, state, *args)

    def unsaved(*args):
        raise Stopped()
    for name, module, function, stop in (
            ("patience_owed", train, "evaluate", cut_short_at_6),
            ("patience_unsaved", train_fns, "save_stopped_run", unsaved)):
        with monkeypatch.context() as patch:
            patch.setattr(module, function, stop)
            with pytest.raises(Stopped):
                patience_run(base_dir, name)
        assert saved(base_dir, name)["state_dict"]["itr"] == 6
        capsys.readouterr()
        runs.train_or_load(patience_argv(base_dir, name))
        assert "Stopped at iteration 7" in capsys.readouterr().out
        assert_stopped_at_7_with_4_best(base_dir, name)
    config, result = runs.train_or_load(patience_argv(base_dir, "patience_owed"))
    assert "finished before, at iteration 7" in capsys.readouterr().out
