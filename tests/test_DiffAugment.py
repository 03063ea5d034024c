"""DiffAugment.py: the paper's augmentations (Zhao et al. 2020), checked against their definitions,
and G_D showing D augmented images, fake and real, in both steps (and nothing changes when off)."""

import pytest
import torch
import torch.nn.functional as F

import BigGAN
import DiffAugment
import flags

POLICIES = ["color", "translation", "cutout", "color,translation,cutout"]


def images(batch=8, size=32, channels=3):
    return torch.rand(batch, channels, size, size) * 2 - 1


# --- Shape, dtype, device, gradients.

@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_keeps_shape_dtype_and_device(policy, dtype):
    x = images(4, 16).to(dtype)
    out = DiffAugment.DiffAugment(policy)(x)
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    assert torch.isfinite(out.float()).all()


@pytest.mark.parametrize("policy", POLICIES)
def test_gradients_flow_to_the_input(policy):
    x = images(4, 16).requires_grad_()
    DiffAugment.DiffAugment(policy)(x).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_cutout_gradient_is_the_kept_pixels_mask():
    x = images(6, 16).requires_grad_()
    out = DiffAugment.cutout(x)
    out.sum().backward()
    kept = (out != 0).to(x.dtype)  # random inputs are never exactly 0 outside the square
    assert torch.equal(x.grad, kept)


def test_translation_gradient_counts_each_input_pixel_at_most_once():
    x = images(6, 16).requires_grad_()
    DiffAugment.translation(x).sum().backward()
    assert set(x.grad.unique().tolist()) <= {0.0, 1.0}


# --- Off is off.

@pytest.mark.parametrize("off", ["", None, ",", " "])
def test_an_empty_policy_is_no_augmentation(off):
    assert DiffAugment.make_augment(off) is None


def test_policy_names_are_checked_and_normalized():
    assert DiffAugment.parse_policy(" color, translation,,cutout ") == ("color", "translation",
                                                                        "cutout")
    with pytest.raises(ValueError, match="'colour'.*color, translation, cutout"):
        DiffAugment.parse_policy("colour,translation")


def test_the_flag_refuses_an_unknown_policy_in_one_line_naming_the_flag(capsys):
    parser = flags.prepare_parser()
    assert parser.parse_args([]).DiffAugment == ""
    assert parser.parse_args(["--DiffAugment", "color, cutout"]).DiffAugment == "color,cutout"
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--DiffAugment", "color,rotation"])
    assert exit_info.value.code == 2
    error_lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(error_lines) == 1
    assert "argument --DiffAugment" in error_lines[0] and "'rotation'" in error_lines[0]


# --- Color: brightness, saturation, contrast by their definitions.

def least_squares_factor(delta_out, delta_in):
    """Per image, the scalar f with delta_out = f * delta_in (exact when the definition holds)."""
    dims = (1, 2, 3)
    return (delta_out * delta_in).sum(dims) / delta_in.square().sum(dims)


def test_brightness_adds_one_offset_per_image_within_half():
    x = images(64, 8)
    shift = DiffAugment.brightness(x) - x
    per_image = shift.mean((1, 2, 3))
    assert torch.allclose(shift, per_image.reshape(-1, 1, 1, 1).expand_as(shift), atol=1e-6)
    assert per_image.min() >= -0.5 and per_image.max() <= 0.5 and per_image.std() > 0.1


def test_saturation_scales_each_pixels_colour_around_its_grey_by_a_factor_in_0_2():
    x = images(64, 8)
    out = DiffAugment.saturation(x)
    grey = x.mean(1, keepdim=True)
    assert torch.allclose(out.mean(1, keepdim=True), grey, atol=1e-6)  # the grey value is kept
    factor = least_squares_factor(out - grey, x - grey)
    assert torch.allclose(out - grey, factor.reshape(-1, 1, 1, 1) * (x - grey), atol=1e-5)
    assert factor.min() >= 0 and factor.max() <= 2 and factor.std() > 0.2
    grey_image = x[:, :1].expand(-1, 3, -1, -1)
    assert torch.allclose(DiffAugment.saturation(grey_image), grey_image, atol=1e-6)


def test_contrast_scales_around_the_image_mean_by_a_factor_in_half_to_one_and_a_half():
    x = images(64, 8)
    out = DiffAugment.contrast(x)
    mean = x.mean((1, 2, 3), keepdim=True)
    assert torch.allclose(out.mean((1, 2, 3), keepdim=True), mean, atol=1e-6)
    factor = least_squares_factor(out - mean, x - mean)
    assert torch.allclose(out - mean, factor.reshape(-1, 1, 1, 1) * (x - mean), atol=1e-5)
    assert factor.min() >= 0.5 and factor.max() <= 1.5 and factor.std() > 0.1


def test_color_changes_images_within_the_range_its_definition_allows():
    x = images(256, 8)
    out = DiffAugment.DiffAugment("color")(x)
    assert not torch.allclose(out, x, atol=0.05)
    # From [-1, 1]: brightness |x| <= 1.5; saturation (1 - s) m + s x with s < 2: <= 1.5 + 2 * 1.5 =
    # 4.5; contrast (1 - c) m + c x with c < 1.5: <= 0.5 * 4.5 + 1.5 * 4.5 = 9.
    assert out.abs().max() <= 9
    assert 0.3 < out.std() < 3  # typical values stay image-like, not exploded


# --- Translation: the image moves by at most 1/8 of its size, zeros come in.

def shifted(image, dy, dx):
    """Oracle by slicing: output (i, j) = image (i - dy, j - dx), zero outside."""
    out = torch.zeros_like(image)
    H, W = image.shape[-2:]
    out[..., max(dy, 0):H + min(dy, 0), max(dx, 0):W + min(dx, 0)] = \
        image[..., max(-dy, 0):H + min(-dy, 0), max(-dx, 0):W + min(-dx, 0)]
    return out


def test_translation_shifts_each_image_by_at_most_an_eighth_with_zero_padding():
    size, batch = 32, 600
    # Every pixel distinct and non-zero, so a shift is recognized exactly.
    base = torch.arange(1, 3 * size * size + 1, dtype=torch.float32).reshape(3, size, size)
    out = DiffAugment.translation(base.expand(batch, -1, -1, -1))
    max_shift = size // 8
    seen = torch.zeros(batch, dtype=torch.long)
    shifts = set()
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            match = (out == shifted(base, dy, dx)).flatten(1).all(1)
            seen += match
            if match.any():
                shifts.add((dy, dx))
    # every image is exactly one such shift
    assert torch.equal(seen, torch.ones(batch, dtype=torch.long))
    assert len(shifts) == (2 * max_shift + 1) ** 2  # and every shift in the range occurs


# --- Cutout: a zeroed square of half the image's size around a random pixel.

def test_cutout_zeroes_a_half_size_square_centred_in_the_image():
    size, batch, half = 32, 800, 16
    out = DiffAugment.cutout(torch.ones(batch, 3, size, size))
    assert set(out.unique().tolist()) == {0.0, 1.0}
    zero = out == 0
    assert torch.equal(zero, zero[:, :1].expand_as(zero))  # the same pixels in every channel
    rows_hit, cols_hit = zero[:, 0].any(2), zero[:, 0].any(1)
    centres = {"rows": [], "cols": []}
    for i in range(batch):
        rows, cols = rows_hit[i].nonzero().flatten(), cols_hit[i].nonzero().flatten()
        r0, r1, c0, c1 = rows.min().item(), rows.max().item(), cols.min().item(), cols.max().item()
        rectangle = torch.zeros(size, size, dtype=torch.bool)
        rectangle[r0:r1 + 1, c0:c1 + 1] = True
        assert torch.equal(zero[i, 0], rectangle)  # one axis-aligned (possibly clipped) square
        for lo, hi, name in ((r0, r1, "rows"), (c0, c1, "cols")):
            extent = hi - lo + 1
            # less than half the size: cut by the border
            assert extent == half or lo == 0 or hi == size - 1
            # The square spans [centre - half/2, centre + half/2); whichever end shows gives the
            # centre.
            centres[name].append(lo + half // 2 if lo > 0 else hi + 1 - half // 2)
    for name, values in centres.items():
        # Centres lie on the image's pixels, every one of them occurs (uniform: ~25 each).
        assert sorted(set(values)) == list(range(size)), name


# --- Memory format and precision.

@pytest.mark.parametrize("policy", POLICIES)
def test_channels_last_input_gives_the_same_values_in_channels_last(policy):
    x = images(4, 16)
    augment = DiffAugment.DiffAugment(policy)
    torch.manual_seed(1)
    expected = augment(x)
    torch.manual_seed(1)
    out = augment(x.contiguous(memory_format=torch.channels_last))
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(out, expected, atol=1e-6)


# --- G_D: D sees augmented fake and real images, in the D step and the G step.

SMALL = dict(resolution=32, G_ch=4, D_ch=4, dim_z=16, shared_dim=8, G_attn="0", D_attn="0",
             G_init="N02", D_init="N02", n_classes=3)


class Recorder:
    """An augmentation that records the batches it saw (and returns them flipped: a visible
    change)."""

    def __init__(self):
        self.seen = []

    def __call__(self, x):
        self.seen.append(x.detach().clone())
        return x.flip(3)


def models():
    G, D = BigGAN.Generator(**SMALL).eval(), BigGAN.Discriminator(**SMALL).eval()
    return G, D


def step_inputs(G):
    return torch.randn(4, G.dim_z), torch.tensor([0, 1, 2, 1]), images(2), torch.tensor([0, 2])


def test_off_is_bit_identical_to_D_on_the_plain_images():
    G, D = models()
    z, gy, x, dy = step_inputs(G)
    with torch.no_grad():
        fake = G(z, G.class_input(gy))
        expected = torch.split(D(torch.cat([fake, x]), torch.cat([gy, dy])), [4, 2])
        for GD in (BigGAN.G_D(G, D), BigGAN.G_D(G, D, augment=DiffAugment.make_augment(""))):
            for got, want in zip(GD(z, gy, x, dy), expected):
                assert torch.equal(got, want)
            assert torch.equal(GD(z, gy, x, dy, split_D=True)[1], D(x, dy))


@pytest.mark.parametrize("split_D", [False, True])
def test_the_same_augmentation_sees_fake_and_real_before_D(split_D):
    G, D = models()
    z, gy, x, dy = step_inputs(G)
    augment = Recorder()
    with torch.no_grad():
        fake = G(z, G.class_input(gy))
        D_fake, D_real = BigGAN.G_D(G, D, augment=augment)(z, gy, x, dy, split_D=split_D)
        seen = torch.cat(augment.seen)
        assert torch.equal(seen, torch.cat([fake, x]))  # fake and real batches, nothing else
        assert len(augment.seen) == (2 if split_D else 1)
        assert torch.allclose(D_fake, D(fake.flip(3), gy), atol=1e-5)  # D got the augmented images
        assert torch.allclose(D_real, D(x.flip(3), dy), atol=1e-5)


@pytest.mark.parametrize("split_D", [False, True])
def test_the_G_step_backpropagates_through_the_augmentation(split_D):
    G, D = models()
    z, gy, _, _ = step_inputs(G)
    augment = Recorder()
    D_fake, G_z = BigGAN.G_D(G, D, augment=augment)(z, gy, train_G=True, split_D=split_D,
                                                    return_G_z=True)
    assert len(augment.seen) == 1 and torch.equal(augment.seen[0], G_z.detach())
    assert torch.allclose(D_fake, D(G_z.flip(3), gy), atol=1e-5)
    D_fake.mean().backward()
    assert G.linear.weight.grad is not None and G.linear.weight.grad.abs().sum() > 0


def test_a_training_step_with_every_policy_runs_under_bf16_autocast_on_cpu():
    G, D = BigGAN.Generator(**SMALL), BigGAN.Discriminator(**SMALL)
    z, gy, x, dy = step_inputs(G)
    GD = BigGAN.G_D(G, D, augment=DiffAugment.make_augment("color,translation,cutout"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        D_fake, D_real = GD(z, gy, x, dy, train_G=True)
        loss = F.relu(1 + D_fake).mean() + F.relu(1 - D_real).mean()
    loss.backward()
    assert torch.isfinite(loss) and G.linear.weight.grad is not None
    assert torch.isfinite(G.linear.weight.grad).all()
