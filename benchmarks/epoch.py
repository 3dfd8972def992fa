"""What one training epoch costs beyond its steps: in one process, the median of --epochs whole
epochs of lenet_ext.train (Run.run_epoch: the training loop, the evaluation of the validation and
test sets, the checkpoints and metrics files) against the same number of plain training steps
timed alone.

A plain step is LeNet5 at the training batch size on a batch made up front, cross-entropy,
backward and a default torch.optim.Adam step: the model and nothing else.

    python -m benchmarks.epoch --data-dir ~/data/mnist            # full MNIST, defaults
    python -m benchmarks.epoch --epochs 3 --impl torch
    python -m benchmarks.epoch --data-dir ~/data/mnist --augment affine,elastic   # distortions' cost

Prints one line per epoch and the ratio epoch / steps (1.00 would mean no loop cost at all). With
--augment LIST, epochs of a run with those distortions alternate with epochs of one without (the
same settings otherwise), and the ratio of their median times is printed: what the distortions cost.
"""

import argparse
import os
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

import lenet_ext
from lenet_ext import data
from lenet_ext.training.config import TrainConfig
from lenet_ext.training.loop import Run


def plain_steps(impl, device, steps, batch_size, seed=0):
    """Seconds for `steps` plain training steps of a fresh model (after a few warm-up steps)."""
    torch.manual_seed(seed)
    model = lenet_ext.LeNet5(impl=impl).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = torch.randn(batch_size, 1, 28, 28, device=device)
    labels = torch.randint(0, 10, (batch_size,), device=device)

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        opt.step()

    for _ in range(5):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="the four MNIST IDX files (default: as train finds them)")
    parser.add_argument("--impl", default="ext", choices=["ext", "torch"], help="(default: ext)")
    parser.add_argument("--device", default="cpu", help="(default: cpu)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs timed (default: 4)")
    parser.add_argument("--batch-size", type=int, default=64, help="(default: 64)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--augment", default=None, metavar="LIST", help="compare epochs with these distortions against none"
    )
    args = parser.parse_args(argv)
    if args.augment:
        return compare_augment(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = TrainConfig(
        data_dir=args.data_dir, impl=args.impl, epochs=max(args.epochs, 2), batch_size=args.batch_size
    ).validate()
    dataset = data.load(config.dataset, config.data_dir, config.valid_size, config.seed)
    with tempfile.TemporaryDirectory() as run_dir:
        run = Run(config, run_dir, device, dataset)
        steps = run.steps_per_epoch
        epochs, plain = [], []
        for e in range(args.epochs):
            plain.append(plain_steps(args.impl, device, steps, args.batch_size, seed=e))
            t0 = time.perf_counter()
            train_s = run.run_epoch()["epoch_s"]
            if device.type == "cuda":
                torch.cuda.synchronize()
            epochs.append(time.perf_counter() - t0)
            print(
                f"epoch {e + 1}: {epochs[-1]:.3f} s (training {train_s:.3f} s, then evaluation and checkpoints); "
                f"{steps} plain steps {plain[-1]:.3f} s"
            )
    e, s = statistics.median(epochs), statistics.median(plain)
    print(
        f"{args.impl} on {device}, batch {args.batch_size}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}: median epoch {e:.3f} s, median {steps} plain steps {s:.3f} s, "
        f"epoch / steps = {e / s:.2f}"
    )


def compare_augment(args) -> None:
    """Epochs with --augment's distortions alternating with epochs without: the ratio of medians."""
    device = torch.device(args.device)
    common = dict(data_dir=args.data_dir, impl=args.impl, epochs=max(args.epochs, 2), batch_size=args.batch_size)
    configs = {
        "none": TrainConfig(**common, augment="none").validate(),
        args.augment: TrainConfig(**common, augment=args.augment).validate(),
    }
    dataset = data.load(configs["none"].dataset, args.data_dir, None, configs["none"].seed)
    times = {name: [] for name in configs}
    with tempfile.TemporaryDirectory() as folder:
        runs = {}
        for k, (name, config) in enumerate(configs.items()):
            os.makedirs(os.path.join(folder, str(k)))
            runs[name] = Run(config, os.path.join(folder, str(k)), device, dataset)
        for e in range(args.epochs):
            for name, run in runs.items():
                times[name].append(run.run_epoch()["epoch_s"])
                print(f"epoch {e + 1}, --augment {name}: training {times[name][-1]:.3f} s")
    a, b = statistics.median(times["none"]), statistics.median(times[args.augment])
    print(
        f"{args.impl} on {device}, batch {args.batch_size}, {torch.get_num_threads()} threads: median training epoch "
        f"{a:.3f} s without distortions, {b:.3f} s with --augment {args.augment}: ratio {b / a:.2f}"
    )


if __name__ == "__main__":
    main()
