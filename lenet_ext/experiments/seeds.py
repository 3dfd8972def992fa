"""seeds: the default recipe over --seeds seeds for ext and torch: test accuracy and errors (final
and best-validation checkpoint), errors per digit, ext against torch."""

import os
import statistics
from typing import List

import numpy as np

from ..plots import pyplot, save
from .context import Context
from .tables import Result, best_model, class_errors, md_table, mean_std, pm, predictions, write_results

TITLE = "Accuracy over seeds"


def measure(ctx: Context) -> Result:
    impls = [ctx.args.impl] if ctx.args.impl else ["ext", "torch"]
    rows = []
    for impl in impls:
        for seed in range(1, ctx.args.seeds + 1):
            run = ctx.train(f"{impl}-seed{seed}", ctx.config(impl=impl, seed=seed))
            test = run.dataset.test
            labels = test.labels.cpu().numpy()
            final_errors = class_errors(predictions(run.model, test), labels)
            best_errors = class_errors(predictions(best_model(run), test), labels)
            best_row = next(r for r in run.history if r["epoch"] == run.best["epoch"])
            rows.append(
                {
                    "impl": impl,
                    "seed": seed,
                    "epochs": run.epoch,
                    "test_acc": run.history[-1]["test_acc"],
                    "test_errors": sum(final_errors),
                    "best_epoch": run.best["epoch"],
                    "best_test_acc": best_row["test_acc"],
                    "best_test_errors": sum(best_errors),
                    "train_seconds": round(sum(r["epoch_s"] for r in run.history), 2),
                    **{f"errors_{c}": e for c, e in enumerate(final_errors)},
                    **{f"best_errors_{c}": e for c, e in enumerate(best_errors)},
                }
            )
    return Result(rows, ctx.header(), {"impls": impls})


def report(folder: str, result: Result) -> None:
    rows, impls = result.rows, result.extra["impls"]
    by = {impl: [r for r in rows if r["impl"] == impl] for impl in impls}
    body = "## Accuracy over seeds (mean ± std)\n\n"
    body += md_table(
        [
            "impl",
            "seeds",
            "test accuracy (%)",
            "test errors",
            "best-valid checkpoint accuracy (%)",
            "its errors",
            "training s",
        ],
        [
            [
                impl,
                len(r),
                pm([x["test_acc"] for x in r], 100),
                pm([x["test_errors"] for x in r], 1, 1),
                pm([x["best_test_acc"] for x in r], 100),
                pm([x["best_test_errors"] for x in r], 1, 1),
                pm([x["train_seconds"] for x in r], 1, 0),
            ]
            for impl, r in by.items()
        ],
    )
    for kind, prefix in (("best-validation checkpoint", "best_errors_"), ("final model", "errors_")):
        body += f"\n## Test errors per digit, {kind} (mean ± std over seeds)\n\n"
        body += md_table(
            ["digit"] + impls, [[c] + [pm([x[f"{prefix}{c}"] for x in by[i]], 1, 1) for i in impls] for c in range(10)]
        )
        for impl in impls:
            means = {c: statistics.fmean(x[f"{prefix}{c}"] for x in by[impl]) for c in range(10)}
            ranked = sorted(means, key=lambda c: -means[c])
            body += (
                f"\n{impl}, {kind}: most errors on "
                + ", ".join(f"{c}s ({means[c]:.1f})" for c in ranked[:4])
                + "; fewest on "
                + ", ".join(f"{c}s ({means[c]:.1f})" for c in ranked[-2:])
                + ".\n"
            )
    if len(impls) == 2:
        body += _ext_against_torch(by)
    write_results(folder, TITLE, result, body)
    _plot_errors_per_digit(by, impls, os.path.join(folder, "errors_per_digit.png"))


def _ext_against_torch(by) -> str:
    (ma, sa), (mb, sb) = (mean_std([x["test_acc"] * 100 for x in by[i]]) for i in ("ext", "torch"))
    text = f"\n## ext against torch\n\nGap in final test accuracy: {ma - mb:+.3f} points (ext − torch); "
    text += f"seed-to-seed standard deviation: ext {sa:.3f}, torch {sb:.3f} points."
    n = min(len(by["ext"]), len(by["torch"]))
    if n > 1 and (sa > 0 or sb > 0):
        from scipy import stats

        t = stats.ttest_ind([x["test_acc"] for x in by["ext"]], [x["test_acc"] for x in by["torch"]], equal_var=False)
        text += (
            f" Welch's t = {t.statistic:.2f}, p = {t.pvalue:.2f}: the gap is "
            f"{'within' if t.pvalue > 0.05 else 'outside'} the seed-to-seed spread."
        )
    return text + "\n"


def _plot_errors_per_digit(by, impls: List[str], path: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(impls)
    for k, impl in enumerate(impls):
        stats_ = [mean_std([x[f"best_errors_{c}"] for x in by[impl]]) for c in range(10)]
        ax.bar(
            np.arange(10) + (k - (len(impls) - 1) / 2) * width,
            [m for m, _ in stats_],
            width,
            yerr=[s for _, s in stats_],
            capsize=3,
            label=impl,
        )
    ax.set(
        xticks=range(10),
        xlabel="true digit",
        ylabel="test errors (mean ± std over seeds)",
        title="errors per digit, best-validation checkpoints",
    )
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    save(fig, path)
