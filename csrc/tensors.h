// The tensors the ops allocate or lay out, shared by the CPU and CUDA ops.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/MaybeOwned.h>

#include <array>
#include <tuple>

namespace lenet_ext {

// Uninitialised gradients of (input, weight, bias) for a backward op; one that output_mask does
// not ask for is an empty tensor (autograd then gets None for it).
inline std::tuple<at::Tensor, at::Tensor, at::Tensor> empty_grads(const at::Tensor& input, const at::Tensor& weight,
                                                                  std::array<bool, 3> output_mask) {
  const int64_t out_features = weight.size(0);
  auto make = [&](bool needed, at::IntArrayRef size) {
    return at::empty(needed ? size : at::IntArrayRef{0}, input.options());
  };
  return {make(output_mask[0], input.sizes()), make(output_mask[1], weight.sizes()),
          make(output_mask[2], at::IntArrayRef(&out_features, 1))};
}

// LeNet-5's ten parameters (lenet5_forward's order), contiguous: each borrowed where it already is
// (no copy of the tensor handle: in torch 2.14 a handle's copy and release each touch its Python
// object's count, taking the GIL), else a contiguous copy owned here.
using LeNet5Tensors = std::array<c10::MaybeOwned<at::Tensor>, 10>;

inline LeNet5Tensors contiguous_lenet5_params(const at::Tensor& c1w, const at::Tensor& c1b, const at::Tensor& c3w,
                                              const at::Tensor& c3b, const at::Tensor& c5w, const at::Tensor& c5b,
                                              const at::Tensor& f6w, const at::Tensor& f6b, const at::Tensor& outw,
                                              const at::Tensor& outb) {
  return {c1w.expect_contiguous(),  c1b.expect_contiguous(), c3w.expect_contiguous(), c3b.expect_contiguous(),
          c5w.expect_contiguous(),  c5b.expect_contiguous(), f6w.expect_contiguous(), f6b.expect_contiguous(),
          outw.expect_contiguous(), outb.expect_contiguous()};
}

}  // namespace lenet_ext
