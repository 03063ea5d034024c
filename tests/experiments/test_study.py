"""experiments/study.py: every method runs on the same world and budget, every run reports the same
metrics, and the study resumes and extends: runs are saved as they finish and never run twice."""
import json
import math
import os

import pytest
import torch

import run_start
import flags
import utils
from experiments import study
from fashion_split import split_study  # noqa: F401 (a fixture)
from worlds import toy

pytestmark = pytest.mark.slow  # every test here runs a study

# One iteration per stage, evaluated and saved once: every method trains, is measured and saved as
# the full study does; what these tests check (tables, resuming, sources) needs no more. A run then
# costs ~1 s on 2 cores (its evaluation, sheets, IW critic and memorization more than its training);
# each test runs the fewest runs its property takes, said in its docstring.
TINY = ["--world", "toy", "--shots", "5", "--iters", "1", "--test_every", "1",
        "--num_inception_images", "50"]


@pytest.fixture(autouse=True)
def small_budgets(monkeypatch):
    monkeypatch.setattr(toy, "REFERENCE_IMAGES_PER_CLASS", 30)
    monkeypatch.setattr(study, "IW_IMAGES", 25)
    monkeypatch.setattr(study, "IW_STEPS", 5)
    monkeypatch.setattr(study, "MEMORIZATION_SAMPLES", 10)


def test_study_writes_a_table_row_per_method_and_the_fid_plot(tmp_path):
    """8 runs: the four methods whose trained parameters are compared, each with two seeds for a
    mean ± std."""
    methods = ["scratch", "freezeD", "BN_only", "BN+FT"]
    results = study.main(["--out", str(tmp_path), *TINY, "--seeds", "0", "1",
                          "--methods", *methods])
    table = (tmp_path / "study.md").read_text()
    for method in methods:
        assert f"| {method} | 2 |" in table
        assert sorted(run["seed"] for run in results[5][method]) == [0, 1]
    assert (tmp_path / "fid_curves.png").is_file()
    trained = {m: results[5][m][0]["trained_G_params"] for m in methods}
    # only its new classes' BN parameters
    assert trained["BN_only"] < min(trained["BN+FT"], trained["scratch"])
    # the source's architecture, every parameter of G trained
    assert trained["scratch"] == trained["freezeD"]
    assert " ± " in table  # mean ± std over the two seeds
    metrics = results[5]["BN+FT"][0]["metrics"]
    assert 0 <= metrics["precision"] <= 1 and 0 <= metrics["recall"] <= 1
    assert metrics["IW"] < 0 and metrics["NN_ratio"] > 0  # the critic tells this G from real images


def test_the_study_resumes_and_extends_without_running_a_run_twice(tmp_path, monkeypatch):
    """4 runs: one there before, one more seed of its method, and a method more."""
    study.main(["--out", str(tmp_path), *TINY, "--seeds", "0", "--methods", "BN"])
    ran = []
    real = study.run_method
    monkeypatch.setattr(study, "run_method",
                        lambda *args, **kwargs: ran.append(args[2:4]) or real(*args, **kwargs))
    results = study.main(["--out", str(tmp_path), *TINY, "--seeds", "0", "1",
                          "--methods", "BN", "BN_mean_init"])
    assert ran == [("BN", 1), ("BN_mean_init", 0), ("BN_mean_init", 1)]  # BN seed 0 was there
    assert set(results[5]) == {"BN", "BN_mean_init"} and len(results[5]["BN"]) == 2
    table = (tmp_path / "study.md").read_text()
    assert "| BN | 2 |" in table and "| BN_mean_init | 2 |" in table
    log = results[5]["BN_mean_init"][1]["log"]  # where the study folder is, whatever its path
    assert log == os.path.join("shots5", "logs", "BN_mean_init_seed1_log.jsonl")
    assert (tmp_path / log).is_file()


def test_a_stopped_run_continues_from_its_checkpoint(tmp_path):
    """A BN run, then the FT phase of a BN+FT run (refused where an earlier study's layout is)."""
    base = tmp_path / "shots5"
    # A BN+FT run (1 iteration per stage) stopped after its BN phase: the study starts it at FT.
    study.main(["--out", str(tmp_path), *TINY, "--seeds", "0", "--methods", "BN"])
    # As an earlier study left it: both stages in one experiment, FT to continue BN's latest set.
    (base / "weights" / "BN_seed0").rename(base / "weights" / "BN+FT_seed0")
    with pytest.raises(utils.UsageError, match=r"BN\+FT_seed0 holds a BN\+FT run of an earlier"):
        study.main(["--out", str(tmp_path), *TINY, "--seeds", "0", "--methods", "BN+FT"])
    (base / "weights" / "BN+FT_seed0").rename(base / "weights" / "BN+FT_seed0_phase1")
    (base / "logs" / "BN_seed0_log.jsonl").rename(base / "logs" / "BN+FT_seed0_phase1_log.jsonl")
    results = study.main(["--out", str(tmp_path), *TINY, "--seeds", "0", "--methods", "BN+FT"])
    config = json.loads((base / "weights" / "BN+FT_seed0" / "config.json").read_text())
    assert config["stage"] == "FT" and config["start_from"] == "BN+FT_seed0_phase1:best"
    assert config["num_iters"] == 1 and not config["resume"]
    run = results[5]["BN+FT"][0]
    assert run["metrics"]["FID"] > 0 and run["iterations"] == 2 and run["best_itr"] == 2
    assert [point["itr"] for point in run["curve"]] == [1, 2]  # BN's evaluation, then FT's
    log = [json.loads(line) for line in open(base / "logs" / "BN+FT_seed0" / "train_log.jsonl")]
    assert [r["itr"] for r in log] == [1]  # FT only: BN's iteration 1 ran in the stopped run


class Stopped(BaseException):
    """A stop (a kill, as far as the folder is concerned) where the test puts it."""


def test_a_run_stopped_between_a_phase_s_final_save_and_its_evaluation_makes_it_up(tmp_path,
                                                                                    capsys):
    """BN+FT stopped after the BN phase's final save, before its evaluation: the study run again
    makes up that evaluation (train.py --resume), then trains FT from BN's best set; every
    evaluation logged once.
    (Killed processes at every such moment: tests/test_train_resume.py; the default run:
    test_demo.py.)"""
    import train
    real = train.evaluate

    def stopped_before_BN_s_last(t, *args):
        if t.spec.config["stage"] == "BN" and t.state["itr"] == 2:
            train.evaluate = real
            raise Stopped()
        return real(t, *args)
    # 2 iterations a phase: the BN phase's last evaluation comes after another one.
    argv = ["--out", str(tmp_path), *TINY, "--iters", "2", "--seeds", "0", "--methods", "BN+FT"]
    train.evaluate = stopped_before_BN_s_last
    try:
        with pytest.raises(Stopped):
            study.main(argv)
    finally:
        train.evaluate = real
    logs = tmp_path / "shots5" / "logs"
    BN_log = logs / "BN+FT_seed0_phase1_log.jsonl"
    assert [json.loads(line)["itr"] for line in open(BN_log)] == [1]
    capsys.readouterr()
    results = study.main(argv)
    assert "Iteration 2 was saved but not evaluated" in capsys.readouterr().out
    assert [json.loads(line)["itr"] for line in open(BN_log)] == [1, 2]
    assert [json.loads(line)["itr"] for line in open(logs / "BN+FT_seed0_log.jsonl")] == [1, 2]
    assert [point["itr"] for point in results[5]["BN+FT"][0]["curve"]] == [1, 2, 3, 4]
    assert results[5]["BN+FT"][0]["metrics"]["FID"] > 0


# The FID of each in-loop evaluation, scripted by stage and iteration: with --patience 2 the BN
# phase stops at 4 (best: 2), FT (from BN's best set, its own iterations) at 4 (best: 2, FID 5).
SCRIPTED_FID = {"BN": {1: 9.0, 2: 7.0, 3: 8.0, 4: 8.5}, "FT": {1: 6.0, 2: 5.0, 3: 5.5, 4: 5.2}}


def test_every_phase_stops_by_patience_and_the_run_reports_its_best_set(tmp_path, monkeypatch,
                                                                         capsys):
    """1 BN+FT run, then the study again without its results: both phases load as finished. The
    metrics are scripted (train_fns.evaluate_and_keep_best, the best sets and the stops are the
    code's); memorization and IW are measured, on the G of the best set."""
    import checkpoints
    import inception_utils
    import train_fns
    real_test, measured = train_fns.evaluate_and_keep_best, []
    real_measure = study.memorization.measure

    def scripted_test(models, state, config, metrics, *args):
        fid = SCRIPTED_FID[config["stage"]][state["itr"]]
        return real_test(models, state, config, lambda sample, count: {"FID": fid}, *args)

    def measure(G, *args):
        measured.append({k: v.clone() for k, v in G.state_dict().items()})
        return real_measure(G, *args)
    monkeypatch.setattr(inception_utils.Metrics, "from_config", lambda config, device: None)
    monkeypatch.setattr(train_fns, "evaluate_and_keep_best", scripted_test)
    monkeypatch.setattr(study.memorization, "measure", measure)
    argv = ["--out", str(tmp_path), *TINY, "--iters", "6", "--patience", "2", "--seeds", "0",
            "--methods", "BN+FT"]
    run = study.main(argv)[5]["BN+FT"][0]
    out = capsys.readouterr().out
    assert out.count("Stopped at iteration 4: FID has not improved for 2 evaluations") == 2
    assert run["metrics"]["FID"] == 5.0 and run["best_itr"] == 4 + 2 and run["iterations"] == 8
    assert [(p["itr"], p["FID"]) for p in run["curve"]] == [
        (itr, fid) for itr, fid in SCRIPTED_FID["BN"].items()] + [
        (4 + itr, fid) for itr, fid in SCRIPTED_FID["FT"].items()]
    seconds = [p["train_seconds"] for p in run["curve"]]
    assert seconds == sorted(seconds) and seconds[-1] == run["train_seconds"] > 0
    weights = tmp_path / "shots5" / "weights"
    config = json.loads((weights / "BN+FT_seed0" / "config.json").read_text())
    assert config["start_from"] == "BN+FT_seed0_phase1:best"
    assert checkpoints.saved_iteration(str(weights / "BN+FT_seed0_phase1"), "best0") == 2
    best = checkpoints.load_set(str(weights / "BN+FT_seed0"), "best0", ["G", "state_dict"])
    assert best["state_dict"]["itr"] == 2
    assert all(torch.equal(measured[0][k], v) for k, v in best["G"].items())  # not the last G
    table = (tmp_path / "study.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| method | seeds |"))
    row = next(line for line in table.splitlines() if line.startswith("| BN+FT | 1 |"))
    assert dict(zip(header.split(" | "), row.split(" | ")))["best at iteration"] == "6"
    assert "Equal compute, 5 images per new class" in table
    assert (tmp_path / "fid_seconds.png").is_file()

    (tmp_path / "shots5" / "results.json").unlink()
    logs = tmp_path / "shots5" / "logs"
    train_logs = lambda: [(logs / name / "train_log.jsonl").read_text()
                          for name in ("BN+FT_seed0_phase1", "BN+FT_seed0")]
    trained = train_logs()
    again = study.main(argv)[5]["BN+FT"][0]
    assert capsys.readouterr().out.count("finished before, at iteration 4") == 2
    assert train_logs() == trained  # nothing trained again
    assert again["metrics"]["FID"] == 5.0 and again["best_itr"] == 6


def test_diffaugment_runs_are_listed_apart(tmp_path):
    """2 runs: a method without and with DiffAugment."""
    common = ["--out", str(tmp_path), *TINY, "--shots", "1", "--seeds", "0",
              "--methods", "finetune"]
    study.main(common)
    results = study.main([*common, "--DiffAugment", "translation"])
    assert set(results[1]) == {"finetune", "finetune+DA"}
    table = (tmp_path / "study.md").read_text()
    assert table.index("| finetune |") < table.index("| finetune+DA |")
    assert (tmp_path / "shots1" / "logs" / "finetune+DA_seed0_log.jsonl").is_file()
    config = json.loads(
        (tmp_path / "shots1" / "weights" / "finetune+DA_seed0" / "config.json").read_text())
    assert config["DiffAugment"] == "translation"


def test_a_policy_that_does_not_exist_is_refused_before_any_run(tmp_path, capsys):
    with pytest.raises(SystemExit):
        study.main(["--out", str(tmp_path), "--DiffAugment", "colour"])
    assert "--DiffAugment" in capsys.readouterr().err
    assert not (tmp_path / "shots10").exists()


def test_an_unconditional_source_transfers_with_finetune(tmp_path):
    """1 run, from an untrained unconditional source."""
    argv = [*toy.ARCHITECTURE, "--dataset", "Toy32", "--n_classes", "1", "--stage", "pretrain",
            "--base_dir", str(tmp_path / "source_run")]
    config = flags.finalize_config(vars(flags.prepare_parser().parse_args(argv)))
    config["resolution"] = 32
    G, D = run_start.build_models(config, "cpu")
    source = tmp_path / "unconditional"
    source.mkdir()
    torch.save(G.state_dict(), source / "G.pth")
    torch.save(D.state_dict(), source / "D.pth")
    results = study.main(["--out", str(tmp_path / "out"), *TINY, "--source", str(source),
                          "--source_classes", "1", "--shots", "1", "--seeds", "0",
                          "--methods", "finetune"])
    assert math.isfinite(results[1]["finetune"][0]["metrics"]["FID"])
    installed = torch.load(tmp_path / "out" / "shots1" / "weights" / "G.pth", weights_only=True)
    assert all(torch.equal(installed[k], v) for k, v in G.state_dict().items())


def test_a_source_folder_without_weights_is_refused(tmp_path):
    with pytest.raises(utils.UsageError, match="holds no G.pth"):
        study.main(["--out", str(tmp_path / "out"), *TINY, "--source", str(tmp_path),
                    "--shots", "1", "--methods", "finetune"])


def test_one_command_reruns_the_study_on_another_fashion_split(split_study):
    """The split study of fashion_split.py: its source is of the split's old classes,
    its runs of its new ones, and its folder describes its world for the tools that read it."""
    from worlds import fashion
    assert split_study.results[1]["BN"][0]["metrics"]["FID"] > 0
    old = sorted(set(fashion.CLASSES) - {"Shirt", "Sneaker", "Bag"})
    source = json.loads((split_study.out / "assets" / "fashion_source" / "config.json").read_text())
    assert sorted(source["class_names"]) == old
    run = json.loads((split_study.out / "shots1" / "weights" / "BN_seed0" / "config.json")
                     .read_text())
    assert sorted(run["class_names"]) == ["Bag", "Shirt", "Sneaker"]
    assert run["n_pretrain_classes"] == 7
    described = json.loads((split_study.out / "world.json").read_text())
    assert described == {"world": "fashion", "new_classes": ["Shirt", "Sneaker", "Bag"],
                         "old_classes": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                         "Sandal", "Ankle boot"], "assets": "assets"}


def test_a_split_s_source_is_pretrained_with_the_stopping_rule_asked_for(tmp_path, monkeypatch):
    """--source_patience and --source_ema reach the split's source pretraining (worlds.fashion
    build, whose own tests cover what they do there); without them it trains --source_iters."""
    from worlds import fashion
    builds = []
    monkeypatch.setattr(fashion, "build", lambda *args, **kwargs: builds.append((args, kwargs)))
    study.split_world(["Shirt", "Sneaker", "Bag"], str(tmp_path), 6000, 4, True)
    study.split_world(["Shirt", "Sneaker", "Bag"], str(tmp_path), 50)
    assert [(args[3], kwargs["source_patience"], kwargs["source_ema"])
            for args, kwargs in builds] == [(6000, 4, True), (50, 0, False)]
    args = study.prepare_parser().parse_args(["--new", "Shirt,Sneaker,Bag", "--source_patience",
                                              "4", "--source_ema"])
    assert (args.source_patience, args.source_ema) == (4, True)


def test_an_out_of_another_split_is_refused_before_anything_is_built(tmp_path):
    """No raw data needed: the refusal comes before the split's assets are built."""
    from worlds import registry
    study.main(["--out", str(tmp_path), *TINY, "--seeds", "0", "--methods", "BN_only"])
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(utils.UsageError, match="--world toy") as err:
        study.main(["--new", "Shirt,Sneaker,Bag", "--out", str(tmp_path), "--shots", "5"])
    assert "--new Shirt,Sneaker,Bag" in str(err.value) and "another --out" in str(err.value)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert registry.study_world(str(tmp_path)) is registry.get("toy")


def test_a_split_study_continued_as_another_world_is_refused(split_study):
    before = (split_study.out / "world.json").read_text()
    with pytest.raises(utils.UsageError, match="continue it with --new Shirt,Sneaker,Bag"):
        study.main(["--out", str(split_study.out), *TINY, "--seeds", "0", "--methods", "BN"])
    assert (split_study.out / "world.json").read_text() == before
    assert not (split_study.out / "shots5").exists()
