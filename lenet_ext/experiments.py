"""The study's error log as measured experiments, and accuracy over seeds.

    python -m lenet_ext.experiments seeds --data-dir ~/data/mnist --out experiments
    python -m lenet_ext.experiments all --epochs 1 --seeds 1 --out /tmp/tiny      # a quick smoke run

Each experiment trains through lenet_ext.train's one training path (train.Run) and writes
results.csv, results.md and its plots into OUT/NAME/, with every training run's folder under
OUT/NAME/runs/ (a finished run is reused and an interrupted one resumed when the experiment is
run again with the same settings):

  seeds       the default recipe over --seeds seeds for ext and torch: test accuracy and errors
              (final and best-validation checkpoint), errors per digit, ext against torch
  no-bias     LeNet5(bias=False) (no biases in f6 and the output layer) against the default: the
              spread of the logits across a batch at initialisation and after training, curves
  flatten     LeNet5(c5="linear") (s4 flattened into a 400->120 linear layer) against the C5 conv:
              the same function (the conv's weights give the same logits), the same training, and
              the variants that do leave the loss stuck between 0.1 and 0.4
  valid-size  validation sets of 500, 1,000, 5,000 and 10,000: how the measured validation
              accuracy scatters with the size, against the test set and the binomial error
  tsne        a grid of t-SNE settings on the same F6 features, scored by trustworthiness and
              k-NN accuracy in 2-D against k-NN in the 84-d space; PCA (and UMAP if installed)
  memory      peak memory of evaluating the 10,000 test digits in batches or all at once
  all         every experiment above
"""
import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch

from . import checkpoint, cli, data, train
from .errors import UserError
from .models import LeNet5, c5_as_linear

EXPERIMENTS = ("seeds", "no-bias", "flatten", "valid-size", "tsne", "memory")
VALID_SIZES = (500, 1000, 5000, 10000)


class Context:
    """What every experiment shares: the command's settings, the device, where results go."""

    def __init__(self, args: argparse.Namespace, device: torch.device, log: Callable[[str], None]):
        self.args, self.device = args, device
        self._datasets: Dict[Tuple, data.MNIST] = {}
        shown = set()

        def once(message: str) -> None:  # the data's notices come once, not once per split
            if message not in shown:
                shown.add(message)
                log(message)
        self.log = once

    def config(self, **overrides) -> Dict[str, Any]:
        """The default recipe (train's defaults) with the command's --epochs/--data-dir and overrides."""
        args = train.build_parser().parse_args([])
        args.data_dir = self.args.data_dir
        if self.args.epochs is not None:
            args.epochs = self.args.epochs
        config = train.config_from_args(args)
        config.update(overrides)
        train.validate_config(config)
        return config

    def dataset(self, config: Dict[str, Any]) -> data.MNIST:
        key = (config["dataset"], config["data_dir"], config["valid_size"], config["seed"])
        if key not in self._datasets:
            self._datasets[key] = data.load(config["dataset"], config["data_dir"], config["valid_size"],
                                            config["seed"], log=self.log)
        return self._datasets[key]

    def train(self, folder: str, name: str, config: Dict[str, Any]) -> train.Run:
        """A trained run of config in folder/runs/name: reused if it finished there with these
        settings, resumed if it was interrupted, else trained from the start."""
        run_dir = os.path.join(folder, "runs", name)
        dataset = self.dataset(config)
        last = os.path.join(run_dir, "last.pt")
        state = None
        if os.path.exists(last):
            state = train.load_resume_state(last)
            if state["config"] != config or state["data"].get("fingerprint") != dataset.fingerprint:
                raise checkpoint.RunFolderError(f"{run_dir}: holds a run with other settings or data; give another "
                                                "--out, or remove that folder")
        claim = checkpoint.claim(run_dir, new=state is None, flag="run folder")
        try:
            run = train.Run(config, run_dir, self.device, log=lambda *a, **k: None, dataset=dataset)
            if state is not None:
                run.restore(state)
            start = time.perf_counter()
            finished = run.epoch == config["epochs"]
            run.fit()
            self.log(f"  {name}: {'reused' if finished else f'trained in {time.perf_counter() - start:.0f} s'}; "
                     f"test accuracy {run.history[-1]['test_acc']:.4f}")
        finally:
            claim.release()
        return run


# ------------------------------------------------------------------------------------------ helpers


@torch.inference_mode()
def predictions(model: torch.nn.Module, split: data.Split, batch_size: int = 1000) -> np.ndarray:
    model.eval()
    out = [model(split.images[i:i + batch_size]).argmax(1).cpu() for i in range(0, len(split), batch_size)]
    return torch.cat(out).numpy()


def class_errors(pred: np.ndarray, labels: np.ndarray, classes: int = 10) -> List[int]:
    return [int(((labels == c) & (pred != c)).sum()) for c in range(classes)]


def best_model(run: train.Run) -> LeNet5:
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
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header)))
             + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_md(folder: str, title: str, ctx: Context, body: str) -> None:
    command = "python -m lenet_ext.experiments " + " ".join(ctx.args.argv)
    head = (f"# {title}\n\n`{command}`\n\n{ctx.dataset(ctx.config()).describe()}; device {ctx.device}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads.\n\n")
    checkpoint.atomic_write_text(os.path.join(folder, "results.md"), head + body)


def _plt():
    from .analysis import _pyplot
    return _pyplot()


def _save(fig, path):
    from .analysis import _save as save
    save(fig, path)


def plot_curves(runs: Dict[str, train.Run], path: str, title: str) -> None:
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, run in runs.items():
        epochs = [r["epoch"] for r in run.history]
        line, = ax1.plot(epochs, [r["train_loss"] for r in run.history], "-o", ms=3, label=f"{name} train")
        ax1.plot(epochs, [r["test_loss"] for r in run.history], "--", color=line.get_color(), label=f"{name} test")
        ax2.plot(epochs, [100 * r["test_acc"] for r in run.history], "-o", ms=3, color=line.get_color(),
                 label=f"{name} test")
    ax1.set(xlabel="epoch", ylabel="cross-entropy", yscale="log", title="loss")
    ax2.set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


# ------------------------------------------------------------------------------------------ seeds


def exp_seeds(ctx: Context, folder: str) -> None:
    impls = [ctx.args.impl] if ctx.args.impl else ["ext", "torch"]
    rows = []
    for impl in impls:
        for seed in range(1, ctx.args.seeds + 1):
            config = ctx.config(impl=impl, seed=seed)
            run = ctx.train(folder, f"{impl}-seed{seed}", config)
            test = run.dataset.test
            labels = test.labels.cpu().numpy()
            final_errors = class_errors(predictions(run.model, test), labels)
            best_errors = class_errors(predictions(best_model(run), test), labels)
            best_row = next(r for r in run.history if r["epoch"] == run.best["epoch"])
            rows.append({"impl": impl, "seed": seed, "epochs": run.epoch, "test_acc": run.history[-1]["test_acc"],
                         "test_errors": sum(final_errors), "best_epoch": run.best["epoch"],
                         "best_test_acc": best_row["test_acc"], "best_test_errors": sum(best_errors),
                         "train_seconds": round(sum(r["epoch_s"] for r in run.history), 2),
                         **{f"errors_{c}": e for c, e in enumerate(final_errors)},
                         **{f"best_errors_{c}": e for c, e in enumerate(best_errors)}})
    checkpoint.write_csv(os.path.join(folder, "results.csv"), rows)

    by = {impl: [r for r in rows if r["impl"] == impl] for impl in impls}
    body = "## Accuracy over seeds (mean ± std)\n\n"
    body += md_table(["impl", "seeds", "test accuracy (%)", "test errors", "best-valid checkpoint accuracy (%)",
                      "its errors", "training s"],
                     [[impl, len(r), pm([x["test_acc"] for x in r], 100), pm([x["test_errors"] for x in r], 1, 1),
                       pm([x["best_test_acc"] for x in r], 100), pm([x["best_test_errors"] for x in r], 1, 1),
                       pm([x["train_seconds"] for x in r], 1, 0)] for impl, r in by.items()])
    for kind, prefix in (("best-validation checkpoint", "best_errors_"), ("final model", "errors_")):
        body += f"\n## Test errors per digit, {kind} (mean ± std over seeds)\n\n"
        body += md_table(["digit"] + impls, [[c] + [pm([x[f"{prefix}{c}"] for x in by[i]], 1, 1) for i in impls]
                                             for c in range(10)])
        for impl in impls:
            means = {c: statistics.fmean(x[f"{prefix}{c}"] for x in by[impl]) for c in range(10)}
            ranked = sorted(means, key=lambda c: -means[c])
            body += (f"\n{impl}, {kind}: most errors on " + ", ".join(f"{c}s ({means[c]:.1f})" for c in ranked[:4])
                     + "; fewest on " + ", ".join(f"{c}s ({means[c]:.1f})" for c in ranked[-2:]) + ".\n")
    if len(impls) == 2:
        (ma, sa), (mb, sb) = (mean_std([x["test_acc"] * 100 for x in by[i]]) for i in impls)
        body += f"\n## ext against torch\n\nGap in final test accuracy: {ma - mb:+.3f} points (ext − torch); "
        body += f"seed-to-seed standard deviation: ext {sa:.3f}, torch {sb:.3f} points."
        n = min(len(by["ext"]), len(by["torch"]))
        if n > 1 and (sa > 0 or sb > 0):
            from scipy import stats
            t = stats.ttest_ind([x["test_acc"] for x in by["ext"]], [x["test_acc"] for x in by["torch"]],
                                equal_var=False)
            body += (f" Welch's t = {t.statistic:.2f}, p = {t.pvalue:.2f}: the gap is "
                     f"{'within' if t.pvalue > 0.05 else 'outside'} the seed-to-seed spread.")
        body += "\n"
    write_md(folder, "Accuracy over seeds", ctx, body)

    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(impls)
    for k, impl in enumerate(impls):
        stats_ = [mean_std([x[f"best_errors_{c}"] for x in by[impl]]) for c in range(10)]
        ax.bar(np.arange(10) + (k - (len(impls) - 1) / 2) * width, [m for m, _ in stats_], width,
               yerr=[s for _, s in stats_], capsize=3, label=impl)
    ax.set(xticks=range(10), xlabel="true digit", ylabel="test errors (mean ± std over seeds)",
           title="errors per digit, best-validation checkpoints")
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    _save(fig, os.path.join(folder, "errors_per_digit.png"))


# ------------------------------------------------------------------------------------------ no-bias


@torch.inference_mode()
def logit_spread(model: torch.nn.Module, images: torch.Tensor) -> List[float]:
    """Per class: the standard deviation of that class's logit across the batch."""
    model.eval()
    return model(images).double().std(0).tolist()


def exp_no_bias(ctx: Context, folder: str) -> None:
    impl = ctx.args.impl or "ext"
    rows, runs = [], {}
    for seed in range(1, ctx.args.seeds + 1):
        for name, bias in (("default", True), ("no-bias", False)):
            config = ctx.config(impl=impl, seed=seed, bias=bias)
            dataset = ctx.dataset(config)
            batch = dataset.test.images[:1000].to(ctx.device)
            torch.manual_seed(seed)  # the initialisation the run starts from
            init = LeNet5(impl=impl, bias=bias).to(ctx.device)
            run = ctx.train(folder, f"{name}-seed{seed}", config)
            runs.setdefault(name, run)
            at_init, trained = logit_spread(init, batch), logit_spread(run.model, batch)
            rows.append({"model": name, "seed": seed, "test_acc": run.history[-1]["test_acc"],
                         "train_loss_epoch1": run.history[0]["train_loss"], "train_loss": run.history[-1]["train_loss"],
                         "logit_std_init": statistics.fmean(at_init), "logit_std_trained": statistics.fmean(trained),
                         **{f"init_std_{c}": v for c, v in enumerate(at_init)},
                         **{f"trained_std_{c}": v for c, v in enumerate(trained)}})
    checkpoint.write_csv(os.path.join(folder, "results.csv"), rows)
    by = {m: [r for r in rows if r["model"] == m] for m in ("default", "no-bias")}
    body = ("The spread of each class's logit across a batch of 1,000 test digits (standard deviation across the "
            "batch, averaged over the ten classes; the per-class values are in results.csv), at initialisation and "
            "after training, and the accuracy (mean ± std over seeds).\n\n")
    body += md_table(["model", "seeds", "logit std at init", "logit std trained", "train loss, epoch 1",
                      "final train loss", "test accuracy (%)"],
                     [[m, len(r), pm([x["logit_std_init"] for x in r], 1, 4),
                       pm([x["logit_std_trained"] for x in r], 1, 4),
                       pm([x["train_loss_epoch1"] for x in r], 1, 3), pm([x["train_loss"] for x in r], 1, 4),
                       pm([x["test_acc"] for x in r], 100)] for m, r in by.items()])
    write_md(folder, "No bias in f6 and the output layer", ctx, body)
    plot_curves(runs, os.path.join(folder, "curves.png"), "default against no bias in f6 and the output layer")
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, key, title in ((axes[0], "init_std_", "at initialisation"), (axes[1], "trained_std_", "after training")):
        for k, (m, r) in enumerate(by.items()):
            ax.bar(np.arange(10) + (k - 0.5) * 0.4, [statistics.fmean(x[f"{key}{c}"] for x in r) for c in range(10)],
                   0.4, label=m)
        ax.set(xticks=range(10), xlabel="class", ylabel="std of the logit across the batch", title=title)
        ax.legend()
    _save(fig, os.path.join(folder, "logit_spread.png"))


# ------------------------------------------------------------------------------------------ flatten


def exp_flatten(ctx: Context, folder: str) -> None:
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
    variants = [("conv", base), ("linear", {**base, "c5": "linear"}),
                ("linear, lr 10x lower (0.001)", {**base, "c5": "linear", "lr": base["lr"] / 10}),
                ("linear, lr 10x higher (0.1)", {**base, "c5": "linear", "lr": base["lr"] * 10}),
                ("linear, SGD lr 0.01", {**base, "c5": "linear", "optimizer": "sgd"}),
                ("linear, no bias in f6/output", {**base, "c5": "linear", "bias": False})]
    rows, runs = [], {}
    for name, config in variants:
        try:
            run = ctx.train(folder, name.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
                            .replace("/", "-"), config)
        except train.TrainingError as exc:  # a variant whose loss became NaN: that is a finding too
            ctx.log(f"  {name}: {exc}")
            rows.append({"variant": name, "c5": config["c5"], "optimizer": config["optimizer"], "lr": config["lr"],
                         "bias": config["bias"], "epochs": 0, "train_loss_first": math.nan,
                         "train_loss_final": math.nan, "test_loss_final": math.nan, "test_acc": math.nan,
                         "loss_stuck_0.1_0.4": False, "diverged": True})
            continue
        runs[name] = run
        losses = [r["train_loss"] for r in run.history]
        tail = losses[-3:]
        stuck = all(0.1 <= v <= 0.4 for v in tail)
        rows.append({"variant": name, "c5": config["c5"], "optimizer": config["optimizer"], "lr": config["lr"],
                     "bias": config["bias"], "epochs": run.epoch, "train_loss_first": losses[0],
                     "train_loss_final": losses[-1], "test_loss_final": run.history[-1]["test_loss"],
                     "test_acc": run.history[-1]["test_acc"], "loss_stuck_0.1_0.4": stuck, "diverged": False})
    checkpoint.write_csv(os.path.join(folder, "results.csv"), rows)
    identical = all(a["train_loss"] == b["train_loss"] and a["test_acc"] == b["test_acc"]
                    for a, b in zip(runs["conv"].history, runs["linear"].history))
    body = (f"**Same function.** The C5 conv's weights reshaped into the 400→120 linear layer give the same logits "
            f"on 1,000 test digits: largest difference {same:.3g}. With the same seed the two networks also start "
            f"from the same weights ({'yes' if same_init else 'no'}: torch initialises both from the same fan-in of "
            f"400, in the same order), and trained side by side their per-epoch metrics are "
            f"{'identical, epoch for epoch' if identical else 'not identical'}.\n\n")
    body += md_table(["variant", "epochs", "train loss, epoch 1", "final train loss", "final test loss",
                      "test accuracy (%)", "final 3 epochs' train loss in 0.1–0.4"],
                     [[r["variant"], r["epochs"], f"{r['train_loss_first']:.3f}", f"{r['train_loss_final']:.4f}",
                       f"{r['test_loss_final']:.4f}", f"{100 * r['test_acc']:.2f}",
                       "diverged (NaN loss)" if r["diverged"] else "yes" if r["loss_stuck_0.1_0.4"] else "no"]
                      for r in rows])
    write_md(folder, "Flatten: s4 into a 400→120 linear layer against the C5 conv", ctx, body)
    plot_curves(runs, os.path.join(folder, "curves.png"), "C5 conv against the flattened 400→120 linear layer")


# ------------------------------------------------------------------------------------------ valid-size


def exp_valid_size(ctx: Context, folder: str) -> None:
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
            run = ctx.train(folder, f"valid{size}-seed{seed}", config)
            last = run.history[-1]
            rows.append({"valid_size": size, "seed": seed, "valid_acc": last["valid_acc"], "test_acc": last["test_acc"],
                         "valid_minus_test": last["valid_acc"] - last["test_acc"],
                         "binomial_se": math.sqrt(last["valid_acc"] * (1 - last["valid_acc"]) / size)})
    # Resampling: subsets of the largest held-out set, scored by the same trained model.
    resampled = []
    largest = max((r["valid_size"] for r in rows), default=None)
    if largest:
        config = ctx.config(impl=impl, seed=1, valid_size=largest)
        run = ctx.train(folder, f"valid{largest}-seed1", config)
        valid = run.dataset.valid
        correct = predictions(run.model, valid) == valid.labels.cpu().numpy()
        rng = np.random.default_rng(0)
        p = float(correct.mean())
        for size in VALID_SIZES:
            if size > len(correct):
                continue
            draws = [float(correct[rng.choice(len(correct), size, replace=False)].mean()) for _ in range(500)]
            fpc = math.sqrt((len(correct) - size) / max(len(correct) - 1, 1))  # finite-population correction
            resampled.append({"valid_size": size, "draws": len(draws), "mean_acc": statistics.fmean(draws),
                              "std_acc": statistics.pstdev(draws), "binomial_se": math.sqrt(p * (1 - p) / size) * fpc,
                              "min_acc": min(draws), "max_acc": max(draws)})
    checkpoint.write_csv(os.path.join(folder, "results.csv"), rows)
    checkpoint.write_csv(os.path.join(folder, "resampled.csv"), resampled)
    sizes = sorted({r["valid_size"] for r in rows})
    n_test = len(ctx.dataset(ctx.config()).test)
    body = ("A model trained with each validation-set size (seeds as rows of results.csv): the validation "
            f"accuracy at the last epoch against the test accuracy ({n_test:,} digits) of the same model.\n\n")
    body += md_table(["validation size", "runs", "validation accuracy (%)", "test accuracy (%)",
                      "validation − test (points)", "binomial SE of validation (points)"],
                     [[f"{s:,}", len(r), pm([x["valid_acc"] for x in r], 100), pm([x["test_acc"] for x in r], 100),
                       pm([x["valid_minus_test"] for x in r], 100, 3), f"{100 * statistics.fmean(x['binomial_se'] for x in r):.3f}"]
                      for s in sizes for r in [[x for x in rows if x["valid_size"] == s]]])
    if resampled:
        body += (f"\nOne trained model (seed 1, {largest:,} held out) scored on 500 random subsets of its validation "
                 "set of each size: the scatter of the measured accuracy against the binomial standard error "
                 "(with the finite-population correction).\n\n")
        body += md_table(["subset size", "mean accuracy (%)", "std of accuracy (points)", "binomial SE (points)",
                          "range (%)"],
                         [[f"{r['valid_size']:,}", f"{100 * r['mean_acc']:.3f}", f"{100 * r['std_acc']:.3f}",
                           f"{100 * r['binomial_se']:.3f}", f"{100 * r['min_acc']:.2f}–{100 * r['max_acc']:.2f}"]
                          for r in resampled])
    if skipped:
        body += "\nSkipped (the sizes do not fit this data): " + "; ".join(skipped) + "\n"
    write_md(folder, "Validation-set size", ctx, body)
    if rows:
        plt = _plt()
        fig, ax = plt.subplots(figsize=(7, 4))
        for r in rows:
            ax.plot(r["valid_size"], 100 * r["valid_minus_test"], "o", color="C0", alpha=0.7)
        grid = np.array(sizes, dtype=float)
        p = statistics.fmean(r["test_acc"] for r in rows)
        se = 100 * np.sqrt(p * (1 - p) / grid)
        ax.fill_between(grid, -2 * se, 2 * se, color="C1", alpha=0.2, label="±2 binomial SE")
        ax.axhline(0, color="black", lw=0.8)
        ax.set(xscale="log", xlabel="validation set size", ylabel="validation − test accuracy (points)",
               title="measured validation accuracy against the test set")
        ax.legend()
        ax.grid(alpha=0.3)
        _save(fig, os.path.join(folder, "valid_size.png"))


# ------------------------------------------------------------------------------------------ tsne


def _tsne(features, perplexity, learning_rate, iterations, init, seed):
    import inspect

    from sklearn.manifold import TSNE
    iters = "max_iter" if "max_iter" in inspect.signature(TSNE.__init__).parameters else "n_iter"
    return TSNE(n_components=2, perplexity=perplexity, learning_rate=learning_rate, init=init, random_state=seed,
                **{iters: iterations}).fit_transform(features)


def knn_accuracy(points: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """Leave-one-out k-NN accuracy."""
    from sklearn.neighbors import KNeighborsClassifier
    knn = KNeighborsClassifier(n_neighbors=k + 1).fit(points, labels)
    neighbours = knn.kneighbors(points, return_distance=False)[:, 1:]
    votes = labels[neighbours]
    pred = np.array([np.bincount(v, minlength=10).argmax() for v in votes])
    return float((pred == labels).mean())


def exp_tsne(ctx: Context, folder: str) -> None:
    from sklearn.decomposition import PCA
    from sklearn.manifold import trustworthiness
    impl = ctx.args.impl or "ext"
    run = ctx.train(folder, "model-seed1", ctx.config(impl=impl, seed=1))
    test = run.dataset.test
    n = min(ctx.args.tsne_samples, len(test))
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(test), n, replace=False))
    with torch.inference_mode():
        run.model.eval()
        features = run.model.features(test.images[torch.from_numpy(pick)].to(ctx.device)).double().cpu().numpy()
    labels = test.labels.cpu().numpy()[pick]
    knn84 = knn_accuracy(features, labels)
    base = dict(perplexity=30.0, learning_rate="auto", iterations=1000, init="pca", seed=0)
    grid = [dict(base, perplexity=p, learning_rate=lr) for p in (5.0, 30.0, 100.0) for lr in (10.0, 200.0, "auto")]
    grid += [dict(base, iterations=it) for it in (250, 500)]
    grid += [dict(base, init="random"), dict(base, seed=1), dict(base, seed=2)]
    rows, embeddings = [], []
    for setting in grid:
        perplexity = min(setting["perplexity"], (n - 1) / 3)
        t0 = time.perf_counter()
        xy = _tsne(features, perplexity, setting["learning_rate"], setting["iterations"], setting["init"],
                   setting["seed"])
        rows.append({"method": "t-SNE", **setting, "perplexity": perplexity,
                     "trustworthiness": trustworthiness(features, xy, n_neighbors=10),
                     "knn_2d": knn_accuracy(xy, labels), "knn_84d": knn84, "seconds": time.perf_counter() - t0})
        embeddings.append(xy)
    xy = PCA(n_components=2, random_state=0).fit_transform(features)
    rows.append({"method": "PCA", "trustworthiness": trustworthiness(features, xy, n_neighbors=10),
                 "knn_2d": knn_accuracy(xy, labels), "knn_84d": knn84})
    pca_xy = xy
    try:
        import umap  # optional extra
        xy = umap.UMAP(random_state=0).fit_transform(features)
        rows.append({"method": "UMAP", "trustworthiness": trustworthiness(features, xy, n_neighbors=10),
                     "knn_2d": knn_accuracy(xy, labels), "knn_84d": knn84})
    except ImportError:
        pass
    checkpoint.write_csv(os.path.join(folder, "results.csv"), rows)

    def fmt(v):
        return f"{v:g}" if isinstance(v, float) else str(v)
    body = (f"t-SNE of the F6 features (84-d) of {n:,} test digits from one trained model (test accuracy "
            f"{100 * run.history[-1]['test_acc']:.2f}%). Trustworthiness (10 neighbours; 1 = every 2-D neighbour is "
            f"an 84-d neighbour) and leave-one-out 5-NN accuracy in 2-D, against 5-NN in the 84-d space: "
            f"{100 * knn84:.2f}%.\n\n")
    body += md_table(["method", "perplexity", "learning rate", "iterations", "init", "seed", "trustworthiness",
                      "5-NN 2-D (%)", "s"],
                     [[r["method"], fmt(r.get("perplexity", "-")), fmt(r.get("learning_rate", "-")),
                       r.get("iterations", "-"), r.get("init", "-"), r.get("seed", "-"), f"{r['trustworthiness']:.4f}",
                       f"{100 * r['knn_2d']:.2f}", f"{r['seconds']:.1f}" if "seconds" in r else "-"] for r in rows])
    write_md(folder, "t-SNE settings", ctx, body)
    plt = _plt()
    fig, axes = plt.subplots(3, 4, figsize=(15, 11))
    panels = list(zip(rows[:9], embeddings[:9])) + [(rows[-2 if len(rows) > len(grid) + 1 else -1], pca_xy)]
    cmap = plt.get_cmap("tab10")
    for ax, (row, xy) in zip(axes.flat, panels):
        ax.scatter(xy[:, 0], xy[:, 1], s=3, c=[cmap(int(c)) for c in labels])
        name = (f"perplexity {row['perplexity']:g}, lr {fmt(row['learning_rate'])}" if row["method"] == "t-SNE"
                else row["method"])
        ax.set_title(f"{name}\ntrust {row['trustworthiness']:.3f}, 5-NN {100 * row['knn_2d']:.1f}%", fontsize=8)
        ax.set(xticks=[], yticks=[])
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"t-SNE of the F6 layer ({n:,} test digits): perplexity × learning rate, and PCA", fontsize=10)
    _save(fig, os.path.join(folder, "tsne_grid.png"))


# ------------------------------------------------------------------------------------------ memory


# Measured in a fresh process from its own memory map's high-water mark (VmHWM, reset through
# /proc/self/clear_refs just before the evaluation): a child's ru_maxrss would count the pages of
# the process that forked it.
MEMORY_PROBE = """
import sys, torch, lenet_ext
from lenet_ext import data, train
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
impl, batch, data_dir = sys.argv[1], int(sys.argv[2]), (sys.argv[3] or None)
ds = data.load(data_dir=data_dir, log=lambda m: None)
model = lenet_ext.LeNet5(impl)
train.evaluate(model, data.Split(ds.test.images[:8], ds.test.labels[:8], ds.test.index[:8]), 8)  # warm-up
before = status("VmRSS")
open("/proc/self/clear_refs", "w").write("5")
train.evaluate(model, ds.test, batch)
print(len(ds.test), before, status("VmHWM"))
"""


def exp_memory(ctx: Context, folder: str) -> None:
    rows = []
    for impl in ("ext", "torch"):
        for batch in (100, 1000, 10000):
            proc = subprocess.run([sys.executable, "-c", MEMORY_PROBE, impl, str(batch), ctx.args.data_dir or ""],
                                  capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                raise UserError(f"memory probe failed: {proc.stderr.strip().splitlines()[-1:]}")
            n, before, after = proc.stdout.split()
            rows.append({"impl": impl, "batch": batch, "test_images": int(n), "rss_before_mb": float(before),
                         "rss_peak_mb": float(after), "evaluation_mb": float(after) - float(before)})
    checkpoint.write_csv(os.path.join(folder, "results.csv"), rows)
    body = ("Peak resident memory added by evaluating the test set (train.evaluate, CPU, a fresh process each, "
            "after a warm-up on 8 digits; the high-water mark of resident memory minus the resident memory before), "
            "in batches of 100, 1,000 or all at once. ext's fused inference op keeps an image's activations in "
            "a small scratch buffer; the torch layers hold every layer's output for the whole batch.\n\n")
    body += md_table(["impl", "batch", "test images", "resident before (MB)", "added by the evaluation (MB)"],
                     [[r["impl"], f"{r['batch']:,}", f"{r['test_images']:,}", f"{r['rss_before_mb']:.0f}",
                       f"{r['evaluation_mb']:.0f}"] for r in rows])
    write_md(folder, "Memory of the evaluation", ctx, body)


RUNNERS = {"seeds": exp_seeds, "no-bias": exp_no_bias, "flatten": exp_flatten, "valid-size": exp_valid_size,
           "tsne": exp_tsne, "memory": exp_memory}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lenet_ext.experiments", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=EXPERIMENTS + ("all",), help="the experiment, or all")
    p.add_argument("--out", required=True, metavar="DIR", help="results go to DIR/NAME/")
    p.add_argument("--epochs", type=int, default=None, help="epochs per training run (default: train's, 20)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per setting (default: 5 for seeds, 3 for "
                   "valid-size, 1 for the others)")
    p.add_argument("--data-dir", default=None, metavar="DIR", help="the four MNIST IDX files (default: as train "
                   "finds them)")
    p.add_argument("--impl", default=None, choices=["ext", "torch"], help="implementation (default: ext; seeds runs "
                   "both)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--tsne-samples", type=int, default=2000, help="test digits in the t-SNE grid (default: 2000)")
    return p


DEFAULT_SEEDS = {"seeds": 5, "valid-size": 3}


def _main_impl(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    if args.seeds is not None and not 1 <= args.seeds <= 100:
        parser.error(f"--seeds must be in 1..100, got {args.seeds}")
    if args.tsne_samples < 50:
        parser.error(f"--tsne-samples must be >= 50, got {args.tsne_samples}")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise cli.CliError(f"--out {args.out}: is a file, expected a folder for the results")
    if args.data_dir is not None:
        args.data_dir = os.path.abspath(args.data_dir)
    device = train.pick_device(args.device, args.impl or "ext")
    names = EXPERIMENTS if args.name == "all" else (args.name,)
    seeds_given = args.seeds
    for name in names:
        folder = os.path.join(args.out, name)
        claim = checkpoint.claim(folder, new=False, flag="--out") if os.path.isdir(folder) else \
            checkpoint.claim(folder, new=True, flag="--out")
        try:
            args.seeds = seeds_given or DEFAULT_SEEDS.get(name, 1)
            ctx = Context(args, device, print)
            start = time.perf_counter()
            print(f"{name}: {folder}")
            RUNNERS[name](ctx, folder)
            print(f"{name}: done in {time.perf_counter() - start:.0f} s; see {os.path.join(folder, 'results.md')}")
        finally:
            claim.release()
    return 0


def main(argv=None) -> int:
    """The command line: exit status 0, 1 (an `error: ...` line), 2 (bad arguments) or 130 (Ctrl-C)."""
    return cli.run(_main_impl, argv)


if __name__ == "__main__":
    sys.exit(main())
