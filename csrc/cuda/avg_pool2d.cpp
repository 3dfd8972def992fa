// Average pooling on CUDA (square window, no padding, floor mode): checks, allocation and the
// launches (avg_pool2d_kernels.cu, where the kernels are) on the current stream.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <array>

#include "../checks.h"
#include "common.h"

namespace lenet_ext {
namespace cuda {
namespace {

at::Tensor avg_pool2d_cuda(const at::Tensor& input, int64_t kernel_size, int64_t stride) {
  check_avg_pool2d(input, kernel_size, stride);
  const c10::cuda::CUDAGuard guard(input.device());
  const at::Tensor x = input.contiguous();
  const PoolShape s = pool_shape(x.sizes(), kernel_size, stride);
  const int64_t N = s.N, C = s.C, H = s.H, W = s.W, OH = s.OH, OW = s.OW;
  at::Tensor y = at::empty({N, C, OH, OW}, x.options());
  if (y.numel() == 0) return y;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "avg_pool2d_cuda", [&] {
    C10_CUDA_CHECK(launch_avg_pool2d(x.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(), N * C, H, W, OH, OW,
                                     kernel_size, stride, c10::cuda::getCurrentCUDAStream()));
  });
  return y;
}

at::Tensor avg_pool2d_backward_cuda(const at::Tensor& grad_output, c10::SymIntArrayRef input_size_sym,
                                    int64_t kernel_size, int64_t stride) {
  const at::IntArrayRef input_size = C10_AS_INTARRAYREF_SLOW(input_size_sym);
  const PoolShape s = check_avg_pool2d_backward(grad_output, input_size, kernel_size, stride);
  const int64_t N = s.N, C = s.C, H = s.H, W = s.W, OH = s.OH, OW = s.OW;
  const c10::cuda::CUDAGuard guard(grad_output.device());
  const at::Tensor gy = grad_output.contiguous();
  at::Tensor gx = at::empty(input_size, gy.options());
  if (gx.numel() == 0) return gx;
  AT_DISPATCH_FLOATING_TYPES(gy.scalar_type(), "avg_pool2d_backward_cuda", [&] {
    C10_CUDA_CHECK(launch_avg_pool2d_backward(gy.const_data_ptr<scalar_t>(), gx.mutable_data_ptr<scalar_t>(), N * C, H,
                                              W, OH, OW, kernel_size, stride, c10::cuda::getCurrentCUDAStream()));
  });
  return gx;
}

}  // namespace

TORCH_LIBRARY_IMPL(lenet_ext, CUDA, m) {
  m.impl("avg_pool2d", &avg_pool2d_cuda);
  m.impl("avg_pool2d_backward", &avg_pool2d_backward_cuda);
}

}  // namespace cuda
}  // namespace lenet_ext
