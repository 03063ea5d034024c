"""BigGAN.py: the models reproduce the original BigGAN-PyTorch and cGANTransfer code exactly."""
import json

import pytest
import torch

import BigGAN
import layers
from conftest import KP_VARIANT, fixture_config, fixture_path, load_fixture

ATOL = 1e-4


def build(config):
    return BigGAN.Generator(**config), BigGAN.Discriminator(**config)


@pytest.mark.parametrize("name", ["c32_small", "i128_small"])
def test_source_models_reproduce_biggan_pytorch_golden_outputs(name):
    config = fixture_config("biggan_pytorch", name, "keys.json")
    G, D = build(config)
    G_ema = BigGAN.Generator(**config)
    G.load_state_dict(load_fixture("biggan_pytorch", name, "G.pth"), strict=True)
    G_ema.load_state_dict(load_fixture("biggan_pytorch", name, "G_ema.pth"), strict=True)
    D.load_state_dict(load_fixture("biggan_pytorch", name, "D.pth"), strict=True)
    golden = load_fixture("biggan_pytorch", name, "golden.pt")
    for model in (G, G_ema, D):
        model.eval()
    with torch.no_grad():
        z, y = golden["z"], golden["y"]
        assert torch.allclose(G(z, G.shared(y)), golden["G_out"], atol=ATOL, rtol=0)
        assert torch.allclose(G_ema(z, G_ema.shared(y)), golden["G_ema_out"], atol=ATOL, rtol=0)
        assert torch.allclose(D(golden["x"], y), golden["D_real"], atol=ATOL, rtol=0)
        assert torch.allclose(D(golden["G_out"], y), golden["D_fake"], atol=ATOL, rtol=0)


def transfer_config(name):
    return {**fixture_config("cgantransfer", name, "keys.json"), "kp_variant": KP_VARIANT[name]}


@pytest.mark.parametrize("name", ["c32_small", "i128_small"])
def test_knowledge_loading_equals_official_G_init(name):
    G, D = build(transfer_config(name))
    expected_missing = BigGAN.load_pretrained_state_dict(
        G, load_fixture("biggan_pytorch", name, "G.pth"))
    BigGAN.load_pretrained_state_dict(D, load_fixture("biggan_pytorch", name, "D.pth"))
    assert expected_missing and all("prev_knowledge" in k or "comb_layer" in k or "res_" in k
                                    or "z_layer" in k or "pretrain_embedding_w" in k
                                    for k in expected_missing)
    G.load_previous_knowledge()
    official = load_fixture("cgantransfer", name, "G_init.pth")
    ours = G.state_dict()
    knowledge_keys = [k for k in official if ("prev_knowledge" in k or "z_layer" in k)
                      and k.endswith(".weight")]
    assert len(knowledge_keys) >= 12
    for key in knowledge_keys:
        assert torch.allclose(ours[key], official[key], atol=1e-5, rtol=0), key


@pytest.mark.parametrize("name", ["c32_small", "i128_small"])
def test_transfer_models_reproduce_cgantransfer_golden_outputs(name):
    G, D = build(transfer_config(name))
    G.load_state_dict(load_fixture("cgantransfer", name, "G.pth"), strict=True)
    D.load_state_dict(load_fixture("cgantransfer", name, "D.pth"), strict=True)
    G.eval(), D.eval()
    golden = load_fixture("cgantransfer", name, "golden.pt")
    with torch.no_grad():
        assert torch.allclose(G(golden["z"], golden["y"]), golden["G_out"], atol=ATOL, rtol=0)
        assert torch.allclose(D(golden["x"], golden["y"]), golden["D_real"], atol=ATOL, rtol=0)
        assert torch.allclose(D(golden["G_out"], golden["y"]), golden["D_fake"], atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", ["source_I128", "source_C100", "transfer_I128", "transfer_C100"])
def test_full_size_state_dict_keys_and_shapes_equal_official(name):
    with open(fixture_path("keys", f"{name}.json")) as f:
        reference = json.load(f)
    config = {**reference["config"], "skip_init": True,
              "kp_variant": KP_VARIANT[name.split("_")[1]]}
    for model, key in zip(build(config), ("G", "D")):
        ours = {k: list(v.shape) for k, v in model.state_dict().items()}
        assert ours == reference[key]
        assert list(ours) == list(reference[key]), "key order differs"


# --- The idea itself: a new class whose combination weights are one-hot on old class k gets
# column k of the prior matrix, i.e. old class k's own BN gain and bias. Checked for every
# G_shared x hier combination. Like the official code, knowledge loading reads the raw pretrained
# weights: where the source's gain/bias layers are spectrally normalized (G_shared, or our hier
# without G_shared), the source applied W/sigma, so the prior column is sigma x its BN offsets.

SMALL = dict(resolution=32, G_ch=4, D_ch=4, dim_z=16, shared_dim=8, G_attn="0", D_attn="0",
             G_init="N02", D_init="N02")
COMBINATIONS = [(shared, hier) for shared in (True, False) for hier in (True, False)]


def source_and_transfer(shared, hier, kp_variant, n_old=5, n_new=3):
    source = BigGAN.Generator(**SMALL, G_shared=shared, hier=hier, n_classes=n_old).eval()
    for module in source.modules():  # make every class's BN parameters distinct
        if isinstance(module, layers.ccbn):
            for layer in (module.gain, module.bias):
                torch.nn.init.normal_(layer.weight, 0, 0.5)
    transfer = BigGAN.Generator(**SMALL, G_shared=shared, hier=hier, n_classes=n_new,
                                n_pretrain_classes=n_old, kp_variant=kp_variant).eval()
    BigGAN.load_pretrained_state_dict(transfer, source.state_dict())
    transfer.load_previous_knowledge()
    return source, transfer


def ccbns(G):
    return [m for m in G.modules() if isinstance(m, layers.ccbn)]


def old_class_offsets(source, bn_index, k):
    """The BN gain - 1 and bias that the source G applies for old class k (z-part zero), and the
    scale sigma by which its gain/bias layers divide their weights (1 for an embedding)."""
    ccbn = ccbns(source)[bn_index]
    y = torch.tensor([k])
    if source.G_shared:
        code = source.shared(y)
    elif source.hier:
        code = torch.nn.functional.one_hot(y, source.n_classes).float()
    else:
        code = y
    if source.hier:
        code = torch.cat([code, torch.zeros(1, source.z_chunk_size)], 1)
    gain, bias = ccbn.class_gain_bias(code)
    sigma = [layer.weight.norm() / layer.W_().norm() if isinstance(layer, layers.SN) else 1.0
             for layer in (ccbn.gain, ccbn.bias)]
    return gain - 1, bias, sigma


def set_one_hot_combination(ccbn, new_class, old_class):
    with torch.no_grad():
        for comb in (ccbn.comb_layer_g, ccbn.comb_layer_b):
            comb.weight.zero_()
            comb.weight[old_class, new_class] = 1.0
            comb.bias.zero_()
        for layer in (ccbn.res_g, ccbn.res_b):
            layer.weight.zero_()
        for prior in (ccbn.prev_knowledge_g, ccbn.prev_knowledge_b):
            if prior.bias is not None:
                prior.bias.zero_()


def new_class_offsets(ccbn, new_class, n_new):
    y = torch.nn.functional.one_hot(torch.tensor([new_class]), n_new).float()
    if ccbn.z_chunk_size:
        y = torch.cat([y, torch.zeros(1, ccbn.z_chunk_size)], 1)  # the z-part removed
        with torch.no_grad():
            for layer in (ccbn.z_layer_g, ccbn.z_layer_b):
                layer.bias.zero_()
    gain, bias = ccbn.class_gain_bias(y)
    return gain - 1, bias


@pytest.mark.parametrize("shared,hier", COMBINATIONS)
def test_one_hot_combination_gives_the_old_class_column_of_the_prior(shared, hier):
    source, transfer = source_and_transfer(shared, hier, "cifar")
    for bn_index, ccbn in enumerate(ccbns(transfer)):
        for new_class, old_class in [(0, 3), (2, 1)]:
            set_one_hot_combination(ccbn, new_class, old_class)
            gain, bias = new_class_offsets(ccbn, new_class, transfer.n_classes)
            assert torch.allclose(gain[0], ccbn.prev_knowledge_g.weight[:, old_class], atol=1e-6)
            assert torch.allclose(bias[0], ccbn.prev_knowledge_b.weight[:, old_class], atol=1e-6)
            old_gain, old_bias, (sigma_g, sigma_b) = old_class_offsets(source, bn_index, old_class)
            assert torch.allclose(gain, old_gain * sigma_g, atol=1e-5)
            assert torch.allclose(bias, old_bias * sigma_b, atol=1e-5)


def test_official_cifar_setup_propagates_the_old_classes_own_bn_parameters_exactly():
    source, transfer = source_and_transfer(shared=False, hier=False, kp_variant="cifar")
    ccbn = ccbns(transfer)[2]
    set_one_hot_combination(ccbn, 1, 4)
    gain, bias = new_class_offsets(ccbn, 1, transfer.n_classes)
    old_gain, old_bias, _ = old_class_offsets(source, 2, 4)
    assert torch.equal(gain, old_gain) and torch.equal(bias, old_bias)


@pytest.mark.parametrize("shared,hier", [(True, True), (True, False)])
def test_imagenet_variant_propagates_the_spectrally_normalized_prior(shared, hier):
    """The official ImageNet variant spectrally normalizes the prior layer too: the one-hot
    combination gives column k of the prior divided by the prior's estimated top singular value."""
    _, transfer = source_and_transfer(shared, hier, "imagenet")
    ccbn = ccbns(transfer)[0]
    set_one_hot_combination(ccbn, 1, 4)
    gain, bias = new_class_offsets(ccbn, 1, transfer.n_classes)
    for offset, prior in ((gain, ccbn.prev_knowledge_g), (bias, ccbn.prev_knowledge_b)):
        sigma = prior.weight.norm() / prior.W_().norm()
        assert torch.allclose(offset[0], prior.weight[:, 4] / sigma, atol=1e-5)


# --- Loading errors name the flag that is probably wrong.

@pytest.mark.parametrize("change,flag", [({"n_pretrain_classes": 7}, "n_pretrain_classes"),
                                         ({"G_ch": 16}, "G_ch"),
                                         ({"G_attn": "0"}, "G_attn")])
def test_loading_a_source_into_a_misconfigured_transfer_model_names_the_flag(change, flag):
    config = {**transfer_config("i128_small"), **change}
    G = BigGAN.Generator(**config)
    with pytest.raises(BigGAN.WeightsMismatch, match=flag):
        BigGAN.load_pretrained_state_dict(G, load_fixture("biggan_pytorch", "i128_small", "G.pth"),
                                          "G")


def test_transfer_D_replaces_the_old_embedding_with_a_new_one():
    D = BigGAN.Discriminator(**transfer_config("c32_small"))
    missing = BigGAN.load_pretrained_state_dict(D, load_fixture("biggan_pytorch", "c32_small",
                                                                "D.pth"))
    assert sorted(missing) == ["new_embed.sv0", "new_embed.u0", "new_embed.weight"]
    assert D.new_embed.weight.shape[0] == 2 and not hasattr(D, "embed")


# --- Devices and precision.

def test_models_run_under_bf16_autocast():
    G, D = build(dict(SMALL, n_classes=3, n_pretrain_classes=4, hier=True))
    G.eval(), D.eval()  # train mode would move SN vectors and BN statistics between the two calls
    z, y = torch.randn(4, G.dim_z), torch.tensor([0, 1, 2, 1])
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = D(G(z, y), y)
        reference = D(G(z, y), y)
    assert torch.isfinite(out.float()).all()
    assert torch.allclose(out.float(), reference, atol=0.1, rtol=0.1)


def test_G_D_runs_G_then_D_on_fake_and_real():
    G, D = build(dict(SMALL, n_classes=3))
    GD = BigGAN.G_D(G, D)
    z, y = torch.randn(4, G.dim_z), torch.randint(0, 3, (4,))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    D_fake, D_real = GD(z, y, x, torch.tensor([0, 2]), train_G=True)
    assert D_fake.shape == (4, 1) and D_real.shape == (2, 1) and D_fake.requires_grad


# --- Old and new classes from one transferred G: the pretrained class path (shared embedding,
# ccbn gain/bias layers) stays in a knowledge-propagation G; G(z, y, old_classes=True) uses it.
# Oracle: the source G itself, built as BigGAN-PyTorch and loaded from the same checkpoint.

def source_and_knowledge_loaded_transfer(name):
    source_weights = load_fixture("biggan_pytorch", name, "G.pth")
    source = BigGAN.Generator(**fixture_config("biggan_pytorch", name, "keys.json"))
    source.load_state_dict(source_weights, strict=True)
    transfer = BigGAN.Generator(**transfer_config(name))
    BigGAN.load_pretrained_state_dict(transfer, source_weights)
    transfer.load_previous_knowledge()
    return source.eval(), transfer.eval()


@pytest.mark.parametrize("name", ["c32_small", "i128_small"])
def test_old_classes_of_a_knowledge_loaded_G_reproduce_the_source_G(name):
    source, transfer = source_and_knowledge_loaded_transfer(name)
    n_old = transfer.n_pretrain_classes
    assert n_old == source.n_classes
    y = torch.arange(n_old).repeat(2)
    z = torch.randn(len(y), transfer.dim_z)
    with torch.no_grad():
        expected = source(z, source.class_input(y))
        old = transfer(z, transfer.old_class_input(y), old_classes=True)
        new = transfer(z, transfer.class_input(y % transfer.n_classes))
    assert (old - expected).abs().max() <= 1e-5
    assert (new - expected).abs().max() > 1e-2  # the new classes are another path


@pytest.mark.parametrize("shared,hier", COMBINATIONS)
@pytest.mark.parametrize("kp_variant", ["cifar", "imagenet"])
def test_old_classes_reproduce_the_source_for_every_class_input_layout(shared, hier, kp_variant):
    source, transfer = source_and_transfer(shared, hier, kp_variant)
    y = torch.tensor([0, 4, 2, 3, 1, 4])
    z = torch.randn(len(y), transfer.dim_z)
    with torch.no_grad():
        expected = source(z, source.class_input(y))
        assert (transfer(z, y, old_classes=True) - expected).abs().max() <= 1e-5
        one_hot = torch.nn.functional.one_hot(y, transfer.n_pretrain_classes).float()
        assert (transfer(z, one_hot, old_classes=True) - expected).abs().max() <= 1e-5


def test_old_classes_do_not_depend_on_the_new_classes_parameters():
    _, transfer = source_and_transfer(True, True, "imagenet")
    z, y = torch.randn(4, transfer.dim_z), torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        before = transfer(z, y, old_classes=True)
        for name, p in transfer.named_parameters():
            if any(part in name for part in ("comb_layer", "prev_knowledge", "z_layer", "res_")):
                p.add_(torch.randn_like(p))
        assert torch.equal(transfer(z, y, old_classes=True), before)


def test_old_classes_share_the_BN_running_statistics_with_the_new_classes():
    """Why forgetting must be measured: train-mode forwards on new classes only move the running
    statistics that eval-mode old-class samples use."""
    _, transfer = source_and_transfer(False, False, "cifar")
    z, y = torch.randn(4, transfer.dim_z), torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        before = transfer(z, y, old_classes=True)
        transfer.train()
        transfer(torch.randn(8, transfer.dim_z), torch.randint(0, transfer.n_classes, (8,)))
        transfer.eval()
        assert not torch.allclose(transfer(z, y, old_classes=True), before, atol=1e-4)


def test_old_classes_need_a_knowledge_propagation_G_and_old_class_indices():
    source, transfer = source_and_transfer(True, False, "cifar")
    z = torch.randn(2, source.dim_z)
    with pytest.raises(ValueError, match="knowledge-propagation G"):
        source(z, source.class_input(torch.tensor([0, 1])), old_classes=True)
    with pytest.raises(ValueError, match="0..4"):
        transfer(z, torch.tensor([0, 5]), old_classes=True)


# --- An unconditional source (one class) transfers to a conditional target (TransferGAN:
# --stage finetune --n_pretrain_classes 1): every new class starts as the source's one class.

ONE_CLASS = dict(resolution=32, G_ch=16, D_ch=16, dim_z=32, shared_dim=16, G_attn="0", D_attn="0",
                 G_init="N02", D_init="N02")


def trained_one_class_source(tmp_path, G_shared, hier, D_param="SN"):
    """A 1-class source G and D after a few train-mode forwards (BN statistics and SN vectors
    moved, as in a trained checkpoint), saved and read back as train.py reads a source model."""
    G = BigGAN.Generator(**ONE_CLASS, G_shared=G_shared, hier=hier, n_classes=1)
    D = BigGAN.Discriminator(**ONE_CLASS, n_classes=1, D_param=D_param)
    with torch.no_grad():
        for _ in range(3):
            y = torch.zeros(4, dtype=torch.long)
            D(G(torch.randn(4, G.dim_z), G.class_input(y)), y)
    for model, part in ((G, "G"), (D, "D")):
        torch.save(model.state_dict(), tmp_path / f"{part}.pth")
    return G.eval(), D.eval(), {part: torch.load(tmp_path / f"{part}.pth", weights_only=True)
                                for part in "GD"}


def D_features(D, x):
    """The projection discriminator's pooled features h: D(x, y) = linear(h) + <embed_y, h>."""
    h = x
    for blocklist in D.blocks:
        for block in blocklist:
            h = block(h)
    return torch.sum(D.activation(h), [2, 3])


@pytest.mark.parametrize("shared,hier", [(True, True), (True, False), (False, False)])
def test_every_new_class_of_a_G_from_an_unconditional_source_is_the_source_class(tmp_path, shared,
                                                                                 hier):
    source_G, _, weights = trained_one_class_source(tmp_path, shared, hier)
    G = BigGAN.Generator(**ONE_CLASS, G_shared=shared, hier=hier, n_classes=3)
    BigGAN.mean_class_init(G, weights["G"], 1, "G")
    G.eval()
    z = torch.randn(5, G.dim_z)
    with torch.no_grad():
        expected = source_G(z, source_G.class_input(torch.zeros(5, dtype=torch.long)))
        for k in range(3):
            assert (G(z, G.class_input(torch.full((5,), k))) - expected).abs().max() <= 1e-6


def test_D_of_an_unconditional_source_gives_every_new_class_the_source_projection(tmp_path):
    _, source_D, weights = trained_one_class_source(tmp_path, True, True)
    D = BigGAN.Discriminator(**ONE_CLASS, n_classes=3)
    missing = BigGAN.mean_class_init(D, weights["D"], 1, "D")
    assert missing == []  # the embedding is copied, not fresh
    D.eval()
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        outputs = [D(x, torch.full((4,), k)) for k in range(3)]
        assert all(torch.equal(out, outputs[0]) for out in outputs)
        h = D_features(source_D, x)
        source_projection = source_D(x, torch.zeros(4, dtype=torch.long)) - source_D.linear(h)
        # D's embedding is spectrally normalized: 3 equal rows have sqrt(3) times one row's sigma.
        expected = source_D.linear(h) + source_projection / 3 ** 0.5
        assert (outputs[0] - expected).abs().max() <= 1e-5


def test_without_SN_the_copied_D_embedding_reproduces_the_unconditional_D(tmp_path):
    _, source_D, weights = trained_one_class_source(tmp_path, True, False, D_param="none")
    D = BigGAN.Discriminator(**ONE_CLASS, n_classes=3, D_param="none")
    BigGAN.mean_class_init(D, weights["D"], 1, "D")
    D.eval()
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        expected = source_D(x, torch.zeros(4, dtype=torch.long))
        for k in range(3):
            assert (D(x, torch.full((4,), k)) - expected).abs().max() <= 1e-6


def test_D_of_a_multi_class_source_still_starts_its_embedding_fresh():
    source = BigGAN.Discriminator(**ONE_CLASS, n_classes=5)
    D = BigGAN.Discriminator(**ONE_CLASS, n_classes=3)
    own = D.embed.weight.detach().clone()
    missing = BigGAN.mean_class_init(D, source.state_dict(), 5, "D")
    assert sorted(missing) == ["embed.sv0", "embed.u0", "embed.weight"]
    assert torch.equal(D.embed.weight, own)


@pytest.mark.parametrize("shared,hier", [(True, True), (False, False), (False, True)])
def test_the_old_class_mean_refuses_a_source_with_another_class_count(shared, hier):
    source = BigGAN.Generator(**ONE_CLASS, G_shared=shared, hier=hier, n_classes=5)
    G = BigGAN.Generator(**ONE_CLASS, G_shared=shared, hier=hier, n_classes=3)
    with pytest.raises(BigGAN.WeightsMismatch, match="5 classes.*n_pretrain_classes is 1"):
        BigGAN.mean_class_init(G, source.state_dict(), 1, "pretrained G")
    with pytest.raises(BigGAN.WeightsMismatch, match="n_pretrain_classes"):
        BigGAN.mean_class_init(BigGAN.Discriminator(**ONE_CLASS, n_classes=3),
                               BigGAN.Discriminator(**ONE_CLASS, n_classes=5).state_dict(), 1,
                               "pretrained D")
