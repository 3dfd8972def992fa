"""no-bias: LeNet5(bias=False) (no biases in f6 and the output layer) against the default: the
spread of the logits across a batch at initialisation and after training, and the curves."""

import os
import statistics
from typing import Any, Dict, List

import numpy as np
import torch

from ..models import LeNet5
from ..plots import pyplot, save
from .context import Context
from .tables import Result, md_table, plot_curves, pm, write_results

TITLE = "No bias in f6 and the output layer"


@torch.inference_mode()
def logit_spread(model: torch.nn.Module, images: torch.Tensor) -> List[float]:
    """Per class: the standard deviation of that class's logit across the batch."""
    model.eval()
    return model(images).double().std(0).tolist()


def measure(ctx: Context) -> Result:
    impl = ctx.args.impl or "ext"
    rows: List[Dict[str, Any]] = []
    curves: Dict[str, Any] = {}
    for seed in range(1, ctx.args.seeds + 1):
        for name, bias in (("default", True), ("no-bias", False)):
            config = ctx.config(impl=impl, seed=seed, bias=bias)
            batch = ctx.dataset(config).test.images[:1000].to(ctx.device)
            torch.manual_seed(seed)  # the initialisation the run starts from
            init = LeNet5(impl=impl, bias=bias).to(ctx.device)
            run = ctx.train(f"{name}-seed{seed}", config)
            curves.setdefault(name, run.history)
            at_init, trained = logit_spread(init, batch), logit_spread(run.model, batch)
            rows.append(
                {
                    "model": name,
                    "seed": seed,
                    "test_acc": run.history[-1]["test_acc"],
                    "train_loss_epoch1": run.history[0]["train_loss"],
                    "train_loss": run.history[-1]["train_loss"],
                    "logit_std_init": statistics.fmean(at_init),
                    "logit_std_trained": statistics.fmean(trained),
                    **{f"init_std_{c}": v for c, v in enumerate(at_init)},
                    **{f"trained_std_{c}": v for c, v in enumerate(trained)},
                }
            )
    return Result(rows, ctx.header(), {"curves": curves})


def report(folder: str, result: Result) -> None:
    rows = result.rows
    by = {m: [r for r in rows if r["model"] == m] for m in ("default", "no-bias")}
    body = (
        "The spread of each class's logit across a batch of 1,000 test digits (standard deviation across the "
        "batch, averaged over the ten classes; the per-class values are in results.csv), at initialisation and "
        "after training, and the accuracy (mean ± std over seeds).\n\n"
    )
    body += md_table(
        [
            "model",
            "seeds",
            "logit std at init",
            "logit std trained",
            "train loss, epoch 1",
            "final train loss",
            "test accuracy (%)",
        ],
        [
            [
                m,
                len(r),
                pm([x["logit_std_init"] for x in r], 1, 4),
                pm([x["logit_std_trained"] for x in r], 1, 4),
                pm([x["train_loss_epoch1"] for x in r], 1, 3),
                pm([x["train_loss"] for x in r], 1, 4),
                pm([x["test_acc"] for x in r], 100),
            ]
            for m, r in by.items()
        ],
    )
    write_results(folder, TITLE, result, body)
    plot_curves(
        result.extra["curves"], os.path.join(folder, "curves.png"), "default against no bias in f6 and the output layer"
    )
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, key, title in ((axes[0], "init_std_", "at initialisation"), (axes[1], "trained_std_", "after training")):
        for k, (m, r) in enumerate(by.items()):
            ax.bar(
                np.arange(10) + (k - 0.5) * 0.4,
                [statistics.fmean(x[f"{key}{c}"] for x in r) for c in range(10)],
                0.4,
                label=m,
            )
        ax.set(xticks=range(10), xlabel="class", ylabel="std of the logit across the batch", title=title)
        ax.legend()
    save(fig, os.path.join(folder, "logit_spread.png"))
