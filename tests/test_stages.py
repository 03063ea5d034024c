"""stages.py: each stage trains exactly the official parameter set of G, written out here by name
(the official cGANTransfer train_fns.py: BN unfreezes names containing comb_layer, res_g, res_b,
prev_knowledge, comb_att or z_layer; FT freezes names containing comb_layer or prev_knowledge), so
that any departure from the official sets fails."""
import pytest

import BigGAN
import flags
import stages

# The c32 reference transfer model of the tests: 3 G blocks with 2 ccbns each, cifar variant.
C32 = ["--G_ch", "16", "--D_ch", "16", "--G_attn", "0", "--D_attn", "0", "--kp_variant", "cifar",
       "--n_pretrain_classes", "8", "--n_classes", "2", "--resolution", "32"]
CCBNS = [f"blocks.{block}.0.bn{i}" for block in range(3) for i in (1, 2)]
KNOWLEDGE_PROPAGATION = ["comb_layer_g.weight", "comb_layer_g.bias", "comb_layer_b.weight",
                         "comb_layer_b.bias", "prev_knowledge_g.weight", "prev_knowledge_g.bias",
                         "prev_knowledge_b.weight", "prev_knowledge_b.bias"]
RESIDUALS = ["res_g.weight", "res_b.weight"]
PRETRAINED_CLASS_PATH = ["gain.weight", "bias.weight"]  # unused by a knowledge-propagation G
CONVS = [f"blocks.{block}.0.{conv}.{p}" for block in range(3)
         for conv in ("conv1", "conv2", "conv_sc")
         for p in ("weight", "bias")]
OUTSIDE_BLOCKS = ["linear.weight", "linear.bias", "output_layer.0.gain", "output_layer.0.bias",
                  "output_layer.2.weight", "output_layer.2.bias"]

OFFICIAL_BN_SET = {f"{bn}.{p}" for bn in CCBNS for p in KNOWLEDGE_PROPAGATION + RESIDUALS}
OFFICIAL_FT_SET = ({f"{bn}.{p}" for bn in CCBNS
                    for p in RESIDUALS} | set(CONVS) | set(OUTSIDE_BLOCKS))
PLAIN_CLASS_EMBEDDINGS = {f"{bn}.{p}" for bn in CCBNS for p in PRETRAINED_CLASS_PATH}
PLAIN_G = set(CONVS) | set(OUTSIDE_BLOCKS) | PLAIN_CLASS_EMBEDDINGS


def build_G(stage: str, *extra: str) -> BigGAN.Generator:
    config = flags.finalize_config(vars(flags.prepare_parser().parse_args([*C32, "--stage", stage,
                                                                           *extra])))
    return BigGAN.Generator(**stages.model_config(config))


def trained_names(stage: str, *extra: str) -> set[str]:
    G = build_G(stage, *extra)
    trained = {id(p) for p in stages.G_parameters(G, stages.get(stage))}
    return {name for name, p in G.named_parameters() if id(p) in trained}


def test_BN_stage_trains_the_combination_prior_and_residuals():
    assert trained_names("BN") == OFFICIAL_BN_SET


def test_FT_stage_trains_all_but_combination_and_prior():
    # The pretrained class path (gain/bias) is unused by the forward pass: no gradient, not listed.
    assert trained_names("FT") == OFFICIAL_FT_SET


def test_baselines_build_plain_models_of_the_new_classes():
    assert trained_names("finetune") == PLAIN_G
    assert trained_names("pretrain", "--n_pretrain_classes", "0") == PLAIN_G
    assert trained_names("BN_only") == PLAIN_CLASS_EMBEDDINGS


def test_with_hierarchical_z_the_z_projections_train_in_both_stages():
    extra = ("--hier", "--G_shared", "--shared_dim", "16", "--dim_z", "120")
    z_layers = {f"{bn}.z_layer_{gb}.weight" for bn in CCBNS for gb in "gb"}
    assert z_layers <= trained_names("BN", *extra)
    assert z_layers <= trained_names("FT", *extra)
    assert not any("comb_layer" in n or "prev_knowledge" in n for n in trained_names("FT", *extra))


def test_BN_only_with_a_shared_embedding_trains_only_that_embedding():
    assert trained_names("BN_only", "--G_shared", "--shared_dim", "16") == {"shared.weight"}


def test_the_table_says_how_each_stage_starts():
    assert {name: (s.knowledge_propagation, s.start) for name, s in stages.STAGES.items()} == {
        "BN": (True, stages.FROM_KNOWLEDGE), "FT": (True, stages.FROM_KNOWLEDGE),
        "pretrain": (False, stages.FROM_SCRATCH),
        "finetune": (False, stages.FROM_OLD_CLASS_MEAN),
        "BN_only": (False, stages.FROM_OLD_CLASS_MEAN)}
    assert build_G("BN").has_knowledge_propagation
    assert not build_G("finetune").has_knowledge_propagation


def test_FreezeD_keeps_the_first_blocks_of_D():
    config = flags.finalize_config(vars(flags.prepare_parser().parse_args([*C32, "--stage",
                                                                           "finetune"])))
    D = BigGAN.Discriminator(**stages.model_config(config))
    names = {id(p): n for n, p in D.named_parameters()}
    trained = {names[id(p)] for p in stages.D_parameters(D, 2)}
    assert trained == {n for n in names.values() if not n.startswith(("blocks.0.", "blocks.1."))}
    assert len(stages.D_parameters(D, -1)) == len(list(D.parameters()))


def test_an_unknown_stage_is_named():
    with pytest.raises(ValueError, match="unknown stage 'BM'"):
        stages.get("BM")
