// Fused convolution + sigmoid on the CPU.
//
// Forward   y[n, o, oh, ow] = sigmoid(b[o] + sum_{c,i,j} w[o, c, i, j] * x[n, c, oh*s + i - p, ow*s + j - p])
//           x (N, C, H, W), w (O, C, KH, KW), b (O,), y (N, O, OH, OW), OH = (H + 2p - KH) / s + 1.
//           Per image, x is unrolled into columns (K = C*KH*KW rows, P = OH*OW columns):
//           col[(c, i, j), q] is the input under tap (c, i, j) of output position q (zero in the
//           padding); then y_n = sigmoid(w . col + b), w seen as (O, K), vectorized along q.
//           When the window covers the whole unpadded input (LeNet's c5, P = 1), the layer is a
//           dense one: a thread's chunk of images is an (n, K) matrix times w^T, forward and backward.
// Backward  g = dy * y * (1 - y)                 (sigmoid' from the saved output)
//           db[o]       = sum_{n,q} g[n, o, q]
//           dw[o, k]    = sum_n sum_q g[n, o, q] * col_n[k, q]
//           dcol_n[k,q] = sum_o w[o, k] * g[n, o, q]  -> added back into dx_n (adjoint of the unrolling)
// Parallel over the batch: each thread owns a contiguous chunk of images, keeps private partial dw/db,
// and the partials are added in chunk order (deterministic for a given thread count).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <array>
#include <tuple>
#include <vector>

#include "../checks.h"
#include "common.h"
#include "gemm.h"

namespace lenet_ext {
namespace cpu {
namespace {

// The output columns [lo, hi) whose tap at offset j (already minus the padding) lands inside [0, W).
inline void valid_range(int64_t offset, int64_t stride, int64_t W, int64_t OW, int64_t& lo, int64_t& hi) {
  lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  hi = offset >= W ? 0 : std::min<int64_t>(OW, (W - 1 - offset) / stride + 1);
  if (hi < lo) hi = lo;
}

template <typename T>
void im2col(const ConvShape& s, const T* x, T* col) {
  const int64_t P = s.P();
  for (int64_t c = 0; c < s.C; ++c) {
    for (int64_t i = 0; i < s.KH; ++i) {
      for (int64_t j = 0; j < s.KW; ++j, col += P) {
        int64_t lo, hi;
        valid_range(j - s.pad, s.stride, s.W, s.OW, lo, hi);
        for (int64_t oh = 0; oh < s.OH; ++oh) {
          T* dst = col + oh * s.OW;
          const int64_t ih = oh * s.stride + i - s.pad;
          if (ih < 0 || ih >= s.H) {
            std::fill(dst, dst + s.OW, T(0));
            continue;
          }
          const T* src = x + (c * s.H + ih) * s.W + j - s.pad;
          std::fill(dst, dst + lo, T(0));
          if (s.stride == 1) {
            for (int64_t ow = lo; ow < hi; ++ow) dst[ow] = src[ow];
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) dst[ow] = src[ow * s.stride];
          }
          std::fill(dst + hi, dst + s.OW, T(0));
        }
      }
    }
  }
}

// Adjoint of im2col: dx[c, ih, iw] += dcol[(c, i, j), q] for every tap that lands inside the input.
template <typename T>
void col2im_acc(const ConvShape& s, const T* dcol, T* dx) {
  const int64_t P = s.P();
  for (int64_t c = 0; c < s.C; ++c) {
    for (int64_t i = 0; i < s.KH; ++i) {
      for (int64_t j = 0; j < s.KW; ++j, dcol += P) {
        int64_t lo, hi;
        valid_range(j - s.pad, s.stride, s.W, s.OW, lo, hi);
        for (int64_t oh = 0; oh < s.OH; ++oh) {
          const int64_t ih = oh * s.stride + i - s.pad;
          if (ih < 0 || ih >= s.H) continue;
          const T* src = dcol + oh * s.OW;
          T* dst = dx + (c * s.H + ih) * s.W + j - s.pad;
          for (int64_t ow = lo; ow < hi; ++ow) dst[ow * s.stride] += src[ow];
        }
      }
    }
  }
}

at::Tensor conv2d_sigmoid_cpu(const at::Tensor& input, const at::Tensor& weight,
                              const c10::optional<at::Tensor>& bias, int64_t stride, int64_t padding) {
  check_conv2d(input, weight, bias, stride, padding);
  const at::Tensor x = input.contiguous();
  const at::Tensor w = weight.contiguous();
  const at::Tensor b = bias.has_value() ? bias->contiguous() : at::Tensor();
  const ConvShape s = conv_shape(x, w, stride, padding);
  at::Tensor y = at::empty({s.N, s.O, s.OH, s.OW}, x.options());
  if (s.N == 0) return y;

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "conv2d_sigmoid_cpu", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* wp = w.const_data_ptr<scalar_t>();
    const scalar_t* bp = b.defined() ? b.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    const int64_t P = s.P(), K = s.K(), image = s.C * s.H * s.W;
    parallel_chunks(s.N, num_chunks(s.N), [&](int64_t, int64_t n0, int64_t n1) {
      if (s.whole_input()) {
        // P = 1: the chunk's outputs (n, O) are rows of dot products with the weight rows, as in a
        // linear layer; y (N, O, 1, 1) is that matrix.
        dense_forward_rows(n1 - n0, K, s.O, xp + n0 * image, wp, bp, yp + n0 * s.O, /*apply_sigmoid=*/true);
        return;
      }
      std::vector<scalar_t> col(K * P);
      for (int64_t n = n0; n < n1; ++n) {
        scalar_t* yn = yp + n * s.O * P;
        im2col(s, xp + n * image, col.data());
        gemm_ab(s.O, P, K, wp, K, col.data(), P, yn, P, /*accumulate=*/false);
        for (int64_t o = 0; o < s.O; ++o) sigmoid_bias_inplace(yn + o * P, P, bp ? bp[o] : scalar_t(0));
      }
    });
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv2d_sigmoid_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& output, const at::Tensor& input, const at::Tensor& weight,
    int64_t stride, int64_t padding, std::array<bool, 3> output_mask) {
  const ConvShape s = check_conv2d_backward(grad_output, output, input, weight, stride, padding);
  const auto [need_input, need_weight, need_bias] = output_mask;

  const at::Tensor gy = grad_output.contiguous();
  const at::Tensor y = output.contiguous();
  const at::Tensor x = input.contiguous();
  const at::Tensor w = weight.contiguous();
  at::Tensor gx, gw, gb;
  std::tie(gx, gw, gb) = empty_grads(x, w, output_mask);
  if (!need_input && !need_weight && !need_bias) return {gx, gw, gb};

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "conv2d_sigmoid_backward_cpu", [&] {
    const scalar_t* gyp = gy.const_data_ptr<scalar_t>();
    const scalar_t* yp = y.const_data_ptr<scalar_t>();
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* wp = w.const_data_ptr<scalar_t>();
    scalar_t* gxp = need_input ? gx.mutable_data_ptr<scalar_t>() : nullptr;
    const int64_t P = s.P(), K = s.K(), image = s.C * s.H * s.W, plane = s.O * P;
    const int64_t chunks = num_chunks(s.N);
    const int64_t part_size = s.O * K + s.O;  // private dw then db, per chunk
    std::vector<scalar_t> partial(chunks * part_size, scalar_t(0));

    parallel_chunks(s.N, chunks, [&](int64_t chunk, int64_t n0, int64_t n1) {
      scalar_t* pw = partial.data() + chunk * part_size;
      scalar_t* pb = pw + s.O * K;
      if (s.whole_input()) {  // P = 1: the backward of a dense layer over the chunk's rows
        const int64_t rows = n1 - n0;
        std::vector<scalar_t> g(rows * s.O);
        const scalar_t* gyc = gyp + n0 * plane;
        const scalar_t* yc = yp + n0 * plane;
        for (int64_t i = 0; i < rows * s.O; ++i) g[i] = gyc[i] * yc[i] * (scalar_t(1) - yc[i]);
        dense_backward_rows(rows, K, s.O, g.data(), xp + n0 * image, wp, need_input ? gxp + n0 * image : nullptr,
                            need_weight ? pw : nullptr, need_bias ? pb : nullptr);
        return;
      }
      std::vector<scalar_t> g(plane);
      std::vector<scalar_t> col(need_weight ? K * P : 0);
      std::vector<scalar_t> dcol(need_input ? K * P : 0);
      for (int64_t n = n0; n < n1; ++n) {
        const scalar_t* gyn = gyp + n * plane;
        const scalar_t* yn = yp + n * plane;
        for (int64_t i = 0; i < plane; ++i) g[i] = gyn[i] * yn[i] * (scalar_t(1) - yn[i]);
        if (need_bias) {
          for (int64_t o = 0; o < s.O; ++o) {
            scalar_t acc = 0;
            for (int64_t q = 0; q < P; ++q) acc += g[o * P + q];
            pb[o] += acc;
          }
        }
        if (need_weight) {
          im2col(s, xp + n * image, col.data());
          gemm_abt(s.O, K, P, g.data(), P, col.data(), P, pw, K, /*accumulate=*/true);
        }
        if (need_input) {
          scalar_t* gxn = gxp + n * image;
          std::fill(gxn, gxn + image, scalar_t(0));
          std::fill(dcol.begin(), dcol.end(), scalar_t(0));
          gemm_atb_acc(K, P, s.O, wp, K, g.data(), P, dcol.data(), P);
          col2im_acc(s, dcol.data(), gxn);
        }
      }
    });

    if (need_weight || need_bias) {
      reduce_partials(partial.data(), chunks, s.O * K, s.O, need_weight ? gw.mutable_data_ptr<scalar_t>() : nullptr,
                      need_bias ? gb.mutable_data_ptr<scalar_t>() : nullptr);
    }
  });
  return {gx, gw, gb};
}

}  // namespace

TORCH_LIBRARY_IMPL(lenet_ext, CPU, m) {
  m.impl("conv2d_sigmoid", &conv2d_sigmoid_cpu);
  m.impl("conv2d_sigmoid_backward", &conv2d_sigmoid_backward_cpu);
}

}  // namespace cpu
}  // namespace lenet_ext
