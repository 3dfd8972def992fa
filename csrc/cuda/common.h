// Host-side helpers of the CUDA ops (csrc/cuda/*.cpp): the device guard, the current stream, and
// the launch entry points (launchers.h), whose errors the ops raise with C10_CUDA_CHECK.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "launchers.h"

namespace lenet_ext {
namespace cuda {

// v2's partial sums of the weight and bias gradients (none for v1, nor for a whole-input window:
// a dense layer).
inline at::Tensor conv_grad_partial(const ConvShape& s, const at::Tensor& like, bool v2) {
  if (!v2 || s.whole_input()) return at::Tensor();
  return at::empty({conv_grad_chunks(s) * conv_grad_elements(s)}, like.options());
}

// t's data, or null where t is undefined.
template <typename T>
T* maybe(at::Tensor& t) {
  return t.defined() ? t.mutable_data_ptr<T>() : nullptr;
}

}  // namespace cuda
}  // namespace lenet_ext
