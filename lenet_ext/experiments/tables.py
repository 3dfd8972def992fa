"""What the experiments' reports share: Result (what measure() hands report()), means with their
spread, Markdown tables, results.md and results.csv, the predictions and errors of a model."""

import math
import os
import statistics
from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch

from .. import checkpoint, data, fileio
from ..models import LeNet5


@dataclass
class Result:
    """An experiment's measurements: rows (results.csv), the results.md head, and whatever else its
    report draws (keyed by name: extra tables, training curves, single numbers)."""

    rows: List[Dict[str, Any]]
    header: str
    extra: Dict[str, Any] = field(default_factory=dict)


@torch.inference_mode()
def predictions(model: torch.nn.Module, split: data.Split, batch_size: int = 1000) -> np.ndarray:
    model.eval()
    out = [model(split.images[i : i + batch_size]).argmax(1).cpu() for i in range(0, len(split), batch_size)]
    return torch.cat(out).numpy()


def class_errors(pred: np.ndarray, labels: np.ndarray, classes: int = 10) -> List[int]:
    return [int(((labels == c) & (pred != c)).sum()) for c in range(classes)]


def best_model(run) -> LeNet5:
    """The run's best-validation checkpoint (best.pt) as a model."""
    model, _ = checkpoint.model_from_checkpoint(os.path.join(run.run_dir, "best.pt"), device=run.device)
    return model


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def pm(values: Sequence[float], scale: float = 1.0, digits: int = 2) -> str:
    m, s = mean_std([v * scale for v in values])
    return f"{m:.{digits}f} ± {s:.{digits}f}" if not math.isnan(m) else "-"


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_results(folder: str, title: str, result: Result, body: str, csv_name: str = "results.csv") -> None:
    """results.csv (the rows) and results.md (title, the head, body), each written atomically."""
    fileio.write_csv(os.path.join(folder, csv_name), result.rows)
    fileio.atomic_write_text(os.path.join(folder, "results.md"), f"# {title}\n\n{result.header}{body}")


def plot_curves(histories: Dict[str, List[Dict[str, Any]]], path: str, title: str) -> None:
    """Train and test loss and test accuracy per epoch of several runs (name -> history)."""
    from ..plots import pyplot, save

    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, history in histories.items():
        epochs = [r["epoch"] for r in history]
        (line,) = ax1.plot(epochs, [r["train_loss"] for r in history], "-o", ms=3, label=f"{name} train")
        ax1.plot(epochs, [r["test_loss"] for r in history], "--", color=line.get_color(), label=f"{name} test")
        ax2.plot(
            epochs, [100 * r["test_acc"] for r in history], "-o", ms=3, color=line.get_color(), label=f"{name} test"
        )
    ax1.set(xlabel="epoch", ylabel="cross-entropy", yscale="log", title="loss")
    ax2.set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    save(fig, path)
