"""Runs the benchmark matrix (every op forward and forward+backward at LeNet-5's shapes, and
the whole network's inference and training step) for our kernels and their torch twins, in
one process on one machine, and writes a markdown report with medians, ratios and GFLOP/s.

    python -m benchmarks.report                       # CPU, batches 1, 64, 256, 1024
    python -m benchmarks.report --device cuda          # the same on the GPU
    python -m benchmarks.report --quick                # a fast smoke run (CI)

The report goes to benchmarks/results/<device>-<date>.md (--out to change), rewritten after
every row, so a run cut short still leaves what it measured. Timings are medians over rounds;
ext and torch alternate round by round so drift hits both alike.
"""

import argparse
import datetime
import os
import platform
import statistics
import sys
import time

import torch

import lenet_ext

from .cases import all_cases

HERE = os.path.dirname(os.path.abspath(__file__))


class Timer:
    """Median milliseconds per call of fn over `rounds` rounds of `inner` calls each."""

    def __init__(self, device):
        self.cuda = device == "cuda"

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def round(self, fn, inner):
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(inner):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / inner
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        return (time.perf_counter() - t0) * 1e3 / inner

    def calibrate(self, fn, min_round_ms):
        for _ in range(3):  # warm-up
            fn()
        self.sync()
        inner = 1
        while inner < 4096 and self.round(fn, inner) * inner < min_round_ms:
            inner *= 2
        return inner

    def pair(self, fns, rounds, min_round_ms):
        inner = max(self.calibrate(fn, min_round_ms) for fn in fns)
        times = [[] for _ in fns]
        for _ in range(rounds):
            for i, fn in enumerate(fns):
                times[i].append(self.round(fn, inner))
        return [statistics.median(t) for t in times]


def sgemm_gflops(device, timer, n=1024):
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    ms = timer.pair([lambda: torch.mm(a, b)], rounds=5, min_round_ms=50)[0]
    return 2 * n**3 / (ms * 1e-3) / 1e9


def machine_line(device):
    if device == "cuda":
        return f"GPU: {torch.cuda.get_device_name()}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            words = next((line for line in f if line.startswith("flags")), "").split()
        flags = ", ".join(x for x in ("avx2", "fma", "avx512f") if x in words)
    except OSError:
        pass
    return f"CPU: {cpu}, {os.cpu_count()} cores ({flags}), torch threads {torch.get_num_threads()}"


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def run(args, path=None):
    """The report's text; with path, the file is rewritten after every row as well."""
    timer = Timer(args.device)
    lines = []
    say = lines.append

    def flush():
        if path is not None:
            write_atomic(path, "\n".join(lines) + "\n")

    today = datetime.date.today().isoformat()
    say(f"# lenet_ext benchmarks, {args.device}, {today}")
    say("")
    say(f"- {machine_line(args.device)}")
    say(
        f"- torch {torch.__version__}, lenet_ext {lenet_ext.__version__} (backends {lenet_ext.backends()}), "
        f"Python {sys.version.split()[0]}"
    )
    say("- command: `" + " ".join(["python -m benchmarks.report", *args.argv]) + "`")
    say(
        f"- medians of {args.rounds} rounds, each round >= {args.min_round_ms} ms of back-to-back calls; "
        "ext and torch alternate round by round"
    )
    if args.device == "cuda":
        # Full float32 on both sides: cuDNN's default TF32 convolutions would round torch's inputs.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        say("- torch runs in full float32, as ours does (cuDNN/cuBLAS TF32 off)")
    peak = sgemm_gflops(args.device, timer)
    say(f"- torch sgemm 1024x1024x1024 (fp32) on this machine, same run: {peak:.1f} GFLOP/s")
    say("")
    say("speed-up = torch time / ext time (> 1: ours is faster). GFLOP/s counts multiply-adds as 2.")
    say("")
    compiled = args.device == "cuda" and not args.no_compile
    compile_batches = set(args.compile_batches) if args.compile_batches else set(args.batches)
    if args.device == "cuda":
        v2 = lenet_ext.cuda_kernels() == "v2"
        say(
            f'- CUDA kernels {lenet_ext.cuda_kernels()}: LeNet5(impl="ext") runs '
            f"{'the fused ops' if v2 else 'layer by layer (LENET_EXT_CUDA_KERNELS=v2 for the fused ops)'}"
        )
        if compiled:
            say(
                '- compile: the torch twin under torch.compile(mode="reduce-overhead") (CUDA graphs); '
                f"vs compile = compile time / ext time; at batch {', '.join(map(str, sorted(compile_batches)))}"
            )
        say("")
    rows = {}
    flush()
    for batch in args.batches:
        with_compile = compiled and batch in compile_batches
        say(f"## batch {batch}")
        say("")
        extra = " compile ms | vs compile |" if with_compile else ""
        say("| case | ext ms | torch ms | speed-up | ext GFLOP/s | % of sgemm |" + extra)
        say("|---|---:|---:|---:|---:|---:|" + ("---:|---:|" if with_compile else ""))
        for case in all_cases(batch, args.device, with_compile):
            if args.only and not any(s in case.name for s in args.only):
                continue
            fns = [case.ext, case.torch] + ([case.compiled] if case.compiled else [])
            times = timer.pair(fns, args.rounds, args.min_round_ms)
            ext_ms, torch_ms = times[:2]
            gflops = case.flops / (ext_ms * 1e-3) / 1e9
            rows[(case.name, batch)] = (ext_ms, torch_ms)
            tail = ""
            if with_compile:
                tail = f" {times[2]:.4f} | {times[2] / ext_ms:.2f}x |" if case.compiled else " - | - |"
            say(
                f"| {case.name} | {ext_ms:.4f} | {torch_ms:.4f} | {torch_ms / ext_ms:.2f}x | {gflops:.2f} | "
                f"{100 * gflops / peak:.1f}% |" + tail
            )
            print(lines[-1], flush=True)
            flush()
        say("")
    if args.device == "cpu" and not args.quick and (os.cpu_count() or 1) > 1:
        say("## threads (LeNet-5 training step, batch 256)")
        say("")
        say("| threads | ext ms | torch ms | speed-up |")
        say("|---:|---:|---:|---:|")
        saved = torch.get_num_threads()
        for threads in (1, saved):
            torch.set_num_threads(threads)
            case = next(c for c in all_cases(256, "cpu") if c.name == "LeNet-5 training step")
            ext_ms, torch_ms = timer.pair([case.ext, case.torch], args.rounds, args.min_round_ms)
            say(f"| {threads} | {ext_ms:.3f} | {torch_ms:.3f} | {torch_ms / ext_ms:.2f}x |")
        torch.set_num_threads(saved)
        say("")
    train = [(b, rows[("LeNet-5 training step", b)]) for b in args.batches if ("LeNet-5 training step", b) in rows]
    if len(train) > 1:
        say("## growth with batch size (LeNet-5 training step, ms per image)")
        say("")
        say("| batch | ext ms/image | torch ms/image |")
        say("|---:|---:|---:|")
        for b, (e, t) in train:
            say(f"| {b} | {e / b:.4f} | {t / b:.4f} |")
        say("")
    return "\n".join(lines) + "\n", today


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device (default: cpu)")
    parser.add_argument("--batches", default="1,64,256,1024", help="batch sizes (default: 1,64,256,1024)")
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds per case (default: 15)")
    parser.add_argument("--min-round-ms", type=float, default=20.0, help="least time per round (default: 20)")
    parser.add_argument("--only", nargs="*", help="only cases whose name contains one of these words")
    parser.add_argument("--quick", action="store_true", help="smoke run: batch 4, 2 short rounds, no file")
    parser.add_argument("--no-compile", action="store_true", help="CUDA: skip the torch.compile columns")
    parser.add_argument(
        "--compile-batches",
        default=None,
        help="CUDA: the batch sizes with torch.compile columns "
        "(default: every batch); compiling takes tens of seconds a case",
    )
    parser.add_argument("--out", default=os.path.join(HERE, "results"), help="folder for the report")
    args = parser.parse_args(argv)
    args.argv = argv
    args.batches = [int(b) for b in args.batches.split(",")]
    if args.compile_batches:
        args.compile_batches = [int(b) for b in args.compile_batches.split(",")]
    if args.device == "cuda" and not (torch.cuda.is_available() and "cuda" in lenet_ext.backends()):
        parser.error("--device cuda needs a GPU and lenet_ext built with CUDA")
    if args.quick:
        args.batches, args.rounds, args.min_round_ms = [4], 2, 1.0
    if args.quick:
        print(run(args)[0])
        return
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"{args.device}-{datetime.date.today().isoformat()}.md")
    text, _ = run(args, path)
    write_atomic(path, text)
    print(text)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
