// Fused convolution + sigmoid + average pooling on CUDA (conv2d_sigmoid_pool and its backward):
// checks, allocation and the launches (conv2d_sigmoid_pool_kernels.cu) on the current stream.
//
// Shapes  input (N, C, H, W), weight (O, C, KH, KW), bias (O,) or none; stride 1, zero padding p;
//         activation a (N, O, OH, OW) = sigmoid(conv2d(input, weight, bias)); pooled (N, O, OH/k, OW/k),
//         k = pool: the average of each k x k window with stride k (floor mode).
// Forward one thread per k x k window of the activation (the windows tile it; the rows and columns
//         that floor mode leaves out of the pooling get windows of their own, which write only the
//         activation): the thread computes its window's convolution outputs, writes them, and their
//         average to pooled. Nothing is read back: each output is computed once.
// Backward with dpooled and (optionally) dactivation:
//           da[n, o, oh, ow] = dpooled[n, o, oh / k, ow / k] / k^2 (0 outside the pooled rows and
//                              columns) + dactivation[n, o, oh, ow]
//           g = da * a * (1 - a)                                (sigmoid' from the saved activation)
//         then dx, dw and db as the convolution's backward (conv_kernels.cuh: gathered, fixed order,
//         no atomics, so the same inputs give the same bits).
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

using OptTensor = c10::optional<at::Tensor>;

std::tuple<at::Tensor, at::Tensor> conv2d_sigmoid_pool_cuda(const at::Tensor& input, const at::Tensor& weight,
                                                            const OptTensor& bias, int64_t padding, int64_t pool) {
  const ConvShape s = check_conv2d_sigmoid_pool(input, weight, bias, padding, pool);
  const c10::cuda::CUDAGuard guard(input.device());
  const at::Tensor x = input.contiguous();
  const at::Tensor w = weight.contiguous();
  const at::Tensor b = bias.has_value() ? bias->contiguous() : at::Tensor();
  at::Tensor act = at::empty({s.N, s.O, s.OH, s.OW}, x.options());
  at::Tensor pooled = at::empty({s.N, s.O, s.OH / pool, s.OW / pool}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "conv2d_sigmoid_pool_cuda", [&] {
    const ConvPool<scalar_t> f{s,
                               pool,
                               x.const_data_ptr<scalar_t>(),
                               w.const_data_ptr<scalar_t>(),
                               b.defined() ? b.const_data_ptr<scalar_t>() : nullptr,
                               act.mutable_data_ptr<scalar_t>(),
                               pooled.mutable_data_ptr<scalar_t>()};
    C10_CUDA_CHECK(launch_conv2d_sigmoid_pool(f, c10::cuda::getCurrentCUDAStream()));
  });
  return {pooled, act};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv2d_sigmoid_pool_backward_cuda(
    const at::Tensor& grad_pooled, const OptTensor& grad_activation, const at::Tensor& activation,
    const at::Tensor& input, const at::Tensor& weight, int64_t padding, int64_t pool, std::array<bool, 3> output_mask) {
  const ConvShape s =
      check_conv2d_sigmoid_pool_backward(grad_pooled, grad_activation, activation, input, weight, padding, pool);
  const c10::cuda::CUDAGuard guard(input.device());
  const auto [need_input, need_weight, need_bias] = output_mask;
  const at::Tensor gp = grad_pooled.contiguous();
  const at::Tensor ga = grad_activation.has_value() ? grad_activation->contiguous() : at::Tensor();
  const at::Tensor a = activation.contiguous();
  const at::Tensor x = input.contiguous();
  const at::Tensor w = weight.contiguous();
  at::Tensor gx, gw, gb;
  std::tie(gx, gw, gb) = empty_grads(x, w, output_mask);
  if (!need_input && !need_weight && !need_bias) return {gx, gw, gb};
  const bool v2 = cuda_kernels() == CudaKernels::v2;
  at::Tensor partial = conv_grad_partial(s, x, v2 && (need_weight || need_bias));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "conv2d_sigmoid_pool_backward_cuda", [&] {
    at::Tensor g = at::empty_like(a);
    const ConvPoolBackward<scalar_t> bw{s,
                                        pool,
                                        gp.const_data_ptr<scalar_t>(),
                                        ga.defined() ? ga.const_data_ptr<scalar_t>() : nullptr,
                                        a.const_data_ptr<scalar_t>(),
                                        x.const_data_ptr<scalar_t>(),
                                        w.const_data_ptr<scalar_t>(),
                                        g.mutable_data_ptr<scalar_t>(),
                                        need_input ? maybe<scalar_t>(gx) : nullptr,
                                        need_weight ? maybe<scalar_t>(gw) : nullptr,
                                        need_bias ? maybe<scalar_t>(gb) : nullptr,
                                        maybe<scalar_t>(partial)};
    C10_CUDA_CHECK(launch_conv2d_sigmoid_pool_backward(bw, v2, c10::cuda::getCurrentCUDAStream()));
  });
  return {gx, gw, gb};
}

}  // namespace

TORCH_LIBRARY_IMPL(lenet_ext, CUDA, m) {
  m.impl("conv2d_sigmoid_pool", &conv2d_sigmoid_pool_cuda);
  m.impl("conv2d_sigmoid_pool_backward", &conv2d_sigmoid_pool_backward_cuda);
}

}  // namespace cuda
}  // namespace lenet_ext
