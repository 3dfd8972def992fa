// Argument checks shared by every backend. Each failure names the argument and
// what was expected; TORCH_CHECK_TYPE surfaces in Python as TypeError and
// TORCH_CHECK_VALUE as ValueError. The shapes they compute are shapes.h's; the
// tensors the ops allocate, tensors.h's.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/Optional.h>

#include <array>
#include <vector>

#include "shapes.h"

namespace lenet_ext {

inline void check_floating(const at::Tensor& t, const char* name) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, "lenet_ext: ", name,
                   " must be float32 or float64, got ", t.scalar_type());
}

// `t` must match `ref` (named ref_name) in dtype and device.
inline void check_like(const at::Tensor& t, const char* name, const at::Tensor& ref, const char* ref_name) {
  check_floating(t, name);
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), "lenet_ext: ", name, " has dtype ", t.scalar_type(), " but ",
                   ref_name, " has dtype ", ref.scalar_type(), "; they must match");
  TORCH_CHECK_VALUE(t.device() == ref.device(), "lenet_ext: ", name, " is on ", t.device(), " but ", ref_name,
                    " is on ", ref.device(), "; they must be on the same device");
}

inline void check_dim(const at::Tensor& t, const char* name, int64_t dim, const char* layout) {
  TORCH_CHECK_VALUE(t.dim() == dim, "lenet_ext: ", name, " must be ", dim, "-D ", layout, ", got ", t.dim(),
                    "-D with shape ", t.sizes());
}

inline void check_bias(const c10::optional<at::Tensor>& bias, int64_t features, const at::Tensor& ref) {
  if (!bias.has_value()) return;
  check_like(*bias, "bias", ref, "input");
  TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == features, "lenet_ext: bias must have shape (", features,
                    ",), one value per output channel, got ", bias->sizes());
}

inline void check_conv2d(const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                         int64_t stride, int64_t padding) {
  check_floating(input, "input");
  check_like(weight, "weight", input, "input");
  check_dim(input, "input", 4, "(N, C, H, W)");
  check_dim(weight, "weight", 4, "(C_out, C_in, kH, kW)");
  TORCH_CHECK_VALUE(input.size(1) == weight.size(1), "lenet_ext: input has ", input.size(1),
                    " channels but weight expects ", weight.size(1), " (weight.shape[1]); they must match");
  TORCH_CHECK_VALUE(weight.size(0) > 0 && weight.size(2) > 0 && weight.size(3) > 0,
                    "lenet_ext: weight must have non-zero C_out, kH and kW, got ", weight.sizes());
  check_bias(bias, weight.size(0), input);
  TORCH_CHECK_VALUE(stride >= 1, "lenet_ext: stride must be >= 1, got ", stride);
  TORCH_CHECK_VALUE(padding >= 0, "lenet_ext: padding must be >= 0, got ", padding);
  TORCH_CHECK_VALUE(input.size(2) + 2 * padding >= weight.size(2) && input.size(3) + 2 * padding >= weight.size(3),
                    "lenet_ext: kernel size (", weight.size(2), ", ", weight.size(3),
                    ") is larger than the padded input (", input.size(2) + 2 * padding, ", ",
                    input.size(3) + 2 * padding, ")");
}

inline void check_avg_pool2d(const at::Tensor& input, int64_t kernel_size, int64_t stride) {
  check_floating(input, "input");
  check_dim(input, "input", 4, "(N, C, H, W)");
  TORCH_CHECK_VALUE(kernel_size >= 1, "lenet_ext: kernel_size must be >= 1, got ", kernel_size);
  TORCH_CHECK_VALUE(stride >= 1, "lenet_ext: stride must be >= 1, got ", stride);
  TORCH_CHECK_VALUE(input.size(2) >= kernel_size && input.size(3) >= kernel_size, "lenet_ext: kernel_size ",
                    kernel_size, " is larger than the input (", input.size(2), ", ", input.size(3), ")");
}

inline void check_linear(const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias) {
  check_floating(input, "input");
  check_like(weight, "weight", input, "input");
  TORCH_CHECK_VALUE(input.dim() >= 1, "lenet_ext: input must have at least 1 dimension (..., in_features), got 0-D");
  check_dim(weight, "weight", 2, "(out_features, in_features)");
  TORCH_CHECK_VALUE(input.size(-1) == weight.size(1), "lenet_ext: input has ", input.size(-1),
                    " features (input.shape[-1]) but weight expects ", weight.size(1),
                    " (weight.shape[1]); they must match");
  check_bias(bias, weight.size(0), input);
}

// `t` (named name) must match `ref` (named ref_name) in dtype and device and have the expected shape.
inline void check_shaped(const at::Tensor& t, const char* name, const at::Tensor& ref, const char* ref_name,
                         at::IntArrayRef expected) {
  check_like(t, name, ref, ref_name);
  TORCH_CHECK_VALUE(t.sizes() == expected, "lenet_ext: ", name, " must have shape ", expected, ", got ", t.sizes());
}

// The whole-network ops' images: (N, 1, 28, 28), floating point.
inline void check_lenet5_images(const at::Tensor& images) {
  check_floating(images, "images");
  TORCH_CHECK_VALUE(images.dim() == 4 && images.size(1) == 1 && images.size(2) == 28 && images.size(3) == 28,
                    "lenet_ext: images must have shape (N, 1, 28, 28), got ", images.sizes());
}

// The output layer's weight, (classes, 84) with at least one class, of the images' dtype and device.
inline void check_lenet5_output_weight(const at::Tensor& outw, const at::Tensor& images) {
  check_like(outw, "output_weight", images, "images");
  TORCH_CHECK_VALUE(outw.dim() == 2 && outw.size(1) == 84 && outw.size(0) >= 1,
                    "lenet_ext: output_weight must have shape (classes, 84), got ", outw.sizes());
}

// The arguments of the whole-network ops (lenet5_forward, lenet5_train_forward): (N, 1, 28, 28)
// images and LeNet-5's ten parameters, all of the images' dtype and device; returns the number of
// classes (the output layer's rows).
inline int64_t check_lenet5_args(const at::Tensor& images, const at::Tensor& c1w, const at::Tensor& c1b,
                                 const at::Tensor& c3w, const at::Tensor& c3b, const at::Tensor& c5w,
                                 const at::Tensor& c5b, const at::Tensor& f6w, const at::Tensor& f6b,
                                 const at::Tensor& outw, const at::Tensor& outb) {
  check_lenet5_images(images);
  check_shaped(c1w, "c1_weight", images, "images", {6, 1, 5, 5});
  check_shaped(c1b, "c1_bias", images, "images", {6});
  check_shaped(c3w, "c3_weight", images, "images", {16, 6, 5, 5});
  check_shaped(c3b, "c3_bias", images, "images", {16});
  check_shaped(c5w, "c5_weight", images, "images", {120, 16, 5, 5});
  check_shaped(c5b, "c5_bias", images, "images", {120});
  check_shaped(f6w, "f6_weight", images, "images", {84, 120});
  check_shaped(f6b, "f6_bias", images, "images", {84});
  check_lenet5_output_weight(outw, images);
  check_shaped(outb, "output_bias", images, "images", {outw.size(0)});
  return outw.size(0);
}

// The arguments of lenet5_train_backward (see lenet_ext.cpp) as a kernel that reads them all at once
// needs them: every activation and weight of LeNet-5's shape, all of the images' dtype and device;
// returns the number of classes.
inline int64_t check_lenet5_backward_args(const at::Tensor& grad_logits, const at::Tensor& images, const at::Tensor& c1,
                                          const at::Tensor& s2, const at::Tensor& c3, const at::Tensor& s4,
                                          const at::Tensor& c5, const at::Tensor& f6, const at::Tensor& c1w,
                                          const at::Tensor& c3w, const at::Tensor& c5w, const at::Tensor& f6w,
                                          const at::Tensor& outw) {
  check_lenet5_images(images);
  const int64_t N = images.size(0);
  check_lenet5_output_weight(outw, images);
  check_shaped(grad_logits, "grad_logits", images, "images", {N, outw.size(0)});
  check_shaped(c1, "c1", images, "images", {N, 6, 28, 28});
  check_shaped(s2, "s2", images, "images", {N, 6, 14, 14});
  check_shaped(c3, "c3", images, "images", {N, 16, 10, 10});
  check_shaped(s4, "s4", images, "images", {N, 16, 5, 5});
  check_shaped(c5, "c5", images, "images", {N, 120, 1, 1});
  check_shaped(f6, "f6", images, "images", {N, 84});
  check_shaped(c1w, "c1_weight", images, "images", {6, 1, 5, 5});
  check_shaped(c3w, "c3_weight", images, "images", {16, 6, 5, 5});
  check_shaped(c5w, "c5_weight", images, "images", {120, 16, 5, 5});
  check_shaped(f6w, "f6_weight", images, "images", {84, 120});
  return outw.size(0);
}

// Backward ops are called by autograd with tensors it saved, but they are public
// ops too: check what would otherwise index out of bounds.
inline void check_grad_output(const at::Tensor& grad, const at::Tensor& ref, at::IntArrayRef expected) {
  check_shaped(grad, "grad_output", ref, "input", expected);
}

inline void check_output(const at::Tensor& output, const at::Tensor& input, at::IntArrayRef expected) {
  check_shaped(output, "output", input, "input", expected);
}

inline ConvShape check_conv2d_backward(const at::Tensor& grad_output, const at::Tensor& output, const at::Tensor& input,
                                       const at::Tensor& weight, int64_t stride, int64_t padding) {
  check_conv2d(input, weight, c10::nullopt, stride, padding);
  const ConvShape s = conv_shape(input, weight, stride, padding);
  const std::array<int64_t, 4> out_size{s.N, s.O, s.OH, s.OW};
  check_grad_output(grad_output, input, out_size);
  check_output(output, input, out_size);
  return s;
}

// The fused convolution + sigmoid + average pooling: a stride-1 convolution, then pool x pool
// windows with stride pool over its output.
inline ConvShape check_conv2d_sigmoid_pool(const at::Tensor& input, const at::Tensor& weight,
                                           const c10::optional<at::Tensor>& bias, int64_t padding, int64_t pool) {
  check_conv2d(input, weight, bias, 1, padding);
  const ConvShape s = conv_shape(input, weight, 1, padding);
  TORCH_CHECK_VALUE(pool >= 1, "lenet_ext: pool must be >= 1, got ", pool);
  TORCH_CHECK_VALUE(pool <= s.OH && pool <= s.OW, "lenet_ext: pool ", pool,
                    " is larger than the convolution's output (", s.OH, ", ", s.OW, ")");
  return s;
}

inline ConvShape check_conv2d_sigmoid_pool_backward(const at::Tensor& grad_pooled,
                                                    const c10::optional<at::Tensor>& grad_activation,
                                                    const at::Tensor& activation, const at::Tensor& input,
                                                    const at::Tensor& weight, int64_t padding, int64_t pool) {
  const ConvShape s = check_conv2d_sigmoid_pool(input, weight, c10::nullopt, padding, pool);
  const std::array<int64_t, 4> out_size{s.N, s.O, s.OH, s.OW}, pooled_size{s.N, s.O, s.OH / pool, s.OW / pool};
  check_shaped(grad_pooled, "grad_pooled", input, "input", pooled_size);
  if (grad_activation.has_value()) check_shaped(*grad_activation, "grad_activation", input, "input", out_size);
  check_shaped(activation, "activation", input, "input", out_size);
  return s;
}

inline PoolShape check_avg_pool2d_backward(const at::Tensor& grad_output, at::IntArrayRef input_size,
                                           int64_t kernel_size, int64_t stride) {
  check_floating(grad_output, "grad_output");
  TORCH_CHECK_VALUE(input_size.size() == 4, "lenet_ext: input_size must be (N, C, H, W), got ", input_size);
  TORCH_CHECK_VALUE(kernel_size >= 1 && stride >= 1, "lenet_ext: kernel_size and stride must be >= 1, got ",
                    kernel_size, " and ", stride);
  TORCH_CHECK_VALUE(
      input_size[0] >= 0 && input_size[1] >= 0 && input_size[2] >= kernel_size && input_size[3] >= kernel_size,
      "lenet_ext: input_size ", input_size, " does not fit kernel_size ", kernel_size);
  const PoolShape s = pool_shape(input_size, kernel_size, stride);
  const std::array<int64_t, 4> out_size{s.N, s.C, s.OH, s.OW};
  TORCH_CHECK_VALUE(grad_output.sizes() == at::IntArrayRef(out_size), "lenet_ext: grad_output must have shape ",
                    at::IntArrayRef(out_size), ", got ", grad_output.sizes());
  return s;
}

inline void check_linear_backward(const at::Tensor& grad_output, const c10::optional<at::Tensor>& output,
                                  const at::Tensor& input, const at::Tensor& weight, bool apply_sigmoid) {
  check_linear(input, weight, c10::nullopt);
  const std::vector<int64_t> out_size = linear_output_size(input, weight.size(0));
  check_grad_output(grad_output, input, out_size);
  TORCH_CHECK_VALUE(!apply_sigmoid || output.has_value(),
                    "lenet_ext: linear_backward with sigmoid=True needs the forward output");
  if (apply_sigmoid) check_output(*output, input, out_size);
}

}  // namespace lenet_ext
