// The fused LeNet-5 forward (inference) on CUDA: argument checks, allocation and one launch on the
// current stream, one block per image, for any batch size; the kernel is lenet5_kernels.cuh's,
// launched by lenet5_forward_kernels.cu.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <array>

#include "../checks.h"
#include "../tensors.h"
#include "common.h"

namespace lenet_ext {
namespace cuda {
namespace {

at::Tensor lenet5_forward_cuda(const at::Tensor& images, const at::Tensor& c1w, const at::Tensor& c1b,
                               const at::Tensor& c3w, const at::Tensor& c3b, const at::Tensor& c5w,
                               const at::Tensor& c5b, const at::Tensor& f6w, const at::Tensor& f6b,
                               const at::Tensor& outw, const at::Tensor& outb) {
  const int64_t classes = check_lenet5_args(images, c1w, c1b, c3w, c3b, c5w, c5b, f6w, f6b, outw, outb);
  const c10::cuda::CUDAGuard guard(images.device());
  const int64_t N = images.size(0);
  const at::Tensor x = images.contiguous();
  const LeNet5Tensors w = contiguous_lenet5_params(c1w, c1b, c3w, c3b, c5w, c5b, f6w, f6b, outw, outb);
  at::Tensor logits = at::empty({N, classes}, x.options());
  if (N == 0) return logits;
  TORCH_CHECK_VALUE(N <= 2147483647LL, "lenet_ext: lenet5_forward takes at most 2^31 - 1 images per call, got ", N);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lenet5_forward_cuda", [&] {
    C10_CUDA_CHECK(launch_lenet5_forward(N, x.const_data_ptr<scalar_t>(), lenet5_weights<scalar_t>(w, classes),
                                         logits.mutable_data_ptr<scalar_t>(), LeNet5Acts<scalar_t>{},
                                         c10::cuda::getCurrentCUDAStream()));
  });
  return logits;
}

}  // namespace

TORCH_LIBRARY_IMPL(lenet_ext, CUDA, m) { m.impl("lenet5_forward", &lenet5_forward_cuda); }

}  // namespace cuda
}  // namespace lenet_ext
