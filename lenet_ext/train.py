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
import datetime
import math
import os
import signal
import sys
from typing import List, Optional, Tuple

import torch
import torch.distributed as dist

import lenet_ext

from . import cli, data, distributed, runs
from .config import DEFAULTS, OPTIMIZERS, RECIPES, RESUME_OVERRIDES, TrainConfig
from .distributed import Dist
from .errors import UserError
from .loop import Run, Stopped
from .models import C5_KINDS, IMPLS
from .resume import load_resume_state, resume_path, run_data


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
        "--stop-at-target (the run that reaches 99%% test accuracy soonest) (default: default)",
    )
    p.add_argument("--epochs", type=int, default=DEFAULTS.epochs, help="number of epochs (default: 20)")
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


def elastic_restart() -> bool:
    """Whether torchrun restarted this job's workers (after one failed, with --max-restarts)."""
    try:
        return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0
    except ValueError:
        return False


def default_run_dir() -> str:
    """runs/<timestamp>; under torchrun runs/torchrun-<run id>, which every restart of the job shares."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "")
    if run_id and run_id.lower() != "none" and all(c.isalnum() or c in "-_." for c in run_id):
        return os.path.join("runs", f"torchrun-{run_id}")
    return os.path.join("runs", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))


def resume_target(args) -> Tuple[Optional[str], Optional[str]]:
    """(the last.pt to resume from or None, the run folder for a new run or None): --resume PATH,
    or --resume auto (also a torchrun restart): the run in --out (or the default folder) if it holds
    a last.pt, else a new run there."""
    if args.resume is not None and args.resume != "auto":
        return resume_path(args.resume), None
    if args.resume == "auto" or elastic_restart():
        run_dir = args.out or default_run_dir()
        last = os.path.join(run_dir, "last.pt")
        return (last, None) if os.path.isfile(last) else (None, run_dir)
    return None, args.out or default_run_dir()


def check_same_settings(run_dir: str, saved: TrainConfig, given: TrainConfig) -> None:
    """--resume auto continues a run only with the settings it was started with."""
    differ = [k for k in TrainConfig.keys() if k != "data_dir" and getattr(saved, k) != getattr(given, k)]
    if differ:
        shown = ", ".join(
            f"--{k.replace('_', '-')} {getattr(saved, k)} there, {getattr(given, k)} given" for k in differ
        )
        raise cli.CliError(f"--resume auto: {run_dir} holds a run with other settings ({shown}); give another --out")


def pick_device(requested: str, impl: str) -> torch.device:
    if requested != "auto":
        return cli.parse_device(requested, impl)
    gpu = torch.cuda.is_available() and (impl == "torch" or "cuda" in lenet_ext.backends())
    return torch.device("cuda" if gpu else "cpu")


def use_cuda_graph(choice: str, device: torch.device, ranks: Dist, optimizer: str, log) -> bool:
    """Whether the training step is captured as a CUDA graph: --cuda-graph auto means on CUDA, in
    one process, with Adam or AdamW (SGD's momentum, which the one-cycle schedule moves, is a
    plain float the capture would freeze)."""
    if choice == "off" or device.type != "cuda":
        if choice == "on":
            raise cli.CliError(f"--cuda-graph on needs a CUDA device (training runs on {device})")
        return False
    why = (
        "torchrun (DDP's gradient all-reduce is not captured)"
        if ranks.world > 1
        else "--optimizer sgd (its momentum, moved by the schedule, cannot be a device tensor)"
        if optimizer == "sgd"
        else None
    )
    if why is not None:
        if choice == "on":
            raise cli.CliError(f"--cuda-graph on is not supported with {why}; use auto or off")
        log(f"cuda graph: off with {why}")
        return False
    return True


def _tensorboard(run: Run):
    """The TensorBoard writer of rank 0 (RUN/tensorboard): per-epoch scalars via run.on_epoch."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(os.path.join(run.run_dir, "tensorboard"))

    def on_epoch(row):
        for key in ("loss", "acc"):
            for split in ("train", "valid", "test"):
                value = row.get(f"{split}_{key}")
                if value is not None and math.isfinite(value):
                    writer.add_scalar(f"{key}/{split}", value, row["epoch"])
        writer.add_scalar("lr", row["lr"], row["epoch"])
        writer.add_scalar("images_per_s", row["images_per_s"], row["epoch"])
        writer.flush()

    run.on_epoch = on_epoch
    return writer


def _tensorboard_embedding(writer, run: Run, samples: int) -> None:
    """The F6 features of the first test digits, with their labels and a sprite of the digits."""
    test = run.dataset.test
    n = min(samples, len(test))
    with torch.inference_mode():
        run.model.eval()
        features = run.model.features(test.images[:n]).float().cpu()
    pixels = (test.images[:n].float().cpu() * data.STD + data.MEAN).clamp(0, 1)
    classes = run.dataset.classes
    writer.add_embedding(
        features, metadata=[classes[int(c)] for c in test.labels[:n]], label_img=pixels, global_step=run.epoch, tag="f6"
    )
    writer.flush()


def _main_impl(argv=None) -> int:
    parser = build_parser()
    args = apply_recipe(parser.parse_args(argv), argv)
    check_args(parser, args, argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ranks, folder = Dist(), None
    try:
        resume_from, new_dir = resume_target(args)
        state = load_resume_state(resume_from) if resume_from else None
        if state is not None and args.resume in (None, "auto"):
            check_same_settings(os.path.dirname(resume_from), state["config"], TrainConfig.from_args(args))
        device = pick_device(args.device, state["config"].impl if state else args.impl)
        ranks = distributed.init(device.type)
        say = print if ranks.main else (lambda *a, **k: None)
        if device.type == "cuda" and ranks.world > 1:
            device = torch.device("cuda", ranks.local_rank)
            torch.cuda.set_device(device)
        graph = use_cuda_graph(args.cuda_graph, device, ranks, (state["config"] if state else args).optimizer, say)
        if state is not None:
            config = state["config"]
            run_dir = os.path.dirname(os.path.abspath(resume_from))
            folder = distributed.claim(ranks, run_dir, new=False, flag="--resume" if args.resume else "--out")
            state = load_resume_state(resume_from)  # again, now that no other run can write it
            dataset = run_data(config.to_dict(), state["data"], args.data_dir, say)
            if args.data_dir is not None:
                config = config.replace(data_dir=os.path.abspath(args.data_dir))
            run = Run(config, run_dir, device, dataset, ranks=ranks, cuda_graph=graph)
            run.restore(state)
            mid = state.get("mid_epoch")
            at = f"step {mid['step']} of epoch {run.epoch + 1}" if mid else f"epoch {run.epoch}"
            say(f"resuming {run_dir} after {at} of {config.epochs}")
        else:
            config = TrainConfig.from_args(args)
            run_dir = distributed.agree(ranks, new_dir)
            folder = distributed.claim(ranks, run_dir, new=True, flag="--out")
            dataset = data.load(config.dataset, config.data_dir, config.valid_size, config.seed, log=say)
            run = Run(config, run_dir, device, dataset, ranks=ranks, cuda_graph=graph)
        writer = _tensorboard(run) if args.tensorboard and ranks.main else None
        processes = f" x {ranks.world} processes" if ranks.world > 1 else ""
        say(
            f"{run.dataset.describe()}; impl {config.impl} on {device}{processes}"
            f"{'; cuda graph' if graph else ''}{'' if config.recipe == 'default' else '; recipe ' + config.recipe}"
            f"; run folder {run_dir}"
        )
        # SIGTERM (a scheduler, torchrun's agent, kill) stops the run at the next step boundary with
        # a last.pt that resumes from that step.
        signal.signal(signal.SIGTERM, lambda signum, frame: run.stop.set())
        try:
            summary = run.fit()
            if ranks.main:
                runs.write_summary(run_dir, summary)
        except Stopped as stop:
            if ranks.main:
                print(
                    f"stopped by SIGTERM at step {stop.step} of {stop.steps} in epoch {stop.epoch + 1}: "
                    f"{run_dir}/last.pt holds it; continue with python -m lenet_ext.train --resume {run_dir}",
                    file=sys.stderr,
                )
            return 143
        except KeyboardInterrupt:
            if ranks.main:
                print(
                    f"\ninterrupted: {run_dir}/last.pt holds epoch {run.epoch} of {config.epochs}; continue "
                    f"with python -m lenet_ext.train --resume {run_dir}",
                    file=sys.stderr,
                )
            return 130
        if summary["reached_target_epoch"] is not None:
            target = (
                f"test accuracy {summary['target_acc']:g} reached at epoch {summary['reached_target_epoch']} "
                f"after {summary['seconds_to_target']:.1f} s of training"
                f"{' (stopped there)' if summary['stopped_at_target'] else ''}"
            )
        else:
            target = f"test accuracy {summary['target_acc']:g} not reached"
        best = f"test accuracy {summary['best_test_acc']:.4f}" if summary["best_test_acc"] is not None else "-"
        final = f"{summary['test_acc']:.4f}" if summary["test_acc"] is not None else "-"
        say(
            f"done: test accuracy {final} after {run.epoch} epochs (best validation loss at epoch "
            f"{summary['best_epoch']}: {best}); {summary['train_seconds']:.1f} s of training; {target}"
        )
        if writer is not None:
            _tensorboard_embedding(writer, run, min(config.tsne_samples, 1000))
            writer.close()
        if ranks.main and not args.no_plots and not config.dry_run:
            from . import analyze

            analyze.analyze(run_dir, device=device, log=print, dataset=run.dataset, claim_folder=False)
        return 0
    except UserError as exc:
        print(f"error{f' (rank {ranks.rank})' if ranks.world > 1 else ''}: {exc}", file=sys.stderr)
        return 1
    finally:
        if folder is not None:
            folder.release()
        if ranks.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def main(argv=None) -> int:
    """The command line: exit status 0, 1 (an `error: ...` line), 2 (bad arguments), 130 (Ctrl-C) or
    143 (stopped by SIGTERM, resumable)."""
    return cli.run(_main_impl, argv)


if __name__ == "__main__":
    sys.exit(main())
