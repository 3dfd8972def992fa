"""Train LeNet-5 on MNIST with our kernels (--impl ext) or the torch.nn reference (--impl torch),
then write the study of the run (loss curves, failures, t-SNE, conv1 maps, report.html).

    python -m lenet_ext.train                               # defaults: >= 99.2% test accuracy on MNIST
    python -m lenet_ext.train --recipe fast                 # 99% test accuracy soonest, then stop
    python -m lenet_ext.train --data-dir ~/data/mnist --impl torch --epochs 5
    python -m lenet_ext.train --resume runs/20261126-120000  # continue an interrupted run
    torchrun --nproc_per_node=2 -m lenet_ext.train           # data-parallel over 2 processes

Under torchrun (WORLD_SIZE > 1) the model is wrapped in DistributedDataParallel (gloo on the CPU,
NCCL on CUDA). --batch-size is the global batch: each process takes its slice of every batch,
so the run follows the same trajectory as one process with the same seed, and the learning
rate needs no rescaling when the number of processes changes.

The loop keeps everything on the training device: the images padded once for the random shifts,
each batch gathered by one index_select into preallocated buffers, the loss and accuracy summed
on the device and read a few times per epoch without stalling it. On CUDA the training step is
captured once as a CUDA graph and replayed (--cuda-graph, on by default there).

The run folder (--out, default runs/<timestamp>) is claimed for the run's life (a second run
into it fails at once); it gets metrics.jsonl and metrics.csv (one row per epoch), best.pt
(lowest validation loss), last.pt (with optimizer state, for --resume), summary.json (with the
time to --target-acc), and the study's files.
"""

import argparse
import sys
from typing import List

import torch

from . import cli, data
from .models import C5_KINDS, IMPLS
from .training import session
from .training.config import DEFAULTS, OPTIMIZERS, RECIPES, RESUME_OVERRIDES, TrainConfig


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lenet_ext.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--dataset", default=DEFAULTS.dataset, choices=sorted(data.DATASETS), help="dataset (default: mnist)"
    )
    p.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="folder with the four IDX files (default: the cache, else download, else the embedded 5,000 digits)",
    )
    p.add_argument(
        "--impl", default=DEFAULTS.impl, choices=IMPLS, help="our kernels or the torch.nn reference (default: ext)"
    )
    p.add_argument(
        "--device",
        default="auto",
        help="auto, cpu, cuda or cuda:N; auto: cuda when a GPU (and, for "
        "--impl ext, our CUDA kernels) is there (default: auto)",
    )
    fast = RECIPES["fast"]
    p.add_argument(
        "--recipe",
        default=DEFAULTS.recipe,
        choices=sorted(RECIPES),
        help="settings for the flags not given: default (the defaults shown here), or fast: "
        f"{fast['epochs']} epochs of batch {fast['batch_size']} at --lr {fast['lr']:g}, --shift {fast['shift']}, "
        f"--augment {fast['augment']}, "
        "--stop-at-target (the run that reaches 99%% test accuracy soonest) (default: default)",
    )
    p.add_argument("--epochs", type=int, default=DEFAULTS.epochs, help=f"number of epochs (default: {DEFAULTS.epochs})")
    p.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULTS.batch_size,
        help="training batch size; under torchrun the global batch, split between the processes (default: 64)",
    )
    p.add_argument(
        "--test-batch-size", type=int, default=DEFAULTS.test_batch_size, help="evaluation batch size (default: 1000)"
    )
    p.add_argument(
        "--lr", type=float, default=DEFAULTS.lr, help="peak learning rate of the one-cycle schedule (default: 0.01)"
    )
    p.add_argument("--optimizer", default=DEFAULTS.optimizer, choices=OPTIMIZERS, help="optimizer (default: adam)")
    p.add_argument(
        "--shift",
        type=int,
        default=DEFAULTS.shift,
        help="augmentation: random shifts of up to this many pixels, 0 to turn off (default: 2)",
    )
    p.add_argument(
        "--augment",
        default=DEFAULTS.augment,
        metavar="LIST",
        help="distortions beside the shifts, each image its own draw: none, or a comma-separated list of "
        "affine (rotation within --rotate, scale within --zoom, slant within --shear), elastic (Simard's "
        "elastic field of --elastic-alpha pixels smoothed by --elastic-sigma) and thickness (strokes a pixel "
        f"thicker or thinner with probability --thickness) (default: {DEFAULTS.augment})",
    )
    p.add_argument(
        "--rotate",
        type=float,
        metavar="DEG",
        default=DEFAULTS.rotate,
        help=f"affine: degrees +- (default: {DEFAULTS.rotate:g})",
    )
    p.add_argument(
        "--zoom",
        type=float,
        metavar="FRAC",
        default=DEFAULTS.zoom,
        help=f"affine: scale 1 +- this (default: {DEFAULTS.zoom:g})",
    )
    p.add_argument(
        "--shear",
        type=float,
        metavar="DEG",
        default=DEFAULTS.shear,
        help=f"affine: slant, degrees +- (default: {DEFAULTS.shear:g})",
    )
    p.add_argument(
        "--elastic-alpha",
        type=float,
        metavar="PX",
        default=DEFAULTS.elastic_alpha,
        help=f"elastic: displacement scale, pixels (default: {DEFAULTS.elastic_alpha:g})",
    )
    p.add_argument(
        "--elastic-sigma",
        type=float,
        metavar="PX",
        default=DEFAULTS.elastic_sigma,
        help=f"elastic: smoothing, pixels (default: {DEFAULTS.elastic_sigma:g})",
    )
    p.add_argument(
        "--thickness",
        type=float,
        metavar="P",
        default=DEFAULTS.thickness,
        help=f"thickness: probability of a thicker or thinner stroke (default: {DEFAULTS.thickness:g})",
    )
    p.add_argument(
        "--valid-size",
        type=int,
        default=None,
        help="training images held out for validation "
        f"(default: {data.DEFAULT_VALID:,}; {data.EMBEDDED_VALID} on the embedded digits)",
    )
    p.add_argument("--seed", type=int, default=DEFAULTS.seed, help="random seed (default: 1)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    p.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="run folder (default: runs/<timestamp>; under torchrun runs/torchrun-<run id>, the same for every "
        "restart of the job)",
    )
    p.add_argument(
        "--resume",
        default=None,
        metavar="RUN_DIR|last.pt|auto",
        help="continue a run from its last.pt, with the settings it was started with; auto: continue the run "
        "in --out if it holds one (with the same settings), else start it there. Under torchrun a restarted "
        "worker (TORCHELASTIC_RESTART_COUNT > 0) resumes as with auto",
    )
    p.add_argument(
        "--target-acc",
        type=float,
        default=DEFAULTS.target_acc,
        help="test accuracy whose first epoch and training time are reported (default: 0.99)",
    )
    p.add_argument(
        "--stop-at-target", action="store_true", help="end the run at the first epoch that reaches --target-acc"
    )
    p.add_argument(
        "--cuda-graph",
        default="auto",
        choices=["auto", "on", "off"],
        help="capture the training step as a CUDA graph and replay it; auto: on for CUDA in one "
        "process (default: auto)",
    )
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard scalars per epoch and the "
        "F6 embedding at the end into RUN/tensorboard (needs the tensorboard package)",
    )
    p.add_argument(
        "--no-bias", dest="bias", action="store_false", help="study variant: no biases in f6 and the output layer"
    )
    p.add_argument(
        "--c5",
        default=DEFAULTS.c5,
        choices=C5_KINDS,
        help="study variant: linear = s4 flattened into a 400->120 linear layer (default: conv)",
    )
    p.add_argument("--dry-run", action="store_true", help="one epoch of two batches, to check the setup")
    p.add_argument("--no-plots", action="store_true", help="skip the study at the end")
    p.add_argument(
        "--tsne-samples", type=int, default=DEFAULTS.tsne_samples, help="test images in the t-SNE (default: 2000)"
    )
    return p


def given_flags(argv) -> List[str]:
    """The dest names of the flags given explicitly on the command line."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return sorted(vars(parser.parse_args(argv)))


def apply_recipe(args: argparse.Namespace, argv=None) -> argparse.Namespace:
    """args with --recipe's settings for each flag not given explicitly (a given flag wins)."""
    given = given_flags(argv)
    for key, value in RECIPES.get(args.recipe, {}).items():
        if key not in given:
            setattr(args, key, value)
    return args


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace, argv=None) -> None:
    if args.resume is not None and args.resume != "auto":
        extra = [f for f in given_flags(argv) if f not in RESUME_OVERRIDES + ("resume",)]
        if extra:
            parser.error(
                f"--resume continues a run with the settings it was started with: "
                f"{', '.join('--' + f.replace('_', '-') for f in extra)} cannot be given with it "
                f"(allowed: {', '.join('--' + f.replace('_', '-') for f in RESUME_OVERRIDES)})"
            )
        if args.out is not None:
            parser.error("--resume writes into the run's own folder: --out cannot be given with it")
    else:
        if args.dry_run and "epochs" in given_flags(argv):
            parser.error("--dry-run runs one epoch of two batches: --epochs cannot be given with it")
        try:
            TrainConfig.from_args(args).validate()
        except ValueError as exc:
            parser.error(str(exc))
    if args.threads is not None and not 1 <= args.threads <= 1024:
        parser.error(f"--threads must be in 1..1024, got {args.threads}")
    if args.tensorboard:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            parser.error(
                "--tensorboard needs the tensorboard package: pip install tensorboard "
                '(or pip install -e ".[tensorboard]")'
            )


def _main_impl(argv=None) -> int:
    parser = build_parser()
    args = apply_recipe(parser.parse_args(argv), argv)
    check_args(parser, args, argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    return session.train(
        session.Launch(
            config=TrainConfig.from_args(args),
            out=args.out,
            resume=args.resume,
            data_dir=args.data_dir,
            device=args.device,
            cuda_graph=args.cuda_graph,
            tensorboard=args.tensorboard,
            study=not args.no_plots,
        )
    )


def main(argv=None) -> int:
    """The command line: exit status 0, 1 (an `error: ...` line), 2 (bad arguments), 130 (Ctrl-C) or
    143 (stopped by SIGTERM, resumable)."""
    return cli.run(_main_impl, argv)


if __name__ == "__main__":
    sys.exit(main())
