// lenet_ext's newer CUDA kernels (the fused ops', the second-generation per-op kernels, and the
// first-generation convolution kernels they share code with), run on the CPU: a test of their
// arithmetic, indexing and synchronisation on a machine without a GPU (tests/test_cuda_emulated.py
// builds this with torch.utils.cpp_extension, instrumented with -fsanitize=thread, and links
// emulation_runtime.cpp's hooks in place of libtsan).
//
// The kernel headers are compiled as plain C++ (emulation.h): a block's threads are fibers on one
// host thread, switched at each __syncthreads(); blocks run one after another, each with fresh
// shared memory. The launch sequences are the ops' own (conv2d_sigmoid_pool_forward/backward,
// lenet5_backward: templates over the launcher); only the argument checks and allocations here
// are this file's. Beside the results, every launch is checked for barriers in divergent code,
// shared-memory races and reads of uninitialised shared memory, and the threads can run in
// reversed or shuffled order (emulation.h). What it cannot show: timing, races through global
// memory, and the device's own exp().
#include <torch/extension.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "emulation.h"

using std::exp;

#include "../csrc/checks.h"
#include "../csrc/cuda/conv_kernels.cuh"
#include "../csrc/cuda/lenet5_backward_kernels.cuh"
#include "../csrc/cuda/lenet5_kernels.cuh"
#include "../csrc/cuda/product_kernels.cuh"
#include "../csrc/tensors.h"

namespace {

using namespace lenet_ext;
using namespace lenet_ext::cuda;

struct Emulate {
  template <typename Kernel, typename... Args>
  void operator()(Kernel kernel, dim3 grid, dim3 blk, Args... args) const {
    TORCH_CHECK(blk.y == 1 && blk.z == 1, "emulator: one-dimensional blocks only");
    blockDim = blk;
    gridDim = grid;
    for (unsigned int z = 0; z < grid.z; ++z)
      for (unsigned int y = 0; y < grid.y; ++y)
        for (unsigned int x = 0; x < grid.x; ++x) {
          blockIdx = dim3(x, y, z);
          emulation::run_block(blk.x, [&] { kernel(args...); });
        }
  }
};

template <typename T>
const T* in(const at::Tensor& t) {
  return t.const_data_ptr<T>();
}
template <typename T>
T* out(at::Tensor& t) {
  return t.mutable_data_ptr<T>();
}

std::vector<at::Tensor> conv_pool_forward(at::Tensor x, at::Tensor w, c10::optional<at::Tensor> b, int64_t pad,
                                          int64_t pool) {
  const ConvShape s = check_conv2d_sigmoid_pool(x, w, b, pad, pool);
  x = x.contiguous(), w = w.contiguous();
  at::Tensor bias = b.has_value() ? b->contiguous() : at::Tensor();
  at::Tensor act = at::empty({s.N, s.O, s.OH, s.OW}, x.options());
  at::Tensor pooled = at::empty({s.N, s.O, s.OH / pool, s.OW / pool}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "emulated conv_pool_forward", [&] {
    const ConvPool<scalar_t> f{s,
                               pool,
                               in<scalar_t>(x),
                               in<scalar_t>(w),
                               bias.defined() ? in<scalar_t>(bias) : nullptr,
                               out<scalar_t>(act),
                               out<scalar_t>(pooled)};
    conv2d_sigmoid_pool_forward(f, Emulate{});
  });
  return {pooled, act};
}

// v2's partial sums, as the ops allocate them.
at::Tensor partial_for(const ConvShape& s, const at::Tensor& like, bool v2) {
  return v2 && !s.whole_input() ? at::empty({conv_grad_chunks(s) * conv_grad_elements(s)}, like.options())
                                : at::Tensor();
}

template <typename T>
T* maybe(at::Tensor& t) {
  return t.defined() && t.numel() > 0 ? t.mutable_data_ptr<T>() : nullptr;
}

at::Tensor conv_forward(at::Tensor x, at::Tensor w, c10::optional<at::Tensor> b, int64_t stride, int64_t pad, bool v2) {
  check_conv2d(x, w, b, stride, pad);
  x = x.contiguous(), w = w.contiguous();
  at::Tensor bias = b.has_value() ? b->contiguous() : at::Tensor();
  const ConvShape s = conv_shape(x, w, stride, pad);
  at::Tensor y = at::empty({s.N, s.O, s.OH, s.OW}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "emulated conv_forward", [&] {
    const ConvForward<scalar_t> f{s, in<scalar_t>(x), in<scalar_t>(w), bias.defined() ? in<scalar_t>(bias) : nullptr,
                                  out<scalar_t>(y)};
    conv2d_sigmoid_forward(f, Emulate{}, v2);
  });
  return y;
}

// The convolution's backward from g, the gradient at its pre-activation.
std::vector<at::Tensor> conv_backward_from_g(at::Tensor g, at::Tensor x, at::Tensor w, int64_t stride, int64_t pad,
                                             std::vector<bool> mask, bool v2) {
  g = g.contiguous(), x = x.contiguous(), w = w.contiguous();
  const ConvShape s = conv_shape(x, w, stride, pad);
  auto [gx, gw, gb] = empty_grads(x, w, {mask[0], mask[1], mask[2]});
  at::Tensor partial = partial_for(s, x, v2);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "emulated conv_backward", [&] {
    using T = scalar_t;
    const ConvBackward<T> b{s,
                            in<T>(g),
                            in<T>(x),
                            in<T>(w),
                            mask[0] ? maybe<T>(gx) : nullptr,
                            mask[1] ? maybe<T>(gw) : nullptr,
                            mask[2] ? maybe<T>(gb) : nullptr,
                            maybe<T>(partial)};
    conv2d_backward_from_g(b, Emulate{}, v2);
  });
  return {gx, gw, gb};
}

at::Tensor dense_forward_op(at::Tensor x, at::Tensor w, c10::optional<at::Tensor> b, bool apply_sigmoid) {
  x = x.contiguous(), w = w.contiguous();
  at::Tensor bias = b.has_value() ? b->contiguous() : at::Tensor();
  const int64_t M = x.size(0), K = x.size(1), O = w.size(0);
  at::Tensor y = at::empty({M, O}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "emulated dense_forward", [&] {
    dense_forward(in<scalar_t>(x), in<scalar_t>(w), bias.defined() ? in<scalar_t>(bias) : nullptr, out<scalar_t>(y), M,
                  K, O, apply_sigmoid, Emulate{});
  });
  return y;
}

std::vector<at::Tensor> dense_backward_op(at::Tensor g, at::Tensor x, at::Tensor w) {
  g = g.contiguous(), x = x.contiguous(), w = w.contiguous();
  const int64_t M = x.size(0), K = x.size(1), O = w.size(0);
  at::Tensor dx = at::empty({M, K}, x.options()), dw = at::empty({O, K}, x.options()), db = at::empty({O}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "emulated dense_backward", [&] {
    dense_backward(in<scalar_t>(g), in<scalar_t>(x), in<scalar_t>(w), maybe<scalar_t>(dx), maybe<scalar_t>(dw),
                   maybe<scalar_t>(db), M, K, O, Emulate{});
  });
  return {dx, dw, db};
}

std::vector<at::Tensor> conv_pool_backward(at::Tensor gp, c10::optional<at::Tensor> ga, at::Tensor a, at::Tensor x,
                                           at::Tensor w, int64_t pad, int64_t pool, std::vector<bool> mask, bool v2) {
  const ConvShape s = check_conv2d_sigmoid_pool_backward(gp, ga, a, x, w, pad, pool);
  gp = gp.contiguous(), a = a.contiguous(), x = x.contiguous(), w = w.contiguous();
  at::Tensor gact = ga.has_value() ? ga->contiguous() : at::Tensor();
  auto [gx, gw, gb] = empty_grads(x, w, {mask[0], mask[1], mask[2]});
  at::Tensor partial = partial_for(s, x, v2);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "emulated conv_pool_backward", [&] {
    at::Tensor g = at::empty_like(a);
    auto want = [](bool needed, at::Tensor& t) { return needed ? out<scalar_t>(t) : nullptr; };
    const ConvPoolBackward<scalar_t> bw{s,
                                        pool,
                                        in<scalar_t>(gp),
                                        gact.defined() ? in<scalar_t>(gact) : nullptr,
                                        in<scalar_t>(a),
                                        in<scalar_t>(x),
                                        in<scalar_t>(w),
                                        out<scalar_t>(g),
                                        want(mask[0], gx),
                                        want(mask[1], gw),
                                        want(mask[2], gb),
                                        maybe<scalar_t>(partial)};
    conv2d_sigmoid_pool_backward(bw, Emulate{}, v2);
  });
  return {gx, gw, gb};
}

std::vector<at::Tensor> run_lenet5_forward(at::Tensor images, std::vector<at::Tensor> p, bool save) {
  const int64_t classes = check_lenet5_args(images, p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9]);
  images = images.contiguous();
  const LeNet5Tensors w = contiguous_lenet5_params(p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9]);
  const int64_t N = images.size(0);
  const auto o = images.options();
  at::Tensor logits = at::empty({N, classes}, o), c1 = at::empty({N, 6, 28, 28}, o), s2 = at::empty({N, 6, 14, 14}, o),
             c3 = at::empty({N, 16, 10, 10}, o), s4 = at::empty({N, 16, 5, 5}, o), c5 = at::empty({N, 120, 1, 1}, o),
             f6 = at::empty({N, 84}, o);
  if (N == 0) return {logits, c1, s2, c3, s4, c5, f6};
  AT_DISPATCH_FLOATING_TYPES(images.scalar_type(), "emulated lenet5_forward", [&] {
    const LeNet5Acts<scalar_t> acts =
        save ? LeNet5Acts<scalar_t>{out<scalar_t>(c1), out<scalar_t>(s2), out<scalar_t>(c3),
                                    out<scalar_t>(s4), out<scalar_t>(c5), out<scalar_t>(f6)}
             : LeNet5Acts<scalar_t>{};
    lenet5_forward(N, in<scalar_t>(images), lenet5_weights<scalar_t>(w, classes), out<scalar_t>(logits), acts,
                   Emulate{});
  });
  return {logits, c1, s2, c3, s4, c5, f6};
}

std::vector<at::Tensor> lenet5_train_backward(at::Tensor go, at::Tensor x, at::Tensor a1, at::Tensor a2, at::Tensor a3,
                                              at::Tensor a4, at::Tensor a5, at::Tensor a6, at::Tensor w1, at::Tensor w3,
                                              at::Tensor w5, at::Tensor w6, at::Tensor wo, bool images_grad) {
  const int64_t classes = check_lenet5_backward_args(go, x, a1, a2, a3, a4, a5, a6, w1, w3, w5, w6, wo);
  for (at::Tensor* t : {&go, &x, &a1, &a2, &a3, &a4, &a5, &a6, &w1, &w3, &w5, &w6, &wo}) *t = t->contiguous();
  const int64_t N = x.size(0), chunks = lenet5_backward_chunks(N);
  const auto o = x.options();
  at::Tensor gx = at::empty(images_grad ? x.sizes() : at::IntArrayRef{0}, o);
  at::Tensor gw1 = at::empty({6, 1, 5, 5}, o), gb1 = at::empty({6}, o), gw3 = at::empty({16, 6, 5, 5}, o),
             gb3 = at::empty({16}, o), gw5 = at::empty({120, 16, 5, 5}, o), gb5 = at::empty({120}, o),
             gw6 = at::empty({84, 120}, o), gb6 = at::empty({84}, o), gwo = at::empty({classes, 84}, o),
             gbo = at::empty({classes}, o);
  at::Tensor g1 = at::empty({N, 4704}, o), g3 = at::empty({N, 1600}, o), g5 = at::empty({N, 120}, o),
             g6 = at::empty({N, 84}, o), partial = at::empty({chunks, kConvParams}, o);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "emulated lenet5_train_backward", [&] {
    using T = scalar_t;
    const LeNet5Backward<T> b{N,           classes,         in<T>(go),
                              in<T>(x),    in<T>(a1),       in<T>(a2),
                              in<T>(a3),   in<T>(a4),       in<T>(a5),
                              in<T>(a6),   in<T>(w1),       in<T>(w3),
                              in<T>(w5),   in<T>(w6),       in<T>(wo),
                              out<T>(g1),  out<T>(g3),      out<T>(g5),
                              out<T>(g6),  out<T>(partial), images_grad ? out<T>(gx) : nullptr,
                              out<T>(gw1), out<T>(gb1),     out<T>(gw3),
                              out<T>(gb3), out<T>(gw5),     out<T>(gb5),
                              out<T>(gw6), out<T>(gb6),     out<T>(gwo),
                              out<T>(gbo)};
    lenet5_backward(b, Emulate{});
  });
  return {gx, gw1, gb1, gw3, gb3, gw5, gb5, gw6, gb6, gwo, gbo};
}

// ------------------------------------------------------------------------------------------
// Deliberately broken kernels: each breaks one rule, to prove the emulator catches it.

// block_sum without the barrier between its tree steps: threads read partial sums that other
// threads write in the same interval.
template <typename T>
__global__ void sum_without_barrier_kernel(const T* values, T* total) {
  LENET_SHARED(T, partial, [kThreads]);
  partial[threadIdx.x] = values[threadIdx.x];
  __syncthreads();
  for (int width = kThreads / 2; width > 0; width /= 2) {
    if (static_cast<int>(threadIdx.x) < width) partial[threadIdx.x] += partial[threadIdx.x + width];
  }
  __syncthreads();
  if (threadIdx.x == 0) *total = partial[0];
}

// A barrier only half the block reaches.
template <typename T>
__global__ void barrier_in_branch_kernel(const T* values, T* out) {
  LENET_SHARED(T, buffer, [kThreads]);
  buffer[threadIdx.x] = values[threadIdx.x];
  if (threadIdx.x < kThreads / 2) __syncthreads();
  out[threadIdx.x] = buffer[threadIdx.x];
}

// Reads the whole shared array after writing half of it.
template <typename T>
__global__ void uninitialised_read_kernel(const T* values, T* out) {
  LENET_SHARED(T, buffer, [kThreads]);
  if (threadIdx.x < kThreads / 2) buffer[threadIdx.x] = values[threadIdx.x];
  __syncthreads();
  out[threadIdx.x] = buffer[kThreads - 1 - threadIdx.x];
}

at::Tensor broken_kernel(const std::string& name, at::Tensor values) {
  TORCH_CHECK(values.dim() == 1 && values.size(0) == kThreads && values.scalar_type() == at::kDouble,
              "broken_kernel: values must be 256 doubles");
  values = values.contiguous();
  at::Tensor out = name == "sum_without_barrier" ? at::zeros({1}, values.options()) : at::zeros_like(values);
  const double* v = values.const_data_ptr<double>();
  double* o = out.mutable_data_ptr<double>();
  if (name == "sum_without_barrier")
    Emulate{}(sum_without_barrier_kernel<double>, dim3(1), dim3(kThreads), v, o);
  else if (name == "barrier_in_branch")
    Emulate{}(barrier_in_branch_kernel<double>, dim3(1), dim3(kThreads), v, o);
  else if (name == "uninitialised_read")
    Emulate{}(uninitialised_read_kernel<double>, dim3(1), dim3(kThreads), v, o);
  else
    TORCH_CHECK(false, "broken_kernel: unknown kernel ", name);
  return out;
}

void set_thread_order(const std::string& order, int64_t seed) {
  TORCH_CHECK(order == "index" || order == "reversed" || order == "shuffled",
              "set_thread_order: order must be index, reversed or shuffled, got ", order);
  emulation::set_thread_order(order == "index"      ? emulation::Order::index
                              : order == "reversed" ? emulation::Order::reversed
                                                    : emulation::Order::shuffled,
                              static_cast<uint64_t>(seed));
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "lenet_ext's CUDA kernels run on the CPU (for tests without a GPU)";
  m.def("conv_pool_forward", &conv_pool_forward);
  m.def("conv_pool_backward", &conv_pool_backward);
  m.def("conv_forward", &conv_forward);
  m.def("conv_backward_from_g", &conv_backward_from_g);
  m.def("dense_forward", &dense_forward_op);
  m.def("dense_backward", &dense_backward_op);
  m.def("lenet5_forward", &run_lenet5_forward, "(logits, c1, s2, c3, s4, c5, f6); activations only with save=True");
  m.def("lenet5_train_backward", &lenet5_train_backward);
  m.def("broken_kernel", &broken_kernel,
        "a deliberately broken kernel: sum_without_barrier, barrier_in_branch, "
        "uninitialised_read");
  m.def("set_thread_order", &set_thread_order, "the order of a block's threads: index, reversed or shuffled (seed)");
  m.def("set_shared_checks", &emulation::set_shared_checks, "check shared memory for races and uninitialised reads");
}
