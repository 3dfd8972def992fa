// The fused LeNet-5 forward (inference) on the CPU: argument checks, allocation and the split of
// the batch over threads; the arithmetic is lenet5_forward in kernels_impl.h.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <array>

#include "../checks.h"
#include "../tensors.h"
#include "common.h"
#include "kernels.h"

namespace lenet_ext {
namespace cpu {
namespace {

at::Tensor lenet5_forward_cpu(const at::Tensor& images, const at::Tensor& c1w, const at::Tensor& c1b,
                              const at::Tensor& c3w, const at::Tensor& c3b, const at::Tensor& c5w,
                              const at::Tensor& c5b, const at::Tensor& f6w, const at::Tensor& f6b,
                              const at::Tensor& outw, const at::Tensor& outb) {
  const int64_t classes = check_lenet5_args(images, c1w, c1b, c3w, c3b, c5w, c5b, f6w, f6b, outw, outb);
  const int64_t N = images.size(0);
  const c10::MaybeOwned<at::Tensor> x = images.expect_contiguous();
  const LeNet5Tensors params = contiguous_lenet5_params(c1w, c1b, c3w, c3b, c5w, c5b, f6w, f6b, outw, outb);
  at::Tensor logits = at::empty({N, classes}, x->options());
  if (N == 0) return logits;

  AT_DISPATCH_FLOATING_TYPES(x->scalar_type(), "lenet5_forward_cpu", [&] {
    auto ptr = [&](int i) { return params[i]->const_data_ptr<scalar_t>(); };
    const LeNet5Params<scalar_t> p{ptr(0), ptr(1), ptr(2), ptr(3), ptr(4), ptr(5),
                                   ptr(6), ptr(7), ptr(8), ptr(9), classes};
    const scalar_t* xp = x->const_data_ptr<scalar_t>();
    scalar_t* lp = logits.mutable_data_ptr<scalar_t>();
    const CpuKernels<scalar_t>& k = kernels<scalar_t>();
    // Groups of kLeNetGroup images where there are more groups than threads, else one chunk per
    // thread (at least a block each): chunks big enough to keep the dense layers' weights hot.
    const int64_t blocks = (N + kLeNetBlock - 1) / kLeNetBlock, groups = (N + kLeNetGroup - 1) / kLeNetGroup;
    const int64_t chunks = std::min<int64_t>(blocks, std::max<int64_t>(groups, num_threads()));
    // Each thread's scratch is its own, reused from call to call (a batch of one allocates nothing
    // but its logits, and runs on the calling thread: parallel_chunks opens no parallel region for
    // one chunk).
    parallel_chunks(N, chunks, [&](ChunkQueue& queue) {
      scalar_t* scratch = thread_scratch<scalar_t>(lenet5_scratch_size<scalar_t>());
      for (int64_t c, n0, n1; queue.pop(c, n0, n1);) k.lenet5_forward(p, xp, lp, n0, n1, scratch);
    });
  });
  return logits;
}

}  // namespace

TORCH_LIBRARY_IMPL(lenet_ext, CPU, m) { m.impl("lenet5_forward", &lenet5_forward_cpu); }

}  // namespace cpu
}  // namespace lenet_ext
