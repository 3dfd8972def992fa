// Linear layer with bias and an optional fused sigmoid, on CUDA: checks, allocation and the launches
// (linear_kernels.cu, where the kernels and the maths are) on the current stream.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <array>
#include <tuple>
#include <vector>

#include "../checks.h"
#include "../flags.h"
#include "../tensors.h"
#include "common.h"

namespace lenet_ext {
namespace cuda {
namespace {

at::Tensor linear_cuda(const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                       bool apply_sigmoid) {
  check_linear(input, weight, bias);
  const c10::cuda::CUDAGuard guard(input.device());
  const int64_t M = leading_rows(input), K = weight.size(1), O = weight.size(0);
  const at::Tensor x = input.contiguous();
  const at::Tensor w = weight.contiguous();
  const at::Tensor b = bias.has_value() ? bias->contiguous() : at::Tensor();
  at::Tensor y = at::empty(linear_output_size(input, O), x.options());
  if (y.numel() == 0) return y;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "linear_cuda", [&] {
    C10_CUDA_CHECK(launch_linear(x.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(),
                                 b.defined() ? b.const_data_ptr<scalar_t>() : nullptr, y.mutable_data_ptr<scalar_t>(),
                                 M, K, O, apply_sigmoid, cuda_kernels() == CudaKernels::v2,
                                 c10::cuda::getCurrentCUDAStream()));
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_backward_cuda(const at::Tensor& grad_output,
                                                                    const c10::optional<at::Tensor>& output,
                                                                    const at::Tensor& input, const at::Tensor& weight,
                                                                    bool apply_sigmoid,
                                                                    std::array<bool, 3> output_mask) {
  check_linear_backward(grad_output, output, input, weight, apply_sigmoid);
  const int64_t M = leading_rows(input), K = weight.size(1), O = weight.size(0);
  const c10::cuda::CUDAGuard guard(input.device());
  const auto [need_input, need_weight, need_bias] = output_mask;
  const at::Tensor gy = grad_output.contiguous();
  const at::Tensor y = apply_sigmoid ? output->contiguous() : at::Tensor();
  const at::Tensor x = input.contiguous();
  const at::Tensor w = weight.contiguous();
  const auto opts = x.options();
  at::Tensor gx, gw, gb;
  std::tie(gx, gw, gb) = empty_grads(x, w, output_mask);
  if (!need_input && !need_weight && !need_bias) return {gx, gw, gb};
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "linear_backward_cuda", [&] {
    at::Tensor g = at::empty({M, O}, opts);
    C10_CUDA_CHECK(launch_linear_backward(
        gy.const_data_ptr<scalar_t>(), apply_sigmoid ? y.const_data_ptr<scalar_t>() : nullptr,
        g.mutable_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(),
        need_input && gx.numel() > 0 ? gx.mutable_data_ptr<scalar_t>() : nullptr,
        need_weight ? gw.mutable_data_ptr<scalar_t>() : nullptr, need_bias ? gb.mutable_data_ptr<scalar_t>() : nullptr,
        M, K, O, cuda_kernels() == CudaKernels::v2, stream));
  });
  return {gx, gw, gb};
}

}  // namespace

TORCH_LIBRARY_IMPL(lenet_ext, CUDA, m) {
  m.impl("linear", &linear_cuda);
  m.impl("linear_backward", &linear_backward_cuda);
}

}  // namespace cuda
}  // namespace lenet_ext
