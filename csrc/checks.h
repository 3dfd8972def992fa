// Argument checks shared by every backend. Each failure names the argument and
// what was expected; TORCH_CHECK_TYPE surfaces in Python as TypeError and
// TORCH_CHECK_VALUE as ValueError.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/Optional.h>

namespace lenet_ext {

inline void check_floating(const at::Tensor& t, const char* name) {
  TORCH_CHECK_TYPE(
      t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble,
      "lenet_ext: ", name, " must be float32 or float64, got ", t.scalar_type());
}

// `t` must match `ref` (named ref_name) in dtype and device.
inline void check_like(const at::Tensor& t, const char* name, const at::Tensor& ref, const char* ref_name) {
  check_floating(t, name);
  TORCH_CHECK_TYPE(
      t.scalar_type() == ref.scalar_type(), "lenet_ext: ", name, " has dtype ", t.scalar_type(), " but ",
      ref_name, " has dtype ", ref.scalar_type(), "; they must match");
  TORCH_CHECK_VALUE(
      t.device() == ref.device(), "lenet_ext: ", name, " is on ", t.device(), " but ", ref_name, " is on ",
      ref.device(), "; they must be on the same device");
}

inline void check_dim(const at::Tensor& t, const char* name, int64_t dim, const char* layout) {
  TORCH_CHECK_VALUE(
      t.dim() == dim, "lenet_ext: ", name, " must be ", dim, "-D ", layout, ", got ", t.dim(), "-D with shape ",
      t.sizes());
}

inline void check_bias(const c10::optional<at::Tensor>& bias, int64_t features, const at::Tensor& ref) {
  if (!bias.has_value()) return;
  check_like(*bias, "bias", ref, "input");
  TORCH_CHECK_VALUE(
      bias->dim() == 1 && bias->size(0) == features, "lenet_ext: bias must have shape (", features,
      ",), one value per output channel, got ", bias->sizes());
}

// Output size of a window of `kernel` sliding with `stride` over `size` (already padded), floor mode.
inline int64_t window_out(int64_t size, int64_t kernel, int64_t stride) { return (size - kernel) / stride + 1; }

inline void check_conv2d(
    const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias, int64_t stride,
    int64_t padding) {
  check_floating(input, "input");
  check_like(weight, "weight", input, "input");
  check_dim(input, "input", 4, "(N, C, H, W)");
  check_dim(weight, "weight", 4, "(C_out, C_in, kH, kW)");
  TORCH_CHECK_VALUE(
      input.size(1) == weight.size(1), "lenet_ext: input has ", input.size(1), " channels but weight expects ",
      weight.size(1), " (weight.shape[1]); they must match");
  TORCH_CHECK_VALUE(weight.size(0) > 0 && weight.size(2) > 0 && weight.size(3) > 0,
                    "lenet_ext: weight must have non-zero C_out, kH and kW, got ", weight.sizes());
  check_bias(bias, weight.size(0), input);
  TORCH_CHECK_VALUE(stride >= 1, "lenet_ext: stride must be >= 1, got ", stride);
  TORCH_CHECK_VALUE(padding >= 0, "lenet_ext: padding must be >= 0, got ", padding);
  TORCH_CHECK_VALUE(
      input.size(2) + 2 * padding >= weight.size(2) && input.size(3) + 2 * padding >= weight.size(3),
      "lenet_ext: kernel size (", weight.size(2), ", ", weight.size(3), ") is larger than the padded input (",
      input.size(2) + 2 * padding, ", ", input.size(3) + 2 * padding, ")");
}

inline void check_avg_pool2d(const at::Tensor& input, int64_t kernel_size, int64_t stride) {
  check_floating(input, "input");
  check_dim(input, "input", 4, "(N, C, H, W)");
  TORCH_CHECK_VALUE(kernel_size >= 1, "lenet_ext: kernel_size must be >= 1, got ", kernel_size);
  TORCH_CHECK_VALUE(stride >= 1, "lenet_ext: stride must be >= 1, got ", stride);
  TORCH_CHECK_VALUE(
      input.size(2) >= kernel_size && input.size(3) >= kernel_size, "lenet_ext: kernel_size ", kernel_size,
      " is larger than the input (", input.size(2), ", ", input.size(3), ")");
}

inline void check_linear(const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias) {
  check_floating(input, "input");
  check_like(weight, "weight", input, "input");
  TORCH_CHECK_VALUE(input.dim() >= 1, "lenet_ext: input must have at least 1 dimension (..., in_features), got 0-D");
  check_dim(weight, "weight", 2, "(out_features, in_features)");
  TORCH_CHECK_VALUE(
      input.size(-1) == weight.size(1), "lenet_ext: input has ", input.size(-1),
      " features (input.shape[-1]) but weight expects ", weight.size(1), " (weight.shape[1]); they must match");
  check_bias(bias, weight.size(0), input);
}

// Backward ops are called by autograd with tensors it saved, but they are public
// ops too: check what would otherwise index out of bounds.
inline void check_grad_output(const at::Tensor& grad, const at::Tensor& ref, at::IntArrayRef expected) {
  check_like(grad, "grad_output", ref, "input");
  TORCH_CHECK_VALUE(
      grad.sizes() == expected, "lenet_ext: grad_output must have shape ", expected, ", got ", grad.sizes());
}

}  // namespace lenet_ext
