"""The plots of a run's study and of the experiments, drawn with matplotlib (Agg, no screen) and
written atomically as PNG files: pyplot() and save() for any figure, and one function per study
figure (loss curves, failures, confusion matrix, t-SNE of F6, conv1 maps)."""

import io
from typing import Dict, List

import numpy as np
import torch

from . import data, fileio
from .models import LeNet5


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    fileio.atomic_write_bytes(path, buffer.getvalue())


def pixels(images: torch.Tensor) -> np.ndarray:
    """Normalized (N, 1, 28, 28) -> (N, 28, 28) in [0, 1] for display."""
    return (images[:, 0].float().cpu() * data.STD + data.MEAN).clamp(0, 1).numpy()


def plot_loss_curves(history: List[Dict], path: str) -> None:
    plt = pyplot()
    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))

    def values(key, scale=1.0):
        return [scale * r[key] if r.get(key) is not None else float("nan") for r in history]

    for split, style in (("train", "-o"), ("valid", "-s"), ("test", "-^")):
        ax1.plot(epochs, values(f"{split}_loss"), style, ms=3, label=split)
        ax2.plot(epochs, values(f"{split}_acc", 100.0), style, ms=3, label=split)
    ax1.set(xlabel="epoch", ylabel="cross-entropy", title="loss", yscale="log")
    ax2.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    save(fig, path)


def plot_failures(
    images: np.ndarray, true: np.ndarray, pred: np.ndarray, conf: np.ndarray, classes, path: str, limit: int = 100
) -> None:
    plt = pyplot()
    n = min(len(true), limit)
    cols = 10
    rows = max(1, (n + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.35), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], cmap="gray_r", vmin=0, vmax=1)
            ax.set_title(f"{classes[true[i]]}→{classes[pred[i]]}\n{conf[i]:.2f}", fontsize=7)
    fig.suptitle(
        f"misclassified test images: true→predicted, confidence ({len(true)} in all"
        + (f", first {n} shown)" if len(true) > n else ")"),
        fontsize=9,
    )
    save(fig, path)


def plot_confusion(matrix: np.ndarray, classes, path: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    shown = np.log1p(matrix)
    im = ax.imshow(shown, cmap="Blues")
    for t in range(len(classes)):
        for p in range(len(classes)):
            if matrix[t, p]:
                ax.text(
                    p,
                    t,
                    str(matrix[t, p]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if shown[t, p] > shown.max() / 2 else "black",
                )
    ax.set(
        xticks=range(len(classes)),
        yticks=range(len(classes)),
        xlabel="predicted",
        ylabel="true",
        title="confusion matrix (test)",
    )
    ax.set_xticklabels(classes, rotation=45 if len(classes[0]) > 1 else 0, fontsize=7)
    ax.set_yticklabels(classes, fontsize=7)
    fig.colorbar(im, ax=ax, label="log(1 + count)")
    save(fig, path)


def plot_tsne(
    features: np.ndarray, labels: np.ndarray, failed: np.ndarray, classes, seed: int, path: str, total_failed: int
) -> np.ndarray:
    from sklearn.manifold import TSNE

    plt = pyplot()
    perplexity = min(30.0, max(2.0, (len(features) - 1) / 3))
    xy = TSNE(n_components=2, init="pca", random_state=seed, perplexity=perplexity).fit_transform(features)
    fig, ax = plt.subplots(figsize=(8, 7))
    cmap = plt.get_cmap("tab10")
    for c in range(len(classes)):
        sel = labels == c
        ax.scatter(xy[sel, 0], xy[sel, 1], s=5, color=cmap(c), label=classes[c], alpha=0.7)
    ax.scatter(
        xy[failed, 0],
        xy[failed, 1],
        s=40,
        facecolors="none",
        edgecolors="black",
        linewidths=0.8,
        label=f"misclassified ({int(failed.sum())} shown of {total_failed})",
    )
    ax.set(title=f"t-SNE of the 84-unit F6 layer, {len(features):,} test images", xticks=[], yticks=[])
    ax.legend(markerscale=2, fontsize=7, loc="best")
    save(fig, path)
    return xy


def plot_conv1(model: LeNet5, images: torch.Tensor, titles: List[str], path: str) -> None:
    plt = pyplot()
    with torch.inference_mode():
        maps = model.activations(images)["c1"].cpu().numpy()
    filters = model.c1.weight.detach().cpu().numpy()[:, 0]
    rows = len(images) + 1
    fig, axes = plt.subplots(rows, 7, figsize=(7 * 1.3, rows * 1.45), squeeze=False)
    for r, (img, title) in enumerate(zip(pixels(images), titles)):
        axes[r, 0].imshow(img, cmap="gray_r", vmin=0, vmax=1)
        axes[r, 0].set_title(title, fontsize=7)
        for k in range(6):
            axes[r, k + 1].imshow(maps[r, k], cmap="viridis", vmin=0, vmax=1)
            axes[r, k + 1].set_title(f"c1 map {k}", fontsize=7)
    limit = np.abs(filters).max()
    axes[-1, 0].set_title("c1 filters →", fontsize=7)
    for k in range(6):
        axes[-1, k + 1].imshow(filters[k], cmap="RdBu_r", vmin=-limit, vmax=limit)
        axes[-1, k + 1].set_title(f"filter {k}", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    save(fig, path)
