"""utils.py: the flags read as documentation (groups, help for every flag, closed value sets), a
bad value is refused at parse time in one line naming the flag, the official scripts' flags still
parse, and a checkpoint's saved config fills the model flags the user left out."""
import argparse
import os
import re
import shlex
import subprocess
import sys

import pytest

import utils
from conftest import ROOT


def user_actions(parser):
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


@pytest.mark.parametrize("parser", [utils.prepare_parser(), utils.prepare_sampling_parser("sample")],
                         ids=["train", "sample"])
def test_every_flag_has_help(parser):
    missing = [a.option_strings[0] for a in user_actions(parser) if not a.help]
    assert not missing


def test_the_sampling_help_shows_what_sampling_uses():
    text = utils.prepare_sampling_parser("sample").format_help()
    for flag in ("--G_ch", "--n_pretrain_classes", "--use_ema", "--G_batch_size", "--amp"):
        assert flag in text
    for flag in ("--G_lr", "--num_D_steps", "--save_every", "--comb_l1_scale", "--resume"):
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
    (["--G_ch", "abc"], "--G_ch"),
])
def test_a_bad_value_is_refused_naming_the_flag(args, flag, capsys):
    with pytest.raises(SystemExit) as exit_:
        utils.prepare_parser().parse_args(args)
    assert exit_.value.code == 2
    assert f"argument {flag}:" in capsys.readouterr().err.strip().splitlines()[-1]


def test_on_the_command_line_a_bad_value_is_one_line_and_exit_2():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--save_every", "0"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "train.py: error: argument --save_every: must be at least 1, got 0"


def test_D_wide_can_be_switched_off():
    parse = utils.prepare_parser().parse_args
    assert parse([]).D_wide is True and parse(["--D_wide"]).D_wide is True and parse(["--no-D_wide"]).D_wide is False


def test_ignored_official_flags_are_accepted_and_warn_when_set(capsys):
    parser = utils.prepare_parser()
    utils.warn_ignored_flags(vars(parser.parse_args(["--toggle_grads", "--logstyle", "%3.3e"])))
    assert capsys.readouterr().err == ""
    utils.warn_ignored_flags(vars(parser.parse_args(["--logstyle", "%5.5f", "--no-toggle_grads"])))
    assert capsys.readouterr().err.count("has no effect here") == 2


def official_flags(script: str) -> list[str]:
    """The flags a shell script passes to its python command (variables given dummy values)."""
    text = open(os.path.join(ROOT, script)).read()
    start = text.index('exec "$PYTHON"')
    command = text[start:text.index('"$@"', start)].replace("\\\n", " ")
    command = command.replace('${ema[@]+"${ema[@]}"}', "")  # sample.sh's optional --use_ema
    command = re.sub(r'"\$\{[^}]*\}"|"\$\w+"', "X", command)
    return shlex.split(command)[3:]


@pytest.mark.parametrize("script", ["train_cifar.sh", "train_ImageNet.sh", "sample_cifar.sh", "sample_ImageNet.sh",
                                    "sample.sh"])
def test_the_setup_scripts_flags_parse(script):
    import sample
    flags = official_flags(script)
    assert "--base_dir" in flags
    (sample.prepare_parser() if script.startswith("sample") else utils.prepare_parser()).parse_args(flags)


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
