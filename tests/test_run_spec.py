"""run_spec.py: a training run settled once. Model flags travel with the weights (a saved config
fills what was left out and refuses what differs), the data gives the classes and the resolution,
the start plan reads the checkpoint a run starts from, and the settled config is read-only."""
import json
import os
import re
import types

import pytest

import checkpoint_format
import checkpoints
import run_folder
import run_spec
import utils
import worlds
from conftest import ROOT
from test_checkpoints import a_set


def test_a_saved_config_fills_what_was_left_out_and_refuses_what_differs():
    saved = {"G_ch": 16, "hier": True, "dim_z": 120}
    config = {"G_ch": 64, "hier": False, "dim_z": 120, "seed": 3}
    names = ("G_ch", "hier", "dim_z")
    assert run_spec.adopted_flags(config, saved, set(), names, "ckpt") == {"G_ch": 16, "hier": True}
    assert config == {"G_ch": 64, "hier": False, "dim_z": 120, "seed": 3}  # not edited
    with pytest.raises(utils.UsageError,
                       match=r"ckpt was trained with .*--G_ch 32 \(trained with 16\)"):
        run_spec.adopted_flags({**config, "G_ch": 32}, saved, {"G_ch"}, ("G_ch",), "ckpt")


def test_the_shipped_source_names_its_classifier_relative_to_itself_and_a_transfer_finds_it(
        tmp_path):
    source = os.path.join(ROOT, "assets", "fashion_source")
    classifier = os.path.join(ROOT, "assets", "fashion_classifier.pth")
    with open(os.path.join(source, "config.json")) as f:
        assert not os.path.isabs(json.load(f)["inception_weights"])
    saved = run_folder.read_config(source)  # as --weights_root assets/fashion_source reads it
    assert saved["inception_weights"] == classifier
    config = {"backbone": "inception", "inception_weights": ""}
    taken = run_spec.source_flags_of(config, saved, explicit=set(), what="the source")
    assert taken == {"backbone": "classifier", "inception_weights": classifier,
                     "old_class_names": saved["class_names"]}
    worlds.install_source(str(tmp_path / "weights"), source)  # as the worlds lay out a base folder
    assert run_folder.read_config(str(tmp_path / "weights"))["inception_weights"] == classifier
    # elsewhere a relative path stays as the run was given it (relative to the working directory)
    (tmp_path / "config.json").write_text(json.dumps({"inception_weights": "base/weights/c.pth"}))
    assert run_folder.read_config(str(tmp_path))["inception_weights"] == "base/weights/c.pth"


@pytest.mark.parametrize("suffix", ["", "copy0"])
def test_resume_or_start_from_a_set_whose_G_is_truncated_names_the_set_and_the_file_as_damaged(
        tmp_path, suffix):
    folder = tmp_path / "exp"
    checkpoints.save_set(str(folder), a_set(4), 4, suffix)
    G = folder / checkpoint_format.part_name("G", suffix)
    saved_bytes = G.stat().st_size
    with open(os.path.realpath(G), "r+b") as f:
        f.truncate(saved_bytes // 2)
    damaged = re.escape(f"checkpoint {suffix or '(latest)'} in {folder} is damaged: G.pth has "
                        f"{saved_bytes // 2} bytes, the file saved at iteration 4 had "
                        f"{saved_bytes}")
    config = {"experiment_name": "exp", "weights_root": str(tmp_path), "load_weights": suffix,
              "ema": False, "start_from": f"exp:{suffix}" if suffix else "exp"}
    with pytest.raises(utils.UsageError, match=damaged):
        run_spec.read_resume_set(config)
    with pytest.raises(utils.UsageError, match=damaged):
        run_spec.read_start_from(config)


def toy_flags(base, *args) -> tuple[dict, set[str]]:
    """train.py's flags for a tiny pretraining on two toy classes (data written to base)."""
    from worlds import toy
    toy.write_image_folder(str(base / "data" / "toy"), toy.NEW_CLASSES[:2], 2, seed=0)
    return run_spec.parse_flags(["--base_dir", str(base), "--dataset", "Toy32", "--stage",
                                 "pretrain", "--G_ch", "4", "--D_ch", "4", *args])


def test_a_settled_run_is_read_only_and_leaves_the_flags_it_was_given_as_they_were(tmp_path):
    given, explicit = toy_flags(tmp_path)
    before = dict(given)
    spec = run_spec.settle(given, explicit)
    assert given == before
    assert isinstance(spec.config, types.MappingProxyType)
    with pytest.raises(TypeError):
        spec.config["G_ch"] = 8  # nothing edits a settled config
    assert (spec.config["n_classes"], spec.config["resolution"]) == (2, 32)  # from the data
    assert spec.start == run_spec.StartPlan()  # a pretraining starts from scratch
    name = given["experiment_name"]
    assert spec.folder.weights == os.path.join(str(tmp_path), "weights", name)
    assert spec.folder.metrics_log == os.path.join(str(tmp_path), "logs", f"{name}_log.jsonl")


def test_the_resume_plan_continues_the_experiment_whatever_the_flags_say_of_it(tmp_path):
    given, explicit = toy_flags(tmp_path, "--experiment_name", "exp", "--start_from", "other")
    checkpoints.save_set(str(tmp_path / "weights" / "exp"),
                         {**a_set(3), "state_dict": {"itr": 3, "config": {"G_ch": 8}}}, 3, "")
    with pytest.raises(utils.UsageError, match="--G_ch 4 \\(trained with 8\\)"):
        run_spec.settle(given, explicit, resume=True)  # --G_ch was given, and differs
    spec = run_spec.settle(given, explicit - {"G_ch"}, resume=True)
    assert (spec.config["resume"], spec.config["start_from"], spec.config["G_ch"]) == (True, "", 8)
    assert spec.start.resumed["state_dict"]["itr"] == 3 and spec.start.source is None
    assert given["G_ch"] == 4 and not given["resume"]


# After settle, the run's config goes where a run is settled (flags, run_spec), where its paths and
# config.json live (run_folder), where models are built from it as BigGAN-PyTorch builds them
# (run_start, stages, BigGAN's **kwargs) and where the loop runs (train, train_fns). Sampling,
# precision, the data and the metrics get the values they need, not the config.
CONFIG_ROOMS = {"flags", "run_spec", "run_folder", "run_start", "stages", "BigGAN", "train",
                "train_fns"}


@pytest.mark.slow
def test_a_training_run_s_config_enters_only_the_modules_that_settle_build_and_run_it(tmp_path):
    """Traced: every call of a project function whose arguments hold the run's config (a mapping
    with its flags), during a run of 2 iterations with a save and sheets. No call passes it from a
    module to one below it that imports the caller (a climb back up the import graph)."""
    import sys
    import train
    from helpers.training import FAST, SOURCE, write_base_dir
    from test_imports import imports_of, project_modules
    modules = project_modules()
    by_file = {os.path.abspath(path): name for name, path in modules.items()}
    rooms, climbs = set(), set()

    def holds_config(value) -> bool:
        return isinstance(value, (dict, types.MappingProxyType)) and {"G_lr", "stage"} <= set(value)

    def trace(frame, event, arg):
        if event != "call":
            return
        callee = by_file.get(frame.f_code.co_filename)
        if callee is None:
            return
        if not any(holds_config(value) for value in frame.f_locals.values()):
            return
        rooms.add(callee)
        caller = by_file.get(frame.f_back.f_code.co_filename)
        if caller and caller != callee and caller in imports_of(callee, modules[callee], modules):
            climbs.add((caller, callee))
    base = write_base_dir(tmp_path)
    sys.setprofile(trace)
    try:
        train.main(["--base_dir", str(base), *SOURCE, *FAST, "--num_iters", "2", "--save_every", "1",
                    "--experiment_name", "walk"])
    finally:
        sys.setprofile(None)
    assert {"train", "run_spec", "train_fns"} <= rooms <= CONFIG_ROOMS, rooms - CONFIG_ROOMS
    assert not climbs
