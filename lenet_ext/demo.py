"""A one-minute tour: LeNet-5 from our kernels and from torch.nn with the same weights,
their outputs and gradients compared, and a training step of each timed.

    python -m lenet_ext.demo [--batch-size 256] [--device cpu|cuda] [--repeats 10]
"""

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import lenet_ext

from . import cli

MAX_BATCH = 65536  # 65,536 images: ~0.2 GB of input and a few GB of activations on the CPU
MAX_REPEATS = 10000


def time_step(model, images, labels, repeats):
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    times = []
    for i in range(repeats + 2):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        opt.step()
        if images.is_cuda:
            torch.cuda.synchronize()
        if i >= 2:  # warm-up
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _main_impl(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lenet_ext.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch-size", type=int, default=256, help=f"images per batch, 1..{MAX_BATCH} (default: 256)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--repeats", type=int, default=10, help=f"timed training steps, 1..{MAX_REPEATS} (default: 10)")
    args = parser.parse_args(argv)
    if not 1 <= args.batch_size <= MAX_BATCH:
        parser.error(f"--batch-size must be in 1..{MAX_BATCH}, got {args.batch_size}")
    if not 1 <= args.repeats <= MAX_REPEATS:
        parser.error(f"--repeats must be in 1..{MAX_REPEATS}, got {args.repeats}")
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() and "cuda" in lenet_ext.backends() else "cpu"
    device = cli.parse_device(args.device, "ext")

    torch.manual_seed(0)
    ext = lenet_ext.LeNet5(impl="ext").to(device)
    ref = lenet_ext.LeNet5(impl="torch").to(device)
    ref.load_state_dict(ext.state_dict())
    images = torch.rand(args.batch_size, 1, 28, 28, device=device)
    labels = torch.randint(0, 10, (args.batch_size,), device=device)
    print(
        f"lenet_ext {lenet_ext.__version__} (backends {lenet_ext.backends()}), torch {torch.__version__}, "
        f"device {device}, {sum(p.numel() for p in ext.parameters()):,} parameters"
    )
    print(ext)

    acts = ext.activations(images)
    print("layer outputs: " + ", ".join(f"{k} {tuple(v.shape)}" for k, v in acts.items()))
    diff = (ext(images) - ref(images)).abs().max().item()
    print(f"max |logits ext - logits torch| = {diff:.2e}")
    for model in (ext, ref):
        model.zero_grad()
        F.cross_entropy(model(images), labels).backward()
    grads = [(p.grad, q.grad) for p, q in zip(ext.parameters(), ref.parameters())]
    gdiff = max((g - h).abs().max().item() for g, h in grads if g is not None and h is not None)
    print(f"max |grad ext - grad torch| over all parameters = {gdiff:.2e}")

    t_ext = time_step(ext, images, labels, args.repeats)
    t_ref = time_step(ref, images, labels, args.repeats)
    print(
        f"training step at batch {args.batch_size}: ext {t_ext * 1e3:.1f} ms, torch {t_ref * 1e3:.1f} ms "
        f"(median of {args.repeats}; ext/torch = {t_ext / t_ref:.2f})"
    )
    return 0


def main(argv=None) -> int:
    """The command line: exit status 0, 1 (an `error: ...` line), 2 (bad arguments) or 130 (Ctrl-C)."""
    return cli.run(_main_impl, argv)


if __name__ == "__main__":
    sys.exit(main())
