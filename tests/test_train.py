"""train.py: the stages train exactly the official parameter sets, a run never overwrites what
the user had, every failure (a write, a bad input, divergence) stops with one clear message, and
--patience stops a run whose FID no longer improves. Resuming, exactly:
tests/test_train_resume.py."""
import errno
import os
import re
import shutil

import pytest
import torch

import flags
import run_spec
import run_start
import train
import utils
from conftest import fixture_path, inject_write_failure
from helpers.training import (FAST, SOURCE, metric_flags, metrics_records, run_train, saved,
                              write_base_dir)
from test_stages import OFFICIAL_BN_SET, OFFICIAL_FT_SET
from worlds import toy

pytestmark = pytest.mark.slow  # every test here runs train.py


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return write_base_dir(tmp_path_factory.mktemp("base"))


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def loaded_models(base_dir, *args):
    """G (in eval mode) and D of a new experiment, right after the pretrained weights are loaded."""
    config = {**flags.parse(["--base_dir", str(base_dir), *SOURCE, *FAST, *args]),
              "n_classes": 2, "resolution": 32}
    utils.seed_rng(config["seed"])  # as train.run: the same random combination init
    G, D = run_start.build_models(config, "cpu")
    run_start.load_source(G, D, run_spec.read_source_model(config), config)
    return G.eval(), D


def changed_sets(base_dir, stage, *extra):
    """(names of G's parameters changed by 3 iterations, same for D, all of D's names)."""
    G0, D0 = loaded_models(base_dir, "--stage", stage, *extra)
    before_G, before_D = snapshot(G0), snapshot(D0)
    out = run_train(base_dir, "--stage", stage, "--num_iters", "3",
                    "--experiment_name", f"sets_{stage}{extra}", *extra)
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
    # The c32 model: 3 G blocks, each with two conditional BNs whose gains and biases are class
    # embeddings.
    assert changed_G == {f"blocks.{b}.0.bn{i}.{part}.weight"
                         for b in range(3) for i in (1, 2) for part in ("gain", "bias")}
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
        assert torch.allclose(transfer(z, transfer.class_input(y)),
                              baseline(z, baseline.class_input(y)), atol=1e-5)
        assert not torch.allclose(official(z, official.class_input(y)),
                                  baseline(z, baseline.class_input(y)), atol=1e-2)


def test_epoch_mode_saves_the_final_state(base_dir):
    # 12 images, batches of 8: one iteration per epoch, two epochs; save_every far away.
    out = run_train(base_dir, "--num_iters", "0", "--num_epochs", "2",
                    "--experiment_name", "epochs")
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
    with pytest.raises(utils.UsageError,
                       match=re.escape(f"--experiment_name {name!r}") + ".*choose another name"):
        run_train(base_dir, "--num_iters", "1", "--experiment_name", name)
    assert sorted(os.listdir(weights)) == listing
    assert {entry: file_state(weights / entry) for entry in before} == before


def test_a_linked_experiment_folder_is_refused_and_training_never_writes_the_source_model(
        base_dir, tmp_path):
    weights = base_dir / "weights"
    before = {entry: file_state(weights / entry) for entry in ("G.pth", "D.pth")}
    os.symlink(weights, weights / "loop")  # e.g. a link back onto weights/ itself
    try:
        with pytest.raises(utils.UsageError, match="'loop' is a link"):
            run_train(base_dir, "--num_iters", "1", "--experiment_name", "loop")
    finally:
        os.remove(weights / "loop")
    run_train(base_dir, "--num_iters", "2", "--save_every", "1",
              "--experiment_name", "reads_the_source")
    assert {entry: file_state(weights / entry) for entry in before} == before


def test_a_new_run_refuses_a_folder_holding_only_a_copy_or_a_best_set(base_dir):
    run_train(base_dir, "--num_iters", "2", "--save_every", "2", "--num_save_copies", "1",
              "--experiment_name", "only_a_copy")
    folder = base_dir / "weights" / "only_a_copy"
    for name in ["latest",
                 *(f"{part}.pth" for part in ("G", "G_optim", "D", "D_optim", "state_dict"))]:
        # the latest set gone (removed by hand, or never written): copy0 is left
        os.remove(folder / name)
    copy = file_state(folder / "G_copy0.pth")
    with pytest.raises(utils.UsageError,
                       match=r"already has checkpoints .*\(copy0\); continue it with --resume"):
        run_train(base_dir, "--num_iters", "4", "--experiment_name", "only_a_copy")
    assert file_state(folder / "G_copy0.pth") == copy
    os.rename(folder / "copy0", folder / "best1")  # a best set alone is refused alike
    with pytest.raises(utils.UsageError, match=r"already has checkpoints .*\(best1\)"):
        run_train(base_dir, "--num_iters", "4", "--experiment_name", "only_a_copy")


def test_resume_without_a_saved_set_says_to_start_without_resume(base_dir):
    with pytest.raises(utils.UsageError,
                       match="nothing was saved there yet .*start it without --resume"):
        run_train(base_dir, "--num_iters", "1", "--experiment_name", "never_saved", "--resume")
    # a failed start leaves no folder (nor a .lock)
    assert not (base_dir / "weights" / "never_saved").exists()


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


WRITE_PATHS = {  # (fresh predicates each time) at iteration 4 a resumed run saves the latest set,
    # its copy, then evaluates, logs the metrics and saves a best set
    "the training log": lambda: lambda path: path.endswith("train_log.jsonl"),
    "a sample sheet": lambda: lambda path: f"{os.sep}samples{os.sep}" in path,
    "the latest set": lambda: nth_time(1, lambda path: path.endswith(f"{os.sep}G.pth")),
    "a copy set": lambda: nth_time(2, lambda path: path.endswith(f"{os.sep}G.pth")),
    "a best set": lambda: nth_time(3, lambda path: path.endswith(f"{os.sep}G.pth")),
    "the metrics log": lambda: lambda path: (path.endswith("_log.jsonl")
                                             and not path.endswith("train_log.jsonl")),
}


@pytest.mark.parametrize("what,code,reason",
                         [(what, errno.ENOSPC, "no space left on device") for what in WRITE_PATHS]
                         + [("the training log", errno.EROFS, "read-only file system")])
def test_a_failed_write_stops_training_in_one_line_and_keeps_the_last_checkpoint(
        base_dir, monkeypatch, capsys, what, code, reason):
    import checkpoints
    name = f"fails_{what.replace(' ', '_')}_{code}"
    run_flags = ["--save_every", "2", "--num_save_copies", "1", "--experiment_name", name,
                 "--test_every", "4", *metric_flags(base_dir)]
    train_with_metrics = lambda *args: train.main(["--base_dir", str(base_dir), *SOURCE,
                                                   *[f for f in FAST if f != "--no_fid"], *args])
    # no FID at 2, so that any FID at iteration 4 is a best one
    train_with_metrics("--num_iters", "2", *run_flags, "--no_fid")
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
    # besides tqdm's progress bar
    err = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert exited.value.code == 2 and len(err) == 1 and "Traceback" not in stderr, stderr[-2000:]
    assert reason in err[0] and "training stopped" in err[0]
    if what in ("the training log", "the latest set"):  # before anything of iteration 4 was saved
        assert "iteration 2" in err[0] and "--resume continues" in err[0]
        assert {part: file_state(folder / f"{part}.pth") for part in saved} == saved  # nothing lost
    else:  # the copy, sheets, metrics and best sets come after this iteration's latest set: kept
        assert "iteration 4" in err[0] and "--resume continues" in err[0]
    assert (base_dir / "logs" / name / "train_log.jsonl").read_text().startswith(log)
    assert checkpoints.has_checkpoint(str(folder)) and not [
        n for n in os.listdir(folder) if n.startswith(".tmp")]


# --- Bad inputs: one clear message, non-zero exit, nothing overwritten.

def run_cli(command_lines, base_dir, *args):
    """`python train.py ...` as the user runs it (forked from the test server: the exit code and
    stderr are the script's own)."""
    return command_lines.run(["train.py", "--base_dir", str(base_dir), *SOURCE, *FAST,
                              "--num_iters", "1", *args], timeout=300)


def broken_copy(base_dir, tmp_path, damage):
    base = tmp_path / "base"
    shutil.copytree(base_dir, base, ignore=shutil.ignore_patterns("BigGAN*", "logs", "samples"),
                    symlinks=True)
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
    (corrupt_an_image, ["--batch_size", "6", "--num_D_accumulations", "2"],
     "cannot read|unreadable|not an image"),
    (remove_weights, [], "G.pth"),
    (lambda base: None, ["--n_pretrain_classes", "10"], "n_pretrain_classes"),
    (lambda base: None, ["--comb_init", "mean", "--kp_variant", "imagenet"], "--kp_variant cifar"),
])
def test_bad_inputs_stop_with_one_clear_message(base_dir, tmp_path, command_lines, damage, args,
                                                message):
    base = broken_copy(base_dir, tmp_path, damage)
    result = run_cli(command_lines, base, *args)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert re.search(message, result.stderr), result.stderr[-2000:]


def test_a_diverged_run_stops_with_one_message_and_keeps_its_good_checkpoint(base_dir):
    run_train(base_dir, "--num_iters", "2", "--experiment_name", "diverges", "--save_every", "2")
    with pytest.raises(utils.UsageError, match="diverged .*the last checkpoint in .* stays"):
        run_train(base_dir, "--num_iters", "6", "--experiment_name", "diverges", "--resume",
                  "--save_every", "1", "--G_lr", "1e38", "--D_lr", "1e38")
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
    differs = [k for k, v in plain["D"].state_dict().items()
               if not torch.equal(v, augmented["D"].state_dict()[k])]
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
    evaluated, real_test = [], train_fns.evaluate_and_keep_best

    def test(models, state, config, metrics, *args):
        scripted = lambda sample, count: evaluated.append(state["itr"]) or {
            "FID": SCRIPTED_FID[state["itr"]]}
        return real_test(models, state, config, scripted, *args)
    monkeypatch.setattr(inception_utils.Metrics, "from_config", lambda config, device: None)
    monkeypatch.setattr(train_fns, "evaluate_and_keep_best", test)
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

    def cut_short_at_6(t, *args):
        if t.state["itr"] == 6:
            raise Stopped()
        return real_evaluate(t, *args)

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
