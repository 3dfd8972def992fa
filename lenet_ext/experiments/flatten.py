"""flatten: LeNet5(c5="linear") (s4 flattened into a 400->120 linear layer) against the C5 conv:
the same function (the conv's weights give the same logits), the same training, and the variants
that do leave the loss stuck between 0.1 and 0.4."""

import math
import os

import torch

from ..models import LeNet5, c5_as_linear
from ..training.loop import TrainingError
from .context import Context
from .tables import Result, md_table, plot_curves, write_results

TITLE = "Flatten: s4 into a 400→120 linear layer against the C5 conv"


def measure(ctx: Context) -> Result:
    impl = ctx.args.impl or "ext"
    seed = 1
    base = ctx.config(impl=impl, seed=seed)
    dataset = ctx.dataset(base)
    # 1. The same function: the conv's weights, reshaped, in the linear layer.
    torch.manual_seed(seed)
    conv = LeNet5(impl=impl).to(ctx.device)
    linear = LeNet5(impl=impl, c5="linear").to(ctx.device)
    linear.load_state_dict(c5_as_linear(conv.state_dict()))
    with torch.inference_mode():
        images = dataset.test.images[:1000].to(ctx.device)
        same = (conv(images) - linear(images)).abs().max().item()
    torch.manual_seed(seed)
    init_conv = LeNet5(impl=impl).state_dict()
    torch.manual_seed(seed)
    init_linear = LeNet5(impl=impl, c5="linear").state_dict()
    same_init = all(torch.equal(init_conv[k].reshape(-1), init_linear[k].reshape(-1)) for k in init_conv)
    # 2. Trained side by side with the same seed, and the suspects for a loss stuck between 0.1 and 0.4.
    variants = [
        ("conv", base),
        ("linear", base.replace(c5="linear")),
        ("linear, lr 10x lower (0.001)", base.replace(c5="linear", lr=base.lr / 10)),
        ("linear, lr 10x higher (0.1)", base.replace(c5="linear", lr=base.lr * 10)),
        ("linear, SGD lr 0.01", base.replace(c5="linear", optimizer="sgd")),
        ("linear, no bias in f6/output", base.replace(c5="linear", bias=False)),
    ]
    rows, curves = [], {}
    for name, config in variants:
        settings = {
            "variant": name,
            "c5": config.c5,
            "optimizer": config.optimizer,
            "lr": config.lr,
            "bias": config.bias,
        }
        try:
            run = ctx.train(
                name.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "").replace("/", "-"), config
            )
        except TrainingError as exc:  # a variant whose loss became NaN: that is a finding too
            ctx.log(f"  {name}: {exc}")
            rows.append(
                {
                    **settings,
                    "epochs": 0,
                    "train_loss_first": math.nan,
                    "train_loss_final": math.nan,
                    "test_loss_final": math.nan,
                    "test_acc": math.nan,
                    "loss_stuck_0.1_0.4": False,
                    "diverged": True,
                }
            )
            continue
        curves[name] = run.history
        losses = [r["train_loss"] for r in run.history]
        stuck = all(0.1 <= v <= 0.4 for v in losses[-3:])
        rows.append(
            {
                **settings,
                "epochs": run.epoch,
                "train_loss_first": losses[0],
                "train_loss_final": losses[-1],
                "test_loss_final": run.history[-1]["test_loss"],
                "test_acc": run.history[-1]["test_acc"],
                "loss_stuck_0.1_0.4": stuck,
                "diverged": False,
            }
        )
    return Result(rows, ctx.header(), {"same": same, "same_init": same_init, "curves": curves})


def report(folder: str, result: Result) -> None:
    rows, extra = result.rows, result.extra
    curves = extra["curves"]
    identical = all(
        a["train_loss"] == b["train_loss"] and a["test_acc"] == b["test_acc"]
        for a, b in zip(curves["conv"], curves["linear"])
    )
    body = (
        f"**Same function.** The C5 conv's weights reshaped into the 400→120 linear layer give the same logits "
        f"on 1,000 test digits: largest difference {extra['same']:.3g}. With the same seed the two networks also "
        f"start from the same weights ({'yes' if extra['same_init'] else 'no'}: torch initialises both from the "
        f"same fan-in of 400, in the same order), and trained side by side their per-epoch metrics are "
        f"{'identical, epoch for epoch' if identical else 'not identical'}.\n\n"
    )
    body += md_table(
        [
            "variant",
            "epochs",
            "train loss, epoch 1",
            "final train loss",
            "final test loss",
            "test accuracy (%)",
            "final 3 epochs' train loss in 0.1–0.4",
        ],
        [
            [
                r["variant"],
                r["epochs"],
                f"{r['train_loss_first']:.3f}",
                f"{r['train_loss_final']:.4f}",
                f"{r['test_loss_final']:.4f}",
                f"{100 * r['test_acc']:.2f}",
                "diverged (NaN loss)" if r["diverged"] else "yes" if r["loss_stuck_0.1_0.4"] else "no",
            ]
            for r in rows
        ],
    )
    write_results(folder, TITLE, result, body)
    plot_curves(curves, os.path.join(folder, "curves.png"), "C5 conv against the flattened 400→120 linear layer")
