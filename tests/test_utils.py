"""utils.py: the flags read as documentation (groups, help for every flag, closed value sets), a
bad value is refused at parse time in one line naming the flag and no flag is guessed from a prefix,
the official scripts' flags still parse, a checkpoint's saved config fills the model flags the user
left out, experiment names stay plain folders, and a failed write is one line that keeps what was there."""
import argparse
import errno
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
import torch

import utils
from conftest import ROOT, inject_write_failure


def user_actions(parser):
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


def parsers():
    import calculate_inception_moments
    import sample
    return {"train": utils.prepare_parser(), "sampling": utils.prepare_sampling_parser("sample"),
            "sample.py": sample.prepare_parser(), "moments": calculate_inception_moments.prepare_parser()}


@pytest.mark.parametrize("name", ["train", "sampling", "sample.py", "moments"])
def test_every_flag_has_help(name):
    parser = parsers()[name]
    # The sampling parser hides training-only flags from --help (SUPPRESS); they keep a help for train.py.
    training = {a.dest: a.help for a in user_actions(utils.prepare_parser())}
    missing = [a.option_strings[0] for a in user_actions(parser)
               if not (training.get(a.dest) if a.help == argparse.SUPPRESS else a.help)]
    assert not missing


def test_the_train_flags_come_in_documented_groups_in_order():
    parser = utils.prepare_parser()
    generic, *groups = parser._action_groups[1:]  # argparse's own "positional arguments" and "options" first
    assert [a.dest for a in generic._group_actions] == ["help"]  # every flag sits in a named group
    assert [g.title.split(" ")[0].rstrip(",") for g in groups] == [
        "data", "model", "transfer", "optimization", "devices", "evaluation", "paths"]


def test_the_sampling_help_shows_what_sampling_uses():
    text = utils.prepare_sampling_parser("sample").format_help()
    for flag in ("--G_ch", "--n_pretrain_classes", "--use_ema", "--G_batch_size", "--amp", "--no_fid", "--seed",
                 "--accumulate_stats", "--load_weights"):
        assert flag in text
    assert "optimization:" not in text  # a group with every flag hidden is left out
    for flag in ("--G_lr", "--num_D_steps", "--save_every", "--comb_l1_scale", "--resume", "--ema_decay",
                 "--batch_size", "--compile", "--toggle_grads", "--G_init"):
        assert re.search(rf"^\s+{flag}\b", text, re.M) is None, flag
    # ... yet accepts them: the official sample scripts pass training flags.
    assert utils.prepare_sampling_parser("sample").parse_args(["--batch_size", "64"]).batch_size == 64


@pytest.mark.parametrize("args,flag", [
    (["--save_every", "0"], "--save_every"), (["--save_every", "-1"], "--save_every"),
    (["--test_every", "0"], "--test_every"), (["--num_G_accumulations", "0"], "--num_G_accumulations"),
    (["--G_batch_size", "-1"], "--G_batch_size"), (["--G_lr", "-1"], "--G_lr"), (["--D_lr", "0"], "--D_lr"),
    (["--seed", "-1"], "--seed"), (["--num_iters", "-5"], "--num_iters"), (["--num_D_steps", "0"], "--num_D_steps"),
    (["--batch_size", "0"], "--batch_size"), (["--num_workers", "-1"], "--num_workers"),
    (["--ema_decay", "1.5"], "--ema_decay"), (["--G_B2", "1"], "--G_B2"), (["--G_lr", "nan"], "--G_lr"),
    (["--norm_style", "bm"], "--norm_style"), (["--G_nl", "gelu"], "--G_nl"), (["--G_init", "kaiming"], "--G_init"),
    (["--num_best_copies", "0"], "--num_best_copies"), (["--resolution", "48"], "--resolution"),
    (["--freezeD_layer", "-2"], "--freezeD_layer"), (["--comb_l1_scale", "-0.1"], "--comb_l1_scale"),
    (["--G_ch", "abc"], "--G_ch"), (["--D_ch", "0"], "--D_ch"), (["--dim_z", "0"], "--dim_z"),
    (["--z_var", "0"], "--z_var"), (["--shared_dim", "-1"], "--shared_dim"), (["--BN_eps", "0"], "--BN_eps"),
    (["--SN_eps", "-1e-8"], "--SN_eps"), (["--num_G_SVs", "0"], "--num_G_SVs"),
    (["--num_D_SV_itrs", "0"], "--num_D_SV_itrs"), (["--adam_eps", "0"], "--adam_eps"),
    (["--G_B1", "1"], "--G_B1"), (["--D_B1", "-0.5"], "--D_B1"), (["--G_ortho", "-1e-4"], "--G_ortho"),
    (["--ema_decay", "-0.1"], "--ema_decay"), (["--ema_decay", "1"], "--ema_decay"),
    (["--ema_start", "-1"], "--ema_start"), (["--num_D_accumulations", "0"], "--num_D_accumulations"),
    (["--num_epochs", "0"], "--num_epochs"), (["--num_standing_accumulations", "0"], "--num_standing_accumulations"),
    (["--num_inception_images", "0"], "--num_inception_images"), (["--num_save_copies", "-1"], "--num_save_copies"),
    (["--n_classes", "-1"], "--n_classes"), (["--n_pretrain_classes", "-1"], "--n_pretrain_classes"),
    (["--res_l2_scale", "-1"], "--res_l2_scale"), (["--D_nl", "elu"], "--D_nl"), (["--D_init", "he"], "--D_init"),
    (["--stage", "bn"], "--stage"), (["--model", "BigGANdeep"], "--model"), (["--kp_variant", "c"], "--kp_variant"),
    (["--resolution", "512"], "--resolution"),  # G has a 512 px architecture, D does not
    (["--G_attn", "abc"], "--G_attn"), (["--D_attn", "48"], "--D_attn"), (["--G_attn", "32__64"], "--G_attn"),
    (["--device", "gpu"], "--device"), (["--dataset", "data/I128"], "--dataset"), (["--amp", "fp8"], "--amp"),
])
def test_a_bad_value_is_refused_naming_the_flag(args, flag, capsys):
    assert_refused_naming(utils.prepare_parser(), args, flag, capsys)


def assert_refused_naming(parser, args, flag, capsys):
    """argparse exits with status 2 and its last line names the flag."""
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(args)
    assert exit_.value.code == 2
    assert f"argument {flag}:" in capsys.readouterr().err.strip().splitlines()[-1]


def test_the_boundary_values_that_mean_something_are_accepted():
    config = vars(utils.prepare_parser().parse_args([
        "--num_iters", "0", "--G_batch_size", "0", "--resolution", "0", "--n_classes", "0", "--freezeD_layer", "-1",
        "--num_save_copies", "0", "--ema_start", "0", "--ema_decay", "0", "--G_B1", "0", "--comb_l1_scale", "0",
        "--seed", "0", "--num_workers", "0", "--shared_dim", "0", "--G_attn", "0", "--D_attn", "32_64",
        "--device", "cuda:1", "--G_ortho", "0"]))
    assert (config["num_iters"], config["freezeD_layer"], config["D_attn"]) == (0, -1, "32_64")
    assert config["device"] == "cuda:1"  # only named here; whether it exists is checked when the run starts


def test_the_help_says_each_default_that_means_something():
    helps = {a.dest: a for a in user_actions(utils.prepare_parser())}
    formatter = utils.HelpFormatter("train.py")

    def help_of(dest):
        return formatter._get_help_string(helps[dest]) % vars(helps[dest])
    assert help_of("G_lr").endswith("(default: 5e-05)") and help_of("num_D_steps").endswith("(default: 2)")
    assert help_of("seed").endswith("(default: 0)")
    assert "default" not in help_of("hier") and "default: True" not in help_of("pin_memory")  # switches
    assert help_of("data_root").count("default") == 1  # says it in its own words


def test_on_the_command_line_a_bad_value_is_one_line_and_exit_2():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--save_every", "0"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "train.py: error: argument --save_every: must be at least 1, got 0"


def test_D_wide_can_be_switched_off():
    parse = utils.prepare_parser().parse_args
    assert parse([]).D_wide is True and parse(["--D_wide"]).D_wide is True and parse(["--no-D_wide"]).D_wide is False


def test_ignored_official_flags_are_accepted_and_warn_once_when_set(capsys, monkeypatch):
    monkeypatch.setattr(utils, "_warned_ignored", set())
    parser = utils.prepare_parser()
    for action in user_actions(parser):
        if action.dest in utils.IGNORED_FLAGS:
            assert "has no effect" in action.help and action.default == utils.IGNORED_FLAGS[action.dest]
    utils.warn_ignored_flags(vars(parser.parse_args(["--toggle_grads", "--logstyle", "%3.3e"])))
    assert capsys.readouterr().err == ""
    config = vars(parser.parse_args(["--logstyle", "%5.5f", "--no-toggle_grads"]))
    assert utils.warn_ignored_flags(config) == ["toggle_grads", "logstyle"]
    assert capsys.readouterr().err.count("has no effect here") == 2
    assert utils.warn_ignored_flags(config) == []  # once: study.py and --resume finalize several configs
    assert capsys.readouterr().err == ""


def official_flags(script: str, program: str) -> list[str]:
    """The flags a shell script passes to `"$PYTHON" program` (variables given their shell default, else a
    dummy value)."""
    import toy_default
    text = open(os.path.join(ROOT, script)).read()
    start = text.index(f'"$PYTHON" {program}')
    command = text[start:text.index('"$@"', start)].replace("\\\n", " ")
    command = command.replace('${ema[@]+"${ema[@]}"}', "")  # sample.sh's optional --use_ema
    command = command.replace('"${ARCH[@]}"', shlex.join(toy_default.TOY_ARCHITECTURE))  # pretrain_toy_source.sh
    command = re.sub(r'"\$\{\w+:-([^}]*)\}"', r"\1", command)
    command = re.sub(r'"\$\{[^}]*\}"|"\$\w+"', "X", command)
    return shlex.split(command)[2:]


@pytest.mark.parametrize("script", ["train_cifar.sh", "train_ImageNet.sh", "pretrain_toy_source.sh",
                                    "sample_cifar.sh", "sample_ImageNet.sh", "sample.sh"])
def test_the_setup_scripts_flags_parse(script):
    import sample
    program = "sample.py" if script.startswith("sample") else "train.py"
    flags = official_flags(script, program)
    assert "--base_dir" in flags and len(flags) > 6
    (sample.prepare_parser() if program == "sample.py" else utils.prepare_parser()).parse_args(flags)


def test_the_offline_default_and_the_study_flags_parse():
    import study
    import toy_default
    parse = utils.prepare_parser().parse_args
    parse([*toy_default.TOY_MODEL, *toy_default.TOY_TRAINING])
    for phases in study.ALL_METHODS.values():
        for phase in phases:
            parse([*toy_default.TOY_MODEL, *toy_default.TOY_TRAINING, *phase])


def test_the_official_sample_script_of_biggan_pytorch_still_parses():
    # The official cGANTransfer sample.sh passes the training flags too (a literal copy).
    official = ("--dataset I128 --parallel --shuffle --num_workers 8 --batch_size 64 --load_in_mem "
                "--num_G_accumulations 8 --num_D_accumulations 8 --num_D_steps 1 --G_lr 1e-4 --D_lr 4e-4 "
                "--D_B2 0.999 --G_B2 0.999 --G_attn 64 --D_attn 64 --G_nl inplace_relu --D_nl inplace_relu "
                "--SN_eps 1e-6 --BN_eps 1e-5 --adam_eps 1e-6 --G_ortho 0.0 --G_shared --G_init ortho "
                "--D_init ortho --skip_init --hier --dim_z 120 --shared_dim 128 --G_eval_mode --G_ch 96 --D_ch 96 "
                "--ema --use_ema --ema_start 20000 --num_epochs 100 --load_weights best2 --sample_npz "
                "--sample_trunc_curves 0.05_0.05_1.0 --sample_inception_metrics --sample_random "
                "--sample_sheets --sample_interps --sample_num_npz 50000 --toggle_grads")
    import sample
    sample.prepare_parser().parse_args(official.split())


def test_explicit_flags_are_exactly_those_given():
    parser = utils.prepare_parser()
    assert utils.explicit_flags(parser, ["--G_ch", "64", "--hier", "--no-D_wide"]) == {"G_ch", "hier", "D_wide"}
    assert utils.explicit_flags(parser, []) == set()
    assert parser.parse_args([]).G_ch == 64  # the defaults are back
    assert utils.explicit_flags(parser, ["--no_pin_memory", "--G_lr=1e-4", "--seed", "0"]) == {"pin_memory", "G_lr",
                                                                                            "seed"}
    import sample
    sampling = sample.prepare_parser()
    assert utils.explicit_flags(sampling, ["--sample_npz", "--batch_size", "8", "--use_ema"]) == {
        "sample_npz", "batch_size", "use_ema"}
    assert sampling.parse_args([]).batch_size == 64


def test_a_saved_config_fills_what_was_left_out_and_refuses_what_differs():
    saved = {"G_ch": 16, "hier": True, "dim_z": 120}
    config = {"G_ch": 64, "hier": False, "dim_z": 120, "seed": 3}
    assert utils.adopt_saved_config(config, saved, set(), ("G_ch", "hier", "dim_z"), "ckpt") == ["G_ch", "hier"]
    assert config == {"G_ch": 16, "hier": True, "dim_z": 120, "seed": 3}
    with pytest.raises(utils.UsageError, match=r"ckpt was trained with .*--G_ch 32 \(trained with 16\)"):
        utils.adopt_saved_config({**config, "G_ch": 32}, saved, {"G_ch"}, ("G_ch",), "ckpt")


def test_a_file_that_is_not_a_checkpoint_is_one_clear_error(tmp_path):
    path = tmp_path / "G.pth"
    path.write_bytes(b"not a torch file")
    with pytest.raises(utils.UsageError, match=r"is not a readable generator weights .*; retrain"):
        utils.load_file(str(path), "generator weights", "retrain")
    with pytest.raises(utils.UsageError, match=r"does not exist; retrain"):
        utils.load_file(str(tmp_path / "nothing.pth"), "generator weights", "retrain")


@pytest.mark.parametrize("args,flag", [
    (["--batch_size", "0"], "--batch_size"), (["--num_workers", "-1"], "--num_workers"), (["--seed", "-1"], "--seed"),
    (["--dataset", ".hidden"], "--dataset"), (["--device", "tpu0"], "--device"), (["--backbone", "vgg"], "--backbone"),
])
def test_calculate_inception_moments_refuses_a_bad_value_naming_the_flag(args, flag, capsys):
    import calculate_inception_moments
    assert_refused_naming(calculate_inception_moments.prepare_parser(), args, flag, capsys)


@pytest.mark.parametrize("args,flag", [
    (["--shots", "10", "0"], "--shots"), (["--seeds", "-1"], "--seeds"), (["--iters", "0"], "--iters"),
    (["--test_every", "0"], "--test_every"), (["--num_inception_images", "0"], "--num_inception_images"),
    (["--methods", "BN+FT", "--iters", "1"], "--iters"),  # two phases: a phase of 0 iterations would run epochs
    (["--methods", "BN_stage"], "--methods"),
])
def test_study_refuses_a_bad_value_naming_the_flag(args, flag, capsys, tmp_path):
    import study
    with pytest.raises(SystemExit) as exit_:
        study.main(["--out", str(tmp_path), *args])
    assert exit_.value.code == 2
    assert f"argument {flag}:" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not os.listdir(tmp_path)  # refused before any work


# --- Flags are never guessed from a prefix

@pytest.mark.parametrize("script", ["train.py", "sample.py", "study.py", "forgetting.py", "make_hdf5.py",
                                    "toy_data.py", "toy_default.py"])
def test_a_prefix_of_a_flag_is_not_taken_for_the_flag(script, tmp_path):
    # argparse's prefix matching took --num_iter for --num_iters: a typo of one flag ran as another
    typo = {"train.py": "--num_iter", "sample.py": "--sample_num", "study.py": "--shot",
            "forgetting.py": "--iter", "make_hdf5.py": "--data", "toy_data.py": "--source_images",
            "toy_default.py": "--images_per"}[script]
    required = ["--dataset", "Toy32"] if script == "make_hdf5.py" else []
    result = subprocess.run([sys.executable, os.path.join(ROOT, script), *required, typo, "10", "--base_dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 2, (result.stdout[-500:], result.stderr[-1000:])
    assert f"unrecognized arguments: {typo}" in result.stderr, result.stderr[-1000:]
    assert not [n for n in os.listdir(tmp_path) if n != "data"] or script == "toy_default.py"


# --- Writing files: every failure one line, and the previous file kept

WRITERS = {
    "text (json, csv, logs)": (False, lambda f: f.write('{"FID": 1.0}\n' * 200)),
    "numpy npz": (True, lambda f: np.savez(f, x=np.zeros((64, 64)))),
    "torch.save": (True, lambda f: utils.torch_save({"w": torch.zeros(64, 64)}, f)),
    "a matplotlib figure": (True, lambda f: __import__("plots").plt.figure().savefig(f, format="png")),
}


@pytest.mark.parametrize("kind", list(WRITERS))
@pytest.mark.parametrize("code,reason", [(errno.ENOSPC, "no space left on device"),
                                         (errno.EROFS, "read-only file system")])
@pytest.mark.parametrize("after_bytes", [0, 600])
def test_a_failed_atomic_write_is_one_line_and_keeps_the_previous_file(tmp_path, monkeypatch, kind, code, reason,
                                                                         after_bytes):
    path = tmp_path / "out" / "result.bin"
    path.parent.mkdir()
    path.write_bytes(b"the previous result")
    binary, write = WRITERS[kind]
    inject_write_failure(monkeypatch, utils, code, after_bytes=after_bytes)
    with pytest.raises(utils.WriteError) as raised:
        utils.write_atomically(str(path), write, binary=binary)
    message = str(raised.value)
    assert "\n" not in message and reason in message and str(path.parent) in message
    assert f"{path} is unchanged" in message and "--samples_root" in message
    assert path.read_bytes() == b"the previous result" and os.listdir(path.parent) == ["result.bin"]


def test_a_failed_log_line_is_one_line_and_keeps_the_earlier_lines(tmp_path, monkeypatch):
    log = tmp_path / "log.jsonl"
    utils.append_jsonl(str(log), {"itr": 1})
    inject_write_failure(monkeypatch, utils, errno.ENOSPC)
    with pytest.raises(utils.WriteError, match=r"no space left on device in .*log.jsonl to append to the log: .*"
                                               r"its earlier lines are intact"):
        utils.append_jsonl(str(log), {"itr": 2})
    assert log.read_text() == '{"itr": 1}\n'


@pytest.mark.parametrize("name,problem", [(".", "plain folder name"), ("..", "plain folder name"),
                                          ("a/b", "plain folder name"), (".lock", "plain folder name"),
                                          (" padded", "plain folder name"), ("D.pth", "looks like a file name")])
def test_an_experiment_name_that_is_no_plain_folder_of_its_own_is_refused(tmp_path, name, problem):
    with pytest.raises(utils.UsageError, match=re.escape(f"--experiment_name {name!r}") + f" .*{problem}"):
        utils.check_experiment_name(name, str(tmp_path))
    (tmp_path / "notes.txt").write_text("a file")
    with pytest.raises(utils.UsageError, match="is an existing file"):
        utils.check_experiment_name("notes.txt", str(tmp_path))
    utils.check_experiment_name("BN_stage (lr 1e-3)", str(tmp_path))  # anything else is a name
