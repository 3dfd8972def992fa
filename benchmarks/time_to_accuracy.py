"""Time to a test accuracy: lenet_ext.train's own loop (loop.Run, with --stop-at-target), the data
already on the device, timed from the first training step to the end of the epoch that reaches the
target. Training seconds exclude the per-epoch evaluation (which measures, not trains); the wall
seconds beside them include it. The CUDA graph capture, when on, counts in the first epoch.

    python -m benchmarks.time_to_accuracy --data-dir ~/data/mnist --device cuda          # ours, then torch eager
    python -m benchmarks.time_to_accuracy --data-dir ~/data/mnist --device cpu --impls ext

Prints a markdown table (the GPU report's `## time to 99%` section) and writes nothing else.
"""

import argparse
import sys
import tempfile
import time

import torch

from lenet_ext import data
from lenet_ext.training.config import TrainConfig
from lenet_ext.training.loop import Run

# A short one-cycle schedule for the race to 99%: the default recipe (batch 64) annealed over 10
# epochs instead of 20 (on the CPU, 3 seeds reached 99% at epoch 9). Override with the flags.
RECIPE = {"epochs": 10, "batch_size": 64, "lr": 0.01, "shift": 2}


def race(impl, device, graph, dataset, recipe, target, seed):
    config = TrainConfig(impl=impl, seed=seed, target_acc=target, stop_at_target=True, **recipe).validate()
    with tempfile.TemporaryDirectory() as run_dir:
        run = Run(config, run_dir, device, dataset, log=lambda *a, **k: None, cuda_graph=graph)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        summary = run.fit()
        total = time.perf_counter() - start
    return summary, total


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="the four MNIST IDX files (default: as train finds them)")
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="(default: cuda if there is one)"
    )
    parser.add_argument("--impls", default="ext,torch", help="comma-separated (default: ext,torch)")
    parser.add_argument("--target", type=float, default=0.99, help="test accuracy to reach (default: 0.99)")
    parser.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    parser.add_argument("--batch-size", type=int, default=RECIPE["batch_size"])
    parser.add_argument("--lr", type=float, default=RECIPE["lr"])
    parser.add_argument("--shift", type=int, default=RECIPE["shift"])
    parser.add_argument("--seeds", default="1", help="comma-separated seeds (default: 1)")
    parser.add_argument(
        "--cuda-graph",
        default="auto",
        choices=["auto", "on", "off"],
        help="for ext on CUDA (torch runs eager, as the comparison asks); default: auto = on",
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    recipe = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "shift": args.shift}
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = False  # torch in full float32, as ours
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.zeros(1, device=device).sum().item()  # the CUDA context exists before any clock starts
    dataset = data.load("mnist", args.data_dir, None, 1, log=lambda m: print(m, file=sys.stderr)).to(device)
    print(
        f"{dataset.describe()}; device {device} "
        f"({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), torch {torch.__version__}; "
        f"recipe: {recipe['epochs']} epochs of Adam one-cycle, batch {recipe['batch_size']}, peak lr {recipe['lr']}, "
        f"shifts of up to {recipe['shift']} pixels; "
        f"target test accuracy {args.target}"
    )
    print()
    print(
        "| impl | cuda graph | seed | epoch reached | training s to target | wall s to target | test accuracy there |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for impl in args.impls.split(","):
        graph = device.type == "cuda" and impl == "ext" and args.cuda_graph != "off"
        for seed in (int(s) for s in args.seeds.split(",")):
            summary, _ = race(impl, device, graph, dataset, recipe, args.target, seed)
            epoch = summary["reached_target_epoch"]
            if epoch is None:
                print(
                    f"| {impl} | {'on' if graph else 'off'} | {seed} | not reached | - | - | "
                    f"{100 * summary['test_acc']:.2f}% after {summary['epochs_done']} |"
                )
            else:
                acc = summary["final"]["test_acc"]
                print(
                    f"| {impl} | {'on' if graph else 'off'} | {seed} | {epoch} | {summary['seconds_to_target']:.3f} | "
                    f"{summary['wall_seconds_to_target']:.3f} | {100 * acc:.2f}% |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
