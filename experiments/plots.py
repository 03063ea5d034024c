"""Plots of the logged metrics (JSON lines written by train.py) as PNG files."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

import utils  # noqa: E402

LABELS = {"FID": "FID", "mFID": "mFID", "KMMD": "KMMD", "IS_mean": "IS",
          "class_acc": "class-consistency accuracy"}



def plot_stages(logs: list[tuple[str, str]], png_path: str, title: str = "",
                space: str = "") -> list[str]:
    """One panel per metric over the stages of a run one after another: logs = [(label, log path)];
    each stage's iterations continue where the previous one ended (FT after BN). Returns the
    metrics."""
    stages = [(label, utils.read_jsonl(path)) for label, path in logs]
    names = [m for m in LABELS
             if any(isinstance(r.get(m), (int, float)) for _, records in stages for r in records)]
    if not names:
        raise ValueError(f"{', '.join(path for _, path in logs)} hold no metrics to plot")
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3), squeeze=False)
    for ax, name in zip(axes[0], names):
        offset = 0
        for label, records in stages:
            points = [(offset + r["itr"], r[name]) for r in records
                      if isinstance(r.get(name), (int, float))]
            if points:
                ax.plot(*zip(*points), marker="o", markersize=3, label=label or None)
            offset += max((r["itr"] for r in records), default=0)
        ax.set_xlabel("iteration")
        ax.set_title(LABELS[name] + (f" ({space} space)" if space and name != "class_acc" else ""),
                     fontsize=9)
        ax.grid(alpha=0.3)
        if any(label for label, _ in stages):
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    utils.write_atomically(png_path, lambda f: fig.savefig(f, dpi=100, format="png"), binary=True)
    plt.close(fig)
    return names
