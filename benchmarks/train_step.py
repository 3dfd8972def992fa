"""Times a LeNet-5 training step (forward, cross-entropy, backward, SGD) for impl=ext
and impl=torch in one process, interleaved, and prints the medians and their ratio.

    python -m benchmarks.train_step --batch-size 256 --repeats 30
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import lenet_ext


def make_step(impl, images, labels, state):
    model = lenet_ext.LeNet5(impl=impl)
    model.load_state_dict(state)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        opt.step()

    return step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=256, help="images per step (default: 256)")
    parser.add_argument("--repeats", type=int, default=30, help="timed steps per impl (default: 30)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = torch.rand(args.batch_size, 1, 28, 28)
    labels = torch.randint(0, 10, (args.batch_size,))
    state = lenet_ext.LeNet5().state_dict()
    steps = {impl: make_step(impl, images, labels, state) for impl in ("ext", "torch")}
    times = {impl: [] for impl in steps}
    for step in steps.values():  # warm-up
        for _ in range(3):
            step()
    for _ in range(args.repeats):
        for impl, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[impl].append(time.perf_counter() - t0)
    med = {impl: statistics.median(t) * 1e3 for impl, t in times.items()}
    print(
        f"batch {args.batch_size}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"{args.repeats} steps each (median):"
    )
    print(f"  ext   {med['ext']:8.2f} ms")
    print(f"  torch {med['torch']:8.2f} ms")
    print(f"  ext/torch time ratio {med['ext'] / med['torch']:.2f} (speed-up {med['torch'] / med['ext']:.2f}x)")


if __name__ == "__main__":
    main()
