// Fused convolution + sigmoid on CUDA: argument checks, allocation and the launches
// (conv2d_sigmoid_kernels.cu) on the current stream. The kernels, and the forward and backward
// maths, are in conv_kernels.cuh.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <array>
#include <tuple>

#include "../checks.h"
#include "../flags.h"
#include "../tensors.h"
#include "common.h"

namespace lenet_ext {
namespace cuda {
namespace {

at::Tensor conv2d_sigmoid_cuda(const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                               int64_t stride, int64_t padding) {
  check_conv2d(input, weight, bias, stride, padding);
  const c10::cuda::CUDAGuard guard(input.device());
  const at::Tensor x = input.contiguous();
  const at::Tensor w = weight.contiguous();
  const at::Tensor b = bias.has_value() ? bias->contiguous() : at::Tensor();
  const ConvShape s = conv_shape(x, w, stride, padding);
  at::Tensor y = at::empty({s.N, s.O, s.OH, s.OW}, x.options());
  if (y.numel() == 0) return y;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "conv2d_sigmoid_cuda", [&] {
    const ConvForward<scalar_t> f{s, x.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(),
                                  b.defined() ? b.const_data_ptr<scalar_t>() : nullptr, y.mutable_data_ptr<scalar_t>()};
    C10_CUDA_CHECK(launch_conv2d_sigmoid(f, cuda_kernels() == CudaKernels::v2, c10::cuda::getCurrentCUDAStream()));
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv2d_sigmoid_backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& output, const at::Tensor& input, const at::Tensor& weight,
    int64_t stride, int64_t padding, std::array<bool, 3> output_mask) {
  const ConvShape s = check_conv2d_backward(grad_output, output, input, weight, stride, padding);
  const c10::cuda::CUDAGuard guard(input.device());
  const auto [need_input, need_weight, need_bias] = output_mask;
  const at::Tensor gy = grad_output.contiguous();
  const at::Tensor y = output.contiguous();
  const at::Tensor x = input.contiguous();
  const at::Tensor w = weight.contiguous();
  at::Tensor gx, gw, gb;
  std::tie(gx, gw, gb) = empty_grads(x, w, output_mask);
  if (!need_input && !need_weight && !need_bias) return {gx, gw, gb};
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const bool v2 = cuda_kernels() == CudaKernels::v2;
  at::Tensor partial = conv_grad_partial(s, x, v2 && (need_weight || need_bias));

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "conv2d_sigmoid_backward_cuda", [&] {
    at::Tensor g = at::empty_like(gy);
    const ConvBackward<scalar_t> b{s,
                                   g.const_data_ptr<scalar_t>(),
                                   x.const_data_ptr<scalar_t>(),
                                   w.const_data_ptr<scalar_t>(),
                                   need_input ? maybe<scalar_t>(gx) : nullptr,
                                   need_weight ? maybe<scalar_t>(gw) : nullptr,
                                   need_bias ? maybe<scalar_t>(gb) : nullptr,
                                   maybe<scalar_t>(partial)};
    C10_CUDA_CHECK(launch_conv2d_sigmoid_backward(gy.const_data_ptr<scalar_t>(), y.const_data_ptr<scalar_t>(),
                                                  g.mutable_data_ptr<scalar_t>(), b, v2, stream));
  });
  return {gx, gw, gb};
}

}  // namespace

TORCH_LIBRARY_IMPL(lenet_ext, CUDA, m) {
  m.impl("conv2d_sigmoid", &conv2d_sigmoid_cuda);
  m.impl("conv2d_sigmoid_backward", &conv2d_sigmoid_backward_cuda);
}

}  // namespace cuda
}  // namespace lenet_ext
