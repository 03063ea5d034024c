"""explain.py: what each new class learned from the old ones, read off G's combination weights.
The oracles are combinations built here with known answers, formulas written out in the tests, an
exact spectral norm (torch.linalg.matrix_norm), and the ccbn's own forward (class_gain_bias)."""
import json
import math
import os

import pytest
import torch
import torch.nn.functional as F

import BigGAN
import checkpoints
import explain
import flags
import layers
import stages
import utils
from conftest import fixture_config, load_fixture

N_NEW, N_OLD = 3, 5
SMALL = dict(G_ch=4, resolution=32, dim_z=16, n_classes=N_NEW, n_pretrain_classes=N_OLD,
             G_shared=False, hier=False, G_attn="0", G_init="N02", skip_init=False)
NEW = ["red_circle", "green_square", "blue_triangle"]
OLD = ["red_square", "blue_circle", "green_circle", "blue_square", "yellow_square"]


def transfer_G(kp_variant: str = "cifar") -> BigGAN.Generator:
    return BigGAN.Generator(**SMALL, kp_variant=kp_variant).eval()


def ccbns(G):
    return [m for m in G.modules() if isinstance(m, layers.ccbn)]


def parts(ccbn):
    """(combination, prior, residual) of the gain, then of the bias."""
    return [(ccbn.comb_layer_g, ccbn.prev_knowledge_g, ccbn.res_g),
            (ccbn.comb_layer_b, ccbn.prev_knowledge_b, ccbn.res_b)]


@torch.no_grad()
def set_new_class(comb, res, new_class, column, comb_bias=None, residual=None):
    """New class `new_class` gets combination column W e_c = column, comb bias and residual R e_c
    (zero when not given). The other new classes keep their random weights."""
    comb.weight[:, new_class] = torch.tensor(column, dtype=torch.float32)
    comb.bias.copy_(torch.zeros(N_OLD) if comb_bias is None
                    else torch.tensor(comb_bias, dtype=torch.float32))
    res.weight[:, new_class] = 0.0 if residual is None else residual


def one_hot(new_class, old_class):
    return [1.0 if k == old_class else 0.0 for k in range(N_OLD)]


# --- The definitions on constructed combinations

def test_a_one_hot_combination_gives_that_old_class_share_1_and_no_residual():
    G = transfer_G()
    for ccbn in ccbns(G):
        for comb, _, res in parts(ccbn):
            set_new_class(comb, res, 0, one_hot(0, 3))
    report = explain.combination_report(G, NEW, OLD)
    red = report.new_classes[0]
    assert red.old_class_shares == [0.0, 0.0, 0.0, 1.0, 0.0]   # exactly
    assert red.residual_share == 0.0
    assert explain.top_old_classes(report, 1)[0] == [("blue_square", 1.0)]
    names = [name for name, m in G.named_modules() if isinstance(m, layers.ccbn)]
    assert list(red.layers) == names and "blocks.0.0.bn1" in names
    for layer in red.layers.values():
        for part in layer.values():
            assert part.coefficients == [0.0, 0.0, 0.0, 1.0, 0.0]
            assert part.shares == [0.0, 0.0, 0.0, 1.0, 0.0]
            # The cifar prior's bias is a constant of every class: reported, never an old class.
            assert part.prior_bias_norm > 0
    assert report.kp_variant == "cifar"


def test_a_zero_combination_with_a_residual_is_all_residual():
    G = transfer_G()
    for ccbn in ccbns(G):
        for comb, _, res in parts(ccbn):
            set_new_class(comb, res, 1, [0.0] * N_OLD, residual=torch.randn(res.weight.shape[0]))
    green = explain.combination_report(G, NEW, OLD).new_classes[1]
    assert green.residual_share == 1.0
    assert green.old_class_shares == [0.0] * N_OLD
    assert all(part.propagated_norm == 0.0 and part.residual_norm > 0
               for layer in green.layers.values() for part in layer.values())


def test_a_mixed_combination_matches_the_hand_computed_shares():
    """Gain: prior columns (k+1) e_k (orthogonal, norms 1..5), a = W e_0 + b = (0.5, -1, 0.5, 0.25,
    0), residual 2 e_5. Bias: one-hot old class 2, no residual. Every ccbn alike."""
    G = transfer_G()
    a = [0.5, -1.0, 0.5, 0.25, 0.0]
    for ccbn in ccbns(G):
        (comb_g, prior_g, res_g), (comb_b, _, res_b) = parts(ccbn)
        eye = torch.eye(ccbn.output_size)
        with torch.no_grad():
            prior_g.weight.copy_(torch.stack([(k + 1) * eye[k] for k in range(N_OLD)], 1))
        set_new_class(comb_g, res_g, 0, [0.5, -1.0, 0.0, 0.25, 0.0], comb_bias=[0, 0, 0.5, 0, 0],
                      residual=2 * eye[5])
        set_new_class(comb_b, res_b, 0, one_hot(0, 2))
    red = explain.combination_report(G, NEW, OLD).new_classes[0]

    contributions = [abs(a_k) * (k + 1) for k, a_k in enumerate(a)]          # 0.5, 2, 1.5, 1, 0
    # 0.1, 0.4, 0.3, 0.2, 0
    gain_shares = [c / sum(contributions) for c in contributions]
    propagated = math.sqrt(sum(c ** 2 for c in contributions))                # orthogonal columns
    gain_residual_share = 2.0 / (propagated + 2.0)
    for layer in red.layers.values():
        gain, bias = layer["gain"], layer["bias"]
        assert gain.coefficients == pytest.approx(a, abs=1e-7)
        assert gain.contributions == pytest.approx(contributions, abs=1e-6)
        assert gain.shares == pytest.approx(gain_shares, abs=1e-6)
        assert gain.propagated_norm == pytest.approx(propagated, abs=1e-5)
        assert gain.residual_norm == pytest.approx(2.0, abs=1e-6)
        assert gain.residual_share == pytest.approx(gain_residual_share, abs=1e-6)
        assert bias.shares == [0.0, 0.0, 1.0, 0.0, 0.0] and bias.residual_share == 0.0
    # Aggregated: the unweighted mean over every ccbn and both parts.
    assert red.old_class_shares == pytest.approx([(g + b) / 2
                                                  for g, b in zip(gain_shares, [0, 0, 1, 0, 0])],
                                                 abs=1e-6)
    assert red.residual_share == pytest.approx(gain_residual_share / 2, abs=1e-6)
    report = explain.combination_report(G, NEW, OLD)
    top = explain.top_old_classes(report, 3)[0]
    assert [name for name, _ in top] == ["green_circle", "blue_circle", "blue_square"]
    assert [share for _, share in top] == pytest.approx([0.65, 0.2, 0.1], abs=1e-6)
    text = explain.format_report(report, k=3)
    assert "red_circle (new class 0)" in text and "1. green_circle" in text and "0.650" in text
    assert f"{gain_residual_share / 2:.3f} of the class's own offset" in text


@pytest.mark.parametrize("kp_variant", ["cifar", "imagenet"])
@torch.no_grad()
def test_the_report_explains_what_the_forward_pass_computes(kp_variant):
    """||P a|| of the report = the ccbn's own gain/bias offset minus the residual (and the cifar
    prior's bias), for every new class: the report uses the weights the forward pass uses."""
    G = transfer_G(kp_variant)
    report = explain.combination_report(G, NEW, OLD)
    for name, ccbn in ((n, m) for n, m in G.named_modules() if isinstance(m, layers.ccbn)):
        for c in range(N_NEW):
            gain, bias = ccbn.class_gain_bias(F.one_hot(torch.tensor([c]), N_NEW).float())
            for part, offset, (_, prior, res) in (("gain", gain[0] - 1, parts(ccbn)[0]),
                                                  ("bias", bias[0], parts(ccbn)[1])):
                prior_bias = prior.bias if prior.bias is not None else 0
                propagated = offset - res.weight[:, c] - prior_bias
                explained = report.new_classes[c].layers[name][part]
                assert explained.propagated_norm == pytest.approx(float(propagated.norm()),
                                                                  rel=1e-5, abs=1e-6)
                assert explained.residual_norm == pytest.approx(float(res.weight[:, c].norm()),
                                                                rel=1e-6)


@torch.no_grad()
def test_an_official_checkpoint_is_explained_by_what_its_forward_computes():
    """The official code's ImageNet-variant G (shared embedding, hierarchical z, trained 3 steps):
    with z = 0 the ccbn's offset is P a + R e_c + the z layer's bias, whatever u the SN layers
    hold."""
    G = BigGAN.Generator(**{**fixture_config("cgantransfer", "i128_small", "keys.json"),
                            "kp_variant": "imagenet", "skip_init": True})
    G.load_state_dict(load_fixture("cgantransfer", "i128_small", "G.pth"))
    G.eval()
    report = explain.combination_report(G, NEW, [f"old{k}" for k in range(G.n_pretrain_classes)])
    assert report.kp_variant == "imagenet" and len(report.layer_names) == 10
    for name, ccbn in ((n, m) for n, m in G.named_modules() if isinstance(m, layers.ccbn)):
        for c in range(N_NEW):
            y = torch.cat([F.one_hot(torch.tensor([c]), N_NEW).float(),
                           torch.zeros(1, ccbn.z_chunk_size)], 1)
            gain, bias = ccbn.class_gain_bias(y)
            for part, offset, res, z_layer in (("gain", gain[0] - 1, ccbn.res_g, ccbn.z_layer_g),
                                               ("bias", bias[0], ccbn.res_b, ccbn.z_layer_b)):
                propagated = offset - res.weight[:, c] - z_layer.bias
                explained = report.new_classes[c].layers[name][part]
                assert explained.propagated_norm == pytest.approx(float(propagated.norm()),
                                                                  rel=1e-5, abs=1e-6)
                assert sum(explained.shares) == pytest.approx(1.0, abs=1e-6)


@torch.no_grad()
def test_the_imagenet_variant_uses_the_spectrally_normalized_weights_without_updating_u():
    G = transfer_G("imagenet")
    sn_layers = [layer for ccbn in ccbns(G) for comb, prior, _ in parts(ccbn)
                 for layer in (comb, prior)]
    # converge the power iteration: W/sigma is then the exact spectral normalization
    for layer in sn_layers:
        layer.train()
        for _ in range(300):
            layer.W_()
    G.train()  # the report must not run power iterations that move u, whatever G's mode
    u_before = [layer.u0.clone() for layer in sn_layers]
    report = explain.combination_report(G, NEW, OLD)
    assert all(torch.equal(layer.u0, u) for layer, u in zip(sn_layers, u_before)) and G.training
    assert report.kp_variant == "imagenet"
    for name, ccbn in ((n, m) for n, m in G.named_modules() if isinstance(m, layers.ccbn)):
        for part, (comb, prior, _) in zip(("gain", "bias"), parts(ccbn)):
            W = comb.weight / torch.linalg.matrix_norm(comb.weight, ord=2)
            P = prior.weight / torch.linalg.matrix_norm(prior.weight, ord=2)
            for c in range(N_NEW):
                a = W[:, c] + comb.bias
                explained = report.new_classes[c].layers[name][part]
                assert explained.coefficients == pytest.approx(a.tolist(), rel=1e-4, abs=1e-5)
                assert explained.contributions == pytest.approx((a.abs() * P.norm(dim=0)).tolist(),
                                                                rel=1e-4, abs=1e-5)
                assert explained.prior_bias_norm == 0.0  # the imagenet prior has no bias


def test_a_plain_G_or_wrong_class_names_are_refused():
    plain = BigGAN.Generator(**{**SMALL, "n_pretrain_classes": 0})
    with pytest.raises(ValueError, match="no knowledge-propagation ccbn"):
        explain.combination_report(plain, NEW, OLD)
    with pytest.raises(ValueError, match="G has 5 old classes, got 4 old class names"):
        explain.combination_report(transfer_G(), NEW, OLD[:4])


def test_the_heatmap_keeps_the_top_old_classes_when_there_are_too_many_to_read():
    shares = [0.0] * 100
    shares[7], shares[42] = 0.6, 0.4
    new = explain.NewClassExplanation("n", {}, shares, 0.0)
    report = explain.CombinationReport("imagenet", [f"old{i}" for i in range(100)], [new])
    assert explain.heatmap_columns(report)[:2] == [0, 1] and 7 in explain.heatmap_columns(report)
    # top-40 of one new class
    assert len(explain.heatmap_columns(report)) == explain.MAX_HEATMAP_COLUMNS
    report.old_class_names = report.old_class_names[:30]
    report.new_classes[0].old_class_shares = shares[:30]
    assert explain.heatmap_columns(report) == list(range(30))


# --- The command line on checkpoints saved like train.py's

def save_experiment(base, name, stage="BN", with_config=True, suffix="best0", **names):
    """weights/<name>/{G,state_dict}_<suffix>.pth; new class c takes old class (3, 0, 4)[c]."""
    argv = ["--base_dir", str(base), "--dataset", "Toy32", "--stage", stage, "--G_ch", "4",
            "--G_attn", "0", "--dim_z", "16", "--n_classes", str(N_NEW), "--n_pretrain_classes",
            str(N_OLD), "--kp_variant", "cifar", "--G_init", "N02", "--experiment_name", name]
    config = flags.finalize_config(vars(flags.prepare_parser().parse_args(argv)))
    config.update(resolution=32, **names)
    G = BigGAN.Generator(**stages.model_config(config))
    for ccbn in ccbns(G) if G.has_knowledge_propagation else []:
        for comb, _, res in parts(ccbn):
            for c, old in enumerate((3, 0, 4)):
                set_new_class(comb, res, c, one_hot(c, old))
    state = {"itr": 5, "config": config} if with_config else {"itr": 5}
    checkpoints.save_set(os.path.join(str(base), "weights", name),
                         {"G": G.state_dict(), "state_dict": state}, 5, suffix)


def run(base, name, *args):
    return explain.main(["--base_dir", str(base), "--experiment_name", name, "--load_weights",
                         "best0", *args])


def test_cli_prints_the_top_3_block_and_writes_the_heatmap_and_json(tmp_path, capsys):
    save_experiment(tmp_path, "named", class_names=NEW, old_class_names=OLD)
    report = run(tmp_path, "named", "--json", str(tmp_path / "report.json"), "--per_layer")
    out = capsys.readouterr().out
    block = out.split("red_circle (new class 0)\n")[1].split("\n\n")[0].splitlines()
    assert block[0].split() == ["1.", "blue_square", "1.000"]
    assert len(block) == 4 and block[3].split()[:2] == ["residual", "0.000"]
    assert "green_square (new class 1)\n  1. red_square" in out
    heatmap = tmp_path / "samples" / "named" / explain.HEATMAP_NAME
    assert f"Saved the heatmap of the shares to {heatmap}" in out
    assert heatmap.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["old_class_names"] == OLD and saved["new_classes"][2]["old_class_shares"] == [0, 0,
                                                                                               0, 0,
                                                                                               1.0]
    assert saved["new_classes"][0]["layers"]["blocks.0.0.bn1"]["gain"]["shares"][3] == 1.0
    assert [c.name for c in report.new_classes] == NEW


def test_cli_without_class_names_or_data_names_classes_by_index(tmp_path, capsys):
    save_experiment(tmp_path, "unnamed")
    heatmap = tmp_path / "elsewhere" / "h.png"
    run(tmp_path, "unnamed", "--heatmap", str(heatmap), "--top_k", "2")
    out = capsys.readouterr().out
    assert "new0..new2" in out  # the note: no names in the config, no dataset folder
    assert "new0 (new class 0)\n  1. old3" in out and "  3. " not in out
    assert heatmap.is_file()


def test_cli_refuses_a_plain_G_in_one_line_with_exit_code_2(tmp_path, capsys):
    save_experiment(tmp_path, "baseline", stage="finetune")
    with pytest.raises(SystemExit) as exit_info:
        utils.run_main(lambda: run(tmp_path, "baseline"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert "--stage finetune" in err and "BN, FT" in err and "Traceback" not in err


def test_cli_refuses_a_checkpoint_without_saved_config(tmp_path):
    save_experiment(tmp_path, "bare", with_config=False)
    with pytest.raises(utils.UsageError, match="has no saved training config"):
        run(tmp_path, "bare")
