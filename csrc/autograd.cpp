// Autograd for every forward op, in C++ (torch::autograd::Function, registered for the Autograd
// dispatch key): the forward saves what the explicit backward op needs (the sigmoid output, never
// the pre-activation), and the backward asks that op only for the gradients autograd needs
// (output_mask). Both call the ops through the dispatcher, below autograd, so the CPU or CUDA
// kernel runs by device and torch.compile traces the same ops through their fake kernels.
// (Formulated in Python with torch.library.register_autograd it cost more per op call and its
// backward than a small layer's arithmetic: docs/performance.md.)
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <array>
#include <tuple>

namespace lenet_ext {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using OptTensor = c10::optional<at::Tensor>;
using Grads = std::tuple<at::Tensor, at::Tensor, at::Tensor>;

c10::OperatorHandle op(const char* name) { return c10::Dispatcher::singleton().findSchemaOrThrow(name, ""); }

// The mask of (input, weight, bias) gradients wanted; a bias that was not given has none.
std::array<bool, 3> wanted(AutogradContext* ctx, bool has_bias) {
  return {ctx->needs_input_grad(0), ctx->needs_input_grad(1), has_bias && ctx->needs_input_grad(2)};
}

// Autograd's gradient list: (input, weight, bias) as asked for, then none for the `extra`
// non-tensor arguments.
variable_list input_grads(const Grads& grads, std::array<bool, 3> mask, size_t extra) {
  variable_list out{mask[0] ? std::get<0>(grads) : at::Tensor(), mask[1] ? std::get<1>(grads) : at::Tensor(),
                    mask[2] ? std::get<2>(grads) : at::Tensor()};
  out.resize(3 + extra);
  return out;
}

struct ConvSigmoid : torch::autograd::Function<ConvSigmoid> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w, const OptTensor& b,
                            int64_t stride, int64_t padding) {
    static const auto fwd =
        op("lenet_ext::conv2d_sigmoid")
            .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const OptTensor&, int64_t, int64_t)>();
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor y = fwd.call(x, w, b, stride, padding);
    ctx->save_for_backward({x, w, y});
    ctx->saved_data["stride"] = stride;
    ctx->saved_data["padding"] = padding;
    ctx->saved_data["has_bias"] = b.has_value() && b->defined();
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    static const auto bwd = op("lenet_ext::conv2d_sigmoid_backward")
                                .typed<Grads(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                             int64_t, int64_t, std::array<bool, 3>)>();
    const auto saved = ctx->get_saved_variables();
    const auto mask = wanted(ctx, ctx->saved_data["has_bias"].toBool());
    return input_grads(bwd.call(grad[0], saved[2], saved[0], saved[1], ctx->saved_data["stride"].toInt(),
                                ctx->saved_data["padding"].toInt(), mask),
                       mask, 2);
  }
};

struct ConvSigmoidPool : torch::autograd::Function<ConvSigmoidPool> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w, const OptTensor& b,
                               int64_t padding, int64_t pool) {
    static const auto fwd = op("lenet_ext::conv2d_sigmoid_pool")
                                .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                                          const OptTensor&, int64_t, int64_t)>();
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [pooled, activation] = fwd.call(x, w, b, padding, pool);
    ctx->save_for_backward({x, w, activation});
    ctx->saved_data["padding"] = padding;
    ctx->saved_data["pool"] = pool;
    ctx->saved_data["has_bias"] = b.has_value() && b->defined();
    ctx->set_materialize_grads(false);  // no zero-filled gradient for an output nobody used
    return {pooled, activation};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    static const auto bwd = op("lenet_ext::conv2d_sigmoid_pool_backward")
                                .typed<Grads(const at::Tensor&, const OptTensor&, const at::Tensor&, const at::Tensor&,
                                             const at::Tensor&, int64_t, int64_t, std::array<bool, 3>)>();
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& activation = saved[2];
    const int64_t pool = ctx->saved_data["pool"].toInt();
    at::Tensor grad_pooled = grad[0];
    if (!grad_pooled.defined())
      grad_pooled =
          at::zeros({activation.size(0), activation.size(1), activation.size(2) / pool, activation.size(3) / pool},
                    activation.options());
    const OptTensor grad_activation = grad[1].defined() ? OptTensor(grad[1]) : OptTensor();
    const auto mask = wanted(ctx, ctx->saved_data["has_bias"].toBool());
    return input_grads(bwd.call(grad_pooled, grad_activation, activation, saved[0], saved[1],
                                ctx->saved_data["padding"].toInt(), pool, mask),
                       mask, 2);
  }
};

struct AvgPool : torch::autograd::Function<AvgPool> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, int64_t kernel_size, int64_t stride) {
    static const auto fwd = op("lenet_ext::avg_pool2d").typed<at::Tensor(const at::Tensor&, int64_t, int64_t)>();
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->saved_data["input_size"] = x.sym_sizes().vec();
    ctx->saved_data["kernel_size"] = kernel_size;
    ctx->saved_data["stride"] = stride;
    return fwd.call(x, kernel_size, stride);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    static const auto bwd = op("lenet_ext::avg_pool2d_backward")
                                .typed<at::Tensor(const at::Tensor&, c10::SymIntArrayRef, int64_t, int64_t)>();
    if (!ctx->needs_input_grad(0)) return {at::Tensor(), at::Tensor(), at::Tensor()};
    const auto input_size = ctx->saved_data["input_size"].toSymIntVector();
    return {bwd.call(grad[0], input_size, ctx->saved_data["kernel_size"].toInt(), ctx->saved_data["stride"].toInt()),
            at::Tensor(), at::Tensor()};
  }
};

struct Linear : torch::autograd::Function<Linear> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w, const OptTensor& b,
                            bool sigmoid) {
    static const auto fwd =
        op("lenet_ext::linear").typed<at::Tensor(const at::Tensor&, const at::Tensor&, const OptTensor&, bool)>();
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor y = fwd.call(x, w, b, sigmoid);
    ctx->save_for_backward({x, w, sigmoid ? y : at::Tensor()});
    ctx->saved_data["sigmoid"] = sigmoid;
    ctx->saved_data["has_bias"] = b.has_value() && b->defined();
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    static const auto bwd = op("lenet_ext::linear_backward")
                                .typed<Grads(const at::Tensor&, const OptTensor&, const at::Tensor&, const at::Tensor&,
                                             bool, std::array<bool, 3>)>();
    const auto saved = ctx->get_saved_variables();
    const bool sigmoid = ctx->saved_data["sigmoid"].toBool();
    const auto mask = wanted(ctx, ctx->saved_data["has_bias"].toBool());
    return input_grads(
        bwd.call(grad[0], sigmoid ? OptTensor(saved[2]) : OptTensor(), saved[0], saved[1], sigmoid, mask), mask, 1);
  }
};

// LeNet-5's training forward (lenet_ext.cpp): one node for the whole network. Only the logits
// are differentiable; the activations it returns are what its backward op reads.
using Tensors7 = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using Tensors11 = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                             at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using T = const at::Tensor&;

struct LeNet5Train : torch::autograd::Function<LeNet5Train> {
  static variable_list forward(AutogradContext* ctx, T images, T c1w, T c1b, T c3w, T c3b, T c5w, T c5b, T f6w, T f6b,
                               T outw, T outb) {
    static const auto fwd = op("lenet_ext::lenet5_train_forward").typed<Tensors7(T, T, T, T, T, T, T, T, T, T, T)>();
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [logits, c1, s2, c3, s4, c5, f6] = fwd.call(images, c1w, c1b, c3w, c3b, c5w, c5b, f6w, f6b, outw, outb);
    ctx->save_for_backward({images, c1, s2, c3, s4, c5, f6, c1w, c3w, c5w, f6w, outw});
    ctx->mark_non_differentiable({c1, s2, c3, s4, c5, f6});
    ctx->set_materialize_grads(false);
    return {logits, c1, s2, c3, s4, c5, f6};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    static const auto bwd =
        op("lenet_ext::lenet5_train_backward").typed<Tensors11(T, T, T, T, T, T, T, T, T, T, T, T, T, bool)>();
    variable_list out(11);
    if (!grad[0].defined()) return out;  // the logits were not used
    const auto v = ctx->get_saved_variables();
    const Tensors11 g = bwd.call(grad[0], v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11],
                                 ctx->needs_input_grad(0));
    const std::array<at::Tensor, 11> all = std::apply([](auto... t) { return std::array<at::Tensor, 11>{t...}; }, g);
    for (size_t i = 0; i < all.size(); ++i)
      if (ctx->needs_input_grad(i)) out[i] = all[i];
    return out;
  }
};

Tensors7 lenet5_train_forward_autograd(T images, T c1w, T c1b, T c3w, T c3b, T c5w, T c5b, T f6w, T f6b, T outw,
                                       T outb) {
  auto out = LeNet5Train::apply(images, c1w, c1b, c3w, c3b, c5w, c5b, f6w, f6b, outw, outb);
  return {out[0], out[1], out[2], out[3], out[4], out[5], out[6]};
}

at::Tensor conv2d_sigmoid_autograd(const at::Tensor& x, const at::Tensor& w, const OptTensor& b, int64_t stride,
                                   int64_t padding) {
  return ConvSigmoid::apply(x, w, b, stride, padding);
}

std::tuple<at::Tensor, at::Tensor> conv2d_sigmoid_pool_autograd(const at::Tensor& x, const at::Tensor& w,
                                                                const OptTensor& b, int64_t padding, int64_t pool) {
  auto out = ConvSigmoidPool::apply(x, w, b, padding, pool);
  return {out[0], out[1]};
}

at::Tensor avg_pool2d_autograd(const at::Tensor& x, int64_t kernel_size, int64_t stride) {
  return AvgPool::apply(x, kernel_size, stride);
}

at::Tensor linear_autograd(const at::Tensor& x, const at::Tensor& w, const OptTensor& b, bool sigmoid) {
  return Linear::apply(x, w, b, sigmoid);
}

}  // namespace

TORCH_LIBRARY_IMPL(lenet_ext, Autograd, m) {
  m.impl("conv2d_sigmoid", &conv2d_sigmoid_autograd);
  m.impl("conv2d_sigmoid_pool", &conv2d_sigmoid_pool_autograd);
  m.impl("avg_pool2d", &avg_pool2d_autograd);
  m.impl("linear", &linear_autograd);
  m.impl("lenet5_train_forward", &lenet5_train_forward_autograd);
}

}  // namespace lenet_ext
