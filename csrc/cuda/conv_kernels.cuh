// The convolution kernels shared by conv2d_sigmoid_kernels.cu and conv2d_sigmoid_pool_kernels.cu (the fused op's
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
#include "params.h"
#include "product_kernels.cuh"

namespace lenet_ext {
namespace cuda {

template <typename T>
__global__ void conv2d_sigmoid_forward_kernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,
                                              T* __restrict__ y, ConvShape s) {
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
__global__ void conv2d_grad_bias_kernel(const T* __restrict__ g, T* __restrict__ db, int64_t N, int64_t O, int64_t P) {
  const int64_t o = blockIdx.x;
  T acc = 0;
  for (int64_t t = threadIdx.x; t < N * P; t += blockDim.x) acc += g[(t / P * O + o) * P + t % P];
  acc = block_sum(acc);
  if (threadIdx.x == 0) db[o] = acc;
}

// ------------------------------------------------------------------------------------------------
// Second generation (LENET_EXT_CUDA_FUSED=1 until a GPU run has measured it):
//   forward / input gradient: each thread computes kGroup output (input) channels of one position,
//     so each input (gradient) value it reads serves kGroup channels; the same order of additions
//     per output as the first kernels;
//   weight / bias gradient: block sums over chunks of the batch (parallel over the batch, not only
//     over the weights), then the chunks added in order;
//   a convolution whose window covers its whole input (c5) is a dense layer: the tiled products of
//     product_kernels.cuh.
// ------------------------------------------------------------------------------------------------

constexpr int kGroup = 4;

template <typename T>
__global__ void conv2d_sigmoid_forward_kernel2(const T* __restrict__ x, const T* __restrict__ w,
                                               const T* __restrict__ b, T* __restrict__ y, ConvShape s) {
  const int64_t G = (s.O + kGroup - 1) / kGroup;
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= s.N * G * s.OH * s.OW) return;
  const int64_t ow = idx % s.OW, oh = (idx / s.OW) % s.OH, grp = (idx / (s.OW * s.OH)) % G;
  const int64_t n = idx / (s.OW * s.OH * G);
  const int64_t K = s.C * s.KH * s.KW;
  const T* wo[kGroup];
  T acc[kGroup];
#pragma unroll
  for (int k = 0; k < kGroup; ++k) {
    const int64_t o = grp * kGroup + k < s.O ? grp * kGroup + k : s.O - 1;  // past the end: computed, not written
    wo[k] = w + o * K;
    acc[k] = b ? b[o] : T(0);
  }
  for (int64_t c = 0; c < s.C; ++c) {
    const T* xc = x + (n * s.C + c) * s.H * s.W;
    for (int64_t i = 0; i < s.KH; ++i) {
      const int64_t ih = oh * s.stride + i - s.pad;
      if (ih < 0 || ih >= s.H) continue;
      for (int64_t j = 0; j < s.KW; ++j) {
        const int64_t iw = ow * s.stride + j - s.pad;
        if (iw < 0 || iw >= s.W) continue;
        const T xv = xc[ih * s.W + iw];
        const int64_t tap = (c * s.KH + i) * s.KW + j;
#pragma unroll
        for (int k = 0; k < kGroup; ++k) acc[k] += ro(wo[k] + tap) * xv;
      }
    }
  }
#pragma unroll
  for (int k = 0; k < kGroup; ++k) {
    const int64_t o = grp * kGroup + k;
    if (o < s.O) y[((n * s.O + o) * s.OH + oh) * s.OW + ow] = sigmoid(acc[k]);
  }
}

template <typename T>
__global__ void conv2d_grad_input_kernel2(const T* __restrict__ g, const T* __restrict__ w, T* __restrict__ dx,
                                          ConvShape s) {
  const int64_t G = (s.C + kGroup - 1) / kGroup;
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= s.N * G * s.H * s.W) return;
  const int64_t iw = idx % s.W, ih = (idx / s.W) % s.H, grp = (idx / (s.W * s.H)) % G;
  const int64_t n = idx / (s.W * s.H * G);
  T acc[kGroup] = {};
  int64_t ch[kGroup];
#pragma unroll
  for (int k = 0; k < kGroup; ++k) ch[k] = grp * kGroup + k < s.C ? grp * kGroup + k : s.C - 1;
  for (int64_t i = 0; i < s.KH; ++i) {
    const int64_t th = ih + s.pad - i;  // = oh * stride
    if (th < 0 || th % s.stride != 0 || th / s.stride >= s.OH) continue;
    const int64_t oh = th / s.stride;
    for (int64_t j = 0; j < s.KW; ++j) {
      const int64_t tw = iw + s.pad - j;
      if (tw < 0 || tw % s.stride != 0 || tw / s.stride >= s.OW) continue;
      const int64_t ow = tw / s.stride;
      for (int64_t o = 0; o < s.O; ++o) {
        const T gv = g[((n * s.O + o) * s.OH + oh) * s.OW + ow];
#pragma unroll
        for (int k = 0; k < kGroup; ++k) acc[k] += gv * ro(w + ((o * s.C + ch[k]) * s.KH + i) * s.KW + j);
      }
    }
  }
#pragma unroll
  for (int k = 0; k < kGroup; ++k) {
    const int64_t c = grp * kGroup + k;
    if (c < s.C) dx[((n * s.C + c) * s.H + ih) * s.W + iw] = acc[k];
  }
}

// Block (e, chunk): the sum over the chunk's images and every output position of the gradient of
// weight element e (e < O*C*KH*KW) or of bias o = e - O*C*KH*KW.
template <typename T>
__global__ void conv2d_grad_params_partial_kernel(const T* __restrict__ g, const T* __restrict__ x,
                                                  T* __restrict__ partial, ConvShape s, int64_t chunk_images) {
  const int64_t e = blockIdx.x, chunk = blockIdx.y, E = conv_grad_elements(s), weights = E - s.O;
  const int64_t n0 = chunk * chunk_images, n1 = n0 + chunk_images < s.N ? n0 + chunk_images : s.N;
  const int64_t P = s.OH * s.OW, items = (n1 - n0) * P;
  T acc = 0;
  if (e < weights) {
    const int64_t j = e % s.KW, i = (e / s.KW) % s.KH, c = (e / (s.KW * s.KH)) % s.C, o = e / (s.KW * s.KH * s.C);
    for (int64_t t = threadIdx.x; t < items; t += blockDim.x) {
      const int64_t n = n0 + t / P, q = t % P, oh = q / s.OW, ow = q % s.OW;
      const int64_t ih = oh * s.stride + i - s.pad, iw = ow * s.stride + j - s.pad;
      if (ih >= 0 && ih < s.H && iw >= 0 && iw < s.W)
        acc += g[(n * s.O + o) * P + q] * x[((n * s.C + c) * s.H + ih) * s.W + iw];
    }
  } else {
    const int64_t o = e - weights;
    for (int64_t t = threadIdx.x; t < items; t += blockDim.x) {
      const int64_t n = n0 + t / P, q = t % P;
      acc += g[(n * s.O + o) * P + q];
    }
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[chunk * E + e] = acc;
}

template <typename T>
__global__ void conv2d_grad_params_reduce_kernel(const T* __restrict__ partial, int64_t chunks, int64_t E,
                                                 int64_t weights, T* __restrict__ dw, T* __restrict__ db) {
  const int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (e >= E) return;
  T acc = 0;
  for (int64_t c = 0; c < chunks; ++c) acc += partial[c * E + e];
  if (e < weights) {
    if (dw) dw[e] = acc;
  } else if (db) {
    db[e - weights] = acc;
  }
}

// A convolution's launches, as templates over the launcher (conv2d_sigmoid_kernels.cu,
// conv2d_sigmoid_pool_kernels.cu; the emulator in cpp_tests/cuda_emulation.cpp). v2 selects the
// second generation. A null output is not computed. The argument structs are in params.h.
template <typename T, typename Launch>
void conv2d_sigmoid_forward(const ConvForward<T>& f, Launch&& launch, bool v2) {
  const ConvShape& s = f.s;
  if (s.N * s.O * s.OH * s.OW == 0) return;
  if (v2 && s.whole_input()) {  // c5: a dense layer over the flattened input
    dense_forward(f.x, f.w, f.b, f.y, s.N, s.C * s.H * s.W, s.O, true, launch);
  } else if (v2) {
    const int64_t threads = s.N * ((s.O + kGroup - 1) / kGroup) * s.OH * s.OW;
    launch(conv2d_sigmoid_forward_kernel2<T>, dim3(blocks_for(threads)), dim3(kThreads), f.x, f.w, f.b, f.y, s);
  } else {
    launch(conv2d_sigmoid_forward_kernel<T>, dim3(blocks_for(s.N * s.O * s.OH * s.OW)), dim3(kThreads), f.x, f.w, f.b,
           f.y, s);
  }
}

// From g = the gradient at the pre-activation (N, O, OH, OW): dx, dw, db. v2 needs `partial`
// (conv_grad_chunks(s) x conv_grad_elements(s) values) unless the window covers the whole input.
template <typename T, typename Launch>
void conv2d_backward_from_g(const ConvBackward<T>& b, Launch&& launch, bool v2) {
  const ConvShape& s = b.s;
  const int64_t inputs = s.N * s.C * s.H * s.W;
  if (v2 && s.whole_input()) {
    dense_backward(b.g, b.x, b.w, inputs > 0 ? b.gx : nullptr, b.gw, b.gb, s.N, s.C * s.H * s.W, s.O, launch);
    return;
  }
  if (b.gx != nullptr && inputs > 0) {
    if (v2) {
      launch(conv2d_grad_input_kernel2<T>, dim3(blocks_for(s.N * ((s.C + kGroup - 1) / kGroup) * s.H * s.W)),
             dim3(kThreads), b.g, b.w, b.gx, s);
    } else {
      launch(conv2d_grad_input_kernel<T>, dim3(blocks_for(inputs)), dim3(kThreads), b.g, b.w, b.gx, s);
    }
  }
  if (b.gw == nullptr && b.gb == nullptr) return;
  if (v2) {
    const int64_t chunks = conv_grad_chunks(s), E = conv_grad_elements(s);
    if (chunks > 0) {
      launch(conv2d_grad_params_partial_kernel<T>,
             dim3(static_cast<unsigned int>(E), static_cast<unsigned int>(chunks)), dim3(kThreads), b.g, b.x, b.partial,
             s, conv_grad_chunk(s));
    }
    launch(conv2d_grad_params_reduce_kernel<T>, dim3(blocks_for(E)), dim3(kThreads), static_cast<const T*>(b.partial),
           chunks, E, E - s.O, b.gw, b.gb);
    return;
  }
  if (b.gw != nullptr) {
    launch(conv2d_grad_weight_kernel<T>, dim3(static_cast<unsigned int>(s.O * s.C * s.KH * s.KW)), dim3(kThreads), b.g,
           b.x, b.gw, s);
  }
  if (b.gb != nullptr) {
    launch(conv2d_grad_bias_kernel<T>, dim3(static_cast<unsigned int>(s.O)), dim3(kThreads), b.g, b.gb, s.N, s.O,
           s.OH * s.OW);
  }
}

// ------------------------------------------------------------------------------------------------
// conv2d_sigmoid_pool (conv2d_sigmoid_pool_kernels.cu): stride 1, then k x k average pooling with stride k.
// Forward: one thread per k x k window of the activation (windows that floor mode leaves out of
// the pooling write only the activation). Backward: the pooled gradient spread over its window,
// plus the activation's own gradient, through the sigmoid; then the convolution's kernels above.
// ------------------------------------------------------------------------------------------------

template <typename T>
__global__ void conv2d_sigmoid_pool_forward_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                                   const T* __restrict__ b, T* __restrict__ act, T* __restrict__ pooled,
                                                   ConvShape s, int64_t pool) {
  const int64_t WY = (s.OH + pool - 1) / pool, WX = (s.OW + pool - 1) / pool;  // windows per row / column
  const int64_t PH = s.OH / pool, PW = s.OW / pool;                            // pooled size
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
__global__ void pooled_sigmoid_grad_kernel(const T* __restrict__ gp, const T* __restrict__ ga, const T* __restrict__ a,
                                           T* __restrict__ g, int64_t planes, int64_t OH, int64_t OW, int64_t pool) {
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
// (launch(kernel, grid, block, args...)): conv2d_sigmoid_pool_kernels.cu launches on a stream,
// cpp_tests/cuda_emulation.cpp on the CPU. A null gradient pointer is not computed.
template <typename T, typename Launch>
void conv2d_sigmoid_pool_forward(const ConvPool<T>& f, Launch&& launch) {  // one kernel in both generations
  const ConvShape& s = f.s;
  const int64_t windows = s.N * s.O * ((s.OH + f.pool - 1) / f.pool) * ((s.OW + f.pool - 1) / f.pool);
  if (windows == 0) return;
  launch(conv2d_sigmoid_pool_forward_kernel<T>, dim3(blocks_for(windows)), dim3(kThreads), f.x, f.w, f.b, f.act,
         f.pooled, s, f.pool);
}

template <typename T, typename Launch>
void conv2d_sigmoid_pool_backward(const ConvPoolBackward<T>& b, Launch&& launch, bool v2) {
  const ConvShape& s = b.s;
  const int64_t acts = s.N * s.O * s.OH * s.OW;
  if (acts > 0) {
    launch(pooled_sigmoid_grad_kernel<T>, dim3(blocks_for(acts)), dim3(kThreads), b.gp, b.ga, b.a, b.g, s.N * s.O, s.OH,
           s.OW, b.pool);
  }
  conv2d_backward_from_g(ConvBackward<T>{s, b.g, b.x, b.w, b.gx, b.gw, b.gb, b.partial}, launch, v2);
}

}  // namespace cuda
}  // namespace lenet_ext
