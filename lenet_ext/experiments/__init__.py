"""The study's error log as measured experiments, and accuracy over seeds.

    python -m lenet_ext.experiments seeds --data-dir ~/data/mnist --out experiments
    python -m lenet_ext.experiments all --epochs 1 --seeds 1 --out /tmp/tiny      # a quick smoke run

Each experiment trains through lenet_ext.train's one training path (loop.Run) and writes
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
  recipes     the search for the default recipe: distortions, epochs, batch size and learning rate,
              each candidate scored on the validation split only
  robustness  test accuracy under ten families of distortion at graded severities, for the
              default recipe's model and one trained without distortions; which digits fail
  all         every experiment above

Each is one module of this package with measure(ctx) -> Result (training and measuring) and
report(folder, result) (results.csv, results.md, plots).
"""

import argparse
import os
import sys
import time

from .. import cli
from ..training import runs
from ..training.config import MIN_TSNE_SAMPLES
from . import flatten, memory, no_bias, recipes, robustness, seeds, tsne, valid_size
from .context import Context

MODULES = {
    "seeds": seeds,
    "no-bias": no_bias,
    "flatten": flatten,
    "valid-size": valid_size,
    "tsne": tsne,
    "memory": memory,
    "recipes": recipes,
    "robustness": robustness,
}
EXPERIMENTS = tuple(MODULES)
DEFAULT_SEEDS = {"seeds": 5, "valid-size": 3, "recipes": 3}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lenet_ext.experiments",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", choices=EXPERIMENTS + ("all",), help="the experiment, or all")
    p.add_argument("--out", required=True, metavar="DIR", help="results go to DIR/NAME/")
    p.add_argument("--epochs", type=int, default=None, help="epochs per training run (default: train's, 30)")
    p.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="seeds per setting (default: 5 for seeds, 3 for valid-size and recipes' finalists, 1 for the others)",
    )
    p.add_argument(
        "--data-dir", default=None, metavar="DIR", help="the four MNIST IDX files (default: as train finds them)"
    )
    p.add_argument(
        "--impl", default=None, choices=["ext", "torch"], help="implementation (default: ext; seeds runs both)"
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--tsne-samples", type=int, default=2000, help="test digits in the t-SNE grid (default: 2000)")
    return p


def _main_impl(argv=None) -> int:
    from ..training.session import pick_device

    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    if args.seeds is not None and not 1 <= args.seeds <= 100:
        parser.error(f"--seeds must be in 1..100, got {args.seeds}")
    if args.tsne_samples < MIN_TSNE_SAMPLES:
        parser.error(f"--tsne-samples must be >= {MIN_TSNE_SAMPLES}, got {args.tsne_samples}")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise cli.CliError(f"--out {args.out}: is a file, expected a folder for the results")
    if args.data_dir is not None:
        args.data_dir = os.path.abspath(args.data_dir)
    device = pick_device(args.device, args.impl or "ext")
    names = EXPERIMENTS if args.name == "all" else (args.name,)
    seeds_given = args.seeds
    for name in names:
        folder = os.path.join(args.out, name)
        claim = runs.claim(folder, new=not os.path.isdir(folder), flag="--out")
        try:
            args.seeds = seeds_given or DEFAULT_SEEDS.get(name, 1)
            ctx = Context(args, device, folder, print)
            start = time.perf_counter()
            print(f"{name}: {folder}")
            module = MODULES[name]
            module.report(folder, module.measure(ctx))
            print(f"{name}: done in {time.perf_counter() - start:.0f} s; see {os.path.join(folder, 'results.md')}")
        finally:
            claim.release()
    return 0


def main(argv=None) -> int:
    """The command line: exit status 0, 1 (an `error: ...` line), 2 (bad arguments) or 130 (Ctrl-C)."""
    return cli.run(_main_impl, argv)
