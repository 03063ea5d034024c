"""Building blocks of BigGAN: spectral norm, self-attention, (conditional) batch norm, G and D
blocks.

The conditional BN (`ccbn`) is also where cGANTransfer's knowledge propagation lives: with
`n_pretrain_classes > 0`, the gain and bias of a new class are a learned combination of the old
classes' gains and biases (the prior-knowledge matrix), plus the projected hierarchical z and a
learned residual. Parameter and buffer names follow BigGAN-PyTorch and the official cGANTransfer
code so that their checkpoints load with strict=True.
"""
from __future__ import annotations

import functools
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------------------------------------
# Spectral normalization (BigGAN-PyTorch's formulation: buffers u{i} and sv{i}, one power
# iteration per forward, u updated in place in train mode only).

def _gram_schmidt(x: torch.Tensor, ys: list[torch.Tensor]) -> torch.Tensor:
    for y in ys:
        x = x - torch.mm(y, x.t()) * y / torch.mm(y, y.t())
    return x


def power_iteration(W: torch.Tensor, u_: list[torch.Tensor], update: bool = True,
                    eps: float = 1e-12):
    """One power-iteration step per singular vector; returns singular values (with grad), us, vs."""
    us, vs, svs = [], [], []
    for i, u in enumerate(u_):
        with torch.no_grad():
            v = F.normalize(_gram_schmidt(torch.matmul(u, W), vs), eps=eps)
            vs.append(v)
        # v W^T once, with grad: the official code computes it twice (for u without grad, for sigma
        # with), the same product both times.
        vWt = torch.matmul(v, W.t())
        with torch.no_grad():
            u = F.normalize(_gram_schmidt(vWt, us), eps=eps)
            us.append(u)
            if update:
                u_[i][:] = u
        svs.append(torch.squeeze(torch.matmul(vWt, u.t())))
    return svs, us, vs


def weight_matrix(weight: torch.Tensor) -> torch.Tensor:
    """The weight as a matrix of its output rows, a view in the weight's own memory order: a
    channels_last kernel's columns come (kh, kw, in) instead of (in, kh, kw). A permutation of the
    columns leaves the singular values and u as they are (only the rounding of the sums differs),
    and the view saves copying every kernel at every forward."""
    if (weight.dim() == 4 and not weight.is_contiguous()
            and weight.is_contiguous(memory_format=torch.channels_last)):
        weight = weight.permute(0, 2, 3, 1)
    return weight.reshape(weight.size(0), -1)


class SN:
    """Mixin that divides `self.weight` by its largest singular value, estimated by power
    iteration."""

    def __init__(self, num_svs: int, num_itrs: int, num_outputs: int, transpose: bool = False,
                 eps: float = 1e-12):
        self.num_itrs = num_itrs
        self.num_svs = num_svs
        self.transpose = transpose
        self.eps = eps
        for i in range(num_svs):
            self.register_buffer(f"u{i}", torch.randn(1, num_outputs))
            self.register_buffer(f"sv{i}", torch.ones(1))

    @property
    def u(self) -> list[torch.Tensor]:
        return [getattr(self, f"u{i}") for i in range(self.num_svs)]

    @property
    def sv(self) -> list[torch.Tensor]:
        return [getattr(self, f"sv{i}") for i in range(self.num_svs)]

    def W_(self) -> torch.Tensor:
        W_mat = weight_matrix(self.weight)
        if self.transpose:
            W_mat = W_mat.t()
        # In fp32 under autocast too, as the official code estimates sigma: bf16 matrix-vector
        # products would round sigma to 3 digits and cast the whole weight for each of them.
        with torch.autocast(self.weight.device.type, enabled=False):
            for _ in range(self.num_itrs):
                svs, _, _ = power_iteration(W_mat, self.u, update=self.training, eps=self.eps)
        if self.training:
            with torch.no_grad():
                for i, sv in enumerate(svs):
                    self.sv[i][:] = sv
        return self.weight / svs[0]


class SNConv2d(nn.Conv2d, SN):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, num_svs=1, num_itrs=1, eps=1e-12):
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation,
                           groups, bias)
        SN.__init__(self, num_svs, num_itrs, out_channels, eps=eps)

    def forward(self, x):
        return F.conv2d(x, self.W_(), self.bias, self.stride, self.padding, self.dilation,
                        self.groups)


class SNLinear(nn.Linear, SN):
    def __init__(self, in_features, out_features, bias=True, num_svs=1, num_itrs=1, eps=1e-12):
        nn.Linear.__init__(self, in_features, out_features, bias)
        SN.__init__(self, num_svs, num_itrs, out_features, eps=eps)

    def forward(self, x):
        return F.linear(x, self.W_(), self.bias)


class SNEmbedding(nn.Embedding, SN):
    def __init__(self, num_embeddings, embedding_dim, num_svs=1, num_itrs=1, eps=1e-12):
        nn.Embedding.__init__(self, num_embeddings, embedding_dim)
        SN.__init__(self, num_svs, num_itrs, num_embeddings, eps=eps)

    def forward(self, x):
        return F.embedding(x, self.W_())


# ---------------------------------------------------------------------------------------------
# Self-attention (SAGAN), with G/D's conv type.

class Attention(nn.Module):
    def __init__(self, ch: int, which_conv: Callable = SNConv2d):
        super().__init__()
        self.ch = ch
        conv1x1 = functools.partial(which_conv, kernel_size=1, padding=0, bias=False)
        self.theta = conv1x1(ch, ch // 8)
        self.phi = conv1x1(ch, ch // 8)
        self.g = conv1x1(ch, ch // 2)
        self.o = conv1x1(ch // 2, ch)
        self.gamma = nn.Parameter(torch.tensor(0.0))

    def forward(self, x, y=None):
        n = x.shape[2] * x.shape[3]
        # reshape, not view: with channels_last the feature maps are not contiguous in NCHW order.
        theta = self.theta(x).reshape(-1, self.ch // 8, n)
        phi = F.max_pool2d(self.phi(x), [2, 2]).reshape(-1, self.ch // 8, n // 4)
        g = F.max_pool2d(self.g(x), [2, 2]).reshape(-1, self.ch // 2, n // 4)
        beta = F.softmax(torch.bmm(theta.transpose(1, 2), phi), -1)
        o = self.o(torch.bmm(g, beta.transpose(1, 2)).reshape(-1, self.ch // 2, x.shape[2],
                                                              x.shape[3]))
        return self.gamma * o + x


# ---------------------------------------------------------------------------------------------
# Batch norm variants.

def fused_bn(x, mean, var, gain=None, bias=None, eps=1e-5):
    scale = torch.rsqrt(var + eps)
    if gain is not None:
        scale = scale * gain
    shift = mean * scale
    if bias is not None:
        shift = shift - bias
    return x * scale - shift


def manual_bn(x, gain=None, bias=None, return_mean_var=False, eps=1e-5):
    """Batch norm with statistics in float32 (stable under fp16/bf16 inputs)."""
    float_x = x.float()
    m = torch.mean(float_x, [0, 2, 3], keepdim=True)
    var = torch.mean(float_x ** 2, [0, 2, 3], keepdim=True) - m ** 2
    var, m = var.type(x.type()), m.type(x.type())
    out = fused_bn(x, m, var, gain, bias, eps)
    return (out, m.squeeze(), var.squeeze()) if return_mean_var else out


class myBN(nn.Module):
    """BigGAN-PyTorch's own BN, which can also accumulate 'standing' statistics for sampling."""

    def __init__(self, num_channels: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.momentum = momentum
        self.eps = eps
        self.register_buffer("stored_mean", torch.zeros(num_channels))
        self.register_buffer("stored_var", torch.ones(num_channels))
        self.register_buffer("accumulation_counter", torch.zeros(1))
        self.accumulate_standing = False

    def reset_stats(self):
        self.stored_mean[:] = 0
        self.stored_var[:] = 0
        self.accumulation_counter[:] = 0

    def forward(self, x, gain, bias):
        if self.training:
            out, mean, var = manual_bn(x, gain, bias, return_mean_var=True, eps=self.eps)
            with torch.no_grad():
                if self.accumulate_standing:
                    self.stored_mean[:] = self.stored_mean + mean
                    self.stored_var[:] = self.stored_var + var
                    self.accumulation_counter += 1.0
                else:
                    self.stored_mean[:] = (self.stored_mean * (1 - self.momentum)
                                           + mean * self.momentum)
                    self.stored_var[:] = self.stored_var * (1 - self.momentum) + var * self.momentum
            return out
        mean = self.stored_mean.view(1, -1, 1, 1)
        var = self.stored_var.view(1, -1, 1, 1)
        if self.accumulate_standing:
            mean = mean / self.accumulation_counter
            var = var / self.accumulation_counter
        return fused_bn(x, mean, var, gain, bias, self.eps)


def groupnorm(x, norm_style: str):
    if "ch" in norm_style:
        groups = max(int(x.shape[1]) // int(norm_style.split("_")[-1]), 1)
    elif "grp" in norm_style:
        groups = int(norm_style.split("_")[-1])
    else:
        groups = 16
    return F.group_norm(x, groups)


class _Normalizer(nn.Module):
    """Shared normalization of bn and ccbn: BigGAN-PyTorch's buffers, myBN, or cross-replica BN."""

    def _init_norm(self, output_size: int, eps: float, momentum: float, cross_replica: bool,
                   mybn: bool, norm_style: str):
        self.output_size, self.eps, self.momentum = output_size, eps, momentum
        self.cross_replica, self.mybn, self.norm_style = cross_replica, mybn, norm_style
        if cross_replica:
            # Statistics are synchronized across DDP processes; affine part applied by us.
            self.bn = nn.SyncBatchNorm(output_size, eps=eps, momentum=momentum, affine=False)
        elif mybn:
            self.bn = myBN(output_size, eps, momentum)
        elif norm_style in ("bn", "in"):
            self.register_buffer("stored_mean", torch.zeros(output_size))
            self.register_buffer("stored_var", torch.ones(output_size))

    def normalize_affine(self, x, gain, bias):
        if self.mybn:
            return self.bn(x, gain=gain, bias=bias)
        if self.cross_replica:
            out = self.bn(x)
        elif self.norm_style == "bn":
            out = F.batch_norm(x, self.stored_mean, self.stored_var, None, None, self.training,
                               0.1, self.eps)
        elif self.norm_style == "in":
            out = F.instance_norm(x, self.stored_mean, self.stored_var, None, None, self.training,
                                  0.1, self.eps)
        elif self.norm_style == "gn":
            out = groupnorm(x, self.norm_style)
        else:  # 'nonorm'
            out = x
        return out * gain + bias


class bn(_Normalizer):
    """Unconditional BN (G's output layer)."""

    def __init__(self, output_size: int, eps: float = 1e-5, momentum: float = 0.1,
                 cross_replica: bool = False, mybn: bool = False):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(output_size))
        self.bias = nn.Parameter(torch.zeros(output_size))
        self._init_norm(output_size, eps, momentum, cross_replica, mybn, "bn")

    def forward(self, x, y=None):
        if self.cross_replica or self.mybn:
            return self.normalize_affine(x, self.gain.view(1, -1, 1, 1),
                                         self.bias.view(1, -1, 1, 1))
        return F.batch_norm(x, self.stored_mean, self.stored_var, self.gain, self.bias,
                            self.training, self.momentum, self.eps)


# The two official transfer variants differ only in which layers build the knowledge-propagation
# path. 'imagenet' (the main official code): combination, prior and z-projection are spectrally
# normalized, the prior has no bias. 'cifar' (the official cifar/ code): all plain nn.Linear, the
# prior with a bias. In both, the residuals are bias-free nn.Linear.
KP_VARIANTS = ("imagenet", "cifar")


def _apply_class_layer(layer: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """layer(y); a float y into an embedding is a soft class vector, i.e. that mix of its rows."""
    if isinstance(layer, nn.Embedding) and y.is_floating_point():
        weight = layer.W_() if isinstance(layer, SN) else layer.weight
        return y.to(weight.dtype) @ weight
    return layer(y)


class ccbn(_Normalizer):
    """Class-conditional BN; with n_pretrain_classes > 0, the knowledge-propagation ccbn.

    Source model: gain = 1 + gain_layer(y), bias = bias_layer(y), where y is the shared class
    embedding (+ this block's z chunk when hierarchical), or class indices into an embedding.

    Transfer model (y = one-hot of the new class, + z chunk when hierarchical):
        gain = 1 + prev_knowledge_g(comb_layer_g(y)) + z_layer_g(z) + res_g(y)
        bias =     prev_knowledge_b(comb_layer_b(y)) + z_layer_b(z) + res_b(y)
    prev_knowledge_* hold the old classes' gains/biases as columns (set by
    Generator.load_previous_knowledge from the pretrained gain/bias layers, which stay here: with
    forward(x, y, old_classes=True) they still give the old classes, see old_class_gain_bias).
    """

    def __init__(self, output_size: int, input_size: int, which_linear: Callable, eps: float = 1e-5,
                 momentum: float = 0.1, cross_replica: bool = False, mybn: bool = False,
                 norm_style: str = "bn", n_classes: int = 0, n_pretrain_classes: int = 0,
                 z_chunk_size: int = 0, pretrain_embedding_w: nn.Parameter | None = None,
                 kp_variant: str = "imagenet", SN_eps: float = 1e-12, num_svs: int = 1,
                 num_itrs: int = 1):
        super().__init__()
        self.input_size = input_size
        self.n_classes, self.n_pretrain_classes = n_classes, n_pretrain_classes
        self.z_chunk_size = z_chunk_size
        if self.has_knowledge_propagation and pretrain_embedding_w is not None:
            # The official code registers G.shared.weight in every ccbn; kept for its checkpoints.
            self.pretrain_embedding_w = pretrain_embedding_w
        self._init_norm(output_size, eps, momentum, cross_replica, mybn, norm_style)
        self.gain = which_linear(input_size, output_size)
        self.bias = which_linear(input_size, output_size)
        if self.has_knowledge_propagation:
            self._build_knowledge_propagation(kp_variant, SN_eps, num_svs, num_itrs)

    @property
    def has_knowledge_propagation(self) -> bool:
        """True for a transfer model of the BN/FT stages (n_pretrain_classes > 0); the baselines
        transfer too, but through a plain model of the new classes."""
        return self.n_pretrain_classes > 0

    def _build_knowledge_propagation(self, kp_variant, SN_eps, num_svs, num_itrs):
        if kp_variant not in KP_VARIANTS:
            raise ValueError(f"kp_variant must be one of {KP_VARIANTS}, got {kp_variant!r}")
        out, n_new, n_old = self.output_size, self.n_classes, self.n_pretrain_classes
        if kp_variant == "imagenet":
            # Official: the combination and z layers are SNLinear with their default eps.
            kp_linear = SNLinear
            prior_linear = functools.partial(SNLinear, bias=False, num_svs=num_svs,
                                             num_itrs=num_itrs, eps=SN_eps)
        else:
            kp_linear = prior_linear = nn.Linear
        self.comb_layer_g = kp_linear(n_new, n_old)
        self.comb_layer_b = kp_linear(n_new, n_old)
        self.prev_knowledge_g = prior_linear(n_old, out)
        self.prev_knowledge_b = prior_linear(n_old, out)
        if self.z_chunk_size > 0:
            self.z_layer_g = kp_linear(self.z_chunk_size, out)
            self.z_layer_b = kp_linear(self.z_chunk_size, out)
        self.res_g = nn.Linear(n_new, out, bias=False)
        self.res_b = nn.Linear(n_new, out, bias=False)

    @torch.no_grad()
    def start_at_old_class_mean(self) -> None:
        """Every new class's gain and bias become the old classes' mean (combination 1/n_old, no
        biases, no residual): the baselines' start, with knowledge propagation still free to move.
        The official init instead leaves the combination random and its biases at PyTorch's default
        U(±1/sqrt(fan_in)), which puts the new classes far outside the old classes' spread."""
        if isinstance(self.comb_layer_g, SN):
            raise ValueError("the old classes' mean needs plain combination layers (kp_variant "
                             "'cifar')")
        for comb, prior, res in ((self.comb_layer_g, self.prev_knowledge_g, self.res_g),
                                 (self.comb_layer_b, self.prev_knowledge_b, self.res_b)):
            comb.weight.fill_(1.0 / self.n_pretrain_classes)
            comb.bias.zero_()
            prior.bias.zero_()
            res.weight.zero_()

    def class_gain_bias(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample gain and bias, shaped [B, C]."""
        if not self.has_knowledge_propagation:
            return 1 + self.gain(y), self.bias(y)
        cl, z = y[:, :self.n_classes], y[:, self.n_classes:]
        gain = 1 + self.prev_knowledge_g(self.comb_layer_g(cl)) + self.res_g(cl)
        bias = self.prev_knowledge_b(self.comb_layer_b(cl)) + self.res_b(cl)
        if self.z_chunk_size > 0:
            gain = gain + self.z_layer_g(z)
            bias = bias + self.z_layer_b(z)
        return gain, bias

    def old_class_gain_bias(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample gain and bias [B, C] of the OLD classes of a knowledge-propagation ccbn,
        computed exactly as the source BigGAN did: gain = 1 + gain(y), bias = bias(y) through the
        pretrained gain/bias layers, which knowledge loading keeps (and no stage trains). y is the
        source's BN input: the shared embedding of the old class (+ z chunk with hier), the one-hot
        old class (+ z chunk; non-shared hier), or old-class indices into the gain/bias embeddings.

        The layers are applied with their own parameterization: spectrally normalized ones divide
        by their estimated sigma, as in the source, whereas the prior matrix holds the raw weights
        (see Generator.load_previous_knowledge). A float y for the embeddings is a soft class vector
        over the old classes (a mix of their rows), like a float y on the new-class path."""
        if not self.has_knowledge_propagation:
            raise RuntimeError("old_class_gain_bias needs a knowledge-propagation ccbn "
                               "(n_pretrain_classes > 0); a source ccbn's classes are its own: use "
                               "class_gain_bias")
        return 1 + _apply_class_layer(self.gain, y), _apply_class_layer(self.bias, y)

    def forward(self, x, y, old_classes: bool = False):
        gain, bias = self.old_class_gain_bias(y) if old_classes else self.class_gain_bias(y)
        return self.normalize_affine(x, gain.view(y.size(0), -1, 1, 1),
                                     bias.view(y.size(0), -1, 1, 1))

    def extra_repr(self):
        return (f"out: {self.output_size}, in: {self.input_size}, "
                f"cross_replica={self.cross_replica}"
                + (f", old classes: {self.n_pretrain_classes}, new: {self.n_classes}"
                   if self.has_knowledge_propagation else ""))


# ---------------------------------------------------------------------------------------------
# Resampling folded into the neighbouring 3x3 convolution (the blocks' fused_resampling, set by
# acceleration.py): the same linear maps with fewer multiply-adds, so equal up to rounding.

# Per axis, which taps of a 3x3 kernel (padding 1) make each tap of the equivalent 4-tap kernel.
# Nearest 2x upsampling then the conv = a stride-2 transposed conv of the small input: output row
# 2m sees input rows m-1 (tap 0) and m (taps 1+2), row 2m+1 rows m (taps 0+1) and m+1 (tap 2).
_UPSAMPLE_TAPS = ((0, 0, 1), (0, 1, 1), (1, 1, 0), (1, 0, 0))


def _four_taps(w: torch.Tensor, dim: int) -> torch.Tensor:
    # Plain additions (no einsum): autocast leaves them in the weight's precision.
    rows = w.unbind(dim)
    return torch.stack([functools.reduce(torch.add, [r for r, t in zip(rows, tap) if t])
                        for tap in _UPSAMPLE_TAPS], dim)


def _upsample_kernel(w: torch.Tensor) -> torch.Tensor:
    """A 3x3 conv's weight [out, in, 3, 3] as the [in, out, 4, 4] kernel of the equivalent stride-2
    transposed conv, channels_last in memory. The taps are summed over the 3x3 kernel laid out as
    [in, 3, 3, out], so the 4x4 kernel comes out in the order oneDNN reads without being
    transposed itself: the same sums, 3x faster at 256 channels (docs/performance.md)."""
    kernel = _four_taps(_four_taps(w.permute(1, 2, 3, 0).contiguous(), 1), 2)  # [in, 4, 4, out]
    return kernel.permute(0, 3, 1, 2)


def _conv_weight(conv: nn.Conv2d) -> torch.Tensor:
    return conv.W_() if isinstance(conv, SN) else conv.weight


def _like_input(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # A kernel in the input's memory format: oneDNN then runs the conv without reordering it.
    channels_last = x.is_contiguous(memory_format=torch.channels_last)
    return w.contiguous(memory_format=torch.channels_last if channels_last
                        else torch.contiguous_format)


def upsample_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """conv(nearest 2x upsampling of x) for a 3x3, padding-1 conv: 16 instead of 36 multiply-adds
    per 2x2 block of output pixels, and no upsampled copy of x."""
    kernel = _upsample_kernel(_conv_weight(conv))
    return F.conv_transpose2d(x, _like_input(kernel, x), conv.bias, stride=2, padding=1)


class BoxAverage(torch.autograd.Function):
    """The 2x2 averages of the zero-padded x at stride 1 (avg_pool2d(x, 2, stride=1, padding=1)),
    whose gradient is the 2x2 averages of the output's gradient without padding: a box filter's
    adjoint is the box filter. As a forward pooling the gradient runs 1.2-4.6x faster on CPU than
    PyTorch's pooling backward (docs/performance.md), and it is the same linear map."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2, stride=1, padding=1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(grad, 2, stride=1)


def conv_avgpool(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """2x2 average pooling of conv(x) for a 3x3, padding-1 conv: the same conv at stride 2 over the
    2x2 averages of the zero-padded x (both are linear filters, so they commute), 9 instead of 36
    multiply-adds per output pixel, and no full-resolution output."""
    # Window p covers rows p-1 and p: the padded border's half-windows are what the conv's own
    # zero padding puts under the pooled edge.
    averaged = BoxAverage.apply(x)
    return F.conv2d(averaged, _like_input(_conv_weight(conv), averaged), conv.bias, stride=2)


def is_plain_3x3(conv: nn.Module) -> bool:
    return (isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.padding == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1)


# ---------------------------------------------------------------------------------------------
# Residual blocks.

class GBlock(nn.Module):
    def __init__(self, in_channels, out_channels, which_conv=nn.Conv2d, which_bn=bn,
                 activation=None, upsample=None):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.activation = activation
        self.conv1 = which_conv(in_channels, out_channels)
        self.conv2 = which_conv(out_channels, out_channels)
        self.learnable_sc = in_channels != out_channels or upsample is not None
        if self.learnable_sc:
            self.conv_sc = which_conv(in_channels, out_channels, kernel_size=1, padding=0)
        self.bn1 = which_bn(in_channels)
        self.bn2 = which_bn(out_channels)
        self.upsample = upsample
        # acceleration.py may set it (nearest 2x upsample, 3x3 conv1): same outputs up to rounding.
        self.fused_resampling = False

    def forward(self, x, y, old_classes: bool = False):
        # old_classes (ccbn only): the old classes' path of a knowledge-propagation G.
        bn_kwargs = {"old_classes": True} if old_classes else {}
        h = self.activation(self.bn1(x, y, **bn_kwargs))
        if self.upsample and self.fused_resampling:
            h = upsample_conv(self.conv1, h)
        else:
            if self.upsample:
                h = self.upsample(h)
                x = self.upsample(x)
            h = self.conv1(h)
        h = self.activation(self.bn2(h, y, **bn_kwargs))
        h = self.conv2(h)
        if self.learnable_sc:
            x = self.conv_sc(x)
        if self.upsample and self.fused_resampling:
            # after the 1x1 conv_sc, which commutes with it: 4x fewer multiply-adds
            x = self.upsample(x)
        return h + x


class DBlock(nn.Module):
    def __init__(self, in_channels, out_channels, which_conv=SNConv2d, wide=True,
                 preactivation=False, activation=None, downsample=None):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        hidden_channels = out_channels if wide else in_channels
        self.preactivation = preactivation
        self.activation = activation
        self.downsample = downsample
        self.conv1 = which_conv(in_channels, hidden_channels)
        self.conv2 = which_conv(hidden_channels, out_channels)
        self.learnable_sc = in_channels != out_channels or downsample is not None
        if self.learnable_sc:
            self.conv_sc = which_conv(in_channels, out_channels, kernel_size=1, padding=0)
        # acceleration.py may set it (AvgPool2d(2), 3x3 conv2): same outputs up to rounding.
        self.fused_resampling = False

    def shortcut(self, x):
        # Fused: pooling first even with preactivation; the 1x1 conv_sc commutes with it (4x fewer
        # multiply-adds).
        if self.preactivation and not self.fused_resampling:
            if self.learnable_sc:
                x = self.conv_sc(x)
            if self.downsample:
                x = self.downsample(x)
        else:
            if self.downsample:
                x = self.downsample(x)
            if self.learnable_sc:
                x = self.conv_sc(x)
        return x

    def forward(self, x):
        # Out-of-place ReLU: an in-place one would corrupt x, which the shortcut still needs.
        h = F.relu(x) if self.preactivation else x
        h = self.conv1(h)
        if self.downsample and self.fused_resampling:
            return conv_avgpool(self.conv2, self.activation(h)) + self.shortcut(x)
        h = self.conv2(self.activation(h))
        if self.downsample:
            h = self.downsample(h)
        return h + self.shortcut(x)
