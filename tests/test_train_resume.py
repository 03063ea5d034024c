"""train.py, resumed: a resumed run takes its model flags from the checkpoint, and a run stopped
or killed at any moment (by a signal, at any file-system change of a save) resumes to the
uninterrupted run's bits, making up an evaluation it owed; under torchrun too, the ranks kept
identical."""
import os
import shutil
import subprocess
import sys

import pytest
import torch

import train
import utils
from conftest import ROOT, calling, fixture_path
from helpers.faults import killed_at_change
from helpers.training import (FAST, SOURCE, metric_flags, metrics_records, run_train, saved,
                              write_base_dir)
from worlds import toy

pytestmark = pytest.mark.slow  # every test here runs train.py


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return write_base_dir(tmp_path_factory.mktemp("base"))


def test_resume_takes_the_model_flags_from_the_checkpoint(base_dir, capsys):
    run_train(base_dir, "--num_iters", "1", "--experiment_name", "adopt")
    without_model_flags = [f for i, f in enumerate(SOURCE) if f not in ("--G_ch", "--D_ch")
                           and SOURCE[i - 1] not in ("--G_ch", "--D_ch")]
    out = train.main(["--base_dir", str(base_dir), *without_model_flags, *FAST, "--num_iters", "2",
                      "--experiment_name", "adopt", "--resume"])
    assert out["state_dict"]["itr"] == 2 and out["G"].ch == 16
    assert "--G_ch 16" in capsys.readouterr().out


def test_resume_refuses_model_flags_unlike_the_checkpoint(base_dir):
    run_train(base_dir, "--num_iters", "1", "--experiment_name", "unlike")
    with pytest.raises(utils.UsageError, match=r"--G_ch 32 \(trained with 16\)"):
        run_train(base_dir, "--num_iters", "2", "--experiment_name", "unlike", "--resume",
                  "--G_ch", "32")
    with pytest.raises(utils.UsageError, match="--stage finetune trains a plain G"):
        run_train(base_dir, "--num_iters", "2", "--experiment_name", "unlike", "--resume",
                  "--stage", "finetune")


def test_resume_honours_new_learning_rates_and_refuses_a_passed_budget(base_dir, capsys):
    run_train(base_dir, "--num_iters", "2", "--experiment_name", "new_lr")
    with pytest.raises(utils.UsageError, match="--num_iters 2: the checkpoint is at iteration 2"):
        run_train(base_dir, "--num_iters", "2", "--experiment_name", "new_lr", "--resume")
    out = run_train(base_dir, "--num_iters", "3", "--experiment_name", "new_lr", "--resume",
                    "--G_lr", "5e-4", "--D_B2", "0.99")
    assert "--G_lr 0.0005 (checkpoint: 0.001)" in capsys.readouterr().out
    G_optim = torch.load(base_dir / "weights" / "new_lr" / "G_optim.pth", weights_only=True)
    D_optim = torch.load(base_dir / "weights" / "new_lr" / "D_optim.pth", weights_only=True)
    assert (G_optim["param_groups"][0]["lr"] == 5e-4
            and D_optim["param_groups"][0]["betas"][1] == 0.99)
    assert out["state_dict"]["itr"] == 3


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


def train_process(command_lines, argv, kill_at=None, kill_after=None):
    """`python train.py *argv` in a process of its own, forked from the server that imported torch
    once (conftest.CommandLines); killed for real at its kill_at-th checkpoint write
    (helpers/faults.py) or after kill_after seconds, if it runs that long. Returns
    its returncode (-9 when killed) and its output (stdout, then stderr)."""
    result = command_lines.run(killed_at_change(kill_at, ["train.py", *argv]),
                               kill_after=kill_after)
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
    leftovers = [n for n in os.listdir(folder)
                 if n.startswith((".staging", ".tmp_", ".link-", ".saving"))]
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
    and saved as best0 (13 more): killed anywhere from the latest set's first link (9) to the best
    set's last (26), `train.py --resume` (the checkpoint is at --num_iters already) makes up the
    evaluation: the best set (one, best0) and the metrics log (one record) are an uninterrupted
    run's, and then the run is finished (--resume again: "already", exit code 2). The kills: the
    first and last change of each phase the window holds (the latest set's links 9-13; best0
    staged 14-19, named 20, swapped 21, its links 22-26), 8 kills and reruns of about 0.7 s each;
    tests/test_checkpoints.py kills a save at every one of its changes."""
    with_metrics = [*[f for f in FAST if f != "--no_fid"], *metric_flags(base_dir)]
    argv = lambda name: ["--base_dir", str(base_dir), *SOURCE, *with_metrics, *EXACT,
                         "--num_iters", "1", "--save_every", "1", "--num_save_copies", "0",
                         "--num_best_copies", "2", "--experiment_name", name]
    train.main(argv("window_reference"))
    reference = saved(base_dir, "window_reference")
    for kill_at in (9, 13, 14, 19, 20, 21, 22, 26):
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
    # --standalone: each launch's rendezvous on a free port, not one that a previous launch's
    # lingering socket or another test's torchrun may hold.
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                "2"]
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
