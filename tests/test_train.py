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

import experiment
import flags
import train
import utils
from conftest import ROOT, fixture_path, inject_write_failure
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
    G, D = experiment.build_models(config, "cpu")
    experiment.load_source(G, D, experiment.read_source_model(config), config)
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


def test_resume_continues_exactly_like_an_uninterrupted_run(base_dir):
    uninterrupted = run_train(base_dir, "--num_iters", "3", "--experiment_name", "straight", "--ema", "--use_ema")
    run_train(base_dir, "--num_iters", "2", "--experiment_name", "split", "--ema", "--use_ema")
    resumed = run_train(base_dir, "--num_iters", "3", "--experiment_name", "split", "--ema", "--use_ema",
                        "--resume")
    assert resumed["state_dict"]["itr"] == 3
    for model in ("G", "D", "G_ema"):
        a, b = uninterrupted[model].state_dict(), resumed[model].state_dict()
        for key in a:
            assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6, rtol=0), (model, key)


@pytest.mark.parametrize("sampler", [[], ["--shuffle"], ["--use_multiepoch_sampler"], ["--shuffle", "--load_in_mem"],
                                     ["--shuffle", "--hdf5"]])
def test_resume_is_exact_with_every_sampler_and_train_mode_sheets(base_dir, sampler):
    # 6 images per class, batches of 8: an epoch is one batch short of 2, so resuming at
    # iteration 2 lands mid-epoch. Sheets are drawn in train mode after every save (save_every 1),
    # which moves G's spectral-norm vectors: they must not change the run.
    loading = [f for f in FAST if f != "--use_multiepoch_sampler"] + sampler
    common = ["--batch_size", "2", "--num_D_accumulations", "2", "--save_every", "1", "--num_epochs", "50"]
    train_flags = lambda *extra: ["--base_dir", str(base_dir), *SOURCE, *loading, *common, *extra]
    if "--hdf5" in sampler and not (base_dir / "data" / "Toy32.hdf5").exists():
        import datasets
        import make_hdf5
        folder = datasets.ImageFolderDataset(str(base_dir / "data" / "toy"), 32, dataset="Toy32")
        make_hdf5.write_hdf5(folder, str(base_dir / "data" / "Toy32.hdf5"), 8, 0, 8, None)
    tag = "".join(sampler) or "default"
    uninterrupted = train.main(train_flags("--num_iters", "5", "--experiment_name", f"straight{tag}"))
    train.main(train_flags("--num_iters", "3", "--experiment_name", f"split{tag}"))
    resumed = train.main(train_flags("--num_iters", "5", "--experiment_name", f"split{tag}", "--resume"))
    assert resumed["state_dict"]["itr"] == 5
    for model in ("G", "D"):
        a, b = uninterrupted[model].state_dict(), resumed[model].state_dict()
        for key in a:
            assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6, rtol=0), (model, key)


def test_sheets_and_metrics_leave_training_untouched(base_dir):
    # Saving (and drawing sheets) every iteration or never gives the same run.
    often = run_train(base_dir, "--num_iters", "3", "--experiment_name", "sheets_often", "--save_every", "1")
    never = run_train(base_dir, "--num_iters", "3", "--experiment_name", "sheets_never", "--save_every", "1000")
    for key, value in often["G"].state_dict().items():
        assert torch.equal(value, never["G"].state_dict()[key]), key


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


def test_torchrun_with_two_gloo_processes_keeps_ranks_identical(base_dir, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
           os.path.join(ROOT, "tests", "helpers", "train_and_dump.py"), str(tmp_path),
           "--base_dir", str(base_dir), *SOURCE, *FAST, "--num_iters", "2", "--experiment_name", "ddp"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pth", weights_only=True) for r in (0, 1)]
    assert ranks[0]["itr"] == ranks[1]["itr"] == 2
    for part in ("G", "D"):
        for key, value in ranks[0][part].items():
            assert torch.equal(value, ranks[1][part][key]), (part, key)


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


# --- Faults: a run killed at any moment resumes to exactly the uninterrupted result.

# 4 iterations, a save (the latest set and one copy) at iterations 2 and 4; each set is 5 files.
FAULT_RUN = ["--num_iters", "4", "--save_every", "2", "--num_save_copies", "1", "--num_epochs", "50"]
MUTATIONS_PER_SET = 2 * 5 + 2  # checkpoints.py: each part written and renamed, the manifest written and renamed


def train_cli(base_dir, name, env=None):
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--base_dir", str(base_dir), *SOURCE, *FAST,
           *FAULT_RUN, "--experiment_name", name]
    return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish_after_a_kill(base_dir, name):
    """What a user does after a crash: resume when a checkpoint exists, else start again."""
    import checkpoints
    folder = str(base_dir / "weights" / name)
    checkpoints.recover(folder)  # as train.py does at start (also checked below: nothing left over)
    saved = checkpoints.saved_iteration(folder, "") if checkpoints.has_checkpoint(folder) else -1
    folders = [folder]
    if saved < 4:
        run_train(base_dir, *FAULT_RUN, "--experiment_name", name, *(["--resume"] if saved >= 0 else []))
        folders.append(str(base_dir / "samples" / name))  # its start removed a killed sheet's temporary
    leftovers = [n for d in folders for n in os.listdir(d) if n.startswith((".saving_", ".tmp_"))]
    assert not leftovers, (name, leftovers)
    return checkpoints.load_set(folder, "", ["G", "D", "state_dict"])


def test_a_run_killed_at_any_write_of_a_save_or_at_random_resumes_exactly(base_dir):
    import random
    reference = finish_after_a_kill(base_dir, "faults_reference")
    # Kill points across the first save (latest set, then the copy) and the second one.
    # 1: staging the first set; 7: its manifest written; 12: around its publish; 18: the copy; 37: the
    # second save (tests/test_checkpoints.py kills at every change of a save).
    kill_points = [1, 7, 12, 18, 37]
    runs = [(f"faults_at{k}", {"CGT_KILL_AT_WRITE": str(k)}, None) for k in kill_points]
    rng = random.Random(0)
    runs += [(f"faults_random{i}", None, rng.uniform(1.0, 4.0)) for i in range(1)]
    for name, env, kill_after in runs:
        process = train_cli(base_dir, name, env)
        if kill_after is not None:
            try:
                process.wait(timeout=kill_after)
            except subprocess.TimeoutExpired:
                process.kill()
        _, stderr = process.communicate(timeout=300)
        assert process.returncode in (0, -9), (name, stderr[-2000:])
        final = finish_after_a_kill(base_dir, name)
        assert final["state_dict"]["itr"] == 4, name
        for part in ("G", "D"):
            for key, value in reference[part].items():
                assert torch.allclose(final[part][key].float(), value.float(), atol=1e-6, rtol=0), (name, part, key)


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
            "--G_batch_size", "20", "--which_best", "FID"]


def kill_and_finish(base_dir, name, argv, kill_env, kill_after, finish_flags, launcher=()):
    """Run train.py (under `launcher`, e.g. torchrun) killed at a checkpoint write (kill_env) or after
    kill_after seconds, then finish as a user would: --resume when a checkpoint exists, else start again."""
    import checkpoints
    cmd = [*launcher, *([] if launcher else [sys.executable]), os.path.join(ROOT, "train.py"), *argv]
    process = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(kill_env or {})}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    if kill_after is not None:
        try:
            process.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)  # the whole process group: torchrun and its workers
    _, stderr = process.communicate(timeout=300)
    assert process.returncode in (0, -9, 1), (name, stderr[-2000:])  # torchrun exits 1 when a worker dies
    folder = str(base_dir / "weights" / name)
    saved = checkpoints.saved_iteration(folder, "") if checkpoints.has_checkpoint(folder) else -1
    final = int(argv[argv.index("--num_iters") + 1])
    if saved < final:
        resumed = [*argv, *finish_flags, *(["--resume"] if saved >= 0 else [])]
        result = subprocess.run([*launcher, *([] if launcher else [sys.executable]), os.path.join(ROOT, "train.py"),
                                 *resumed], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, (name, result.stderr[-2000:])
    leftovers = [n for n in os.listdir(folder) if n.startswith((".staging", ".tmp_", ".link-", ".saving"))]
    leftovers += [n for n in os.listdir(os.path.join(folder, "sets")) if n.startswith(".staging")]
    assert not leftovers, (name, leftovers)
    return checkpoints.load_set(folder, "", ["G", "D", "state_dict"] + (["G_ema"] if "--ema" in argv else []))


def assert_same_weights(final, reference, name, parts=("G", "D")):
    assert final["state_dict"]["itr"] == reference["state_dict"]["itr"], name
    for part in parts:
        for key, value in reference[part].items():
            assert torch.allclose(final[part][key].float(), value.float(), atol=1e-6, rtol=0), (name, part, key)


def test_killed_FT_runs_with_ema_hdf5_and_best_sets_resume_exactly(base_dir):
    """FT continues a BN checkpoint with --ema, --hdf5 and in-loop metrics that save best sets; killed
    anywhere (the latest set, its copy, the best set; at random), it finishes where an uninterrupted run does."""
    import datasets
    import make_hdf5
    if not (base_dir / "data" / "Toy32.hdf5").exists():
        folder = datasets.ImageFolderDataset(str(base_dir / "data" / "toy"), 32, dataset="Toy32")
        make_hdf5.write_hdf5(folder, str(base_dir / "data" / "Toy32.hdf5"), 8, 0, 8, None)
    common = ["--base_dir", str(base_dir), *SOURCE, *[f for f in FAST if f != "--no_fid"], *metric_flags(base_dir),
              "--ema", "--ema_start", "0", "--ema_decay", "0.9", "--hdf5", "--num_epochs", "50",
              "--num_save_copies", "1", "--num_best_copies", "2", "--save_every", "2", "--test_every", "2"]
    run_train_flags = lambda name, itrs, *extra: [*common, "--experiment_name", name, "--num_iters", str(itrs), *extra]
    train.main(run_train_flags("bn_start", 2))  # the BN checkpoint each FT run continues
    def ft_flags(name):
        shutil.copytree(base_dir / "weights" / "bn_start", base_dir / "weights" / name, symlinks=True)
        return run_train_flags(name, 6, "--stage", "FT", "--resume")
    reference = kill_and_finish(base_dir, "ft_reference", ft_flags("ft_reference"), None, None, [])
    # At iteration 4 a save changes the folder 10 times for the latest set (6 parts, the manifest,
    # naming, the swap, removing the old set), 15 for the first copy (with its 6 links), 15 for the first
    # best: one kill inside each (tests/test_checkpoints.py kills at every change of a save).
    for kill_at in (9, 24, 34):
        name = f"ft_killed_at{kill_at}"
        final = kill_and_finish(base_dir, name, ft_flags(name), {"CGT_KILL_AT_WRITE": str(kill_at)}, None, [])
        assert_same_weights(final, reference, name, parts=("G", "D", "G_ema"))
    for i, seconds in enumerate((5.0,)):
        name = f"ft_killed_after{i}"
        final = kill_and_finish(base_dir, name, ft_flags(name), None, seconds, [])
        assert_same_weights(final, reference, name, parts=("G", "D", "G_ema"))


def test_killed_torchrun_runs_resume_exactly(base_dir):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533"]
    run_flags = lambda name: ["--base_dir", str(base_dir), *SOURCE, *FAST, "--num_iters", "4", "--save_every", "2",
                          "--num_save_copies", "1", "--num_epochs", "50", "--experiment_name", name]
    reference = kill_and_finish(base_dir, "ddp_reference", run_flags("ddp_reference"), None, None, [], launcher)
    for kill_at in (4, 12, 22):  # rank 0 saves: the first latest set, its copy, the second latest set
        name = f"ddp_killed_at{kill_at}"
        final = kill_and_finish(base_dir, name, run_flags(name), {"CGT_KILL_AT_WRITE": str(kill_at)}, None, [], launcher)
        assert_same_weights(final, reference, name)


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
    import checkpoints
    with checkpoints.ExperimentLock(str(base_dir / "weights" / "busy")):
        with pytest.raises(utils.UsageError, match="in use by process"):
            run_train(base_dir, "--num_iters", "1", "--experiment_name", "busy")


def test_DiffAugment_reaches_the_training_step(base_dir):
    plain = run_train(base_dir, "--num_iters", "2", "--experiment_name", "no_diffaug")
    augmented = run_train(base_dir, "--num_iters", "2", "--experiment_name", "diffaug",
                          "--DiffAugment", "color,translation,cutout")
    assert augmented["state_dict"]["config"]["DiffAugment"] == "color,translation,cutout"
    differs = [k for k, v in plain["D"].state_dict().items() if not torch.equal(v, augmented["D"].state_dict()[k])]
    assert differs  # D saw other images
