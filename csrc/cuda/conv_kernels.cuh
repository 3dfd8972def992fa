// The convolution kernels shared by conv2d_sigmoid.cu and conv2d_sigmoid_pool.cu (the fused op's
// backward is the convolution's, once the pooled gradient is spread over the activation).
//
// Forward   y[n, o, oh, ow] = sigmoid(b[o] + sum_{c,i,j} w[o, c, i, j] * x[n, c, oh*s + i - p, ow*s + j - p])
//           one thread per output element, the KH x KW window read straight from global memory.
// Backward  g = dy * y * (1 - y)                                    (sigmoid' from the saved output)
//           dx[n, c, ih, iw] = sum over (o, i, j) with ih = oh*s + i - p, iw = ow*s + j - p of g * w[o, c, i, j]
//               one thread per input element, gathering (no atomics)
//           dw[o, c, i, j] = sum_{n, oh, ow} g[n, o, oh, ow] * x[n, c, oh*s + i - p, ow*s + j - p]
//           db[o]          = sum_{n, oh, ow} g[n, o, oh, ow]
//               one block per weight (bias) element, a fixed-order block reduction
// Every gradient is computed in a fixed order: the same inputs give the same bits.
#pragma once

#include "../shapes.h"
#include "device.cuh"

namespace lenet_ext {
namespace cuda {

template <typename T>
__global__ void conv2d_sigmoid_forward_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                              const T* __restrict__ b, T* __restrict__ y, ConvShape s) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t total = s.N * s.O * s.OH * s.OW;
  if (idx >= total) return;
  const int64_t ow = idx % s.OW, oh = (idx / s.OW) % s.OH, o = (idx / (s.OW * s.OH)) % s.O;
  const int64_t n = idx / (s.OW * s.OH * s.O);
  T acc = b ? b[o] : T(0);
  for (int64_t c = 0; c < s.C; ++c) {
    const T* xc = x + (n * s.C + c) * s.H * s.W;
    const T* wc = w + (o * s.C + c) * s.KH * s.KW;
    for (int64_t i = 0; i < s.KH; ++i) {
      const int64_t ih = oh * s.stride + i - s.pad;
      if (ih < 0 || ih >= s.H) continue;
      for (int64_t j = 0; j < s.KW; ++j) {
        const int64_t iw = ow * s.stride + j - s.pad;
        if (iw >= 0 && iw < s.W) acc += wc[i * s.KW + j] * xc[ih * s.W + iw];
      }
    }
  }
  y[idx] = sigmoid(acc);
}

template <typename T>
__global__ void sigmoid_grad_kernel(const T* __restrict__ gy, const T* __restrict__ y, T* __restrict__ g,
                                    int64_t total) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx < total) g[idx] = gy[idx] * y[idx] * (T(1) - y[idx]);
}

template <typename T>
__global__ void conv2d_grad_input_kernel(const T* __restrict__ g, const T* __restrict__ w, T* __restrict__ dx,
                                         ConvShape s) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t total = s.N * s.C * s.H * s.W;
  if (idx >= total) return;
  const int64_t iw = idx % s.W, ih = (idx / s.W) % s.H, c = (idx / (s.W * s.H)) % s.C;
  const int64_t n = idx / (s.W * s.H * s.C);
  T acc = 0;
  for (int64_t i = 0; i < s.KH; ++i) {
    const int64_t th = ih + s.pad - i;  // = oh * stride
    if (th < 0 || th % s.stride != 0 || th / s.stride >= s.OH) continue;
    const int64_t oh = th / s.stride;
    for (int64_t j = 0; j < s.KW; ++j) {
      const int64_t tw = iw + s.pad - j;
      if (tw < 0 || tw % s.stride != 0 || tw / s.stride >= s.OW) continue;
      const int64_t ow = tw / s.stride;
      for (int64_t o = 0; o < s.O; ++o) {
        acc += g[((n * s.O + o) * s.OH + oh) * s.OW + ow] * w[((o * s.C + c) * s.KH + i) * s.KW + j];
      }
    }
  }
  dx[idx] = acc;
}

// One block per weight element (o, c, i, j): reduce over (n, oh, ow).
template <typename T>
__global__ void conv2d_grad_weight_kernel(const T* __restrict__ g, const T* __restrict__ x, T* __restrict__ dw,
                                          ConvShape s) {
  const int64_t widx = blockIdx.x;
  const int64_t j = widx % s.KW, i = (widx / s.KW) % s.KH, c = (widx / (s.KW * s.KH)) % s.C;
  const int64_t o = widx / (s.KW * s.KH * s.C);
  const int64_t P = s.OH * s.OW;
  T acc = 0;
  for (int64_t t = threadIdx.x; t < s.N * P; t += blockDim.x) {
    const int64_t n = t / P, q = t % P, oh = q / s.OW, ow = q % s.OW;
    const int64_t ih = oh * s.stride + i - s.pad, iw = ow * s.stride + j - s.pad;
    if (ih >= 0 && ih < s.H && iw >= 0 && iw < s.W) {
      acc += g[(n * s.O + o) * P + q] * x[((n * s.C + c) * s.H + ih) * s.W + iw];
    }
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) dw[widx] = acc;
}

// One block per output channel: db[o] = sum over (n, q) of g.
template <typename T>
__global__ void conv2d_grad_bias_kernel(const T* __restrict__ g, T* __restrict__ db, int64_t N, int64_t O,
                                        int64_t P) {
  const int64_t o = blockIdx.x;
  T acc = 0;
  for (int64_t t = threadIdx.x; t < N * P; t += blockDim.x) acc += g[(t / P * O + o) * P + t % P];
  acc = block_sum(acc);
  if (threadIdx.x == 0) db[o] = acc;
}

// ------------------------------------------------------------------------------------------------
// conv2d_sigmoid_pool (conv2d_sigmoid_pool.cu): stride 1, then k x k average pooling with stride k.
// Forward: one thread per k x k window of the activation (windows that floor mode leaves out of
// the pooling write only the activation). Backward: the pooled gradient spread over its window,
// plus the activation's own gradient, through the sigmoid; then the convolution's kernels above.
// ------------------------------------------------------------------------------------------------

template <typename T>
__global__ void conv2d_sigmoid_pool_forward_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                                   const T* __restrict__ b, T* __restrict__ act,
                                                   T* __restrict__ pooled, ConvShape s, int64_t pool) {
  const int64_t WY = (s.OH + pool - 1) / pool, WX = (s.OW + pool - 1) / pool;  // windows per row / column
  const int64_t PH = s.OH / pool, PW = s.OW / pool;                              // pooled size
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= s.N * s.O * WY * WX) return;
  const int64_t wx = idx % WX, wy = (idx / WX) % WY, o = (idx / (WX * WY)) % s.O, n = idx / (WX * WY * s.O);
  const T bias = b ? b[o] : T(0);
  const T* wo = w + o * s.C * s.KH * s.KW;
  const T* xn = x + n * s.C * s.H * s.W;
  T* an = act + (n * s.O + o) * s.OH * s.OW;
  T sum = 0;
  for (int64_t dy = 0; dy < pool; ++dy) {
    const int64_t oh = wy * pool + dy;
    if (oh >= s.OH) break;
    for (int64_t dx = 0; dx < pool; ++dx) {
      const int64_t ow = wx * pool + dx;
      if (ow >= s.OW) break;
      T acc = bias;
      for (int64_t c = 0; c < s.C; ++c) {
        const T* xc = xn + c * s.H * s.W;
        const T* wc = wo + c * s.KH * s.KW;
        for (int64_t i = 0; i < s.KH; ++i) {
          const int64_t ih = oh + i - s.pad;
          if (ih < 0 || ih >= s.H) continue;
          for (int64_t j = 0; j < s.KW; ++j) {
            const int64_t iw = ow + j - s.pad;
            if (iw >= 0 && iw < s.W) acc += wc[i * s.KW + j] * xc[ih * s.W + iw];
          }
        }
      }
      const T y = sigmoid(acc);
      an[oh * s.OW + ow] = y;
      sum += y;
    }
  }
  if (wy < PH && wx < PW) pooled[((n * s.O + o) * PH + wy) * PW + wx] = sum / T(pool * pool);
}

// g = (dpooled spread over its window / k^2 + dactivation) * a * (1 - a), one thread per activation.
template <typename T>
__global__ void pooled_sigmoid_grad_kernel(const T* __restrict__ gp, const T* __restrict__ ga,
                                           const T* __restrict__ a, T* __restrict__ g, int64_t planes, int64_t OH,
                                           int64_t OW, int64_t pool) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= planes * OH * OW) return;
  const int64_t ow = idx % OW, oh = (idx / OW) % OH, plane = idx / (OW * OH);
  const int64_t PH = OH / pool, PW = OW / pool;
  T d = ga ? ga[idx] : T(0);
  if (oh < PH * pool && ow < PW * pool) d += gp[(plane * PH + oh / pool) * PW + ow / pool] / T(pool * pool);
  const T y = a[idx];
  g[idx] = d * y * (T(1) - y);
}


// The launches of conv2d_sigmoid_pool's forward and backward, as templates over the launcher
// (launch(kernel, grid, block, args...)): the op (conv2d_sigmoid_pool.cu) launches on the current
// stream, cpp_tests/cuda_emulation.cpp on the CPU. A null gradient pointer is not computed.
template <typename T>
struct ConvPool {
  ConvShape s;
  int64_t pool;
  const T *x, *w, *b;  // forward inputs (b may be null)
  T *act, *pooled;     // forward outputs
};

template <typename T, typename Launch>
void conv2d_sigmoid_pool_forward(const ConvPool<T>& f, Launch&& launch) {
  const ConvShape& s = f.s;
  const int64_t windows = s.N * s.O * ((s.OH + f.pool - 1) / f.pool) * ((s.OW + f.pool - 1) / f.pool);
  if (windows == 0) return;
  launch(conv2d_sigmoid_pool_forward_kernel<T>, dim3(blocks_for(windows)), dim3(kThreads), f.x, f.w, f.b, f.act,
         f.pooled, s, f.pool);
}

template <typename T>
struct ConvPoolBackward {
  ConvShape s;
  int64_t pool;
  const T *gp, *ga, *a, *x, *w;  // ga may be null
  T *g;                          // scratch (N, O, OH, OW)
  T *gx, *gw, *gb;               // null: not wanted
};

template <typename T, typename Launch>
void conv2d_sigmoid_pool_backward(const ConvPoolBackward<T>& b, Launch&& launch) {
  const ConvShape& s = b.s;
  const int64_t acts = s.N * s.O * s.OH * s.OW, inputs = s.N * s.C * s.H * s.W;
  if (acts > 0) {
    launch(pooled_sigmoid_grad_kernel<T>, dim3(blocks_for(acts)), dim3(kThreads), b.gp, b.ga, b.a, b.g, s.N * s.O,
           s.OH, s.OW, b.pool);
  }
  if (b.gx != nullptr && inputs > 0) {
    launch(conv2d_grad_input_kernel<T>, dim3(blocks_for(inputs)), dim3(kThreads), static_cast<const T*>(b.g), b.w,
           b.gx, s);
  }
  if (b.gw != nullptr) {
    launch(conv2d_grad_weight_kernel<T>, dim3(static_cast<unsigned int>(s.O * s.C * s.KH * s.KW)), dim3(kThreads),
           static_cast<const T*>(b.g), b.x, b.gw, s);
  }
  if (b.gb != nullptr) {
    launch(conv2d_grad_bias_kernel<T>, dim3(static_cast<unsigned int>(s.O)), dim3(kThreads),
           static_cast<const T*>(b.g), b.gb, s.N, s.O, s.OH * s.OW);
  }
}

}  // namespace cuda
}  // namespace lenet_ext
