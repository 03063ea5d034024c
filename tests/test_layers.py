"""layers.py: spectral norm, batch-norm variants and the conditional BN of a source model."""
import functools

import pytest
import torch
import torch.nn.functional as F

import layers


def test_spectral_norm_converges_to_the_top_singular_value_in_train_mode():
    layer = layers.SNLinear(20, 30)
    true_sigma = torch.linalg.matrix_norm(layer.weight.detach(), ord=2)
    for _ in range(200):
        layer(torch.randn(2, 20))
    assert torch.allclose(layer.sv0, true_sigma, rtol=1e-3)
    assert torch.allclose(torch.linalg.matrix_norm(layer.W_().detach(), ord=2), torch.tensor(1.0),
                          rtol=1e-3)


def test_spectral_norm_estimates_sigma_in_fp32_under_bf16_autocast():
    # As the official fp32 code: the power iteration is not autocast's to round (bf16 would keep
    # sigma to 3 digits). The oracle is the same layer stepped without autocast.
    torch.manual_seed(0)
    under_autocast = layers.SNConv2d(16, 32, kernel_size=3, padding=1)
    plain = layers.SNConv2d(16, 32, kernel_size=3, padding=1)
    plain.load_state_dict(under_autocast.state_dict())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        W_autocast = under_autocast.W_()
    W_plain = plain.W_()
    assert W_autocast.dtype == torch.float32
    assert torch.equal(W_autocast, W_plain)
    assert torch.equal(under_autocast.u0, plain.u0) and torch.equal(under_autocast.sv0, plain.sv0)


def test_weight_matrix_of_a_channels_last_kernel_is_a_view_with_permuted_columns():
    w = torch.randn(8, 5, 3, 3)
    w_channels_last = w.contiguous(memory_format=torch.channels_last)
    matrix = layers.weight_matrix(w_channels_last)
    assert matrix.data_ptr() == w_channels_last.data_ptr()  # no copy
    assert torch.equal(matrix, w.permute(0, 2, 3, 1).reshape(8, 45))  # columns (kh, kw, in)
    assert torch.equal(layers.weight_matrix(w), w.reshape(8, 45))  # columns (in, kh, kw)


def test_spectral_norm_of_a_channels_last_conv_is_that_of_the_contiguous_conv():
    # The column order only changes the rounding of the sums: sigma, u and W agree to fp32 rounding.
    torch.manual_seed(0)
    contiguous = layers.SNConv2d(16, 32, kernel_size=3, padding=1)
    channels_last = layers.SNConv2d(16, 32, kernel_size=3, padding=1)
    channels_last.load_state_dict(contiguous.state_dict())
    channels_last.to(memory_format=torch.channels_last)
    for _ in range(5):
        W_contiguous, W_channels_last = contiguous.W_(), channels_last.W_()
    assert torch.allclose(channels_last.sv0, contiguous.sv0, rtol=1e-6, atol=0)
    assert torch.allclose(channels_last.u0, contiguous.u0, rtol=0, atol=1e-6)
    assert torch.allclose(W_channels_last, W_contiguous, rtol=1e-6, atol=1e-9)


def test_spectral_norm_does_not_move_u_in_eval_mode():
    layer = layers.SNConv2d(3, 8, kernel_size=3, padding=1).eval()
    u, sv = layer.u0.clone(), layer.sv0.clone()
    layer(torch.randn(2, 3, 8, 8))
    assert torch.equal(layer.u0, u) and torch.equal(layer.sv0, sv)


def test_source_ccbn_applies_one_plus_class_gain_and_class_bias():
    bn = layers.ccbn(4, 3, which_linear=torch.nn.Embedding).eval()
    x, y = torch.randn(2, 4, 5, 5), torch.tensor([0, 2])
    gain, bias = 1 + bn.gain.weight[y], bn.bias.weight[y]
    expected = (x / torch.sqrt(torch.tensor(1 + 1e-5)) * gain[:, :, None, None]
                + bias[:, :, None, None])
    assert torch.allclose(bn(x, y), expected, atol=1e-5)


def test_mybn_standing_statistics_average_the_batches():
    bn = layers.myBN(3)
    batches = [torch.randn(8, 3, 4, 4) * (i + 1) + i for i in range(4)]
    bn.reset_stats()
    bn.accumulate_standing = True
    for x in batches:
        bn(x, gain=torch.ones(1, 3, 1, 1), bias=torch.zeros(1, 3, 1, 1))
    means = torch.stack([x.mean([0, 2, 3]) for x in batches]).mean(0)
    assert torch.allclose(bn.stored_mean / bn.accumulation_counter, means, atol=1e-5)


def test_fused_bn_equals_batch_norm_with_affine():
    x = torch.randn(6, 3, 4, 4)
    mean, var = x.mean([0, 2, 3]), x.var([0, 2, 3], unbiased=False)
    gain, bias = torch.rand(3) + 0.5, torch.randn(3)
    reference = F.batch_norm(x, mean, var, gain, bias, False, 0.0, 1e-5)
    out = layers.fused_bn(x, mean.view(1, -1, 1, 1), var.view(1, -1, 1, 1), gain.view(1, -1, 1, 1),
                          bias.view(1, -1, 1, 1))
    assert torch.allclose(out, reference, atol=1e-5)


def test_old_class_path_of_a_knowledge_propagation_ccbn_is_the_source_ccbn():
    """Same pretrained gain/bias weights (and SN state): the old classes get the source's gain and
    bias, with the source's parameterization (W / sigma), whatever the knowledge-propagation layers
    hold."""
    linear = functools.partial(layers.SNLinear, bias=False)
    source = layers.ccbn(6, 5, which_linear=linear).eval()
    transfer = layers.ccbn(6, 5, which_linear=linear, n_classes=2, n_pretrain_classes=5).eval()
    transfer.load_state_dict(source.state_dict(), strict=False)
    y = torch.randn(3, 5)
    for got, want in zip(transfer.old_class_gain_bias(y), source.class_gain_bias(y)):
        assert torch.equal(got, want)
    x = torch.randn(3, 6, 4, 4)
    assert torch.equal(transfer(x, y, old_classes=True), source(x, y))
    with pytest.raises(RuntimeError, match="knowledge-propagation"):
        source.old_class_gain_bias(y)


def test_a_soft_old_class_vector_mixes_the_old_classes_embedding_rows():
    transfer = layers.ccbn(4, 3, which_linear=torch.nn.Embedding, n_classes=2,
                           n_pretrain_classes=3).eval()
    mix = torch.tensor([[0.25, 0.0, 0.75]])
    gain, bias = transfer.old_class_gain_bias(mix)
    assert torch.allclose(gain, 1 + 0.25 * transfer.gain.weight[0] + 0.75 * transfer.gain.weight[2])
    assert torch.allclose(bias, 0.25 * transfer.bias.weight[0] + 0.75 * transfer.bias.weight[2])


@pytest.mark.parametrize("size", [8, 5])
def test_fused_resampling_computes_the_official_resampling_and_conv_in_float64(size):
    # Oracle: the official order (nn.Upsample then the conv; the conv then AvgPool2d), in float64
    # so that only a different function, not rounding, could differ.
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 6, 3, padding=1).double()
    x = torch.randn(2, 4, size, size, dtype=torch.float64)
    upsampled = F.interpolate(x, scale_factor=2, mode="nearest")
    assert torch.allclose(layers.upsample_conv(conv, x), conv(upsampled), rtol=0, atol=1e-12)
    pooled = F.avg_pool2d(conv(x), 2)
    assert torch.allclose(layers.conv_avgpool(conv, x), pooled, rtol=0, atol=1e-12)


@pytest.mark.parametrize("size", [8, 5])
def test_fused_resampling_has_the_gradients_of_the_official_order_in_float64(size):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 6, 3, padding=1).double()
    x = torch.randn(2, 4, size, size, dtype=torch.float64, requires_grad=True)
    inputs = [x, conv.weight, conv.bias]
    for fused_op, official_out in (
            (layers.upsample_conv, conv(F.interpolate(x, scale_factor=2, mode="nearest"))),
            (layers.conv_avgpool, F.avg_pool2d(conv(x), 2))):
        out_grad = torch.randn_like(official_out)
        official = torch.autograd.grad(official_out, inputs, out_grad)
        fused = torch.autograd.grad(fused_op(conv, x), inputs, out_grad)
        for ours, theirs in zip(fused, official):
            assert torch.allclose(ours, theirs, rtol=0, atol=1e-12)


def test_box_average_is_avg_pool2d_with_its_gradient():
    # Oracle: PyTorch's own avg_pool2d and its backward, in float64 (a 5x6 map: rows are not
    # columns).
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    out_grad = torch.randn(2, 3, 6, 7, dtype=torch.float64)
    ours, theirs = layers.BoxAverage.apply(x), F.avg_pool2d(x, 2, stride=1, padding=1)
    assert torch.equal(ours, theirs)
    assert torch.allclose(torch.autograd.grad(ours, x, out_grad)[0],
                          torch.autograd.grad(theirs, x, out_grad)[0], rtol=0, atol=1e-12)


def two_product_power_iteration(W, u_, eps=1e-12):
    """BigGAN-PyTorch's power iteration as its formula reads (one singular vector, so no
    Gram-Schmidt): v = normalize(u W), u' = normalize(v W^T), and sigma = (v W^T) u'^T with v W^T
    computed a second time, with grad."""
    with torch.no_grad():
        v = F.normalize(torch.matmul(u_[0], W), eps=eps)
        u = F.normalize(torch.matmul(v, W.t()), eps=eps)
        u_[0][:] = u
    return torch.squeeze(torch.matmul(torch.matmul(v, W.t()), u.t()))


def test_power_iteration_is_bit_identical_to_the_two_product_formula():
    # layers.power_iteration computes v W^T once (with grad) and reuses it for u and sigma: the same
    # product of the same tensors, so nothing may change, not even the last bit of a gradient.
    torch.manual_seed(0)
    W_ours = torch.randn(32, 144, requires_grad=True)
    W_formula = W_ours.detach().clone().requires_grad_()
    u_ours = [torch.randn(1, 32)]
    u_formula = [u_ours[0].clone()]
    for _ in range(3):
        sigma_ours = layers.power_iteration(W_ours, u_ours)[0][0]
        sigma_formula = two_product_power_iteration(W_formula, u_formula)
        sigma_ours.backward()
        sigma_formula.backward()
        assert torch.equal(sigma_ours, sigma_formula) and torch.equal(u_ours[0], u_formula[0])
        assert torch.equal(W_ours.grad, W_formula.grad)
