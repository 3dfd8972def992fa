"""Accuracy under distortion: a model's test accuracy under each family of distortions.FAMILIES at
each of its severities, which digits fail there and as what, and the plot of accuracy against
severity. Used by the study of a run (analyze: robustness.csv, robustness.png, a section of
report.html) and by python -m lenet_ext.experiments robustness (several models side by side)."""

from collections import Counter
from typing import Any, Dict, List, Sequence

import numpy as np
import torch

from . import data
from .distortions import FAMILIES, distort


@torch.inference_mode()
def _predict(model: torch.nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([model(images[i : i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)])


@torch.inference_mode()
def measure(
    model: torch.nn.Module,
    split: data.Split,
    seed: int = 0,
    families: Sequence[str] = tuple(FAMILIES),
    batch_size: int = 1000,
) -> List[Dict[str, Any]]:
    """One row per (family, severity): accuracy, errors, and the commonest confusions
    ("true->predicted" counts). The same distorted digits for every model given the same seed."""
    model.eval()
    labels = split.labels
    rows = []
    for family in families:
        for severity in FAMILIES[family][1]:
            pred = torch.cat(
                [
                    _predict(model, distort(split.images[i : i + batch_size], family, severity, seed + i), batch_size)
                    for i in range(0, len(split), batch_size)
                ]
            )
            wrong = (pred != labels).cpu().numpy()
            true, got = labels.cpu().numpy()[wrong], pred.cpu().numpy()[wrong]
            pairs = Counter(f"{t}->{p}" for t, p in zip(true.tolist(), got.tolist()))
            per_class = np.bincount(true, minlength=10)
            rows.append(
                {
                    "family": family,
                    "severity": severity,
                    "accuracy": float(1 - wrong.mean()) if len(wrong) else float("nan"),
                    "errors": int(wrong.sum()),
                    "worst_digit": int(per_class.argmax()) if wrong.any() else "",
                    "confusions": " ".join(f"{k}:{v}" for k, v in pairs.most_common(3)),
                }
            )
    return rows


def plot(results: Dict[str, List[Dict[str, Any]]], path: str, title: str = "") -> None:
    """Accuracy against severity, one panel per family, one line per model (name -> measure()'s rows)."""
    from .plots import pyplot, save

    plt = pyplot()
    families = list(dict.fromkeys(r["family"] for rows in results.values() for r in rows))
    cols = 5
    fig, axes = plt.subplots((len(families) + cols - 1) // cols, cols, figsize=(15, 3.2 * ((len(families) + 4) // 5)))
    axes = np.atleast_1d(axes).reshape(-1)
    for ax, family in zip(axes, families):
        for name, rows in results.items():
            mine = [r for r in rows if r["family"] == family]
            ax.plot(range(len(mine)), [100 * r["accuracy"] for r in mine], "-o", ms=3, label=name)
            ax.set_xticks(range(len(mine)), [f"{r['severity']:g}" for r in mine])
        ax.set_title(family, fontsize=10)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    for ax in axes[len(families) :]:
        ax.axis("off")
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    save(fig, path)


def table(results: Dict[str, List[Dict[str, Any]]]) -> str:
    """A Markdown table per family: a row per model, a column per severity (accuracy, %)."""

    def md_table(header, rows):
        lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
        return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]) + "\n"

    out = []
    families = list(dict.fromkeys(r["family"] for rows in results.values() for r in rows))
    for family in families:
        severities = [r["severity"] for r in next(iter(results.values())) if r["family"] == family]
        out.append(f"**{family}** ({FAMILIES[family][0]})\n\n")
        out.append(
            md_table(
                ["model"] + [f"{s:g}" for s in severities],
                [
                    [name] + [f"{100 * r['accuracy']:.2f}" for r in rows if r["family"] == family]
                    for name, rows in results.items()
                ],
            )
            + "\n"
        )
    return "".join(out)
