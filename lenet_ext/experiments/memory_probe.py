"""The memory probe of the memory experiment, run in a fresh process:

    python -m lenet_ext.experiments.memory_probe IMPL BATCH [DATA_DIR]

evaluates the test set in batches of BATCH after a warm-up on 8 digits and prints the number of
test images, the resident memory before (MB) and the high-water mark after (MB). The mark is
the process's own (VmHWM, reset through /proc/self/clear_refs just before the evaluation): a
child's ru_maxrss would count the pages of the process that forked it."""

import sys

import lenet_ext
from lenet_ext import data
from lenet_ext.training.loop import evaluate


def status(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {key}")


def main(argv) -> int:
    impl, batch, data_dir = argv[0], int(argv[1]), (argv[2] if len(argv) > 2 and argv[2] else None)
    ds = data.load(data_dir=data_dir, log=lambda m: None)
    model = lenet_ext.LeNet5(impl)
    evaluate(model, data.Split(ds.test.images[:8], ds.test.labels[:8], ds.test.index[:8]), 8)  # warm-up
    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    evaluate(model, ds.test, batch)
    print(len(ds.test), before, status("VmHWM"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
