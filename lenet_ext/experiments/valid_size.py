"""valid-size: validation sets of 500, 1,000, 5,000 and 10,000: how the measured validation
accuracy scatters with the size, against the test set and the binomial error."""

import math
import os
import statistics

import numpy as np

from .. import data, fileio
from ..plots import pyplot, save
from .context import Context
from .tables import Result, md_table, pm, predictions, write_results

TITLE = "Validation-set size"
VALID_SIZES = (500, 1000, 5000, 10000)


def measure(ctx: Context) -> Result:
    impl = ctx.args.impl or "ext"
    rows, skipped = [], []
    for size in VALID_SIZES:
        for seed in range(1, ctx.args.seeds + 1):
            config = ctx.config(impl=impl, seed=seed, valid_size=size)
            try:
                ctx.dataset(config)
            except data.DataError as exc:
                skipped.append(f"{size:,}: {exc}")
                break
            last = ctx.train(f"valid{size}-seed{seed}", config).history[-1]
            rows.append(
                {
                    "valid_size": size,
                    "seed": seed,
                    "valid_acc": last["valid_acc"],
                    "test_acc": last["test_acc"],
                    "valid_minus_test": last["valid_acc"] - last["test_acc"],
                    "binomial_se": math.sqrt(last["valid_acc"] * (1 - last["valid_acc"]) / size),
                }
            )
    # Resampling: subsets of the largest held-out set, scored by the same trained model.
    resampled = []
    largest = max((r["valid_size"] for r in rows), default=None)
    if largest:
        run = ctx.train(f"valid{largest}-seed1", ctx.config(impl=impl, seed=1, valid_size=largest))
        valid = run.dataset.valid
        correct = predictions(run.model, valid) == valid.labels.cpu().numpy()
        rng = np.random.default_rng(0)
        p = float(correct.mean())
        for size in VALID_SIZES:
            if size > len(correct):
                continue
            draws = [float(correct[rng.choice(len(correct), size, replace=False)].mean()) for _ in range(500)]
            fpc = math.sqrt((len(correct) - size) / max(len(correct) - 1, 1))  # finite-population correction
            resampled.append(
                {
                    "valid_size": size,
                    "draws": len(draws),
                    "mean_acc": statistics.fmean(draws),
                    "std_acc": statistics.pstdev(draws),
                    "binomial_se": math.sqrt(p * (1 - p) / size) * fpc,
                    "min_acc": min(draws),
                    "max_acc": max(draws),
                }
            )
    n_test = len(ctx.dataset(ctx.config()).test)
    return Result(
        rows, ctx.header(), {"resampled": resampled, "largest": largest, "skipped": skipped, "n_test": n_test}
    )


def report(folder: str, result: Result) -> None:
    rows, extra = result.rows, result.extra
    resampled, largest = extra["resampled"], extra["largest"]
    fileio.write_csv(os.path.join(folder, "resampled.csv"), resampled)
    sizes = sorted({r["valid_size"] for r in rows})
    body = (
        "A model trained with each validation-set size (seeds as rows of results.csv): the validation "
        f"accuracy at the last epoch against the test accuracy ({extra['n_test']:,} digits) of the same model.\n\n"
    )
    body += md_table(
        [
            "validation size",
            "runs",
            "validation accuracy (%)",
            "test accuracy (%)",
            "validation − test (points)",
            "binomial SE of validation (points)",
        ],
        [
            [
                f"{s:,}",
                len(r),
                pm([x["valid_acc"] for x in r], 100),
                pm([x["test_acc"] for x in r], 100),
                pm([x["valid_minus_test"] for x in r], 100, 3),
                f"{100 * statistics.fmean(x['binomial_se'] for x in r):.3f}",
            ]
            for s in sizes
            for r in [[x for x in rows if x["valid_size"] == s]]
        ],
    )
    if resampled:
        body += (
            f"\nOne trained model (seed 1, {largest:,} held out) scored on 500 random subsets of its validation "
            "set of each size: the scatter of the measured accuracy against the binomial standard error "
            "(with the finite-population correction).\n\n"
        )
        body += md_table(
            ["subset size", "mean accuracy (%)", "std of accuracy (points)", "binomial SE (points)", "range (%)"],
            [
                [
                    f"{r['valid_size']:,}",
                    f"{100 * r['mean_acc']:.3f}",
                    f"{100 * r['std_acc']:.3f}",
                    f"{100 * r['binomial_se']:.3f}",
                    f"{100 * r['min_acc']:.2f}–{100 * r['max_acc']:.2f}",
                ]
                for r in resampled
            ],
        )
    if extra["skipped"]:
        body += "\nSkipped (the sizes do not fit this data): " + "; ".join(extra["skipped"]) + "\n"
    write_results(folder, TITLE, result, body)
    if rows:
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(7, 4))
        for r in rows:
            ax.plot(r["valid_size"], 100 * r["valid_minus_test"], "o", color="C0", alpha=0.7)
        grid = np.array(sizes, dtype=float)
        p = statistics.fmean(r["test_acc"] for r in rows)
        se = 100 * np.sqrt(p * (1 - p) / grid)
        ax.fill_between(grid, -2 * se, 2 * se, color="C1", alpha=0.2, label="±2 binomial SE")
        ax.axhline(0, color="black", lw=0.8)
        ax.set(
            xscale="log",
            xlabel="validation set size",
            ylabel="validation − test accuracy (points)",
            title="measured validation accuracy against the test set",
        )
        ax.legend()
        ax.grid(alpha=0.3)
        save(fig, os.path.join(folder, "valid_size.png"))
