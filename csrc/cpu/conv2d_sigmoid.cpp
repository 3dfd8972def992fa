// Fused convolution + sigmoid on the CPU, alone (conv2d_sigmoid) or followed by average pooling
// (conv2d_sigmoid_pool): argument checks, allocation and the split of the batch over threads.
// The arithmetic (products reading the input in place or through im2col, vectorized sigmoid,
// pooling while the image's output is in cache; the formulas) is in kernels_impl.h, reached
// through kernels<T>() for the CPU's instruction set.
//
// Forward   y[n, o, oh, ow] = sigmoid(b[o] + sum_{c,i,j} w[o, c, i, j] * x[n, c, oh*s + i - p, ow*s + j - p])
//           x (N, C, H, W), w (O, C, KH, KW), b (O,), y (N, O, OH, OW), OH = (H + 2p - KH) / s + 1;
//           pooled = avg_pool2d(y, pool) for conv2d_sigmoid_pool (stride 1).
// Backward  g = (dy + the pooled output's gradient spread over its windows) * y * (1 - y);
//           db, dw, dx from g.
// Parallel over the batch: it is split into chunks of images (how many depends on the batch size
// only), which the threads take in turn; each chunk has its own partial dw/db, and the partials are
// added in chunk order, so the gradients have the same bits for any thread count. A window over
// the whole input (LeNet's c5) is a dense layer: its backward is dense_backward (common.h).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <tuple>

#include "../checks.h"
#include "../tensors.h"
#include "common.h"
#include "kernels.h"

namespace lenet_ext {
namespace cpu {
namespace {

// y (and pooled, when pool > 0) for checked arguments.
std::tuple<at::Tensor, at::Tensor> forward(const ConvShape& s, const at::Tensor& input, const at::Tensor& weight,
                                           const c10::optional<at::Tensor>& bias, int64_t pool) {
  const at::Tensor x = input.contiguous();
  const at::Tensor w = weight.contiguous();
  const at::Tensor b = bias.has_value() ? bias->contiguous() : at::Tensor();
  at::Tensor y = at::empty({s.N, s.O, s.OH, s.OW}, x.options());
  at::Tensor pooled = pool > 0 ? at::empty({s.N, s.O, s.OH / pool, s.OW / pool}, x.options()) : at::Tensor();
  if (s.N == 0) return {y, pooled};

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "conv2d_sigmoid_cpu", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* wp = w.const_data_ptr<scalar_t>();
    const scalar_t* bp = b.defined() ? b.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    scalar_t* pp = pool > 0 ? pooled.mutable_data_ptr<scalar_t>() : nullptr;
    const CpuKernels<scalar_t>& k = kernels<scalar_t>();
    // A window over the whole input (c5) is a dense layer: a chunk per thread, each streaming the weight once.
    const int64_t chunks = s.whole_input() ? dense_chunks(s.N, s.K(), s.O) : num_chunks(s.N);
    parallel_chunks(s.N, chunks, [&](ChunkQueue& queue) {
      Scratch<scalar_t> scratch(conv_scratch_size<scalar_t>(s));
      for (int64_t c, n0, n1; queue.pop(c, n0, n1);)
        k.conv_forward(s, xp, wp, bp, yp, n0, n1, scratch.data(), pool, pp);
    });
  });
  return {y, pooled};
}

// (gx, gw, gb) for checked arguments; the gradient reaching y is grad_y (if defined) plus
// grad_pooled spread over its windows (if defined).
std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(const ConvShape& s, const at::Tensor& grad_y,
                                                        const at::Tensor& grad_pooled, int64_t pool,
                                                        const at::Tensor& output, const at::Tensor& input,
                                                        const at::Tensor& weight, std::array<bool, 3> output_mask) {
  // Plain bools rather than a structured binding, which lambdas capture only from clang 16 on.
  const bool need_input = output_mask[0], need_weight = output_mask[1], need_bias = output_mask[2];
  const at::Tensor gy = grad_y.defined() ? grad_y.contiguous() : at::Tensor();
  const at::Tensor gp = grad_pooled.defined() ? grad_pooled.contiguous() : at::Tensor();
  const at::Tensor y = output.contiguous();
  const at::Tensor x = input.contiguous();
  const at::Tensor w = weight.contiguous();
  at::Tensor gx, gw, gb;
  std::tie(gx, gw, gb) = empty_grads(x, w, output_mask);
  if (!need_input && !need_weight && !need_bias) return {gx, gw, gb};

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "conv2d_sigmoid_backward_cpu", [&] {
    const scalar_t* gyp = gy.defined() ? gy.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* gpp = gp.defined() ? gp.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* yp = y.const_data_ptr<scalar_t>();
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* wp = w.const_data_ptr<scalar_t>();
    scalar_t* gxp = need_input ? gx.mutable_data_ptr<scalar_t>() : nullptr;
    const CpuKernels<scalar_t>& k = kernels<scalar_t>();
    if (s.whole_input()) {  // P = 1 (and pool 1): a dense layer over the batch, x (N, K), y (N, O)
      dense_backward(k, s.N, s.K(), s.O, gyp, gpp, yp, xp, wp, gxp,
                     need_weight ? gw.mutable_data_ptr<scalar_t>() : nullptr,
                     need_bias ? gb.mutable_data_ptr<scalar_t>() : nullptr);
      return;
    }
    const int64_t K = s.K();
    const int64_t chunks = num_chunks(s.N);
    const int64_t part_size = s.O * K + s.O;        // private dw then db, per chunk
    Scratch<scalar_t> partial(chunks * part_size);  // zeroed chunk by chunk, by the thread that takes it
    parallel_chunks(s.N, chunks, [&](ChunkQueue& queue) {
      Scratch<scalar_t> scratch(conv_scratch_size<scalar_t>(s));
      for (int64_t c, n0, n1; queue.pop(c, n0, n1);) {
        scalar_t* pw = partial.data() + c * part_size;
        std::fill(pw, pw + part_size, scalar_t(0));
        k.conv_backward(s, gyp, gpp, pool, yp, xp, wp, gxp, need_weight ? pw : nullptr,
                        need_bias ? pw + s.O * K : nullptr, n0, n1, scratch.data());
      }
    });

    if (need_weight || need_bias) {
      reduce_partials(partial.data(), chunks, s.O * K, s.O, need_weight ? gw.mutable_data_ptr<scalar_t>() : nullptr,
                      need_bias ? gb.mutable_data_ptr<scalar_t>() : nullptr);
    }
  });
  return {gx, gw, gb};
}

at::Tensor conv2d_sigmoid_cpu(const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                              int64_t stride, int64_t padding) {
  check_conv2d(input, weight, bias, stride, padding);
  return std::get<0>(forward(conv_shape(input, weight, stride, padding), input, weight, bias, /*pool=*/0));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv2d_sigmoid_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& output, const at::Tensor& input, const at::Tensor& weight,
    int64_t stride, int64_t padding, std::array<bool, 3> output_mask) {
  const ConvShape s = check_conv2d_backward(grad_output, output, input, weight, stride, padding);
  return backward(s, grad_output, at::Tensor(), /*pool=*/0, output, input, weight, output_mask);
}

std::tuple<at::Tensor, at::Tensor> conv2d_sigmoid_pool_cpu(const at::Tensor& input, const at::Tensor& weight,
                                                           const c10::optional<at::Tensor>& bias, int64_t padding,
                                                           int64_t pool) {
  const ConvShape s = check_conv2d_sigmoid_pool(input, weight, bias, padding, pool);
  auto [y, pooled] = forward(s, input, weight, bias, pool);
  return {pooled, y};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv2d_sigmoid_pool_backward_cpu(
    const at::Tensor& grad_pooled, const c10::optional<at::Tensor>& grad_activation, const at::Tensor& activation,
    const at::Tensor& input, const at::Tensor& weight, int64_t padding, int64_t pool, std::array<bool, 3> output_mask) {
  const ConvShape s =
      check_conv2d_sigmoid_pool_backward(grad_pooled, grad_activation, activation, input, weight, padding, pool);
  return backward(s, grad_activation.has_value() ? *grad_activation : at::Tensor(), grad_pooled, pool, activation,
                  input, weight, output_mask);
}

}  // namespace

TORCH_LIBRARY_IMPL(lenet_ext, CPU, m) {
  m.impl("conv2d_sigmoid", &conv2d_sigmoid_cpu);
  m.impl("conv2d_sigmoid_backward", &conv2d_sigmoid_backward_cpu);
  m.impl("conv2d_sigmoid_pool", &conv2d_sigmoid_pool_cpu);
  m.impl("conv2d_sigmoid_pool_backward", &conv2d_sigmoid_pool_backward_cpu);
}

}  // namespace cpu
}  // namespace lenet_ext
