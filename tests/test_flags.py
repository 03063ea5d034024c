"""flags.py: the flags read as documentation (groups, help for every flag, closed value sets), a bad
value is refused at parse time in one line naming the flag, no flag is guessed from a prefix, and
the official scripts' flags still parse."""
import argparse
import os
import re
import shlex
import subprocess
import sys

import pytest

import flags
import utils
from conftest import ROOT


def user_actions(parser):
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


def tool_parsers():
    """Every command-line tool of the project (train.py's flags, sample.py's, each script's and
    each `python -m` module's), by the name a user runs it with."""
    import calculate_inception_moments
    import explain
    import make_hdf5
    import prepare_dataset
    import sample
    import train_classifier
    from experiments import bench, bench_kmmd, demo, forgetting, semantics, study
    from worlds import fashion, toy
    return {"train.py": flags.prepare_parser,
            "sampling": lambda: flags.prepare_sampling_parser("sample"),
            "sample.py": sample.prepare_parser,
            "calculate_inception_moments.py": calculate_inception_moments.prepare_parser,
            "make_hdf5.py": make_hdf5.prepare_parser,
            "prepare_dataset.py": prepare_dataset.prepare_parser,
            "train_classifier.py": train_classifier.prepare_parser,
            "explain.py": explain.prepare_parser,
            "experiments.bench": bench.prepare_parser,
            "experiments.bench_kmmd": bench_kmmd.prepare_parser,
            "experiments.demo": demo.prepare_parser,
            "experiments.forgetting": forgetting.prepare_parser,
            "experiments.semantics": semantics.prepare_parser,
            "experiments.study": study.prepare_parser,
            "worlds.fashion": fashion.prepare_parser,
            "worlds.toy": toy.prepare_parser}


TOOLS = ("train.py", "sampling", "sample.py", "calculate_inception_moments.py", "make_hdf5.py",
         "prepare_dataset.py", "train_classifier.py", "explain.py", "experiments.bench",
         "experiments.bench_kmmd", "experiments.demo", "experiments.forgetting",
         "experiments.semantics", "experiments.study", "worlds.fashion", "worlds.toy")


def flags_without_help(parser, training: dict, prefix: str = "") -> list[str]:
    """Options, positionals and subcommands of parser (and its subcommands' parsers) whose help is
    empty. A flag hidden from --help (SUPPRESS: sample.py's training-only flags) needs train.py's
    help for it."""
    missing = []
    for action in user_actions(parser):
        name = prefix + (action.option_strings[0] if action.option_strings else action.dest)
        if isinstance(action, argparse._SubParsersAction):
            described = {choice.dest: choice.help for choice in action._choices_actions}
            for command, subparser in action.choices.items():
                if not (described.get(command) or "").strip():
                    missing.append(f"{prefix}{command} (subcommand)")
                missing += flags_without_help(subparser, training, f"{prefix}{command} ")
            continue
        text = training.get(action.dest) if action.help == argparse.SUPPRESS else action.help
        if not (text or "").strip():
            missing.append(name)
    return missing


def script_tools() -> set[str]:
    """The project's runnable tools, found as the files with a __main__ block."""
    found = set()
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("tests", "__pycache__")]
        for name in files:
            path = os.path.join(folder, name)
            if name.endswith(".py") and 'if __name__ == "__main__"' in open(path).read():
                relative = os.path.relpath(path, ROOT)
                found.add(relative if os.sep not in relative
                          else relative[:-3].replace(os.sep, "."))
    return found


def test_the_help_check_reports_flags_and_subcommands_without_help():
    parser = argparse.ArgumentParser()
    parser.add_argument("--said", help="a flag with help")
    parser.add_argument("--silent")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run").add_argument("--blank", help=" ")
    commands.add_parser("go", help="a subcommand with help").add_argument("where", help="a place")
    assert flags_without_help(parser, {}) == ["--silent", "run (subcommand)", "run --blank"]


def test_the_help_check_covers_every_tool_of_the_project():
    assert set(TOOLS) == set(tool_parsers())
    assert sorted(script_tools() - set(TOOLS)) == [], "tools missing from tool_parsers()"


@pytest.mark.parametrize("name", TOOLS)
def test_every_flag_of_every_tool_has_help(name):
    training = {a.dest: a.help for a in user_actions(flags.prepare_parser())}
    parser = tool_parsers()[name]()
    assert user_actions(parser), f"{name}: no flags found"
    assert flags_without_help(parser, training) == [], f"{name}: flags without help"


def test_the_train_flags_come_in_documented_groups_in_order():
    parser = flags.prepare_parser()
    # argparse's own "positional arguments" and "options" first
    generic, *groups = parser._action_groups[1:]
    assert [a.dest for a in generic._group_actions] == ["help"]  # every flag sits in a named group
    assert [g.title for g in groups][:6] == [
        "data", "model (read from a checkpoint's saved config by sample.py, --resume and "
        "--start_from, and from a source model's config.json)", "transfer (cGANTransfer)",
        "devices, precision, seed", "evaluation and sampling", "paths"]
    assert [g.title for g in groups][6:] == [
        "data loading (training)", "initialization (training)", "transfer (training)",
        "optimization (training)", "speed (training)", "in-loop evaluation (training)",
        "starting, resuming, checkpoints (training)"]


def test_the_training_only_flags_are_those_of_the_training_groups():
    parser = flags.prepare_parser()
    hidden = flags.training_only(parser)
    assert {"G_lr", "num_D_steps", "save_every", "comb_l1_scale", "resume", "start_from",
            "ema_decay", "batch_size", "compile", "toggle_grads", "G_init", "DiffAugment",
            "num_workers", "test_every", "which_best"} <= hidden
    assert not hidden & {"G_ch", "n_pretrain_classes", "use_ema", "G_batch_size", "amp", "no_fid",
                         "seed", "accumulate_stats", "load_weights", "dataset", "experiment_name",
                         "threads", "kmmd"}


def test_the_sampling_help_shows_what_sampling_uses():
    text = flags.prepare_sampling_parser("sample").format_help()
    for flag in ("--G_ch", "--n_pretrain_classes", "--use_ema", "--G_batch_size", "--amp",
                 "--no_fid", "--seed", "--accumulate_stats", "--load_weights"):
        assert flag in text
    assert "optimization:" not in text  # a group with every flag hidden is left out
    for flag in ("--G_lr", "--num_D_steps", "--save_every", "--comb_l1_scale", "--resume",
                 "--ema_decay", "--batch_size", "--compile", "--toggle_grads", "--G_init"):
        assert re.search(rf"^\s+{flag}\b", text, re.M) is None, flag
    # ... yet accepts them: the official sample scripts pass training flags.
    assert flags.prepare_sampling_parser("sample").parse_args(["--batch_size",
                                                               "64"]).batch_size == 64


@pytest.mark.parametrize("args,flag", [
    (["--save_every", "0"], "--save_every"), (["--save_every", "-1"], "--save_every"),
    (["--test_every", "0"], "--test_every"),
    (["--num_G_accumulations", "0"], "--num_G_accumulations"),
    (["--G_batch_size", "-1"], "--G_batch_size"), (["--G_lr", "-1"], "--G_lr"),
    (["--D_lr", "0"], "--D_lr"), (["--seed", "-1"], "--seed"),
    (["--num_iters", "-5"], "--num_iters"), (["--num_D_steps", "0"], "--num_D_steps"),
    (["--batch_size", "0"], "--batch_size"), (["--num_workers", "-1"], "--num_workers"),
    (["--ema_decay", "1.5"], "--ema_decay"), (["--G_B2", "1"], "--G_B2"),
    (["--G_lr", "nan"], "--G_lr"), (["--norm_style", "bm"], "--norm_style"),
    (["--G_nl", "gelu"], "--G_nl"), (["--G_init", "kaiming"], "--G_init"),
    (["--num_best_copies", "0"], "--num_best_copies"), (["--resolution", "48"], "--resolution"),
    (["--freezeD_layer", "-2"], "--freezeD_layer"),
    (["--comb_l1_scale", "-0.1"], "--comb_l1_scale"), (["--G_ch", "abc"], "--G_ch"),
    (["--D_ch", "0"], "--D_ch"), (["--dim_z", "0"], "--dim_z"), (["--z_var", "0"], "--z_var"),
    (["--shared_dim", "-1"], "--shared_dim"), (["--BN_eps", "0"], "--BN_eps"),
    (["--SN_eps", "-1e-8"], "--SN_eps"), (["--num_G_SVs", "0"], "--num_G_SVs"),
    (["--num_D_SV_itrs", "0"], "--num_D_SV_itrs"), (["--adam_eps", "0"], "--adam_eps"),
    (["--G_B1", "1"], "--G_B1"), (["--D_B1", "-0.5"], "--D_B1"),
    (["--G_ortho", "-1e-4"], "--G_ortho"), (["--ema_decay", "-0.1"], "--ema_decay"),
    (["--ema_decay", "1"], "--ema_decay"), (["--ema_start", "-1"], "--ema_start"),
    (["--num_D_accumulations", "0"], "--num_D_accumulations"),
    (["--num_epochs", "0"], "--num_epochs"),
    (["--num_standing_accumulations", "0"], "--num_standing_accumulations"),
    (["--num_inception_images", "0"], "--num_inception_images"),
    (["--num_save_copies", "-1"], "--num_save_copies"), (["--n_classes", "-1"], "--n_classes"),
    (["--n_pretrain_classes", "-1"], "--n_pretrain_classes"),
    (["--res_l2_scale", "-1"], "--res_l2_scale"), (["--D_nl", "elu"], "--D_nl"),
    (["--D_init", "he"], "--D_init"), (["--stage", "bn"], "--stage"),
    (["--model", "BigGANdeep"], "--model"), (["--kp_variant", "c"], "--kp_variant"),
    (["--resolution", "512"], "--resolution"),  # G has a 512 px architecture, D does not
    (["--G_attn", "abc"], "--G_attn"), (["--D_attn", "48"], "--D_attn"),
    (["--G_attn", "32__64"], "--G_attn"), (["--device", "gpu"], "--device"),
    (["--dataset", "data/I128"], "--dataset"), (["--amp", "fp8"], "--amp"),
    (["--patience", "-1"], "--patience"),
])
def test_a_bad_value_is_refused_naming_the_flag(args, flag, capsys):
    assert_refused_naming(flags.prepare_parser(), args, flag, capsys)


def assert_refused_naming(parser, args, flag, capsys):
    """argparse exits with status 2 and its last line names the flag."""
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(args)
    assert exit_.value.code == 2
    assert f"argument {flag}:" in capsys.readouterr().err.strip().splitlines()[-1]


def test_patience_without_the_evaluations_it_stops_on_is_refused_naming_both_flags(tmp_path):
    with pytest.raises(utils.UsageError, match="--patience .* --no_fid"):
        flags.parse(["--base_dir", str(tmp_path), "--patience", "3", "--no_fid"])


def test_the_boundary_values_that_mean_something_are_accepted():
    config = vars(flags.prepare_parser().parse_args([
        "--num_iters", "0", "--G_batch_size", "0", "--resolution", "0", "--n_classes", "0",
        "--freezeD_layer", "-1", "--num_save_copies", "0", "--ema_start", "0", "--ema_decay", "0",
        "--G_B1", "0", "--comb_l1_scale", "0", "--seed", "0", "--num_workers", "0", "--shared_dim",
        "0", "--G_attn", "0", "--D_attn", "32_64", "--device", "cuda:1", "--G_ortho", "0"]))
    assert (config["num_iters"], config["freezeD_layer"], config["D_attn"]) == (0, -1, "32_64")
    # only named here; whether it exists is checked when the run starts
    assert config["device"] == "cuda:1"


def test_the_help_says_each_default_that_means_something():
    helps = {a.dest: a for a in user_actions(flags.prepare_parser())}
    formatter = utils.HelpFormatter("train.py")

    def help_of(dest):
        return formatter._get_help_string(helps[dest]) % vars(helps[dest])
    assert help_of("G_lr").endswith("(default: 5e-05)")
    assert help_of("num_D_steps").endswith("(default: 2)")
    assert help_of("seed").endswith("(default: 0)")
    # switches
    assert "default" not in help_of("hier") and "default: True" not in help_of("pin_memory")
    assert help_of("data_root").count("default") == 1  # says it in its own words


@pytest.mark.slow
def test_on_the_command_line_a_bad_value_is_one_line_and_exit_2():
    """The one check of a tool in a process of its own, as a user starts it (`python train.py`, ~4 s
    of imports): the exit code and the last line reach the shell; the other command-line tests run
    their tools forked from one server (conftest.CommandLines)."""
    result = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--save_every", "0"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == ("train.py: error: argument --save_every: "
                                                      "must be at least 1, got 0")


def test_D_wide_can_be_switched_off():
    parse = flags.prepare_parser().parse_args
    assert parse([]).D_wide is True and parse(["--D_wide"]).D_wide is True
    assert parse(["--no-D_wide"]).D_wide is False


def test_ignored_official_flags_are_accepted_and_warn_once_when_set(capsys, monkeypatch):
    monkeypatch.setattr(flags, "_warned_ignored", set())
    parser = flags.prepare_parser()
    for action in user_actions(parser):
        if action.dest in flags.IGNORED_FLAGS:
            assert "has no effect" in action.help
            assert action.default == flags.IGNORED_FLAGS[action.dest]
    flags.warn_ignored_flags(vars(parser.parse_args(["--toggle_grads", "--logstyle", "%3.3e"])))
    assert capsys.readouterr().err == ""
    config = vars(parser.parse_args(["--logstyle", "%5.5f", "--no-toggle_grads"]))
    assert flags.warn_ignored_flags(config) == ["toggle_grads", "logstyle"]
    assert capsys.readouterr().err.count("has no effect here") == 2
    # once: the study and --resume finalize several configs
    assert flags.warn_ignored_flags(config) == []
    assert capsys.readouterr().err == ""


def official_flags(script: str, program: str) -> list[str]:
    """The flags a shell script passes to `"$PYTHON" program` (the last such command; variables
    given their shell default, else a dummy value; arrays of optional flags left out)."""
    text = open(os.path.join(ROOT, script)).read()
    start = text.rindex(f'"$PYTHON" {program}')
    command = text[start:text.index('"$@"', start)].replace("\\\n", " ")
    command = re.sub(r'"\$\{\w+\[@\]\}"', "", command)  # an array of optional flags, maybe empty
    command = re.sub(r'"\$\{\w+:-([^}]*)\}"', r"\1", command)
    command = re.sub(r'"\$\{[^}]*\}"|"\$\w+"', "X", command)
    return shlex.split(command)[2:]


@pytest.mark.parametrize("script",
                         ["train_cifar.sh", "train_ImageNet.sh", "sample_cifar.sh",
                          "sample_ImageNet.sh", "sample.sh"])
def test_the_setup_scripts_flags_parse(script):
    import sample
    program = "sample.py" if script.startswith("sample") else "train.py"
    given = official_flags(script, program)
    assert "--base_dir" in given and len(given) > 6
    (sample.prepare_parser() if program == "sample.py"
     else flags.prepare_parser()).parse_args(given)


@pytest.mark.parametrize("world", ["toy", "fashion"])
def test_the_worlds_flags_and_the_study_methods_parse(world):
    from worlds import registry
    from experiments import study
    parse = flags.prepare_parser().parse_args
    training = registry.get(world).training
    for stage, _, stage_flags in registry.get(world).demo_stages:
        parse([*training, "--stage", stage, *stage_flags])
    for phases in study.ALL_METHODS.values():
        for phase in phases:
            parse([*training, *phase])


def test_the_official_sample_script_of_biggan_pytorch_still_parses():
    # The official cGANTransfer sample.sh passes the training flags too (a literal copy).
    official = ("--dataset I128 --parallel --shuffle --num_workers 8 --batch_size 64 --load_in_mem "
                "--num_G_accumulations 8 --num_D_accumulations 8 --num_D_steps 1 --G_lr 1e-4 "
                "--D_lr 4e-4 --D_B2 0.999 --G_B2 0.999 --G_attn 64 --D_attn 64 --G_nl inplace_relu "
                "--D_nl inplace_relu --SN_eps 1e-6 --BN_eps 1e-5 --adam_eps 1e-6 --G_ortho 0.0 "
                "--G_shared --G_init ortho --D_init ortho --skip_init --hier --dim_z 120 "
                "--shared_dim 128 --G_eval_mode --G_ch 96 --D_ch 96 --ema --use_ema --ema_start "
                "20000 --num_epochs 100 --load_weights best2 --sample_npz --sample_trunc_curves "
                "0.05_0.05_1.0 --sample_inception_metrics --sample_random --sample_sheets "
                "--sample_interps --sample_num_npz 50000 --toggle_grads")
    import sample
    sample.prepare_parser().parse_args(official.split())


def test_explicit_flags_are_exactly_those_given():
    parser = flags.prepare_parser()
    assert flags.explicit_flags(parser, ["--G_ch", "64", "--hier", "--no-D_wide"]) == {"G_ch",
                                                                                       "hier",
                                                                                       "D_wide"}
    assert flags.explicit_flags(parser, []) == set()
    assert parser.parse_args([]).G_ch == 64  # the defaults are back
    assert flags.explicit_flags(parser, ["--no_pin_memory", "--G_lr=1e-4", "--seed", "0"]) == {
        "pin_memory", "G_lr", "seed"}
    import sample
    sampling = sample.prepare_parser()
    assert flags.explicit_flags(sampling, ["--sample_npz", "--batch_size", "8", "--use_ema"]) == {
        "sample_npz", "batch_size", "use_ema"}
    assert sampling.parse_args([]).batch_size == 64


@pytest.mark.parametrize("args,flag", [
    (["--batch_size", "0"], "--batch_size"), (["--num_workers", "-1"], "--num_workers"),
    (["--seed", "-1"], "--seed"), (["--dataset", ".hidden"], "--dataset"),
    (["--device", "tpu0"], "--device"), (["--backbone", "vgg"], "--backbone"),
])
def test_calculate_inception_moments_refuses_a_bad_value_naming_the_flag(args, flag, capsys):
    import calculate_inception_moments
    assert_refused_naming(calculate_inception_moments.prepare_parser(), args, flag, capsys)


@pytest.mark.parametrize("args,flag", [
    (["--shots", "10", "0"], "--shots"), (["--seeds", "-1"], "--seeds"),
    (["--iters", "0"], "--iters"), (["--test_every", "0"], "--test_every"),
    (["--num_inception_images", "0"], "--num_inception_images"),
    (["--methods", "BN_stage"], "--methods"),
    (["--patience", "-1"], "--patience"),
])
def test_study_refuses_a_bad_value_naming_the_flag(args, flag, capsys, tmp_path):
    from experiments import study
    with pytest.raises(SystemExit) as exit_:
        study.main(["--out", str(tmp_path), *args])
    assert exit_.value.code == 2
    assert f"argument {flag}:" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not os.listdir(tmp_path)  # refused before any work


# --- Flags are never guessed from a prefix

@pytest.mark.slow
@pytest.mark.parametrize("script",
                         ["train.py", "sample.py", "experiments.study", "experiments.forgetting",
                          "make_hdf5.py", "worlds.toy", "experiments.demo", "prepare_dataset.py",
                          "calculate_inception_moments.py", "explain.py", "train_classifier.py"])
def test_a_prefix_of_a_flag_is_not_taken_for_the_flag(script, tmp_path, command_lines):
    """argparse's prefix matching took --num_iter for --num_iters: a typo of a flag ran as another.
    Each tool's command line as a user runs it (its __main__ block), forked from one server that
    imported torch once (conftest.CommandLines): ~0.2 s a tool instead of ~4.5 s of imports."""
    typo, required = {"train.py": ("--num_iter", []), "sample.py": ("--sample_num", []),
                      "experiments.study": ("--shot", []), "experiments.forgetting": ("--iter", []),
                      "make_hdf5.py": ("--data", ["--dataset", "Toy32"]),
                      "worlds.toy": ("--source_images", ["data"]),
                      "experiments.demo": ("--prepare", []),
                      "prepare_dataset.py": ("--sho",
                                             ["--idx", "x", "--name", "n", "--shots", "1"]),
                      "calculate_inception_moments.py": ("--batch", []),
                      "explain.py": ("--top", ["--experiment_name", "e"]),
                      "train_classifier.py": ("--epoch", [])}[script]
    program = ["-m", script] if "." not in script[-3:] else [os.path.join(ROOT, script)]
    result = command_lines.run([*program, *required, typo, "10", "--base_dir", str(tmp_path)])
    assert result.returncode == 2, (result.stdout[-500:], result.stderr[-1000:])
    assert (f"unrecognized arguments: {typo}" in result.stderr
            or f"ambiguous option: {typo}" in result.stderr
            or f"error: unrecognized arguments: {typo} 10" in result.stderr), result.stderr[-1000:]
    assert os.listdir(tmp_path) == []  # refused before any work
