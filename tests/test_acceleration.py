"""acceleration.py: channels_last and fused resampling compute what the contiguous models compute,
bf16 autocast stays close to fp32, 'auto' switches the options on unless --official_numerics, and
torch.compile matches eager (slow: CGT_SLOW_TESTS=1) and falls back to eager with one message where
it cannot compile."""
import copy
import os
import resource
import sys

import pytest
import torch

import acceleration
import BigGAN
import flags
import stages
import train_fns
import utils

# A small transfer G/D with attention, so that every reshape of the step is exercised.
SMALL = ["--G_ch", "8", "--D_ch", "8", "--G_attn", "16", "--D_attn", "16", "--n_classes", "3",
         "--n_pretrain_classes", "5", "--resolution", "32", "--kp_variant", "cifar", "--batch_size",
         "4", "--num_D_steps", "1", "--G_ortho", "1e-4", "--D_ortho", "1e-4", "--hier",
         "--G_shared", "--shared_dim", "16", "--dim_z", "120"]


def small_models(stage="FT"):
    argv = [*SMALL, "--stage", stage]
    config = flags.finalize_config(vars(flags.prepare_parser().parse_args(argv)))
    torch.manual_seed(0)
    G = BigGAN.Generator(**stages.model_config(config))
    D = BigGAN.Discriminator(**stages.model_config(config))
    G.load_previous_knowledge()
    return G, D, config


def outputs(G, D, precision="none"):
    torch.manual_seed(1)
    z, y = torch.randn(4, G.dim_z), torch.randint(0, 3, (4,))
    with acceleration.Precision(precision, torch.device("cpu")).autocast():
        images = G(z, y)
        return images.float(), D(images, y).float()


def one_step(G, D, config, precision="none", GD=None):
    models = train_fns.Models(G, D, *train_fns.make_optimizers(G, D, config))
    step = train_fns.GAN_training_function(models, GD or BigGAN.G_D(G, D), None, config,
                                           acceleration.Precision(precision, torch.device("cpu")),
                                           "cpu")
    torch.manual_seed(2)
    x, y = torch.rand(4, 3, 32, 32) * 2 - 1, torch.randint(0, 3, (4,))
    return step(x, y, 1)


def test_channels_last_gives_the_contiguous_outputs_and_step():
    G, D, config = small_models()
    G2, D2 = copy.deepcopy(G), copy.deepcopy(D)
    acceleration.use_channels_last(G2, D2)
    assert G2.blocks[0][0].conv1.weight.is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(outputs(G, D), outputs(G2, D2)):
        assert torch.allclose(a, b, atol=1e-5)
    losses, losses2 = one_step(G, D, config), one_step(G2, D2, config)
    assert losses == pytest.approx(losses2, rel=1e-5, abs=1e-5)
    lr = config["G_lr"]
    for (name, p), p2 in zip(G.named_parameters(), G2.parameters()):
        # Biases that feed a BatchNorm have a true gradient of 0: Adam moves them by about +-lr on
        # rounding noise, which any change of summation order changes (tests/test_train_fns.py).
        bn_fed = name.endswith(".bias") and (name == "linear.bias" or ".conv" in name)
        assert torch.allclose(p, p2, atol=2 * lr if bn_fed else 1e-6), name


# bf16 keeps 8 bits of mantissa: each rounding is off by at most 2^-8 relative. A layer rounds its
# input, its weights and its output; over a path of L layers independent errors add in quadrature,
# about 2^-8 * sqrt(L) relative in RMS; BatchNorm's division by the batch's spread and the sum of
# the residual and shortcut paths can amplify it, hence twice that. Native or emulated, bf16 rounds
# the same way. A computation that is wrong, not rounded (a layout or a fused op gone astray), is
# off by order 1.
BF16_ROUNDOFF = 2 ** -8
# layers on the longest path of the small G or D with attention: linear, 3 x 2 convs, 4 in
# attention, ...
DEPTH = 16


def relative_rms(approx: torch.Tensor, exact: torch.Tensor) -> float:
    approx, exact = approx.detach(), exact.detach()
    return float((approx - exact).pow(2).mean().sqrt() / exact.pow(2).mean().sqrt())


def assert_within_bf16_rounding(approx: torch.Tensor, exact: torch.Tensor) -> None:
    error = relative_rms(approx, exact)
    assert error <= 2 * BF16_ROUNDOFF * DEPTH ** 0.5, error


def test_bf16_autocast_stays_close_to_fp32():
    G, D, _ = small_models()
    for exact, approx in zip(outputs(G, D), outputs(G, D, "bf16")):
        assert_within_bf16_rounding(approx, exact)


def test_fused_resampling_gives_the_contiguous_outputs_and_step():
    G, D, config = small_models()
    G2, D2 = copy.deepcopy(G), copy.deepcopy(D)
    # Every upsampling GBlock of G (32 px: 3) and every pooling DBlock of D (32 px: the first 2).
    assert acceleration.fuse_resampling(G2, D2) == 5
    for a, b in zip(outputs(G, D), outputs(G2, D2)):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)
    losses, losses2 = one_step(G, D, config), one_step(G2, D2, config)
    assert losses == pytest.approx(losses2, rel=1e-5, abs=1e-5)
    lr = config["G_lr"]
    for (name, p), p2 in zip(G.named_parameters(), G2.parameters()):
        bn_fed = name.endswith(".bias") and (name == "linear.bias" or ".conv" in name)  # as above
        assert torch.allclose(p, p2, atol=2 * lr if bn_fed else 1e-6), name


def test_bf16_with_channels_last_and_fused_resampling_stays_close_and_trains():
    G, D, config = small_models("BN")
    G2, D2 = copy.deepcopy(G), copy.deepcopy(D)
    acceleration.StepOptions(channels_last=True, fused_resampling=True).apply(G2, D2)
    for exact, approx in zip(outputs(G, D), outputs(G2, D2, "bf16")):
        assert_within_bf16_rounding(approx, exact)
    losses = one_step(G2, D2, config, "bf16")
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())


@pytest.mark.parametrize("official, expected", [(False, True), (True, False)])
def test_auto_options_are_on_unless_the_official_numerics_are_asked_for(official, expected):
    options = acceleration.StepOptions.choose("auto", "auto", official_numerics=official)
    assert (options.channels_last, options.fused_resampling, options.compile) == (expected,
                                                                                  expected, False)
    assert ("--official_numerics" if official else "auto: the same function") in options.describe()


def test_the_official_numerics_are_fp32_whatever_the_hardware():
    cpu = torch.device("cpu")
    assert acceleration.Precision("auto", cpu, official_numerics=True).dtype is None
    assert "--official_numerics" in acceleration.Precision("none", cpu, True).describe()
    with pytest.raises(utils.UsageError, match="--official_numerics .* drop --amp bf16"):
        acceleration.Precision("bf16", cpu, official_numerics=True)
    with pytest.raises(utils.UsageError, match="drop --channels_last"):
        acceleration.StepOptions.choose(channels_last="on", official_numerics=True)


def test_bf16_is_not_native_where_pytorch_is_capped_below_avx512(monkeypatch):
    """ATEN_CPU_CAPABILITY=avx2 (what an AVX2-only CPU gives) emulates bf16 even on a CPU that has
    AVX512-BF16, so --amp auto must pick fp32 there, as on the AVX2-only CPU it stands for."""
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert not acceleration.cpu_runs_bf16_natively()
    assert acceleration.Precision("auto", torch.device("cpu")).dtype is None


def test_given_options_win_over_auto():
    options = acceleration.StepOptions.choose("off", True, compile=True)
    assert (options.channels_last, options.fused_resampling, options.compile) == (False, True, True)
    with pytest.raises(utils.UsageError, match="--channels_last"):
        acceleration.StepOptions.choose(channels_last="yes")


@pytest.mark.skipif(os.environ.get("CGT_SLOW_TESTS") != "1",
                    reason="compiling takes minutes on a CPU; CGT_SLOW_TESTS=1 runs it "
                           "(experiments/bench.py exercises --compile)")
def test_compiled_step_gives_the_eager_step():
    G, D, config = small_models("BN")
    G2, D2 = copy.deepcopy(G), copy.deepcopy(D)
    GD = acceleration.compile_step_module(BigGAN.G_D(G2, D2))
    eager = [one_step(G, D, config) for _ in range(2)]
    compiled = [one_step(G2, D2, config, GD=GD) for _ in range(2)]  # the second: no recompilation
    assert not GD.failed and GD.compile_seconds > 0
    for a, b in zip(eager, compiled):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-4)


def test_compile_falls_back_to_eager_with_one_message(monkeypatch, capsys):
    def failing_compile(module):
        def compiled(*args, **kwargs):
            raise RuntimeError("no C compiler found\nmore details")
        return compiled
    monkeypatch.setattr(torch, "compile", failing_compile)
    G, D, _ = small_models()
    G.eval(), D.eval()  # no spectral-norm updates: calls repeat exactly
    GD = acceleration.compile_step_module(BigGAN.G_D(G, D))
    z, y = torch.randn(2, G.dim_z), torch.randint(0, 3, (2,))
    torch.manual_seed(0)
    eager = BigGAN.G_D(G, D)(z, y, train_G=True)
    torch.manual_seed(0)
    assert torch.equal(GD(z, y, train_G=True), eager)
    GD(z, y, train_G=True)
    out = capsys.readouterr().out
    assert out.count("--compile: torch.compile failed (RuntimeError: no C compiler found); running "
                     "eagerly") == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_the_cpu_step_reuses_freed_memory_instead_of_fresh_pages():
    """A 64 MB tensor freed and allocated again, as each iteration does with its activations: glibc
    by default returns it to the kernel (mmap), and every allocation touches 16384 fresh 4 kB pages,
    one page fault each; kept, once the heap has grown (a few allocations) it faults on none."""
    def faults_of_an_allocation() -> int:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.empty(2 ** 24).fill_(1)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    assert acceleration.keep_freed_memory(torch.device("cpu"))
    faults = [faults_of_an_allocation() for _ in range(6)]
    assert faults[-1] < 1000, faults
    assert not acceleration.keep_freed_memory(torch.device("meta"))
