// LeNet-5's training step as two ops on CUDA (see lenet_ext.cpp): the forward in one launch that
// also saves the activations, and the backward in four launches.
//
// Forward  lenet5_kernels.cuh's kernel, saving c1, s2, c3, s4, c5, f6 beside the logits
//          (launched by lenet5_forward_kernels.cu).
// Backward  four launches (lenet5_backward_kernels.cuh, where the maths is; launched by
//           lenet5_train_kernels.cu).
// No atomics anywhere: the same inputs give bitwise the same gradients, run after run.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <array>

#include <tuple>

#include "../checks.h"
#include "../tensors.h"
#include "common.h"

namespace lenet_ext {
namespace cuda {
namespace {

using Outputs = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using ParamGrads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                              at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

Outputs lenet5_train_forward_cuda(const at::Tensor& images, const at::Tensor& c1w, const at::Tensor& c1b,
                                  const at::Tensor& c3w, const at::Tensor& c3b, const at::Tensor& c5w,
                                  const at::Tensor& c5b, const at::Tensor& f6w, const at::Tensor& f6b,
                                  const at::Tensor& outw, const at::Tensor& outb) {
  const int64_t classes = check_lenet5_args(images, c1w, c1b, c3w, c3b, c5w, c5b, f6w, f6b, outw, outb);
  const c10::cuda::CUDAGuard guard(images.device());
  const int64_t N = images.size(0);
  TORCH_CHECK_VALUE(N <= 2147483647LL, "lenet_ext: at most 2^31 - 1 images per call, got ", N);
  const at::Tensor x = images.contiguous();
  const LeNet5Tensors w = contiguous_lenet5_params(c1w, c1b, c3w, c3b, c5w, c5b, f6w, f6b, outw, outb);
  const auto opts = x.options();
  at::Tensor logits = at::empty({N, classes}, opts), c1 = at::empty({N, 6, 28, 28}, opts),
             s2 = at::empty({N, 6, 14, 14}, opts), c3 = at::empty({N, 16, 10, 10}, opts),
             s4 = at::empty({N, 16, 5, 5}, opts), c5 = at::empty({N, 120, 1, 1}, opts), f6 = at::empty({N, 84}, opts);
  if (N == 0) return {logits, c1, s2, c3, s4, c5, f6};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lenet5_train_forward_cuda", [&] {
    auto out = [](at::Tensor& t) { return t.mutable_data_ptr<scalar_t>(); };
    const LeNet5Acts<scalar_t> save{out(c1), out(s2), out(c3), out(s4), out(c5), out(f6)};
    C10_CUDA_CHECK(launch_lenet5_forward(N, x.const_data_ptr<scalar_t>(), lenet5_weights<scalar_t>(w, classes),
                                         out(logits), save, c10::cuda::getCurrentCUDAStream()));
  });
  return {logits, c1, s2, c3, s4, c5, f6};
}

// ------------------------------------------------------------------------------------------------
// Backward
// ------------------------------------------------------------------------------------------------

ParamGrads lenet5_train_backward_cuda(const at::Tensor& grad_logits, const at::Tensor& images, const at::Tensor& c1,
                                      const at::Tensor& s2, const at::Tensor& c3, const at::Tensor& s4,
                                      const at::Tensor& c5, const at::Tensor& f6, const at::Tensor& c1w,
                                      const at::Tensor& c3w, const at::Tensor& c5w, const at::Tensor& f6w,
                                      const at::Tensor& outw, bool images_grad) {
  const int64_t classes =
      check_lenet5_backward_args(grad_logits, images, c1, s2, c3, s4, c5, f6, c1w, c3w, c5w, f6w, outw);
  const c10::cuda::CUDAGuard guard(images.device());
  const int64_t N = images.size(0);
  const int64_t chunks = lenet5_backward_chunks(N);
  TORCH_CHECK_VALUE(chunks <= 65535, "lenet_ext: lenet5_train_backward takes at most ", 65535 * kChunk,
                    " images per call, got ", N);
  auto c = [](const at::Tensor& t) { return t.contiguous(); };
  const at::Tensor go = c(grad_logits), x = c(images), a1 = c(c1), a2 = c(s2), a3 = c(c3), a4 = c(s4), a5 = c(c5),
                   a6 = c(f6), w1 = c(c1w), w3 = c(c3w), w5 = c(c5w), w6 = c(f6w), wo = c(outw);
  const auto opts = x.options();
  at::Tensor gx = at::empty(images_grad ? x.sizes() : at::IntArrayRef{0}, opts);
  at::Tensor gw1 = at::empty({6, 1, 5, 5}, opts), gb1 = at::empty({6}, opts), gw3 = at::empty({16, 6, 5, 5}, opts),
             gb3 = at::empty({16}, opts), gw5 = at::empty({120, 16, 5, 5}, opts), gb5 = at::empty({120}, opts),
             gw6 = at::empty({84, 120}, opts), gb6 = at::empty({84}, opts), gwo = at::empty({classes, 84}, opts),
             gbo = at::empty({classes}, opts);
  at::Tensor g1 = at::empty({N, 4704}, opts), g3 = at::empty({N, 1600}, opts), g5 = at::empty({N, 120}, opts),
             g6 = at::empty({N, 84}, opts), partial = at::empty({chunks, kConvParams}, opts);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lenet5_train_backward_cuda", [&] {
    auto in = [](const at::Tensor& t) { return t.const_data_ptr<scalar_t>(); };
    auto out = [](at::Tensor& t) { return t.mutable_data_ptr<scalar_t>(); };
    const LeNet5Backward<scalar_t> b{
        N,        classes,  in(go),   in(x),    in(a1),   in(a2),       in(a3),
        in(a4),   in(a5),   in(a6),   in(w1),   in(w3),   in(w5),       in(w6),
        in(wo),   out(g1),  out(g3),  out(g5),  out(g6),  out(partial), images_grad ? out(gx) : nullptr,
        out(gw1), out(gb1), out(gw3), out(gb3), out(gw5), out(gb5),     out(gw6),
        out(gb6), out(gwo), out(gbo)};
    C10_CUDA_CHECK(launch_lenet5_backward(b, stream));
  });
  return {gx, gw1, gb1, gw3, gb3, gw5, gb5, gw6, gb6, gwo, gbo};
}

}  // namespace

TORCH_LIBRARY_IMPL(lenet_ext, CUDA, m) {
  m.impl("lenet5_train_forward", &lenet5_train_forward_cuda);
  m.impl("lenet5_train_backward", &lenet5_train_backward_cuda);
}

}  // namespace cuda
}  // namespace lenet_ext
