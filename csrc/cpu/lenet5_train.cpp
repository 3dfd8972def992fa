// LeNet-5's training forward and its backward as two ops (see lenet_ext.cpp), on the CPU: the
// layer ops in sequence, called through the dispatcher below autograd, so that a training step
// is one Python call and one autograd node instead of five of each (plus c5's flatten). The
// arithmetic is the layers' (conv2d_sigmoid.cpp, linear.cpp): the same kernels, the same bits.
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <array>
#include <tuple>

#include "../checks.h"

namespace lenet_ext {
namespace cpu {
namespace {

using OptTensor = c10::optional<at::Tensor>;
using Grads = std::tuple<at::Tensor, at::Tensor, at::Tensor>;
using Outputs = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using ParamGrads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                              at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

template <typename Signature>
c10::TypedOperatorHandle<Signature> op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

Outputs lenet5_train_forward_cpu(const at::Tensor& images, const at::Tensor& c1w, const at::Tensor& c1b,
                                 const at::Tensor& c3w, const at::Tensor& c3b, const at::Tensor& c5w,
                                 const at::Tensor& c5b, const at::Tensor& f6w, const at::Tensor& f6b,
                                 const at::Tensor& outw, const at::Tensor& outb) {
  static const auto conv_pool =
      op<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const OptTensor&, int64_t, int64_t)>(
          "lenet_ext::conv2d_sigmoid_pool");
  static const auto conv = op<at::Tensor(const at::Tensor&, const at::Tensor&, const OptTensor&, int64_t, int64_t)>(
      "lenet_ext::conv2d_sigmoid");
  static const auto linear =
      op<at::Tensor(const at::Tensor&, const at::Tensor&, const OptTensor&, bool)>("lenet_ext::linear");
  check_lenet5_args(images, c1w, c1b, c3w, c3b, c5w, c5b, f6w, f6b, outw, outb);
  auto [s2, c1] = conv_pool.call(images, c1w, c1b, /*padding=*/2, /*pool=*/2);
  auto [s4, c3] = conv_pool.call(s2, c3w, c3b, /*padding=*/0, /*pool=*/2);
  at::Tensor c5 = conv.call(s4, c5w, c5b, /*stride=*/1, /*padding=*/0);
  at::Tensor f6 = linear.call(c5.view({images.size(0), 120}), f6w, f6b, /*sigmoid=*/true);
  at::Tensor logits = linear.call(f6, outw, outb, /*sigmoid=*/false);
  return {logits, c1, s2, c3, s4, c5, f6};
}

ParamGrads lenet5_train_backward_cpu(const at::Tensor& grad_logits, const at::Tensor& images, const at::Tensor& c1,
                                     const at::Tensor& s2, const at::Tensor& c3, const at::Tensor& s4,
                                     const at::Tensor& c5, const at::Tensor& f6, const at::Tensor& c1w,
                                     const at::Tensor& c3w, const at::Tensor& c5w, const at::Tensor& f6w,
                                     const at::Tensor& outw, bool images_grad) {
  static const auto pool_bwd =
      op<Grads(const at::Tensor&, const OptTensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t,
               int64_t, std::array<bool, 3>)>("lenet_ext::conv2d_sigmoid_pool_backward");
  static const auto conv_bwd = op<Grads(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                        int64_t, int64_t, std::array<bool, 3>)>("lenet_ext::conv2d_sigmoid_backward");
  static const auto linear_bwd =
      op<Grads(const at::Tensor&, const OptTensor&, const at::Tensor&, const at::Tensor&, bool, std::array<bool, 3>)>(
          "lenet_ext::linear_backward");
  // The same checks as the CUDA op's (and the fake kernel's), up front.
  check_lenet5_backward_args(grad_logits, images, c1, s2, c3, s4, c5, f6, c1w, c3w, c5w, f6w, outw);
  const int64_t N = images.size(0);
  constexpr std::array<bool, 3> all{true, true, true};
  auto [g_f6, g_outw, g_outb] = linear_bwd.call(grad_logits, OptTensor(), f6, outw, /*sigmoid=*/false, all);
  auto [g_c5, g_f6w, g_f6b] = linear_bwd.call(g_f6, f6, c5.view({N, 120}), f6w, /*sigmoid=*/true, all);
  auto [g_s4, g_c5w, g_c5b] = conv_bwd.call(g_c5.view({N, 120, 1, 1}), c5, s4, c5w, /*stride=*/1, /*padding=*/0, all);
  auto [g_s2, g_c3w, g_c3b] = pool_bwd.call(g_s4, OptTensor(), c3, s2, c3w, /*padding=*/0, /*pool=*/2, all);
  auto [g_x, g_c1w, g_c1b] =
      pool_bwd.call(g_s2, OptTensor(), c1, images, c1w, /*padding=*/2, /*pool=*/2, {images_grad, true, true});
  return {g_x, g_c1w, g_c1b, g_c3w, g_c3b, g_c5w, g_c5b, g_f6w, g_f6b, g_outw, g_outb};
}

}  // namespace

TORCH_LIBRARY_IMPL(lenet_ext, CPU, m) {
  m.impl("lenet5_train_forward", &lenet5_train_forward_cpu);
  m.impl("lenet5_train_backward", &lenet5_train_backward_cpu);
}

}  // namespace cpu
}  // namespace lenet_ext
