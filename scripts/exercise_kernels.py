"""Runs every lenet_ext kernel, forward and backward, once on small odd shapes and once at
LeNet-5's shapes, on the given device, the fused ops' kernels (conv2d_sigmoid_pool,
lenet5_forward, lenet5_train_forward/backward) included, under each CUDA kernel generation in
turn (lenet_ext.cuda_kernels: v1, then v2): the program compute-sanitizer checks in
scripts/gpu_check.sh (memcheck, racecheck, synccheck). Exits non-zero if a result disagrees with torch.

    python scripts/exercise_kernels.py [--device cuda] [--dtypes float32] [--generations v1,v2]

The sanitizers run it in float32 only (the kernels are the same templates in float64, and the
sanitizers slow every launch down a hundredfold).
"""

import argparse

import torch
import torch.nn.functional as F

import lenet_ext
from lenet_ext import ops


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtypes", default="float32,float64", help="float32, float64 or both (default: both)")
    parser.add_argument("--generations", default="v1,v2", help="CUDA kernel generations, in turn (default: v1,v2)")
    args = parser.parse_args()
    dtypes = [getattr(torch, name) for name in args.dtypes.split(",") if name in ("float32", "float64")]
    generations = args.generations.split(",")
    if not dtypes or any(g not in lenet_ext.CUDA_KERNELS for g in generations):
        parser.error("--dtypes takes float32/float64 and --generations v1/v2, comma-separated")
    torch.backends.cudnn.allow_tf32 = False  # the reference in full float32, as ours
    before = lenet_ext.cuda_kernels()
    for generation in generations:
        lenet_ext.cuda_kernels(generation)
        exercise(args.device, dtypes)
        print(f"generation {generation}: every kernel forward and backward, the fused ops' included, matches torch")
    lenet_ext.cuda_kernels(before)


def exercise(device, dtypes):
    torch.manual_seed(0)
    for dtype in dtypes:
        tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else dict(atol=1e-10, rtol=1e-8)
        for n, c, h, w, o, k, s, p in [
            (3, 2, 11, 9, 5, 3, 2, 1),
            (257, 6, 14, 14, 16, 5, 1, 0),
            (5, 16, 5, 5, 120, 5, 1, 0),
            (2, 1, 28, 28, 6, 5, 1, 2),
        ]:
            x = torch.randn(n, c, h, w, device=device, dtype=dtype, requires_grad=True)
            wt = torch.randn(o, c, k, k, device=device, dtype=dtype, requires_grad=True)
            b = torch.randn(o, device=device, dtype=dtype, requires_grad=True)
            y = ops.conv2d_sigmoid(x, wt, b, s, p)
            pooled = ops.avg_pool2d(y, 2, 1 if y.shape[-1] < 4 else None) if y.shape[-1] >= 2 else y
            lw = torch.randn(7, pooled[0].numel(), device=device, dtype=dtype, requires_grad=True)
            out = ops.linear(pooled.flatten(1), lw, None, True)
            grads = torch.autograd.grad(out.square().sum(), (x, wt, b, lw))
            ref = torch.sigmoid(F.conv2d(x, wt, b, s, p))
            ref = F.avg_pool2d(ref, 2, 1 if ref.shape[-1] < 4 else None) if ref.shape[-1] >= 2 else ref
            ref = torch.sigmoid(F.linear(ref.flatten(1), lw))
            ref_grads = torch.autograd.grad(ref.square().sum(), (x, wt, b, lw))
            torch.testing.assert_close(out, ref, **tol)
            for g, r in zip(grads, ref_grads):
                torch.testing.assert_close(g, r, **tol)
        # The fused ops: conv2d_sigmoid_pool (odd shapes, LeNet's), and the whole network for
        # inference and training (65 images: two chunks of the backward's partial sums).
        for n, c, h, w, o, k, p, pool in [
            (3, 2, 11, 9, 4, 3, 1, 2),
            (5, 6, 14, 14, 16, 5, 0, 2),
            (2, 1, 28, 28, 6, 5, 2, 2),
            (2, 2, 10, 10, 3, 3, 0, 3),
        ]:
            x = torch.randn(n, c, h, w, device=device, dtype=dtype, requires_grad=True)
            wt = torch.randn(o, c, k, k, device=device, dtype=dtype, requires_grad=True)
            b = torch.randn(o, device=device, dtype=dtype, requires_grad=True)
            pooled, act = ops.conv2d_sigmoid_pool(x, wt, b, p, pool)
            ref_act = torch.sigmoid(F.conv2d(x, wt, b, 1, p))
            ref_pooled = F.avg_pool2d(ref_act, pool)
            torch.testing.assert_close(pooled, ref_pooled, **tol)
            torch.testing.assert_close(act, ref_act, **tol)
            outs = [pooled.square().sum() + act.sum()]
            refs = [ref_pooled.square().sum() + ref_act.sum()]
            for g, r in zip(torch.autograd.grad(outs, (x, wt, b)), torch.autograd.grad(refs, (x, wt, b))):
                torch.testing.assert_close(g, r, **tol)
        torch.manual_seed(1)
        ref = lenet_ext.LeNet5("torch").to(device, dtype)
        params = [ref.get_parameter(name) for name in ops.LENET5_PARAMS]
        for n in (1, 3, 65):
            x = torch.rand(n, 1, 28, 28, device=device, dtype=dtype, requires_grad=True)
            with torch.no_grad():
                torch.testing.assert_close(ops.lenet5_forward(x, [q.detach() for q in params]), ref(x), **tol)
            leaves = [q.detach().clone().requires_grad_(True) for q in params]
            logits = ops.lenet5_train_forward(x, leaves)[0]
            ours = torch.autograd.grad(logits.square().sum(), [x] + leaves)
            theirs = torch.autograd.grad(ref(x).square().sum(), [x] + params)
            for g, r in zip(ours, theirs):
                torch.testing.assert_close(g, r, **tol)
    model = lenet_ext.LeNet5("ext").to(device)
    F.cross_entropy(
        model(torch.rand(33, 1, 28, 28, device=device)), torch.randint(0, 10, (33,), device=device)
    ).backward()
    if device == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
