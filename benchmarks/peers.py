"""LeNet-5 on our kernels against what a user would pick instead, in one process on one machine:
torch eager, torch.compile (inductor), and for inference ONNX Runtime and OpenVINO running the
ONNX export of the same weights (python -m lenet_ext.export's path). Medians of interleaved
rounds; speed-up = peer time / ours.

    python -m benchmarks.peers                       # CPU, batches 1, 64, 256, 1024
    python -m benchmarks.peers --batches 64 --rounds 9

A peer that is not installed (onnxruntime, openvino) is listed as such. Prints a markdown table,
headed by the CPU kernels' instruction sets (lenet_ext.cpu_isas(), per kernel) and this run's sgemm ceiling
(torch.mm, 1024^3, float32, on all threads); each of our rows gives its GFLOP/s (multiply-adds
counted as two) and its share of that ceiling.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

import lenet_ext
from lenet_ext import export

from .cases import FLOPS_LENET_FORWARD, FLOPS_LENET_TRAIN
from .report import Timer, sgemm_gflops


def kernel_isas() -> str:
    """The instruction set of each CPU kernel, grouped: "avx512 (lenet5_forward), avx2 (the rest)"."""
    groups = {}
    for kernel, isa in lenet_ext.cpu_isas().items():
        groups.setdefault(isa, []).append(kernel)
    if len(groups) == 1:
        return f"{next(iter(groups))} (every kernel)"
    largest = max(groups, key=lambda isa: len(groups[isa]))
    named = [f"{isa} ({', '.join(kernels)})" for isa, kernels in groups.items() if isa != largest]
    return ", ".join(named + [f"{largest} (the rest)"])


def timed(fn, min_seconds=0.2):
    """Seconds per call, from a round of back-to-back calls lasting at least min_seconds."""
    fn()
    n, t = 1, 0.0
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        t = time.perf_counter() - t0
        if t >= min_seconds or n >= 1 << 14:
            return t / n
        n *= 2


def compare(fns, rounds):
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            times[k].append(timed(fn))
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def inference_peers(model, onnx_path, images):
    peers = {}
    with torch.inference_mode():
        expected = model(images)
    ref = lenet_ext.LeNet5("torch")
    ref.load_state_dict(model.state_dict())
    ref.eval()

    def eager():
        with torch.inference_mode():
            return ref(images)

    peers["torch eager"] = eager
    compiled = torch.compile(ref)

    def comp():
        with torch.inference_mode():
            return compiled(images)

    peers["torch.compile"] = comp
    x = images.numpy()
    try:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        out = session.run(["logits"], {"images": x})[0]
        assert np.abs(out - expected.numpy()).max() < 1e-3
        peers["ONNX Runtime"] = lambda: session.run(["logits"], {"images": x})
    except ImportError:
        peers["ONNX Runtime"] = None
    try:
        import openvino as ov

        core = ov.Core()
        net = core.compile_model(
            core.read_model(onnx_path),
            "CPU",
            {"INFERENCE_NUM_THREADS": torch.get_num_threads(), "INFERENCE_PRECISION_HINT": "f32"},
        )
        request = net.create_infer_request()
        out = request.infer({0: x})[net.output(0)]
        assert np.abs(out - expected.numpy()).max() < 1e-3
        peers["OpenVINO"] = lambda: request.infer({0: x})
    except ImportError:
        peers["OpenVINO"] = None
    return peers


def training_peers(state, images, labels):
    def make(impl, compile_it=False):
        model = lenet_ext.LeNet5(impl)
        model.load_state_dict(state)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
        forward = torch.compile(model) if compile_it else model

        def step():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(forward(images), labels).backward()
            opt.step()

        return step

    return make("ext"), {"torch eager": make("torch"), "torch.compile": make("torch", True)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", default="1,64,256,1024", help="(default: 1,64,256,1024)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds per case (default: 7)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = lenet_ext.LeNet5("ext").eval()
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = os.path.join(tmp, "lenet5.onnx")
        try:
            export.export_onnx(model, onnx_path)
        except Exception as exc:  # the export extra is not installed
            print(f"(no ONNX export: {exc})", file=sys.stderr)
            onnx_path = None
        ceiling = sgemm_gflops("cpu", Timer("cpu"))
        print(
            f"CPU, {torch.get_num_threads()} threads; torch {torch.__version__}, lenet_ext {lenet_ext.__version__}; "
            f"CPU kernels: {kernel_isas()}; sgemm ceiling (torch.mm 1024^3, this run): {ceiling:.1f} GFLOP/s; "
            f"medians of {args.rounds} interleaved rounds; speed-up = peer / ours"
        )
        print()
        print("| case | batch | ours ms | ours GFLOP/s (% of sgemm) | peer | peer ms | speed-up |")
        print("|---|---:|---:|---:|---|---:|---:|")

        def rate(flops, ms):
            gflops = flops / (ms * 1e-3) / 1e9
            return f"{gflops:.1f} ({100 * gflops / ceiling:.0f}%)"

        for batch in (int(b) for b in args.batches.split(",")):
            images = torch.rand(batch, 1, 28, 28)
            labels = torch.randint(0, 10, (batch,))
            peers = inference_peers(model, onnx_path, images)

            def ours(model=model, images=images):
                with torch.inference_mode():
                    return model(images)

            available = {k: v for k, v in peers.items() if v is not None}
            times = compare({"ours": ours, **available}, args.rounds)
            for name in peers:
                if peers[name] is None:
                    print(f"| inference | {batch} | {times['ours']:.4f} | - | {name} | not installed | - |")
                else:
                    ours_rate = rate(FLOPS_LENET_FORWARD * batch, times["ours"])
                    print(
                        f"| inference | {batch} | {times['ours']:.4f} | {ours_rate} | {name} | {times[name]:.4f} | "
                        f"{times[name] / times['ours']:.2f}x |",
                        flush=True,
                    )
            step, peer_steps = training_peers(model.state_dict(), images, labels)
            times = compare({"ours": step, **peer_steps}, args.rounds)
            for name in peer_steps:
                print(
                    f"| training step (Adam) | {batch} | {times['ours']:.4f} | "
                    f"{rate(FLOPS_LENET_TRAIN * batch, times['ours'])} | {name} | {times[name]:.4f} | "
                    f"{times[name] / times['ours']:.2f}x |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
