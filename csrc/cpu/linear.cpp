// Linear layer with bias and an optional fused sigmoid, on the CPU.
//
// Forward   z[m, o] = b[o] + sum_k x[m, k] * w[o, k];  y = sigmoid(z) if `sigmoid` else z
//           x (..., K) seen as (M, K), w (O, K), b (O,), y (..., O).
// Backward  g = dy * y * (1 - y) if `sigmoid` else dy
//           dx[m, k] = sum_o g[m, o] * w[o, k]
//           dw[o, k] = sum_m g[m, o] * x[m, k]
//           db[o]    = sum_m g[m, o]
// Parallel over chunks of rows (forward, dx) and over slices of the outputs (dw, db): see
// dense_backward in common.h.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <array>
#include <tuple>

#include "../checks.h"
#include "../tensors.h"
#include "common.h"
#include "kernels.h"

namespace lenet_ext {
namespace cpu {
namespace {

at::Tensor linear_cpu(const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                      bool apply_sigmoid) {
  check_linear(input, weight, bias);
  const int64_t M = leading_rows(input), K = weight.size(1), O = weight.size(0);
  const at::Tensor x = input.contiguous();
  const at::Tensor w = weight.contiguous();
  const at::Tensor b = bias.has_value() ? bias->contiguous() : at::Tensor();
  at::Tensor y = at::empty(linear_output_size(input, O), x.options());
  if (M == 0 || O == 0) return y;

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "linear_cpu", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* wp = w.const_data_ptr<scalar_t>();
    const scalar_t* bp = b.defined() ? b.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    const CpuKernels<scalar_t>& k = kernels<scalar_t>();
    parallel_chunks(M, dense_chunks(M, K, O), [&](ChunkQueue& queue) {
      for (int64_t c, m0, m1; queue.pop(c, m0, m1);)
        k.dense_forward(m1 - m0, K, O, xp + m0 * K, wp, bp, yp + m0 * O, apply_sigmoid);
    });
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_backward_cpu(const at::Tensor& grad_output,
                                                                   const c10::optional<at::Tensor>& output,
                                                                   const at::Tensor& input, const at::Tensor& weight,
                                                                   bool apply_sigmoid,
                                                                   std::array<bool, 3> output_mask) {
  check_linear_backward(grad_output, output, input, weight, apply_sigmoid);
  const int64_t M = leading_rows(input), K = weight.size(1), O = weight.size(0);
  // Plain bools rather than a structured binding, which lambdas capture only from clang 16 on.
  const bool need_input = output_mask[0], need_weight = output_mask[1], need_bias = output_mask[2];

  const at::Tensor gy = grad_output.contiguous();
  const at::Tensor y = apply_sigmoid ? output->contiguous() : at::Tensor();
  const at::Tensor x = input.contiguous();
  const at::Tensor w = weight.contiguous();
  at::Tensor gx, gw, gb;
  std::tie(gx, gw, gb) = empty_grads(x, w, output_mask);
  if (!need_input && !need_weight && !need_bias) return {gx, gw, gb};

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "linear_backward_cpu", [&] {
    const scalar_t* gyp = gy.const_data_ptr<scalar_t>();
    const scalar_t* yp = apply_sigmoid ? y.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* wp = w.const_data_ptr<scalar_t>();
    dense_backward(kernels<scalar_t>(), M, K, O, gyp, static_cast<const scalar_t*>(nullptr), yp, xp, wp,
                   need_input ? gx.mutable_data_ptr<scalar_t>() : nullptr,
                   need_weight ? gw.mutable_data_ptr<scalar_t>() : nullptr,
                   need_bias ? gb.mutable_data_ptr<scalar_t>() : nullptr);
  });
  return {gx, gw, gb};
}

}  // namespace

TORCH_LIBRARY_IMPL(lenet_ext, CPU, m) {
  m.impl("linear", &linear_cpu);
  m.impl("linear_backward", &linear_backward_cpu);
}

}  // namespace cpu
}  // namespace lenet_ext
