// lenet_ext operator schemas: every op of the library, declared once.
//
// Each forward op has an explicit backward op. The ops live in cpu/<op>.cpp and cuda/<op>.cpp
// (whose kernels are launched from cuda/<op>_kernels.cu) and register themselves with
// TORCH_LIBRARY_IMPL; autograd is registered in autograd.cpp, the fake (shape-only) kernels from
// Python (lenet_ext/ops.py).
//
// Backward ops take `bool[3] output_mask` = (input, weight, bias): a gradient
// that is not asked for is not computed and comes back as an empty tensor.
#include <torch/library.h>

TORCH_LIBRARY(lenet_ext, m) {
  // y = sigmoid(conv2d(input, weight, bias, stride, padding))
  m.def("conv2d_sigmoid(Tensor input, Tensor weight, Tensor? bias, int stride, int padding) -> Tensor");
  m.def(
      "conv2d_sigmoid_backward(Tensor grad_output, Tensor output, Tensor input, Tensor weight, "
      "int stride, int padding, bool[3] output_mask) -> (Tensor, Tensor, Tensor)");

  // The two in one pass, for a stride-1 convolution followed by pool x pool average pooling
  // (stride pool): pooled = avg_pool2d(activation, pool), activation = sigmoid(conv2d(...)).
  // Both are returned: the activation is what the backward needs (and what a study plots).
  m.def(
      "conv2d_sigmoid_pool(Tensor input, Tensor weight, Tensor? bias, int padding, int pool) -> "
      "(Tensor pooled, Tensor activation)");
  m.def(
      "conv2d_sigmoid_pool_backward(Tensor grad_pooled, Tensor? grad_activation, Tensor activation, "
      "Tensor input, Tensor weight, int padding, int pool, bool[3] output_mask) -> (Tensor, Tensor, Tensor)");

  // y = avg_pool2d(input, kernel_size, stride), no padding, floor mode
  m.def("avg_pool2d(Tensor input, int kernel_size, int stride) -> Tensor");
  m.def("avg_pool2d_backward(Tensor grad_output, SymInt[] input_size, int kernel_size, int stride) -> Tensor");

  // y = input @ weight.T + bias, then sigmoid(y) when `sigmoid`
  m.def("linear(Tensor input, Tensor weight, Tensor? bias, bool sigmoid) -> Tensor");
  m.def(
      "linear_backward(Tensor grad_output, Tensor? output, Tensor input, Tensor weight, bool sigmoid, "
      "bool[3] output_mask) -> (Tensor, Tensor, Tensor)");

  // The whole LeNet-5 forward for inference, (N, 1, 28, 28) images -> (N, classes) logits, in one
  // op: the composition of the ops above (c1, s2, c3, s4, c5, f6, output). No autograd:
  // LeNet5(impl="ext") calls it when no gradient is wanted. CPU and CUDA (one launch).
  m.def(
      "lenet5_forward(Tensor images, Tensor c1_weight, Tensor c1_bias, Tensor c3_weight, Tensor c3_bias, "
      "Tensor c5_weight, Tensor c5_bias, Tensor f6_weight, Tensor f6_bias, Tensor output_weight, "
      "Tensor output_bias) -> Tensor");

  // The same forward for training, in one op with one autograd node: the logits and every
  // activation the backward needs (c1 and c3 before pooling, s2 and s4 after, c5 as (N, 120, 1, 1),
  // f6), computed by the layer ops above; gradients flow through the logits only. Its backward op
  // runs the layers' backward ops in reverse and returns the gradients of (images, c1_weight,
  // c1_bias, c3_weight, c3_bias, c5_weight, c5_bias, f6_weight, f6_bias, output_weight,
  // output_bias); the images' one only when images_grad (else an empty tensor). CPU and CUDA:
  // LeNet5(impl="ext") calls it when gradients are wanted, saving the per-layer Python calls and
  // autograd nodes of a training step.
  m.def(
      "lenet5_train_forward(Tensor images, Tensor c1_weight, Tensor c1_bias, Tensor c3_weight, Tensor c3_bias, "
      "Tensor c5_weight, Tensor c5_bias, Tensor f6_weight, Tensor f6_bias, Tensor output_weight, "
      "Tensor output_bias) -> (Tensor logits, Tensor c1, Tensor s2, Tensor c3, Tensor s4, Tensor c5, Tensor f6)");
  m.def(
      "lenet5_train_backward(Tensor grad_logits, Tensor images, Tensor c1, Tensor s2, Tensor c3, Tensor s4, "
      "Tensor c5, Tensor f6, Tensor c1_weight, Tensor c3_weight, Tensor c5_weight, Tensor f6_weight, "
      "Tensor output_weight, bool images_grad) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, "
      "Tensor, Tensor, Tensor, Tensor)");
}
