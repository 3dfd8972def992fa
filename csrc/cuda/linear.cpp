// Linear layer with bias and an optional fused sigmoid, on CUDA.
//
// Forward   y[m, o] = act(b[o] + sum_k x[m, k] * w[o, k]); one thread per output element.
// Backward  g = dy * y * (1 - y) if sigmoid else dy
//           dx[m, k] = sum_o g[m, o] * w[o, k]        one thread per input element
//           dw[o, k] = sum_m g[m, o] * x[m, k]        one block per weight element, fixed-order reduction
//           db[o]    = sum_m g[m, o]                  one block per output feature
// No atomics: the same inputs give the same bits. With cuda_kernels() == CudaKernels::v2 (flags.h) the products
// run as tiled matrix products instead (product_kernels.cuh).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <array>
#include <tuple>
#include <vector>

#include "../checks.h"
#include "../flags.h"
#include "../tensors.h"
#include "common.cuh"
#include "product_kernels.cuh"

namespace lenet_ext {
namespace cuda {
namespace {

template <typename T>
__global__ void linear_forward_kernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,
                                      T* __restrict__ y, int64_t M, int64_t K, int64_t O, bool apply_sigmoid) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= M * O) return;
  const int64_t o = idx % O, m = idx / O;
  const T* xm = x + m * K;
  const T* wo = w + o * K;
  T acc = b ? b[o] : T(0);
  for (int64_t k = 0; k < K; ++k) acc += xm[k] * wo[k];
  y[idx] = apply_sigmoid ? sigmoid(acc) : acc;
}

template <typename T>
__global__ void linear_grad_pre_kernel(const T* __restrict__ gy, const T* __restrict__ y, T* __restrict__ g,
                                       int64_t total) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx < total) g[idx] = y ? gy[idx] * y[idx] * (T(1) - y[idx]) : gy[idx];
}

template <typename T>
__global__ void linear_grad_input_kernel(const T* __restrict__ g, const T* __restrict__ w, T* __restrict__ dx,
                                         int64_t M, int64_t K, int64_t O) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= M * K) return;
  const int64_t k = idx % K, m = idx / K;
  T acc = 0;
  for (int64_t o = 0; o < O; ++o) acc += g[m * O + o] * w[o * K + k];
  dx[idx] = acc;
}

// Block per (o, k) for the weight; blocks past O*K compute the bias of o = block - O*K.
template <typename T>
__global__ void linear_grad_params_kernel(const T* __restrict__ g, const T* __restrict__ x, T* __restrict__ dw,
                                          T* __restrict__ db, int64_t M, int64_t K, int64_t O, int64_t weight_blocks) {
  const int64_t block = blockIdx.x;
  T acc = 0;
  if (block < weight_blocks) {
    const int64_t o = block / K, k = block % K;
    for (int64_t m = threadIdx.x; m < M; m += blockDim.x) acc += g[m * O + o] * x[m * K + k];
  } else {
    const int64_t o = block - weight_blocks;
    for (int64_t m = threadIdx.x; m < M; m += blockDim.x) acc += g[m * O + o];
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) (block < weight_blocks ? dw[block] : db[block - weight_blocks]) = acc;
}

at::Tensor linear_cuda(const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                       bool apply_sigmoid) {
  check_linear(input, weight, bias);
  const c10::cuda::CUDAGuard guard(input.device());
  const int64_t M = leading_rows(input), K = weight.size(1), O = weight.size(0);
  const at::Tensor x = input.contiguous();
  const at::Tensor w = weight.contiguous();
  const at::Tensor b = bias.has_value() ? bias->contiguous() : at::Tensor();
  at::Tensor y = at::empty(linear_output_size(input, O), x.options());
  if (y.numel() == 0) return y;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "linear_cuda", [&] {
    if (cuda_kernels() == CudaKernels::v2) {  // the tiled product (product_kernels.cuh)
      dense_forward(x.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(),
                    b.defined() ? b.const_data_ptr<scalar_t>() : nullptr, y.mutable_data_ptr<scalar_t>(), M, K, O,
                    apply_sigmoid, CudaLaunch{c10::cuda::getCurrentCUDAStream()});
      return;
    }
    linear_forward_kernel<scalar_t><<<blocks_for(M * O), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        x.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(),
        b.defined() ? b.const_data_ptr<scalar_t>() : nullptr, y.mutable_data_ptr<scalar_t>(), M, K, O, apply_sigmoid);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_backward_cuda(const at::Tensor& grad_output,
                                                                    const c10::optional<at::Tensor>& output,
                                                                    const at::Tensor& input, const at::Tensor& weight,
                                                                    bool apply_sigmoid,
                                                                    std::array<bool, 3> output_mask) {
  check_linear_backward(grad_output, output, input, weight, apply_sigmoid);
  const int64_t M = leading_rows(input), K = weight.size(1), O = weight.size(0);
  const c10::cuda::CUDAGuard guard(input.device());
  const auto [need_input, need_weight, need_bias] = output_mask;
  const at::Tensor gy = grad_output.contiguous();
  const at::Tensor y = apply_sigmoid ? output->contiguous() : at::Tensor();
  const at::Tensor x = input.contiguous();
  const at::Tensor w = weight.contiguous();
  const auto opts = x.options();
  at::Tensor gx, gw, gb;
  std::tie(gx, gw, gb) = empty_grads(x, w, output_mask);
  if (!need_input && !need_weight && !need_bias) return {gx, gw, gb};
  const auto stream = c10::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "linear_backward_cuda", [&] {
    at::Tensor g = at::empty({M, O}, opts);
    if (g.numel() > 0) {
      linear_grad_pre_kernel<scalar_t><<<blocks_for(g.numel()), kThreads, 0, stream>>>(
          gy.const_data_ptr<scalar_t>(), apply_sigmoid ? y.const_data_ptr<scalar_t>() : nullptr,
          g.mutable_data_ptr<scalar_t>(), g.numel());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    if (cuda_kernels() == CudaKernels::v2) {  // the tiled products (product_kernels.cuh)
      dense_backward(g.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(),
                     need_input && gx.numel() > 0 ? gx.mutable_data_ptr<scalar_t>() : nullptr,
                     need_weight ? gw.mutable_data_ptr<scalar_t>() : nullptr,
                     need_bias ? gb.mutable_data_ptr<scalar_t>() : nullptr, M, K, O, CudaLaunch{stream});
      return;
    }
    if (need_input && gx.numel() > 0) {
      linear_grad_input_kernel<scalar_t><<<blocks_for(gx.numel()), kThreads, 0, stream>>>(
          g.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(), gx.mutable_data_ptr<scalar_t>(), M, K, O);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    const int64_t weight_blocks = need_weight ? O * K : 0;
    const int64_t blocks = weight_blocks + (need_bias ? O : 0);
    if (blocks > 0) {
      linear_grad_params_kernel<scalar_t><<<static_cast<unsigned int>(blocks), kThreads, 0, stream>>>(
          g.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
          need_weight ? gw.mutable_data_ptr<scalar_t>() : nullptr,
          need_bias ? gb.mutable_data_ptr<scalar_t>() : nullptr, M, K, O, weight_blocks);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {gx, gw, gb};
}

}  // namespace

TORCH_LIBRARY_IMPL(lenet_ext, CUDA, m) {
  m.impl("linear", &linear_cuda);
  m.impl("linear_backward", &linear_backward_cuda);
}

}  // namespace cuda
}  // namespace lenet_ext
