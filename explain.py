"""What each new class of a transferred G learned from the old classes: its combination weights.

In every knowledge-propagation ccbn (layers.ccbn) the BN gain and bias of new class c (one-hot
e_c) are

    gain_c = 1 + P_g a_g + p_g + R_g e_c (+ z term),   a_g = W_g e_c + b_g
    bias_c =     P_b a_b + p_b + R_b e_c (+ z term),   a_b = W_b e_c + b_b

P (prev_knowledge_*, [channels, n_old]) holds the old classes' gains/biases as columns, W and b
(comb_layer_*) the learned combination, R (res_*) the residual, p the prior's bias (the 'cifar'
variant only; 0 in 'imagenet'). This script reads a, P and R off G and says, per new class, which
old classes its gains and biases are made of, and how much is its own residual instead.

    python explain.py --base_dir BASE --experiment_name NAME [--load_weights best0] [--top_k 3] \
        [--heatmap PATH] [--json PATH] [--per_layer]

The weights are the ones the forward pass multiplies by: in the 'imagenet' variant comb_layer and
prev_knowledge are spectrally normalized, so W and P are W/sigma as G computes them in eval mode
(sigma estimated from the stored power-iteration vector, which is not updated). What is left out:
the z term, which depends on z and not on the class, and p, which is the same for every class (its
norm is reported, not counted as an old class).

Writes BASE/samples/NAME/combination_weights.png (or --heatmap) and, with --json, the whole report.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import BigGAN  # noqa: E402
import checkpoints  # noqa: E402
import datasets  # noqa: E402
import flags  # noqa: E402
import layers  # noqa: E402
import run_folder  # noqa: E402
import sampling  # noqa: E402
import stages  # noqa: E402
import trained_generator  # noqa: E402
import utils  # noqa: E402

PARTS = ("gain", "bias")
HEATMAP_NAME = "combination_weights.png"
# Beyond this (ImageNet's 1000 old classes) only the top old classes are drawn.
MAX_HEATMAP_COLUMNS = 40


# ---------------------------------------------------------------------------------------------
# The report

@dataclass
class PartExplanation:
    """One new class in one part (gain or bias) of one ccbn. With a = W e_c + b:
    coefficients[k]   a_k, signed
    contributions[k]  |a_k| * ||P[:, k]||: how large old class k's term P[:, k] a_k is
    shares[k]         contributions[k] / sum_j contributions[j] (all 0 when nothing is propagated).
                      One-hot a -> that old class with share exactly 1. Norms, not the signed sum:
                      terms that cancel each other both count, as both were learned.
    propagated_norm   ||P a||, residual_norm ||R e_c||
    residual_share    residual_norm / (propagated_norm + residual_norm): 1 exactly for a zero
                      combination with a residual, 0 exactly without residual (0 when both vanish)
    prior_bias_norm   ||p||, the prior's bias (cifar variant): the same for every class, no old
                      class
    """
    coefficients: list[float]
    contributions: list[float]
    shares: list[float]
    propagated_norm: float
    residual_norm: float
    residual_share: float
    prior_bias_norm: float


@dataclass
class NewClassExplanation:
    """One new class: per ccbn (module path, e.g. blocks.0.0.bn1) and part, and aggregated.
    old_class_shares[k] is the mean of shares[k] over every ccbn and both parts, unweighted: gains
    (around 1) and biases (around 0) and layers of different width differ in scale, so weighting
    by norms would let the largest parts speak for all; each part is one decision of G about the
    class and counts once. They sum to 1 when every part propagates something. residual_share is
    the mean of the parts' residual shares, likewise."""
    name: str
    layers: dict[str, dict[str, PartExplanation]]
    old_class_shares: list[float]
    residual_share: float


@dataclass
class CombinationReport:
    kp_variant: str                        # 'imagenet' (spectrally normalized) or 'cifar'
    old_class_names: list[str]
    new_classes: list[NewClassExplanation]

    @property
    def layer_names(self) -> list[str]:
        return list(self.new_classes[0].layers) if self.new_classes else []

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def effective_weight(layer: nn.Module) -> torch.Tensor:
    """The weight layer's forward multiplies by: for a spectrally normalized layer W/sigma as in
    eval mode, where the power-iteration vector u is used as it is (train mode would update it)."""
    if isinstance(layer, layers.SN):
        with sampling.sampling_mode(layer, eval_mode=True):
            return layer.W_()
    return layer.weight


def knowledge_layers(ccbn: layers.ccbn, part: str) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(combination, prior, residual) of the gain or the bias."""
    s = part[0]  # the official names: comb_layer_g, prev_knowledge_g, res_g; ..._b
    return (getattr(ccbn, f"comb_layer_{s}"), getattr(ccbn, f"prev_knowledge_{s}"),
            getattr(ccbn, f"res_{s}"))


def _safe_divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    # Where the denominator is 0 so is every numerator (norms): the share is 0, not NaN.
    return numerator / torch.where(denominator > 0, denominator, torch.ones_like(denominator))


@torch.no_grad()
def explain_part(comb: nn.Module, prior: nn.Module, res: nn.Module) -> list[PartExplanation]:
    """One PartExplanation per new class (all classes at once: column c of W is W e_c)."""
    A = effective_weight(comb).float()                                  # [n_old, n_new]
    if comb.bias is not None:
        A = A + comb.bias.float()[:, None]
    P = effective_weight(prior).float()                                 # [channels, n_old]
    R = effective_weight(res).float()                                   # [channels, n_new]
    contributions = A.abs() * P.norm(dim=0)[:, None]
    shares = _safe_divide(contributions, contributions.sum(0))
    propagated, residual = (P @ A).norm(dim=0), R.norm(dim=0)
    residual_shares = _safe_divide(residual, propagated + residual)
    prior_bias = float(prior.bias.float().norm()) if prior.bias is not None else 0.0
    return [PartExplanation(A[:, c].tolist(), contributions[:, c].tolist(), shares[:, c].tolist(),
                            float(propagated[c]), float(residual[c]), float(residual_shares[c]),
                            prior_bias)
            for c in range(A.shape[1])]


def knowledge_propagation_ccbns(G: nn.Module) -> dict[str, layers.ccbn]:
    return {name: m for name, m in G.named_modules()
            if isinstance(m, layers.ccbn) and m.has_knowledge_propagation}


def combination_report(G: nn.Module, new_class_names: list[str],
                       old_class_names: list[str]) -> CombinationReport:
    """Explain every new class of a knowledge-propagation G through its combination weights (see
    PartExplanation and NewClassExplanation for the definitions)."""
    ccbns = knowledge_propagation_ccbns(G)
    if not ccbns:
        raise ValueError("G has no knowledge-propagation ccbn (n_pretrain_classes > 0, stages "
                         "BN/FT): a plain G has no combination weights to explain")
    first = next(iter(ccbns.values()))
    for names, count, which in ((new_class_names, first.n_classes, "new"),
                                (old_class_names, first.n_pretrain_classes, "old")):
        if len(names) != count:
            raise ValueError(f"G has {count} {which} classes, got {len(names)} {which} class names")
    per_layer = {name: {part: explain_part(*knowledge_layers(ccbn, part)) for part in PARTS}
                 for name, ccbn in ccbns.items()}
    new_classes = []
    for c, name in enumerate(new_class_names):
        own = {layer: {part: parts[part][c] for part in PARTS}
               for layer, parts in per_layer.items()}
        explained = [part for parts in own.values() for part in parts.values()]
        shares = torch.tensor([part.shares for part in explained], dtype=torch.float64).mean(0)
        residual = sum(part.residual_share for part in explained) / len(explained)
        new_classes.append(NewClassExplanation(name, own, shares.tolist(), residual))
    kp_variant = "imagenet" if isinstance(first.comb_layer_g, layers.SN) else "cifar"
    return CombinationReport(kp_variant, list(old_class_names), new_classes)


def ranked_old_classes(new: NewClassExplanation) -> list[int]:
    """Old class indices by aggregated share, largest first (ties: the lower index first)."""
    return sorted(range(len(new.old_class_shares)), key=lambda j: (-new.old_class_shares[j], j))


def top_old_classes(report: CombinationReport, k: int) -> list[list[tuple[str, float]]]:
    """Per new class (in report order), its k old classes of largest aggregated share with that
    share, largest first."""
    return [[(report.old_class_names[j], new.old_class_shares[j])
             for j in ranked_old_classes(new)[:k]]
            for new in report.new_classes]


# ---------------------------------------------------------------------------------------------
# Output: text, heatmap, JSON

def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def format_report(report: CombinationReport, k: int = 3) -> str:
    """One block per new class: its top-k old classes with their aggregated shares, and the
    residual's share."""
    n_layers = len(report.layer_names)
    parts = [p for new in report.new_classes for layer in new.layers.values()
             for p in layer.values()]
    lines = [f"What each new class learned from the old ones ({report.kp_variant} variant; "
             f"{n_layers} ccbns x gain, bias = {2 * n_layers} layer parts).",
             "Weight of old class k: its share |a_k|*||P[:,k]|| of the propagated offset P a, a = "
             "W e_c + b;",
             "residual: ||R e_c|| / (||P a|| + ||R e_c||). Both are means over the layer parts."]
    prior_bias = _mean([p.prior_bias_norm for p in parts])
    if prior_bias > 0:
        lines.append("The prior's bias adds the same offset to every class (mean norm "
                     f"{prior_bias:.3g}, against a mean ||P a|| of "
                     f"{_mean([p.propagated_norm for p in parts]):.3g});\nit is no old class and "
                     "not counted.")
    width = max([len(name) for name in report.old_class_names] + [len("residual")])
    for c, (new, top) in enumerate(zip(report.new_classes, top_old_classes(report, k))):
        lines += ["", f"{new.name} (new class {c})"]
        lines += [f"  {rank}. {name:<{width}}  {share:.3f}"
                  for rank, (name, share) in enumerate(top, 1)]
        lines.append(f"  {'residual':<{width + 3}}  {new.residual_share:.3f} of the class's own "
                     "offset")
    return "\n".join(lines)


def heatmap_columns(report: CombinationReport) -> list[int]:
    """All old classes, or, when there are too many to read, those in some new class's top list."""
    n_old = len(report.old_class_names)
    if n_old <= MAX_HEATMAP_COLUMNS:
        return list(range(n_old))
    k = max(1, MAX_HEATMAP_COLUMNS // max(1, len(report.new_classes)))
    return sorted({j for new in report.new_classes for j in ranked_old_classes(new)[:k]})


def _draw_shares(ax, shares: list[list[float]], rows: list[str], columns: list[str], title: str):
    """One heatmap panel; rows=[] leaves the row labels to the panel on its left."""
    image = ax.imshow(shares, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(columns)), columns, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(shares)), rows or [""] * len(shares), fontsize=7)
    ax.set_title(title, fontsize=8)
    if len(shares) * len(columns) <= 400:  # beyond that the numbers would overlap
        for i, row in enumerate(shares):
            for j, value in enumerate(row):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if value > 0.6 else "white")
    return image


def write_heatmap(report: CombinationReport, path: str, per_layer: bool = False) -> None:
    """A PNG: rows the new classes (with their residual share), columns the old classes, cells the
    aggregated shares; per_layer adds one panel per ccbn (the mean of its gain and bias shares)."""
    columns = heatmap_columns(report)
    column_names = [report.old_class_names[j] for j in columns]
    rows = [f"{new.name} (residual {new.residual_share:.2f})" for new in report.new_classes]
    panels = [("all layers: mean share over ccbns x gain, bias",
               [[new.old_class_shares[j] for j in columns] for new in report.new_classes])]
    if per_layer:
        for layer in report.layer_names:
            panels.append((layer, [[_mean([new.layers[layer][part].shares[j] for part in PARTS])
                                    for j in columns]
                                   for new in report.new_classes]))
    n_cols = min(len(panels), 3)
    n_rows = math.ceil(len(panels) / n_cols)
    # Inches: 0.45 per cell, plus the rotated column labels below and the row labels on the left.
    label_h = 0.06 * max(len(name) for name in column_names)
    label_w = 0.06 * max(len(row) for row in rows)
    panel_w, panel_h = 0.5 + 0.45 * len(columns), 0.6 + 0.45 * len(rows) + label_h
    fig, axes = plt.subplots(n_rows, n_cols,
                             figsize=(label_w + panel_w * n_cols + 1.0, panel_h * n_rows + 0.4),
                             squeeze=False, layout="constrained")
    for i, (ax, (title, shares)) in enumerate(zip(axes.flat, panels)):
        image = _draw_shares(ax, shares, rows if i % n_cols == 0 else [], column_names, title)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    shown = "" if len(columns) == len(report.old_class_names) else \
        f" ({len(columns)} of {len(report.old_class_names)} old classes: those in a top list)"
    fig.suptitle(f"What each new class learned from the old ones: share of each old class\nin its "
                 f"propagated BN gains and biases{shown}", fontsize=9)
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8)
    utils.write_atomically(path, lambda f: fig.savefig(f, format="png", dpi=100), binary=True)
    plt.close(fig)


def write_json(report: CombinationReport, path: str) -> None:
    utils.write_atomically(path, lambda f: f.write(json.dumps(report.to_dict(), indent=1) + "\n"))


# ---------------------------------------------------------------------------------------------
# Loading a checkpoint's G, and the class names

def knowledge_propagation_stages() -> list[str]:
    return [name for name, stage in stages.STAGES.items() if stage.knowledge_propagation]


def load_generator(folder: str, suffix: str,
                   data_root: str | None = None) -> tuple[BigGAN.Generator, dict]:
    """G of a checkpoint set, rebuilt from the training config saved with it (as sample.py does),
    in eval mode; and that config."""
    hint = "check --experiment_name, --load_weights and --base_dir / --weights_root"
    what = checkpoints.describe(folder, suffix)
    config = trained_generator.read_run_state(folder, suffix, hint).get("config") or {}
    missing = [key for key in ("stage", "n_classes", "n_pretrain_classes") if key not in config]
    if missing:
        raise utils.UsageError(f"{what} has no saved training config (no state_dict.pth or "
                               f"config.json, or it lacks {', '.join(missing)}): G cannot be "
                               "rebuilt; explain a checkpoint written by train.py")
    known = config["stage"] in stages.STAGES
    if not known or not stages.get(config["stage"]).knowledge_propagation:
        raise utils.UsageError(f"{what} is a --stage {config['stage']} model, a plain G of its own "
                               "classes without knowledge propagation: it has no combination "
                               "weights to explain; only the stages "
                               f"{', '.join(knowledge_propagation_stages())} build a "
                               "knowledge-propagation G")
    weights = trained_generator.read_generator_weights(folder, suffix, use_ema=False, hint=hint)
    if not config.get("resolution"):
        spec = datasets.dataset_spec(config.get("dataset", ""), data_root)
        config = {**config, "resolution": spec.resolution}
    # every weight is loaded
    G = trained_generator.build_trained_generator(config, weights, f"G of {what}")
    return G.eval(), config


def placeholder_names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


def new_class_names(config: dict, data_root: str) -> list[str]:
    """The saved config's class_names, else the dataset's class folders, else new0..newN."""
    n = config["n_classes"]
    names, where = config.get("class_names"), "the saved config"
    if not names:
        where = f"the dataset {config.get('dataset')} under {data_root}"
        try:
            names = datasets.class_names(config["dataset"], data_root, config.get("hdf5", False))
        except (utils.UsageError, KeyError, OSError):
            print(f"note: no class names of the new classes (not in the saved config, no {where}): "
                  f"named new0..new{n - 1}")
            return placeholder_names("new", n)
    return _checked_names(list(names), n, "new", where)


def old_class_names(config: dict) -> list[str]:
    """The saved config's old_class_names, else old0..oldM."""
    n = config["n_pretrain_classes"]
    names = config.get("old_class_names")
    if not names:
        return placeholder_names("old", n)
    return _checked_names(list(names), n, "old", "the saved config")


def _checked_names(names: list[str], count: int, prefix: str, where: str) -> list[str]:
    if len(names) != count:
        print(f"note: {where} names {len(names)} {prefix} classes but G has {count}: "
              f"named {prefix}0..{prefix}{count - 1}")
        return placeholder_names(prefix, count)
    return [str(name) for name in names]


# ---------------------------------------------------------------------------------------------
# The command line

def prepare_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Explain a transferred G's new classes through its "
                                            "combination weights: which old classes each one is "
                                            "made of",
                                allow_abbrev=False, formatter_class=utils.HelpFormatter)
    add = p.add_argument
    add("--base_dir", default="",
        help="root holding data/ weights/ samples/ (default: the current folder)")
    add("--data_root", default="", help="datasets, for the class names (default: BASE/data)")
    add("--weights_root", default="", help="experiment checkpoints (default: BASE/weights)")
    add("--samples_root", default="", help="where the heatmap goes (default: BASE/samples)")
    add("--experiment_name", required=True,
        help="the experiment's folder name under the weights root")
    add("--load_weights", default="", type=checkpoints.set_name,
        help="suffix of the checkpoint, e.g. best0, copy1 (default: the latest)")
    add("--top_k", type=utils.at_least(1), default=3, help="old classes listed per new class")
    add("--heatmap", default="", metavar="PATH",
        help=f"the PNG of the shares (default: SAMPLES/NAME/{HEATMAP_NAME})")
    add("--per_layer", action="store_true", help="add one heatmap panel per ccbn")
    add("--json", default="", metavar="PATH",
        help="also write the whole report (every layer and part) as JSON")
    return p


def main(argv: list[str] | None = None) -> CombinationReport:
    args = prepare_parser().parse_args(argv)
    roots = flags.resolve_roots({key: getattr(args, key) for key in
                                 ("base_dir", "data_root", "weights_root", "samples_root")})
    paths = run_folder.RunFolder.of({**roots, "experiment_name": args.experiment_name})
    folder = paths.weights
    G, config = load_generator(folder, checkpoints.resolve_suffix(folder, args.load_weights),
                               roots["data_root"])
    report = combination_report(G, new_class_names(config, roots["data_root"]),
                                old_class_names(config))
    print(format_report(report, args.top_k))
    heatmap = args.heatmap or os.path.join(paths.samples, HEATMAP_NAME)
    write_heatmap(report, heatmap, per_layer=args.per_layer)
    print(f"\nSaved the heatmap of the shares to {heatmap}")
    if args.json:
        write_json(report, args.json)
        print(f"Saved the whole report to {args.json}")
    return report


if __name__ == "__main__":
    utils.run_main(main)
