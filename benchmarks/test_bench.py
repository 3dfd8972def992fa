"""pytest-benchmark comparisons, ours against the torch twin, grouped so each pair reads as a ratio.

    pytest benchmarks/ --benchmark-only                      # the full matrix (minutes)
    pytest benchmarks/ --benchmark-only -k "b256 and train"  # a slice
    pytest benchmarks/ --benchmark-disable                   # each case once: the CI smoke run

Not part of the default `pytest` run (testpaths = tests). For a markdown report with GFLOP/s
and ratios, use `python -m benchmarks.report`.
"""

import functools

import pytest
import torch

import lenet_ext

from .cases import all_cases

BATCHES = [1, 64, 256, 1024]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() and "cuda" in lenet_ext.backends() else [])
NAMES = [c.name for c in all_cases(1, "cpu")]


@functools.lru_cache(maxsize=4)
def cases(batch, device):
    return {c.name: c for c in all_cases(batch, device)}


@pytest.mark.parametrize("impl", ["ext", "torch"])
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"b{b}")
@pytest.mark.parametrize("device", DEVICES)
def test_speed(benchmark, device, batch, name, impl):
    case = cases(batch, device)[name]
    fn = case.ext if impl == "ext" else case.torch
    if device == "cuda":

        def timed():
            fn()
            torch.cuda.synchronize()
    else:
        timed = fn
    benchmark.group = f"{device} batch {batch}: {name}"
    benchmark.extra_info["gflop"] = case.flops / 1e9
    benchmark(timed)


def test_peers_header_names_each_kernels_instruction_set():
    """python -m benchmarks.peers heads its table with the instruction set of every CPU kernel: one
    set for all, or the others named beside "the rest"."""
    from .peers import kernel_isas

    text, isas = kernel_isas(), lenet_ext.cpu_isas()
    sets = set(isas.values())
    assert all(isa in text for isa in sets), text
    if len(sets) == 1:
        assert text == f"{sets.pop()} (every kernel)"
    else:
        assert "(the rest)" in text and all(kernel in text for kernel, isa in isas.items() if isa != "avx2"), text
