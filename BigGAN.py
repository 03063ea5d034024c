"""BigGAN's generator and discriminator, and their cGANTransfer variants.

A model is a *source* model (plain BigGAN-PyTorch) when n_pretrain_classes == 0, and a *transfer*
model when n_pretrain_classes > 0: then n_classes counts the new classes, every ccbn of G carries
the knowledge-propagation layers (see layers.ccbn) and D gets a fresh projection embedding
`new_embed` for the new classes. Constructors take the whole config as keyword arguments and
ignore unknown keys, like BigGAN-PyTorch's. Optimizers live in the training code, not here.
"""
from __future__ import annotations

import functools
import inspect
import re
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn import init

import layers

ACTIVATIONS = {
    "relu": lambda: nn.ReLU(inplace=False),
    "inplace_relu": lambda: nn.ReLU(inplace=True),
    "ir": lambda: nn.ReLU(inplace=True),
}


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def _attention_at(attention: str, exponents: range) -> dict[int, bool]:
    wanted = [int(item) for item in str(attention).split("_")]
    return {2 ** i: 2 ** i in wanted for i in exponents}


def G_arch(ch: int = 64, attention: str = "64") -> dict[int, dict]:
    """Channels per G block for each output resolution; attention given as e.g. '32_64'."""
    widths = {  # (in multipliers, out multipliers)
        512: ([16, 16, 8, 8, 4, 2, 1], [16, 8, 8, 4, 2, 1, 1]),
        256: ([16, 16, 8, 8, 4, 2], [16, 8, 8, 4, 2, 1]),
        128: ([16, 16, 8, 4, 2], [16, 8, 4, 2, 1]),
        64: ([16, 16, 8, 4], [16, 8, 4, 2]),
        32: ([4, 4, 4], [4, 4, 4]),
    }
    arch = {}
    for res, (ins, outs) in widths.items():
        n = len(ins)
        arch[res] = {"in_channels": [ch * m for m in ins],
                     "out_channels": [ch * m for m in outs],
                     "upsample": [True] * n,
                     "resolution": [2 ** (i + 3) for i in range(n)],
                     "attention": _attention_at(attention, range(3, n + 3))}
    return arch


def D_arch(ch: int = 64, attention: str = "64") -> dict[int, dict]:
    """Channels per D block for each input resolution (the last block keeps 4x4 or 16x16)."""
    arch = {}
    for res, mults in {256: [1, 2, 4, 8, 8, 16, 16], 128: [1, 2, 4, 8, 16, 16],
                       64: [1, 2, 4, 8, 16]}.items():
        n = len(mults)
        arch[res] = {"in_channels": [3] + [ch * m for m in mults[:-1]],
                     "out_channels": [ch * m for m in mults],
                     "downsample": [True] * (n - 1) + [False],
                     "resolution": [res // 2 ** (i + 1) for i in range(n - 1)] + [4],
                     "attention": _attention_at(attention, range(2, 8 if res >= 128 else 7))}
    arch[32] = {"in_channels": [3] + [ch * 4] * 3,
                "out_channels": [ch * 4] * 4,
                "downsample": [True, True, False, False],
                "resolution": [16, 16, 16, 16],
                "attention": _attention_at(attention, range(2, 6))}
    return arch


def _init_weights(model: nn.Module, style: str) -> None:
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear, nn.Embedding)):
            if style == "ortho":
                init.orthogonal_(module.weight)
            elif style == "N02":
                init.normal_(module.weight, 0, 0.02)
            elif style in ("glorot", "xavier"):
                init.xavier_uniform_(module.weight)
            else:
                raise ValueError(f"unknown init {style!r}; choose ortho, N02 or glorot")


def _sn_layers(param: str, num_svs: int, num_itrs: int, eps: float):
    """(conv, linear, embedding) constructors for 'SN' or plain parameterization."""
    if param == "SN":
        sn = dict(num_svs=num_svs, num_itrs=num_itrs, eps=eps)
        return (functools.partial(layers.SNConv2d, kernel_size=3, padding=1, **sn),
                functools.partial(layers.SNLinear, **sn),
                functools.partial(layers.SNEmbedding, **sn))
    return functools.partial(nn.Conv2d, kernel_size=3, padding=1), nn.Linear, nn.Embedding


class Generator(nn.Module):
    def __init__(self, G_ch=64, dim_z=128, bottom_width=4, resolution=128, G_attn="64",
                 n_classes=1000, n_pretrain_classes=0, num_G_SVs=1, num_G_SV_itrs=1, G_shared=True,
                 shared_dim=0, hier=False, cross_replica=False, mybn=False, G_activation=None,
                 G_nl="relu", BN_eps=1e-5, SN_eps=1e-12, G_init="ortho", skip_init=False,
                 G_param="SN", norm_style="bn", kp_variant="imagenet", **kwargs):
        super().__init__()
        if resolution not in G_arch():
            raise ValueError(f"resolution {resolution} has no G architecture; use one of "
                             f"{sorted(G_arch())}")
        self.ch, self.bottom_width, self.resolution = G_ch, bottom_width, resolution
        self.n_classes, self.n_pretrain_classes = n_classes, n_pretrain_classes
        self.G_shared, self.hier = G_shared, hier
        self.shared_dim = shared_dim if shared_dim > 0 else dim_z
        self.activation = G_activation if G_activation is not None else make_activation(G_nl)
        self.arch = G_arch(G_ch, G_attn)[resolution]

        # Hierarchical z: one chunk feeds the linear layer, one chunk joins each block's class
        # input.
        self.num_slots = len(self.arch["in_channels"]) + 1 if hier else 1
        self.z_chunk_size = dim_z // self.num_slots if hier else 0
        self.dim_z = self.z_chunk_size * self.num_slots if hier else dim_z

        self.which_conv, self.which_linear, _ = _sn_layers(G_param, num_G_SVs, num_G_SV_itrs,
                                                           SN_eps)
        # G's embedding is never spectrally normalized (BigGAN-PyTorch: SN on it cripples G).
        self.which_embedding = nn.Embedding
        n_embedded = n_pretrain_classes if self.has_knowledge_propagation else n_classes
        self.shared = (self.which_embedding(n_embedded, self.shared_dim) if G_shared
                       else nn.Identity())
        if G_shared:
            bn_input = self.shared_dim + self.z_chunk_size
            bn_linear = functools.partial(self.which_linear, bias=False)
        elif hier:
            # Our extension (BigGAN-PyTorch cannot feed z chunks to an embedding): the class part of
            # the BN input is the one-hot class itself, so the layout matches the shared case.
            bn_input = n_embedded + self.z_chunk_size
            bn_linear = functools.partial(self.which_linear, bias=False)
        else:
            bn_input, bn_linear = n_embedded, self.which_embedding
        self.which_bn = functools.partial(
            layers.ccbn, which_linear=bn_linear, input_size=bn_input, cross_replica=cross_replica,
            mybn=mybn, norm_style=norm_style, eps=BN_eps, n_classes=n_classes,
            n_pretrain_classes=n_pretrain_classes, z_chunk_size=self.z_chunk_size,
            pretrain_embedding_w=(self.shared.weight
                                  if G_shared and self.has_knowledge_propagation else None),
            kp_variant=kp_variant, SN_eps=SN_eps, num_svs=num_G_SVs, num_itrs=num_G_SV_itrs)

        self.linear = self.which_linear(self.dim_z // self.num_slots,
                                        self.arch["in_channels"][0] * bottom_width ** 2)
        blocks = []
        for index, out_channels in enumerate(self.arch["out_channels"]):
            block = [layers.GBlock(self.arch["in_channels"][index], out_channels,
                                   which_conv=self.which_conv, which_bn=self.which_bn,
                                   activation=self.activation,
                                   upsample=functools.partial(F.interpolate, scale_factor=2))]
            if self.arch["attention"][self.arch["resolution"][index]]:
                block.append(layers.Attention(out_channels, self.which_conv))
            blocks.append(nn.ModuleList(block))
        self.blocks = nn.ModuleList(blocks)
        self.output_layer = nn.Sequential(
            layers.bn(self.arch["out_channels"][-1], cross_replica=cross_replica, mybn=mybn),
            self.activation,
            self.which_conv(self.arch["out_channels"][-1], 3))
        if not skip_init:
            _init_weights(self, G_init)

    @property
    def has_knowledge_propagation(self) -> bool:
        """True for a transfer model of the BN/FT stages (n_pretrain_classes > 0); the baselines
        transfer too, but through a plain model of the new classes."""
        return self.n_pretrain_classes > 0

    def class_input(self, y: torch.Tensor) -> torch.Tensor:
        """What forward() takes for class indices y: the shared embedding of a source model with
        G_shared (BigGAN-PyTorch's `G(z, G.shared(y))`), the indices themselves otherwise."""
        return y if self.has_knowledge_propagation else self.shared(y)

    def old_class_input(self, y: torch.Tensor) -> torch.Tensor:
        """What forward(z, ·, old_classes=True) takes for OLD class indices y
        (0..n_pretrain_classes-1), the counterpart of class_input: the indices themselves (forward
        embeds them as the source did)."""
        self._require_old_class_path()
        return y

    def _require_old_class_path(self) -> None:
        if not self.has_knowledge_propagation:
            raise ValueError("old_classes=True needs a knowledge-propagation G (n_pretrain_classes "
                             "> 0, stages BN/FT); a plain G (source, pretrain, finetune, BN_only) "
                             "has only its own classes: use G(z, G.class_input(y))")

    def _as_one_hot(self, y: torch.Tensor, dtype: torch.dtype,
                    n_classes: int | None = None) -> torch.Tensor:
        # Float y is already a (possibly soft, e.g. interpolated) class vector.
        if y.is_floating_point():
            return y.to(dtype)
        return F.one_hot(y, num_classes=n_classes or self.n_classes).to(dtype)

    def _old_class_code(self, y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Old classes y → the class part of the source's BN input: their shared embedding, their
        one-hot (non-shared hier), or the indices into the ccbn gain/bias embeddings. A float y is a
        soft vector over the old classes (a mix of their embeddings, as BigGAN interpolates)."""
        n_old = self.n_pretrain_classes
        if y.is_floating_point():
            if y.dim() != 2 or y.shape[1] != n_old:
                raise ValueError(f"a float old-class y must be [batch, {n_old}] class vectors, "
                                 f"got {tuple(y.shape)}")
        elif y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_old):
            raise ValueError(f"old-class indices must lie in 0..{n_old - 1} (n_pretrain_classes "
                             f"{n_old}), got {int(y.min())}..{int(y.max())}")
        if self.G_shared:
            if y.is_floating_point():
                return y.to(self.shared.weight.dtype) @ self.shared.weight
            return self.shared(y)
        if self.hier:
            return self._as_one_hot(y, dtype, n_old)
        return y

    def forward(self, z: torch.Tensor, y: torch.Tensor, old_classes: bool = False) -> torch.Tensor:
        """G(z, G.class_input(y)): images of classes y (a knowledge-propagation G: its new classes).

        old_classes=True (a knowledge-propagation G only): y indexes the OLD classes instead, and
        every ccbn takes the source's own class path (the pretrained shared embedding and gain/bias
        layers, which knowledge loading keeps and no stage trains), so one transferred G draws old
        and new classes. Right after knowledge loading this reproduces the source G. It does not
        stay so: the BN running statistics (eval mode) are shared by the old and new classes and
        drift as training runs G on new-class batches, even in the BN stage where the old path's
        weights are frozen; the FT stage also changes the convolutions the two paths share."""
        if old_classes:
            self._require_old_class_path()
            y = self._old_class_code(y, z.dtype)
        elif self.has_knowledge_propagation or (self.hier and not self.G_shared):
            y = self._as_one_hot(y, z.dtype)
        if self.hier:
            zs = torch.split(z, self.z_chunk_size, 1)
            z = zs[0]
            ys = [torch.cat([y, chunk.to(y.dtype)], 1) for chunk in zs[1:]]
        else:
            ys = [y] * len(self.blocks)
        h = self.linear(z).view(z.size(0), -1, self.bottom_width, self.bottom_width)
        for index, blocklist in enumerate(self.blocks):
            for block in blocklist:
                if old_classes and isinstance(block, layers.GBlock):
                    h = block(h, ys[index], old_classes=True)
                else:
                    h = block(h, ys[index])
        return torch.tanh(self.output_layer(h))

    @torch.no_grad()
    def load_previous_knowledge(self, comb_init: str = "official") -> None:
        """Set every ccbn's prior matrices (columns = the old classes' BN gains/biases, computed
        from the loaded pretrained gain/bias layers) and, with hierarchical z, the z-projections
        (the z-part of the pretrained gain/bias layers). Call after loading the source weights.
        comb_init 'mean' then starts every new class at the old classes' mean (see ccbn)."""
        if comb_init not in ("official", "mean"):
            raise ValueError(f"comb_init must be 'official' or 'mean', got {comb_init!r}")
        if not self.has_knowledge_propagation:
            raise RuntimeError("load_previous_knowledge needs a transfer model (n_pretrain_classes "
                               "> 0)")
        for module in self.modules():
            if isinstance(module, layers.ccbn):
                for old, prior, z_layer in ((module.gain, module.prev_knowledge_g,
                                             getattr(module, "z_layer_g", None)),
                                            (module.bias, module.prev_knowledge_b,
                                             getattr(module, "z_layer_b", None))):
                    class_part, z_part = self._split_pretrained_bn_weight(old.weight)
                    # Copied into the parameters, which keep their own (contiguous) layout:
                    # a resumed run loads them so, and a transposed one rounds differently.
                    prior.weight.copy_(class_part)
                    if z_layer is not None:
                        z_layer.weight.copy_(z_part)
                if comb_init == "mean":
                    module.start_at_old_class_mean()

    def _split_pretrained_bn_weight(self, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A pretrained ccbn gain/bias weight → (per-old-class values [out, n_old], z-part [out,
        chunk])."""
        if not self.G_shared and not self.hier:
            return W.t(), W[:0]  # an embedding: one row per old class
        n_class_dims = self.shared_dim if self.G_shared else self.n_pretrain_classes
        class_part, z_part = W[:, :n_class_dims], W[:, n_class_dims:]
        if self.G_shared:
            class_part = class_part @ self.shared.weight.t()
        return class_part, z_part


class Discriminator(nn.Module):
    def __init__(self, D_ch=64, D_wide=True, resolution=128, D_attn="64", n_classes=1000,
                 n_pretrain_classes=0, num_D_SVs=1, num_D_SV_itrs=1, D_activation=None, D_nl="relu",
                 SN_eps=1e-12, output_dim=1, D_init="ortho", skip_init=False, D_param="SN",
                 **kwargs):
        super().__init__()
        if resolution not in D_arch():
            raise ValueError(f"resolution {resolution} has no D architecture; use one of "
                             f"{sorted(D_arch())}")
        self.ch, self.resolution = D_ch, resolution
        self.n_classes, self.n_pretrain_classes = n_classes, n_pretrain_classes
        self.activation = D_activation if D_activation is not None else make_activation(D_nl)
        self.arch = D_arch(D_ch, D_attn)[resolution]
        self.which_conv, self.which_linear, self.which_embedding = _sn_layers(
            D_param, num_D_SVs, num_D_SV_itrs, SN_eps)
        blocks = []
        for index, out_channels in enumerate(self.arch["out_channels"]):
            block = [layers.DBlock(self.arch["in_channels"][index], out_channels,
                                   which_conv=self.which_conv, wide=D_wide,
                                   activation=self.activation, preactivation=index > 0,
                                   downsample=nn.AvgPool2d(2) if self.arch["downsample"][index]
                                   else None)]
            if self.arch["attention"][self.arch["resolution"][index]]:
                block.append(layers.Attention(out_channels, self.which_conv))
            blocks.append(nn.ModuleList(block))
        self.blocks = nn.ModuleList(blocks)
        self.linear = self.which_linear(self.arch["out_channels"][-1], output_dim)
        # Projection discriminator; a transfer D gets a fresh embedding for the new classes.
        embedding = self.which_embedding(n_classes, self.arch["out_channels"][-1])
        if self.n_pretrain_classes > 0:
            self.new_embed = embedding
        else:
            self.embed = embedding
        if not skip_init:
            _init_weights(self, D_init)

    @property
    def class_embedding(self) -> nn.Embedding:
        return self.new_embed if self.n_pretrain_classes > 0 else self.embed

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = x
        for blocklist in self.blocks:
            for block in blocklist:
                h = block(h)
        h = torch.sum(self.activation(h), [2, 3])
        return self.linear(h) + torch.sum(self.class_embedding(y) * h, 1, keepdim=True)


class G_D(nn.Module):
    """G then D in one module, so that DataParallel/DDP split the whole step across devices.

    augment (e.g. DiffAugment.make_augment(config["DiffAugment"])): applied to every batch D sees,
    fake and real, in the D and the G steps alike, right before D; None: D sees the images as they
    are. G_z returned with return_G_z is G's output, before augmentation."""

    def __init__(self, G: Generator, D: Discriminator,
                 augment: Callable[[torch.Tensor], torch.Tensor] | None = None):
        super().__init__()
        self.G, self.D = G, D
        self.augment = augment

    def _D(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.D(self.augment(x) if self.augment is not None else x, y)

    def forward(self, z, gy, x=None, dy=None, train_G=False, return_G_z=False, split_D=False):
        with torch.set_grad_enabled(train_G):
            G_z = self.G(z, self.G.class_input(gy))
        if split_D:
            D_fake = self._D(G_z, gy)
            if x is not None:
                return D_fake, self._D(x, dy)
            return (D_fake, G_z) if return_G_z else D_fake
        D_input = torch.cat([G_z, x], 0) if x is not None else G_z
        D_class = torch.cat([gy, dy], 0) if dy is not None else gy
        D_out = self._D(D_input, D_class)
        if x is not None:
            return torch.split(D_out, [G_z.shape[0], x.shape[0]])
        return (D_out, G_z) if return_G_z else D_out


# ---------------------------------------------------------------------------------------------
# Loading pretrained (source) weights into a model, with errors that name the likely wrong flag.

# A plain G's per-class BN parameters, by G_shared: the shared class embedding, or else every
# ccbn's gain and bias embeddings (in a model and in a source checkpoint alike).
CLASS_EMBEDDING = {True: re.compile(r"^shared\.weight$"),
                   False: re.compile(r"\.bn\d\.(gain|bias)\.weight$")}


class WeightsMismatch(ValueError):
    """A checkpoint does not fit the model built from the current flags."""


# Keys a transfer model has and a source checkpoint lacks (and vice versa): expected, not errors.
_TRANSFER_ONLY = re.compile(
    r"(\.(comb_layer|prev_knowledge|z_layer|res)_[gb]\.|\.pretrain_embedding_w$|^new_embed\.)")
_SOURCE_ONLY = re.compile(r"^embed\.")

_FLAG_HINTS = [  # (key pattern, flags that set that tensor's shape)
    (re.compile(r"^shared\.|pretrain_embedding_w"),
     "n_pretrain_classes (or n_classes of the source) and shared_dim"),
    (re.compile(r"^(new_)?embed\."), "n_classes / n_pretrain_classes, D_ch"),
    (re.compile(r"\.bn\d\.(gain|bias)\."),
     "G_shared, shared_dim, hier, dim_z, n_pretrain_classes or G_ch"),
    (re.compile(r"^linear\.weight"), "dim_z, hier, G_ch/D_ch or bottom_width"),
    (re.compile(r"\.(theta|phi|g|o|gamma)\b"), "G_attn / D_attn"),
    (re.compile(r"\.(u|sv)[1-9]"), "num_G_SVs / num_D_SVs"),
    (re.compile(r"^blocks\."), "G_ch / D_ch or resolution"),
]


def _flag_hint(key: str) -> str:
    for pattern, flags in _FLAG_HINTS:
        if pattern.search(key):
            return flags
    return "the model flags (resolution, G_ch/D_ch, ...)"


def load_pretrained_state_dict(model: nn.Module, state_dict: dict, name: str = "model",
                               allowed_missing: list[str] = ()) -> list[str]:
    """Load a source (BigGAN-PyTorch) checkpoint into `model`, a source or a transfer model.

    Keys that only a transfer model has (the knowledge-propagation layers, D's new_embed) may be
    missing and D's old `embed` may be unexpected; anything else, or any shape mismatch, raises
    WeightsMismatch naming the flag that is probably wrong. Returns the expected missing keys.
    """
    own = model.state_dict()
    transfer = getattr(model, "n_pretrain_classes", 0) > 0
    mismatched = [k for k, v in state_dict.items() if k in own and own[k].shape != v.shape]
    if mismatched:
        lines = [f"  {k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)} "
                 f"(check {_flag_hint(k)})" for k in mismatched[:5]]
        raise WeightsMismatch(f"{name} weights do not fit the model built from your flags:\n"
                              + "\n".join(lines))
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    expected_missing = [k for k in missing if (transfer and _TRANSFER_ONLY.search(k))
                        or k in allowed_missing]
    bad_missing = [k for k in missing if k not in expected_missing]
    bad_unexpected = [k for k in unexpected if not (transfer and _SOURCE_ONLY.search(k))]
    if bad_missing or bad_unexpected:
        lines = ([f"  missing in checkpoint: {k} (check {_flag_hint(k)})" for k in bad_missing[:5]]
                 + [f"  not in model: {k} (check {_flag_hint(k)})" for k in bad_unexpected[:5]])
        raise WeightsMismatch(f"{name} weights do not fit the model built from your flags "
                              f"({len(bad_missing)} missing, {len(bad_unexpected)} unexpected "
                              "keys):\n"
                              + "\n".join(lines))
    model.load_state_dict({k: v for k, v in state_dict.items() if k in own}, strict=False)
    return expected_missing


def _check_old_class_count(key: str, found: int, n_pretrain_classes: int, name: str) -> None:
    if found != n_pretrain_classes:
        raise WeightsMismatch(f"{name} weights hold {found} classes in {key}, but "
                              f"--n_pretrain_classes is {n_pretrain_classes} (check "
                              "n_pretrain_classes: the classes of the source model)")


def mean_class_init(model: nn.Module, state_dict: dict, n_pretrain_classes: int,
                    name: str = "model") -> list[str]:
    """Load a source checkpoint into a *plain* model of the new classes, TransferGAN-style: every
    class-indexed tensor of G (the shared embedding, or the ccbn gain/bias embeddings, or the class
    columns of a non-shared hierarchical ccbn) starts each new class at the mean over the old
    classes. The baselines without knowledge propagation.

    D's projection embedding starts fresh, as cGANTransfer's own D does (its new_embed): the old
    classes' projection vectors point different ways, and their mean is no class of the target. An
    unconditional source (n_pretrain_classes 1, TransferGAN's setting) is the exception: its one
    embedding row is part of how its D tells real from fake, so every new class starts from it
    (copying, as the mean over one class does for G). With D's SN embedding (D_param SN) the copy
    cannot reproduce the source's D exactly: n equal rows have n^0.5 times that row's singular
    value, so each new class's projection is the source's divided by n_classes^0.5 (same direction).
    With G_shared off and hier on (our extension), the class columns sit inside a spectrally
    normalized layer whose sigma the mean columns change: there the start is the mean only up to
    that rescaling. Raises WeightsMismatch when the checkpoint's class count is not
    n_pretrain_classes."""
    adapted = dict(state_dict)
    if isinstance(model, Generator):
        class_keys = [k for k in state_dict if CLASS_EMBEDDING[model.G_shared].search(k)]
        columns = model.hier and not model.G_shared  # one-hot class columns, then the z columns
        for key in class_keys:
            old = state_dict[key]
            if columns:
                _check_old_class_count(key, old.shape[1] - model.z_chunk_size, n_pretrain_classes,
                                       name)
                mean = old[:, :n_pretrain_classes].mean(1, keepdim=True).expand(-1, model.n_classes)
                adapted[key] = torch.cat([mean, old[:, n_pretrain_classes:]], 1)
            else:
                _check_old_class_count(key, old.shape[0], n_pretrain_classes, name)
                mean = old[:n_pretrain_classes].mean(0, keepdim=True)
                adapted[key] = mean.expand(model.n_classes, -1).clone()
    # D's embedding of the old classes
    fresh = [k for k in model.state_dict() if _SOURCE_ONLY.search(k)]
    if isinstance(model, Discriminator) and "embed.weight" in state_dict:
        _check_old_class_count("embed.weight", state_dict["embed.weight"].shape[0],
                               n_pretrain_classes, name)
        if n_pretrain_classes == 1:
            copied = _embedding_copied_to_every_class(state_dict, model.n_classes)
            adapted.update(copied)
            # further SN vectors (num_D_SVs > 1) start fresh
            fresh = [k for k in fresh if k not in copied]
    for key in fresh:
        adapted.pop(key, None)
    return load_pretrained_state_dict(model, adapted, name, allowed_missing=fresh)


def _embedding_copied_to_every_class(state_dict: dict, n_classes: int) -> dict:
    """D's one-class projection embedding (and its SN state) for n_classes equal rows."""
    row = state_dict["embed.weight"]
    copied = {"embed.weight": row.expand(n_classes, -1).clone()}
    if "embed.u0" in state_dict:
        # n equal rows: the top left singular vector is the all-ones direction, the singular value
        # n^0.5 times the row's; u keeps the source's sign, so the power iteration starts converged.
        sign = torch.where(state_dict["embed.u0"] < 0, -1.0, 1.0).to(row.dtype)
        copied["embed.u0"] = sign.reshape(1, 1).expand(1, n_classes) / n_classes ** 0.5
        copied["embed.sv0"] = state_dict["embed.sv0"] * n_classes ** 0.5
    return copied


# ---------------------------------------------------------------------------------------------
# The flags a checkpoint must be loaded with.

_NOT_ABOUT_THE_WEIGHTS = {"self", "kwargs", "G_init", "D_init", "skip_init", "G_activation",
                          "D_activation", "mybn", "cross_replica"}


def weight_defining_flags() -> tuple[str, ...]:
    """The constructor arguments of G and D that decide what their weights mean (shapes, and how
    they are used: SN and BN epsilons, activations): a checkpoint is only sampled or resumed
    faithfully by models built with its values. Left out: the initialization (loading replaces
    it) and the BN-statistics layout (--mybn; sample.py converts between the layouts)."""
    names = []
    for cls in (Generator, Discriminator):
        names += [n for n in inspect.signature(cls.__init__).parameters
                  if n not in _NOT_ABOUT_THE_WEIGHTS]
    return tuple(dict.fromkeys(names))
