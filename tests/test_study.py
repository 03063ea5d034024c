"""study.py: every method runs on the same world and budget and lands in the table and the plot."""
import math

import pytest
import torch

import study
import toy_default
import train
import utils


def test_study_writes_a_table_row_per_method_and_the_fid_plot(tmp_path):
    methods = ["scratch", "freezeD", "BN_only", "BN+FT"]
    results = study.main(["--out", str(tmp_path), "--shots", "5", "--seeds", "0", "1", "--iters", "2",
                          "--test_every", "1", "--num_inception_images", "50", "--methods", *methods])
    table = (tmp_path / "study.md").read_text()
    for method in methods:
        assert f"| {method} |" in table
        assert len(results[5][method]) == 2
    assert (tmp_path / "fid_curves.png").is_file()
    trained = {m: results[5][m][0]["trained_G_params"] for m in methods}
    assert trained["BN_only"] < min(trained["BN+FT"], trained["scratch"])
    assert " ± " in table  # mean ± std over the two seeds


def test_a_later_study_adds_its_methods_to_the_table_and_keeps_the_earlier_ones(tmp_path):
    common = ["--out", str(tmp_path), "--shots", "5", "--seeds", "0", "--iters", "2", "--test_every", "1",
              "--num_inception_images", "50"]
    study.main([*common, "--methods", "BN"])
    results = study.main([*common, "--methods", "BN_mean_init"])
    assert set(results[5]) == {"BN", "BN_mean_init"}
    table = (tmp_path / "study.md").read_text()
    assert "| BN |" in table and "| BN_mean_init |" in table


def test_diffaugment_runs_are_listed_apart_and_every_run_reports_memorization(tmp_path):
    common = ["--out", str(tmp_path), "--shots", "1", "--seeds", "0", "--iters", "2", "--test_every", "2",
              "--num_inception_images", "50", "--methods", "finetune"]
    study.main(common)
    results = study.main([*common, "--DiffAugment", "translation"])
    assert set(results[1]) == {"finetune", "finetune+DA"}
    metrics = results[1]["finetune+DA"][0]["metrics"]
    assert metrics["NN_dist"] > 0 and metrics["NN_dist_real"] > 0
    assert metrics["NN_ratio"] == metrics["NN_dist"] / metrics["NN_dist_real"]
    table = (tmp_path / "study.md").read_text()
    assert table.index("| finetune |") < table.index("| finetune+DA |")
    log = (tmp_path / "shots1" / "logs" / "finetune+DA_seed0_log.jsonl")
    assert log.is_file()


def test_a_policy_that_does_not_exist_is_refused_before_any_run(tmp_path, capsys):
    with pytest.raises(SystemExit):
        study.main(["--out", str(tmp_path), "--DiffAugment", "colour"])
    assert "--DiffAugment" in capsys.readouterr().err
    assert not (tmp_path / "shots10").exists()


def test_an_unconditional_source_transfers_with_finetune(tmp_path):
    argv = [*toy_default.TOY_ARCHITECTURE, "--dataset", "Toy32", "--n_classes", "1", "--n_pretrain_classes", "0",
            "--stage", "pretrain", "--base_dir", str(tmp_path / "source_run")]
    config = utils.finalize_config(vars(utils.prepare_parser().parse_args(argv)))
    config["resolution"] = 32
    G, D = train.build_models(config, "cpu")
    source = tmp_path / "unconditional"
    source.mkdir()
    torch.save(G.state_dict(), source / "G.pth")
    torch.save(D.state_dict(), source / "D.pth")
    results = study.main(["--out", str(tmp_path / "out"), "--source", str(source), "--source_classes", "1",
                          "--shots", "1", "--seeds", "0", "--iters", "2", "--test_every", "2",
                          "--num_inception_images", "50", "--methods", "finetune"])
    assert math.isfinite(results[1]["finetune"][0]["metrics"]["FID"])
    installed = torch.load(tmp_path / "out" / "shots1" / "weights" / "G.pth", weights_only=True)
    assert all(torch.equal(installed[k], v) for k, v in G.state_dict().items())


def test_a_source_folder_without_weights_is_refused(tmp_path):
    with pytest.raises(utils.UsageError, match="holds no G.pth"):
        study.main(["--out", str(tmp_path / "out"), "--source", str(tmp_path), "--shots", "1", "--iters", "2",
                    "--methods", "finetune"])
