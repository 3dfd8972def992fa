// The CPU kernels' arithmetic (see kernels.h), compiled once per instruction set: the includer
// defines LENET_EXT_ISA (namespace) and LENET_EXT_VEC_BYTES, includes <immintrin.h> on x86-64
// with the standard headers, and then, for AVX2 and AVX-512, turns the target on.
// Nothing here may instantiate a template or inline function shared with other translation
// units (no std::fill, std::min, std::vector, torch): the linker would keep one copy of it,
// possibly the AVX2 one, for the whole library. Hence the plain loops.
//
// Convolution  y[n, o, oh, ow] = sigmoid(b[o] + sum_{c,i,j} w[o, c, i, j] * x[n, c, oh*s + i - p, ow*s + j - p])
//   The unrolled input col[(c, i, j), q] (K = C*KH*KW rows, P = OH*OW columns) is the input under
//   tap (c, i, j) of output position q (zero in the padding), and y_n = sigmoid(w . col + b), w
//   seen as (O, K). Stride 1 reads col in place from the padded input (conv_forward_wide); other
//   strides copy it out (im2col). When the window covers the whole unpadded input (LeNet's c5,
//   P = 1) the layer is a dense one over the chunk's images.
//   Backward: g = dy * y * (1 - y); db[o] += sum_q g[o, q]; dw[o, k] += sum_q g[o, q] col[k, q];
//   dcol[k, q] = sum_o w[o, k] g[o, q], added back into dx (the adjoint of the unrolling).
#pragma once

#include <cstdint>
#include <type_traits>

#include "../shapes.h"
#include "gemm.h"
#include "kernels.h"
#include "shuffles.h"

namespace lenet_ext {
namespace cpu {
namespace LENET_EXT_ISA {

// ------------------------------------------------------------------------------------------------
// Shared by forward and backward: sigmoid, fills, the wide form's offset tables and padding
// ------------------------------------------------------------------------------------------------

// noinline, and for GCC noclone: one copy of the function serves every caller (see dense_forward).
#if defined(__clang__)
#define LENET_EXT_ONE_COPY __attribute__((noinline))
#else
#define LENET_EXT_ONE_COPY __attribute__((noinline, noclone))
#endif

inline float exp_scalar(float x) { return __builtin_expf(x); }
inline double exp_scalar(double x) { return __builtin_exp(x); }

template <typename T>
inline T sigmoid(T z) {
  return T(1) / (T(1) + exp_scalar(-z));
}

// lo <= x <= hi for a vector of floats, a NaN x kept. On x86, one minps and one maxps with x as
// the second operand (they return their second operand where either is NaN); the conditional
// form (NaN fails both tests) compiles there to a compare and a blend each.
inline Vec<float> clamp_vec(Vec<float> x, float lo, float hi) {
#if defined(__x86_64__) && LENET_EXT_VEC_BYTES == 64  // (all lanes: the unmasked forms warn in GCC 12)
  const __mmask16 all = 0xffff;
  return _mm512_mask_max_ps(x, all, splat(lo), _mm512_mask_min_ps(x, all, splat(hi), x));
#elif defined(__x86_64__) && LENET_EXT_VEC_BYTES == 32
  return _mm256_max_ps(splat(lo), _mm256_min_ps(splat(hi), x));
#elif defined(__x86_64__) && LENET_EXT_VEC_BYTES == 16
  return _mm_max_ps(splat(lo), _mm_min_ps(splat(hi), x));
#else
  x = x > hi ? splat(hi) : x;
  return x < lo ? splat(lo) : x;
#endif
}

// sigmoid(z) = 1 / (1 + exp(-z)) for a vector of floats, exp(-z) as in Cephes' expf (within 2 ulp
// of expf): -z = n ln 2 + r with n = round(-z / ln 2) and ln 2 in two parts, exp(r) by its
// degree-6 polynomial (Horner's rule), 2^n built in the exponent bits. z is clamped to
// [-88.37, 87.33] first, where 2^n stays a normal float (the sigmoid is 1 or below 4e-39 beyond);
// NaN stays NaN. n comes from adding 1.5 * 2^23 + 127, whose low mantissa bits then hold n + 127,
// 2^n's exponent field: shifted left 23 places they are 2^n's bits (the add's own bits fall off).
inline Vec<float> sigmoid_vec(Vec<float> z) {
  using VecI = __attribute__((vector_size(kVecBytes), may_alias)) int32_t;
  constexpr float kShift = 12582912.0f + 127.0f;  // 1.5 * 2^23 + 127
  z = clamp_vec(z, -88.3762626647949f, 87.3365447505531f);
  const Vec<float> shifted = z * -1.44269504088896341f + kShift;  // 1.5 * 2^23 + n + 127
  const Vec<float> n = shifted - kShift;
  const Vec<float> t = n * 0.693359375f + z;    // -(-z - n * 0.693359375)
  const Vec<float> r = n * 2.12194440e-4f - t;  // -z - n ln 2
  Vec<float> y = splat(1.9875691500e-4f);
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * r + 1.0f;
  y = y * r + 1.0f;                                                // exp(r)
  const VecI bits = reinterpret_cast<const VecI&>(shifted) << 23;  // 2^n
  return 1.0f / (y * reinterpret_cast<const Vec<float>&>(bits) + 1.0f);
}

// p[i] = sigmoid(p[i] + bias) for n values (bias may be 0): vectorized for float, two vectors
// at a time (two independent exp chains in flight; measured in docs/performance.md).
template <typename T>
inline void sigmoid_bias_inplace(T* p, int64_t n, T bias) {
  int64_t i = 0;
  if constexpr (std::is_same_v<T, float>) {
    constexpr int L = kVecLen<float>;
    for (; i + 2 * L <= n; i += 2 * L) {
      const Vec<float> s0 = sigmoid_vec(load(p + i) + bias), s1 = sigmoid_vec(load(p + i + L) + bias);
      store(p + i, s0);
      store(p + i + L, s1);
    }
    for (; i + L <= n; i += L) store(p + i, sigmoid_vec(load(p + i) + bias));
  }
  for (; i < n; ++i) p[i] = sigmoid(p[i] + bias);
}

// y[r, c] = sigmoid(z[r, c] + bias) for rows x cols values, rows ldz and ldy apart. A row's last
// partial vector is done as the whole vector ending at its end (recomputing a few values), so
// that every value goes through the vector exp.
template <typename T>
inline void sigmoid_rows(const T* z, int64_t ldz, T* y, int64_t ldy, int64_t rows, int64_t cols, T bias) {
  if constexpr (std::is_same_v<T, float>) {
    constexpr int L = kVecLen<float>;
    if (cols >= L) {
      for (int64_t r = 0; r < rows; ++r) {
        const float* zr = z + r * ldz;
        float* yr = y + r * ldy;
        int64_t c = 0;
        for (; c + 2 * L <= cols; c += 2 * L) {
          const Vec<float> s0 = sigmoid_vec(load(zr + c) + bias), s1 = sigmoid_vec(load(zr + c + L) + bias);
          store(yr + c, s0);
          store(yr + c + L, s1);
        }
        for (; c + L <= cols; c += L) store(yr + c, sigmoid_vec(load(zr + c) + bias));
        if (c < cols) store(yr + cols - L, sigmoid_vec(load(zr + cols - L) + bias));
      }
      return;
    }
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) y[r * ldy + c] = sigmoid(z[r * ldz + c] + bias);
}

// out[q, o] = sigmoid(out[q, o] + b[o]) for P rows of O channels (O whole vectors; b may be null).
template <typename T>
inline void sigmoid_channels_inplace(T* out, int64_t P, int64_t O, const T* b) {
  if constexpr (std::is_same_v<T, float>) {
    constexpr int L = kVecLen<float>;
    for (int64_t q = 0; q < P; ++q) {
      float* row = out + q * O;
      int64_t o = 0;
      for (; o + 2 * L <= O; o += 2 * L) {  // two vectors at a time: independent exp chains
        const Vec<float> z0 = b ? load(row + o) + load(b + o) : load(row + o);
        const Vec<float> z1 = b ? load(row + o + L) + load(b + o + L) : load(row + o + L);
        const Vec<float> s0 = sigmoid_vec(z0), s1 = sigmoid_vec(z1);
        store(row + o, s0);
        store(row + o + L, s1);
      }
      for (; o < O; o += L) {
        const Vec<float> z = b ? load(row + o) + load(b + o) : load(row + o);
        store(row + o, sigmoid_vec(z));
      }
    }
  } else {
    for (int64_t q = 0; q < P; ++q)
      for (int64_t o = 0; o < O; ++o) out[q * O + o] = sigmoid(out[q * O + o] + (b ? b[o] : T(0)));
  }
}

template <typename T>
inline void fill(T* p, int64_t n, T value) {
  for (int64_t i = 0; i < n; ++i) p[i] = value;
}

// The output columns [lo, hi) whose tap at offset j (already minus the padding) lands inside [0, W).
inline void valid_range(int64_t offset, int64_t stride, int64_t W, int64_t OW, int64_t& lo, int64_t& hi) {
  lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  hi = offset >= W ? 0 : (W - 1 - offset) / stride + 1;
  if (hi > OW) hi = OW;
  if (hi < lo) hi = lo;
}

// The stride-1 convolution without unrolling (ConvShape::wide()). With the input zero-padded to
// xpad (C, Hp, Wp) and outputs computed at every one of Wp columns per row ("wide" outputs,
// q = oh * Wp + ow), the input under tap (c, i, j) at output q is xpad[off(c, i, j) + q] with
// off = (c * Hp + i) * Wp + j: the unrolled matrix's row k is xpad itself, read from off[k]. The
// products read those rows in place (OffsetRows); columns ow >= OW are discarded forward and
// carry a zero gradient backward, so they add exact zeros.
template <typename T>
struct WideScratch {
  int64_t* off;   // K tap offsets
  int64_t* qoff;  // P output offsets: oh * Wp + ow for q = oh * OW + ow (channel-vectorized form only)
  T* xpad;        // padded_image()
  T* rest;        // what follows
};

// The products over channels (O whole vectors: LeNet's c3) read the real outputs' taps at
// qoff[q] + off[k], from the image itself where there is no padding; the wide rows (c1) read the
// padded copy at off[k] + q.
template <typename T>
constexpr bool channel_vectorized(const ConvShape& s) {
  return s.O % kVecLen<T> == 0;
}

// The offset tables, and the padded copy's zero border, for the form the shape takes: qoff only
// where the channel-vectorized products use it, the border only where the padded copy is read
// (building both for every shape, c1's 784 unused qoff values and c3's unused copy among them,
// costs instructions at batch 1 for nothing: docs/performance.md).
template <typename T>
WideScratch<T> wide_scratch(const ConvShape& s, T* scratch) {
  int64_t* off = reinterpret_cast<int64_t*>(scratch);
  const int64_t Hp = s.Hp(), Wp = s.Wp();
  int64_t k = 0;
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t i = 0; i < s.KH; ++i)
      for (int64_t j = 0; j < s.KW; ++j) off[k++] = (c * Hp + i) * Wp + j;
  int64_t* qoff = off + s.K();
  const bool channels = channel_vectorized<T>(s);
  if (channels)
    for (int64_t oh = 0; oh < s.OH; ++oh)
      for (int64_t ow = 0; ow < s.OW; ++ow) qoff[oh * s.OW + ow] = oh * Wp + ow;
  T* xpad = scratch + wide_offsets_size<T>(s);
  if (!channels || s.pad != 0)  // the border and tail stay zero; pad_image writes the interior
    fill(xpad, s.padded_image(), T(0));
  return {off, qoff, xpad, xpad + s.padded_image()};
}

template <typename T>
void pad_image(const ConvShape& s, const T* x, T* xpad) {
  const int64_t Hp = s.Hp(), Wp = s.Wp();
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t h = 0; h < s.H; ++h) {
      const T* src = x + (c * s.H + h) * s.W;
      T* dst = xpad + (c * Hp + h + s.pad) * Wp + s.pad;
      for (int64_t w = 0; w < s.W; ++w) dst[w] = src[w];
    }
}

// ------------------------------------------------------------------------------------------------
// Forward
// ------------------------------------------------------------------------------------------------

// col[(c, i, j), q] for q < P, rows ld apart; [P, ld) zero.
template <typename T>
void im2col(const ConvShape& s, const T* x, T* col, int64_t ld) {
  const int64_t P = s.P();
  for (int64_t c = 0; c < s.C; ++c) {
    for (int64_t i = 0; i < s.KH; ++i) {
      for (int64_t j = 0; j < s.KW; ++j, col += ld) {
        fill(col + P, ld - P, T(0));
        int64_t lo, hi;
        valid_range(j - s.pad, s.stride, s.W, s.OW, lo, hi);
        for (int64_t oh = 0; oh < s.OH; ++oh) {
          T* dst = col + oh * s.OW;
          const int64_t ih = oh * s.stride + i - s.pad;
          if (ih < 0 || ih >= s.H) {
            fill(dst, s.OW, T(0));
            continue;
          }
          const T* src = x + (c * s.H + ih) * s.W + j - s.pad;
          fill(dst, lo, T(0));
          if (s.stride == 1) {
            for (int64_t ow = lo; ow < hi; ++ow) dst[ow] = src[ow];
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) dst[ow] = src[ow * s.stride];
          }
          fill(dst + hi, s.OW - hi, T(0));
        }
      }
    }
  }
}

// noinline, noclone (here and on conv_forward_wide): one copy serves every caller; lenet5_forward's
// constant shapes would otherwise be folded into copies of dense_forward that GCC flags with bogus
// loop-count warnings.
//
// The product in dot-product form (gemm_abt, 3 x 4 blocks): measured as fast as the broadcast
// form on a transposed weight at every batch size we run (docs/performance.md), without
// transposing the weight or allocating for it.
template <typename T>
LENET_EXT_ONE_COPY void dense_forward(int64_t rows, int64_t K, int64_t O, const T* x, const T* w, const T* b, T* y,
                                      bool apply_sigmoid) {
  gemm_abt(rows, O, K, x, K, w, K, y, O, /*accumulate=*/false);
  if (b)
    for (int64_t m = 0; m < rows; ++m)
      for (int64_t o = 0; o < O; ++o) y[m * O + o] += b[o];
  if (apply_sigmoid) sigmoid_bias_inplace(y, rows * O, T(0));
}

// Average over pool x pool windows (stride pool, floor mode) of O planes OH x OW, rows ldrow and
// planes ldplane apart in y (the output's layout, or the wide form's rows), into out (O, OH/pool, OW/pool).
template <typename T>
void avg_pool_planes(const T* y, int64_t ldrow, int64_t ldplane, T* out, int64_t O, int64_t OH, int64_t OW,
                     int64_t pool) {
  const int64_t PH = OH / pool, PW = OW / pool;
  const T scale = T(1) / T(pool * pool);
  if (pool == 2) {  // LeNet's: the window unrolled (a generic 2 x 2 loop costs 5x more)
    constexpr int L = kVecLen<T>;
    for (int64_t o = 0; o < O; ++o)
      for (int64_t ph = 0; ph < PH; ++ph) {
        const T* r0 = y + o * ldplane + 2 * ph * ldrow;
        const T* r1 = r0 + ldrow;
        T* dst = out + (o * PH + ph) * PW;
        if (PW >= L) {  // L outputs at a time from 2L columns of each row, split into even and odd
          for (int64_t pw = 0;; pw += L) {
            if (pw + L > PW) pw = PW - L;  // the last vector ends at the row's end (recomputes a few)
            const Vec<T> e0 = alternate_lanes<T, 0>(load(r0 + 2 * pw), load(r0 + 2 * pw + L));
            const Vec<T> o0 = alternate_lanes<T, 1>(load(r0 + 2 * pw), load(r0 + 2 * pw + L));
            const Vec<T> e1 = alternate_lanes<T, 0>(load(r1 + 2 * pw), load(r1 + 2 * pw + L));
            const Vec<T> o1 = alternate_lanes<T, 1>(load(r1 + 2 * pw), load(r1 + 2 * pw + L));
            store(dst + pw, (e0 + o0 + e1 + o1) * scale);  // the scalar loop's order of additions
            if (pw + L == PW) break;
          }
        } else {
          for (int64_t pw = 0; pw < PW; ++pw)
            dst[pw] = (r0[2 * pw] + r0[2 * pw + 1] + r1[2 * pw] + r1[2 * pw + 1]) * scale;
        }
      }
    return;
  }
  for (int64_t o = 0; o < O; ++o)
    for (int64_t ph = 0; ph < PH; ++ph)
      for (int64_t pw = 0; pw < PW; ++pw) {
        const T* win = y + o * ldplane + ph * pool * ldrow + pw * pool;
        T acc = 0;
        for (int64_t i = 0; i < pool; ++i)
          for (int64_t j = 0; j < pool; ++j) acc += win[i * ldrow + j];
        out[(o * PH + ph) * PW + pw] = acc * scale;
      }
}

template <typename T>
LENET_EXT_ONE_COPY void conv_forward_wide(const ConvShape& s, const T* x, const T* w, const T* b, T* y, int64_t n0,
                                          int64_t n1, T* scratch, int64_t pool, T* pooled) {
  const int64_t P = s.P(), Pw = s.Pw(), Wp = s.Wp(), K = s.K(), image = s.C * s.H * s.W;
  const WideScratch<T> ws = wide_scratch(s, scratch);
  if (channel_vectorized<T>(s)) {
    // Channel-vectorized (LeNet's c3: 16 channels, 2 vectors): out (P x O) = the unrolled input
    // (P x K, read in place at qoff[q] + off[k]) times w^T (K x O). Only the P real outputs are
    // computed (the wide rows would waste 40% on c3), and no horizontal sums.
    T* wt = ws.rest;        // K x O
    T* out = wt + K * s.O;  // P x O
    transpose(w, K, s.O, K, wt, s.O);
    for (int64_t n = n0; n < n1; ++n) {
      // Only real outputs' taps are read: without padding, that is the image itself, in place.
      const T* xin = x + n * image;
      if (s.pad != 0) {
        pad_image(s, xin, ws.xpad);
        xin = ws.xpad;
      }
      gemm_axpy(P, s.O, K, OffsetA<T>{xin, ws.qoff, ws.off}, StridedRows<T>{wt, s.O}, out, s.O,
                /*accumulate=*/false);
      // Bias and sigmoid on whole vectors of out (O is), then out^T into y.
      sigmoid_channels_inplace(out, P, s.O, b);
      T* yn = y + n * s.O * P;
      transpose(out, s.O, P, s.O, yn, P);
      if (pooled) avg_pool_planes(yn, s.OW, P, pooled + n * s.pooled_image(pool), s.O, s.OH, s.OW, pool);
    }
    return;
  }
  T* z = ws.rest;  // O x Pw
  for (int64_t n = n0; n < n1; ++n) {
    pad_image(s, x + n * image, ws.xpad);
    gemm_axpy(s.O, Pw, K, StridedA<T>{w, K, 1}, OffsetRows<T>{ws.xpad, ws.off}, z, Pw, /*accumulate=*/false);
    T* yn = y + n * s.O * P;
    for (int64_t o = 0; o < s.O; ++o)  // each wide row's OW values, through the sigmoid, into y
      sigmoid_rows(z + o * Pw, Wp, yn + o * P, s.OW, s.OH, s.OW, b ? b[o] : T(0));
    if (pooled) avg_pool_planes(yn, s.OW, P, pooled + n * s.pooled_image(pool), s.O, s.OH, s.OW, pool);
  }
}

template <typename T>
void conv_forward(const ConvShape& s, const T* x, const T* w, const T* b, T* y, int64_t n0, int64_t n1, T* scratch,
                  int64_t pool, T* pooled) {
  const int64_t P = s.P(), Pp = s.Pp(), K = s.K(), image = s.C * s.H * s.W;
  if (s.whole_input()) {  // P = 1: the chunk's outputs (n, O) are a dense layer's
    dense_forward(n1 - n0, K, s.O, x + n0 * image, w, b, y + n0 * s.O, /*apply_sigmoid=*/true);
    if (pooled)  // pool is 1 here: the pooled output is the output
      for (int64_t i = n0 * s.O; i < n1 * s.O; ++i) pooled[i] = y[i];
    return;
  }
  if (s.wide()) return conv_forward_wide(s, x, w, b, y, n0, n1, scratch, pool, pooled);
  T* col = scratch;       // K x Pp
  T* out = col + K * Pp;  // O x Pp, when P is not a whole number of vectors
  for (int64_t n = n0; n < n1; ++n) {
    T* yn = y + n * s.O * P;
    im2col(s, x + n * image, col, Pp);
    T* z = Pp == P ? yn : out;
    gemm_ab(s.O, Pp, K, w, K, col, Pp, z, Pp, /*accumulate=*/false);
    for (int64_t o = 0; o < s.O; ++o) {
      if (z != yn)
        for (int64_t q = 0; q < P; ++q) yn[o * P + q] = z[o * Pp + q];
      sigmoid_bias_inplace(yn + o * P, P, b ? b[o] : T(0));
    }
    if (pooled) avg_pool_planes(yn, s.OW, P, pooled + n * s.pooled_image(pool), s.O, s.OH, s.OW, pool);
  }
}

// ------------------------------------------------------------------------------------------------
// The fused forward (inference): c1 on row copies, c3 over its channels, dense layers per group
// ------------------------------------------------------------------------------------------------
//
// Both convolutions keep a block of outputs in registers over all their taps, every tap at an
// offset known at compile time (no offset tables), then add the bias, take the sigmoid on the
// registers and store the block once; the 2 x 2 pooling reads the stored blocks.
//
// c1 (1 -> 6 channels, 28 x 28 outputs) runs over output positions, on row copies (kernels.h):
// copy j holds copy[h][w] = xpad[h][w + j] for the 28 output columns (xpad: the image zero-padded
// to 32 x 32), so the inputs under tap (i, j) of the outputs q, q + 1, ... (q = oh * 28 + ow) are
// copy j's values from q + 28 i on, contiguous across the ends of output rows: no wasted columns.
// A block is R output channels x V vectors of outputs: each tap broadcasts R weights and loads V
// input vectors, each used R times (R + V loads for R x V multiply-adds, so that the loads keep up
// with the FMA pipes: docs/performance.md, "Row copies").
//
// c3 (6 -> 16 channels, 10 x 10 outputs) runs over its 16 output channels, with its weight
// transposed to (150, 16) once per call: a block is P outputs of one row x the channels' vectors;
// each tap broadcasts P input values and loads the channels' weight vectors.

// c1's block: R output channels x V vectors (12 accumulators in 16 vector registers, 24 in 32).
constexpr int kC1Channels = kVecBytes == 64 ? 6 : 3;
constexpr int kC1Vectors = 4;

// c1's outputs [q, q + V * L) of output channels r < R (w: their weights, 25 each; b: their
// biases): out[r * 784 + v * L + l] = sigmoid(b[r] + sum over (i, j) of w[r, i, j] *
// copy(j)[v * L + l + 28 i]), the bias first, then the taps in (i, j) order; rows: copy 0 from q
// on, copy j lenet5_copy_plane(kLeNetC1) values further.
template <typename T, int R, int V>
inline void c1_block(const T* rows, const T* w, const T* b, T* out) {
  constexpr int L = kVecLen<T>;
  constexpr int64_t Plane = lenet5_copy_plane(kLeNetC1), OW = kLeNetC1.OW, P = kLeNetC1.P();
  Vec<T> acc[R][V];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    const Vec<T> bias = splat(b[r]);
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) acc[r][v] = bias;
  }
#pragma GCC unroll 8
  for (int64_t i = 0; i < 5; ++i)
#pragma GCC unroll 8
    for (int64_t j = 0; j < 5; ++j) {
      const T* src = rows + j * Plane + i * OW;
      Vec<T> wv[R];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) wv[r] = splat(w[r * 25 + i * 5 + j]);
#pragma GCC unroll 8
      for (int v = 0; v < V; ++v) {
        const Vec<T> x = load(src + v * L);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) acc[r][v] += wv[r] * x;
      }
    }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    if constexpr (std::is_same_v<T, float>) {
#pragma GCC unroll 8
      for (int v = 0; v < V; ++v) store(out + r * P + v * L, sigmoid_vec(acc[r][v]));
    } else {
      for (int v = 0; v < V; ++v) store(out + r * P + v * L, acc[r][v]);
      sigmoid_bias_inplace(out + r * P, V * L, T(0));
    }
  }
}

// c3's block: P outputs of one row (a divisor of its 10) x the 16 channels' CV vectors, at most
// about 12 accumulators.
template <typename T>
constexpr int c3_block_outputs() {
  constexpr int CV = 16 / kVecLen<T>;
  return CV == 1 ? 10 : CV == 2 ? 5 : CV == 4 ? 2 : 1;
}

// c3's outputs (oh, ow0 + p), p < P, for all 16 channels (x: s2 (6, 14, 14) from (oh, ow0) of
// channel 0 on; wt: the weight transposed, (150, 16); b: the biases) into out (P, 16):
// sigmoid(b[o] + sum over k = (c, i, j) of x[c, i, j + p] * wt[k, o]), the bias first, then the
// taps in k order.
template <typename T, int P>
inline void c3_block(const T* x, const T* wt, const T* b, T* out) {
  constexpr int L = kVecLen<T>, CV = 16 / L;
  Vec<T> acc[P][CV];
#pragma GCC unroll 16
  for (int p = 0; p < P; ++p)
#pragma GCC unroll 8
    for (int u = 0; u < CV; ++u) acc[p][u] = load(b + u * L);
  for (int64_t c = 0; c < 6; ++c) {
    const T* xc = x + c * 196;
    const T* wc = wt + c * 25 * 16;
#pragma GCC unroll 8
    for (int64_t i = 0; i < 5; ++i)
#pragma GCC unroll 8
      for (int64_t j = 0; j < 5; ++j) {
        Vec<T> wv[CV];
#pragma GCC unroll 8
        for (int u = 0; u < CV; ++u) wv[u] = load(wc + (i * 5 + j) * 16 + u * L);
#pragma GCC unroll 16
        for (int p = 0; p < P; ++p) {
          const Vec<T> xv = splat(xc[i * 14 + j + p]);
#pragma GCC unroll 8
          for (int u = 0; u < CV; ++u) acc[p][u] += xv * wv[u];
        }
      }
  }
#pragma GCC unroll 16
  for (int p = 0; p < P; ++p)
#pragma GCC unroll 8
    for (int u = 0; u < CV; ++u) {
      if constexpr (std::is_same_v<T, float>) {
        store(out + p * 16 + u * L, sigmoid_vec(acc[p][u]));
      } else {
        store(out + p * 16 + u * L, acc[p][u]);
      }
    }
  if constexpr (!std::is_same_v<T, float>) sigmoid_bias_inplace(out, P * 16, T(0));
}

// dst[0, N) = src[0, N) (separate buffers): whole vectors, the last one ending at N (overlapping
// the one before) where N is not a whole number of them; value by value where N < L.
template <typename T, int64_t N>
inline void copy_row(const T* src, T* dst) {
  constexpr int L = kVecLen<T>;
  if constexpr (N >= L) {
#pragma GCC unroll 8
    for (int64_t w = 0; w + L <= N; w += L) store(dst + w, load(src + w));
    if constexpr (N % L != 0) store(dst + N - L, load(src + N - L));
  } else {
    for (int64_t w = 0; w < N; ++w) dst[w] = src[w];
  }
}

// The 2 x 2 average (stride 2) of one OH x OW plane (OW even) into out (OH / 2, OW / 2), each
// window as ((x00 + x10) + (x01 + x11)) / 4: the two rows added as vectors, then neighbouring
// columns (pair_sums). Rows of 2L columns or more: whole vectors of L outputs, the last one ending
// at the row's end; rows of L to 2L: one vector of L outputs from the row's first L and last L
// columns, stored as its two halves; shorter rows value by value, in the same order.
template <typename T, int64_t OH, int64_t OW>
inline void pool2_plane(const T* plane, T* out) {
  constexpr int L = kVecLen<T>;
  constexpr int64_t PW = OW / 2;
  const T scale = T(0.25);
  for (int64_t ph = 0; ph < OH / 2; ++ph) {
    const T* r0 = plane + 2 * ph * OW;
    const T* r1 = r0 + OW;
    T* dst = out + ph * PW;
    if constexpr (OW >= 2 * L) {
      for (int64_t pw = 0;; pw += L) {
        if (pw + L > PW) pw = PW - L;
        const Vec<T> a = load(r0 + 2 * pw) + load(r1 + 2 * pw), b = load(r0 + 2 * pw + L) + load(r1 + 2 * pw + L);
        store(dst + pw, pair_sums<T>(a, b) * scale);
        if (pw + L == PW) break;
      }
    } else if constexpr (OW >= L && L >= 2) {
      const Vec<T> a = load(r0) + load(r1), b = load(r0 + OW - L) + load(r1 + OW - L);
      const Vec<T> v = pair_sums<T>(a, b) * scale;  // outputs [0, L/2), then [(OW - L)/2, PW)
      __builtin_memcpy(dst, &v, sizeof v / 2);
      __builtin_memcpy(dst + (OW - L) / 2, reinterpret_cast<const T*>(&v) + L / 2, sizeof v / 2);
    } else {
      for (int64_t pw = 0; pw < PW; ++pw)
        dst[pw] = ((r0[2 * pw] + r1[2 * pw]) + (r0[2 * pw + 1] + r1[2 * pw + 1])) * scale;
    }
  }
}

// c1 + sigmoid + s2 for one image x (28 x 28) into s2 (6, 14, 14). rows: c1's copies (kernels.h),
// xpad: its padded image (32 x 32 plus slack, border already zero), planes: 6 x 784 values.
template <typename T>
void c1_s2_image(const T* x, const T* w, const T* b, T* rows, T* xpad, T* planes, T* s2) {
  constexpr int L = kVecLen<T>, R = kC1Channels, V = kC1Vectors;
  constexpr int64_t Plane = lenet5_copy_plane(kLeNetC1), vectors = kLeNetC1.P() / L;
  static_assert(kLeNetC1.P() % L == 0 && vectors >= V && 6 % R == 0, "c1's blocks");
  static_assert(Plane == kLeNetC1.Hp() * kLeNetC1.OW, "every value the blocks read is a copied one");
  pad_image(kLeNetC1, x, xpad);
  for (int64_t j = 0; j < 5; ++j)
#pragma GCC unroll 32
    for (int64_t h = 0; h < 32; ++h) copy_row<T, 28>(xpad + h * 32 + j, rows + j * Plane + h * 28);
  for (int64_t o = 0; o < 6; o += R) {
    for (int64_t v = 0;; v += V) {
      if (v + V > vectors) v = vectors - V;  // the last block ends at the last vector
      c1_block<T, R, V>(rows + v * L, w + o * 25, b + o, planes + o * 784 + v * L);
      if (v + V == vectors) break;
    }
  }
  for (int64_t o = 0; o < 6; ++o) pool2_plane<T, 28, 28>(planes + o * 784, s2 + o * 196);
}

// c3 + sigmoid + s4 for one image's s2 (6, 14, 14) into s4 (16, 5, 5). wt: c3's weight transposed
// (150, 16); out: 100 x 16 values (the outputs, channels last); pooled: 25 x 16.
template <typename T>
void c3_s4_image(const T* s2, const T* wt, const T* b, T* out, T* pooled, T* s4) {
  constexpr int L = kVecLen<T>, CV = 16 / L, P = c3_block_outputs<T>();
  static_assert(16 % L == 0 && 10 % P == 0, "c3's blocks");
  for (int64_t oh = 0; oh < 10; ++oh)
    for (int64_t ow = 0; ow < 10; ow += P) c3_block<T, P>(s2 + oh * 14 + ow, wt, b, out + (oh * 10 + ow) * 16);
  const T scale = T(0.25);
  constexpr int64_t next_col = 16, next_row = 10 * 16;  // out's neighbours in a window
  for (int64_t ph = 0; ph < 5; ++ph)
    for (int64_t pw = 0; pw < 5; ++pw) {
      const T* win = out + (2 * ph * 10 + 2 * pw) * 16;
#pragma GCC unroll 8
      for (int u = 0; u < CV; ++u) {
        const T* wu = win + u * L;
        const Vec<T> v =
            ((load(wu) + load(wu + next_row)) + (load(wu + next_col) + load(wu + next_row + next_col))) * scale;
        store(pooled + (ph * 5 + pw) * 16 + u * L, v);
      }
    }
  transpose(pooled, 16, 25, 16, s4, 25);
}

// The whole LeNet-5 forward (inference) for images [n0, n1), in groups of kLeNetGroup images:
// each image goes through c1+s2 and c3+s4 (above), its 400 s4 values landing in a row of the
// group's (rows, 400) matrix, and c5, f6 and the output layer run as dense layers over the
// group's rows. A group's rows stay in the L2 cache (over a whole 512-image chunk, the dense
// layers' inputs did not, and large batches ran slower per image: docs/performance.md).
template <typename T>
void lenet5_forward(const LeNet5Params<T>& p, const T* x, T* logits, int64_t n0, int64_t n1, T* scratch) {
  constexpr int64_t G = kLeNetGroup;
  T* rows = scratch;                                 // c1's copies
  T* xpad = rows + 5 * lenet5_copy_plane(kLeNetC1);  // 32 x 32 + slack
  T* planes = xpad + lenet5_c1_xpad_size();          // 6 x 784
  T* s2 = planes + 6 * 784;                          // 6 x 14 x 14
  T* wt = s2 + 6 * 196;                              // 150 x 16
  T* out3 = wt + 150 * 16;                           // 100 x 16
  T* pooled3 = out3 + 100 * 16;                      // 25 x 16
  T* s4 = pooled3 + 25 * 16;                         // G x 400
  T* h5 = s4 + G * 400;                              // G x 120
  T* h6 = h5 + G * 120;                              // G x 84
  fill(xpad, lenet5_c1_xpad_size(), T(0));           // the border; each image writes the interior
  transpose(p.c3w, 150, 16, 150, wt, 16);
  for (int64_t g0 = n0; g0 < n1; g0 += G) {
    const int64_t n_rows = n1 - g0 < G ? n1 - g0 : G;
    for (int64_t n = g0; n < g0 + n_rows; ++n) {
      c1_s2_image(x + n * 784, p.c1w, p.c1b, rows, xpad, planes, s2);
      c3_s4_image(s2, wt, p.c3b, out3, pooled3, s4 + (n - g0) * 400);
    }
    dense_forward(n_rows, 400, 120, s4, p.c5w, p.c5b, h5, /*apply_sigmoid=*/true);
    dense_forward(n_rows, 120, 84, h5, p.f6w, p.f6b, h6, /*apply_sigmoid=*/true);
    dense_forward(n_rows, 84, p.classes, h6, p.outw, p.outb, logits + g0 * p.classes, /*apply_sigmoid=*/false);
  }
}

// ------------------------------------------------------------------------------------------------
// Backward
// ------------------------------------------------------------------------------------------------

// Adjoint of im2col: dx[c, ih, iw] += dcol[(c, i, j), q] for every tap that lands inside the input.
template <typename T>
void col2im_acc(const ConvShape& s, const T* dcol, int64_t ld, T* dx) {
  for (int64_t c = 0; c < s.C; ++c) {
    for (int64_t i = 0; i < s.KH; ++i) {
      for (int64_t j = 0; j < s.KW; ++j, dcol += ld) {
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

template <typename T>
void dense_input_grad(int64_t rows, int64_t K, int64_t O, const T* g, const T* w, T* dx) {
  gemm_ab(rows, K, O, g, O, w, K, dx, K, /*accumulate=*/false);
}

// dw = g^T x (O x K) and db = g's column sums, over all `rows` rows in order (overwritten; either
// may be null); g's rows are ldg apart, so that O can be a slice of a wider layer's outputs.
template <typename T>
void dense_weight_grad(int64_t rows, int64_t K, int64_t O, const T* g, int64_t ldg, const T* x, T* dw, T* db) {
  if (dw) gemm_axpy(O, K, rows, StridedA<T>{g, 1, ldg}, StridedRows<T>{x, K}, dw, K, /*accumulate=*/false);
  if (db) {
    constexpr int L = kVecLen<T>;
    int64_t o = 0;
    for (; o + L <= O; o += L) {
      Vec<T> acc{};
      for (int64_t m = 0; m < rows; ++m) acc += load(g + m * ldg + o);
      store(db + o, acc);
    }
    for (; o < O; ++o) {
      T acc = 0;
      for (int64_t m = 0; m < rows; ++m) acc += g[m * ldg + o];
      db[o] = acc;
    }
  }
}

// The gradient reaching y[o, oh, ow] of one image: gy's, plus the pooled output's spread back
// over its window (none for the rows and columns the floor-mode pooling dropped).
template <typename T>
struct Upstream {
  const T* gy;     // (O, OH, OW) or null
  const T* gpool;  // (O, OH / pool, OW / pool) or null
  int64_t pool, OH, OW, PH, PW;
  T scale;

  Upstream(const ConvShape& s, const T* gy_, const T* gpool_, int64_t pool_)
      : gy(gy_),
        gpool(gpool_),
        pool(pool_ > 0 ? pool_ : 1),
        OH(s.OH),
        OW(s.OW),
        PH(s.OH / pool),
        PW(s.OW / pool),
        scale(T(1) / T(pool * pool)) {}

  // g[ow] = (gradient reaching y[o, oh, ow]) * y * (1 - y) for one output row (y_row: its OW
  // sigmoid outputs), adding the row's values to the lanes of `sum` (the caller adds the lanes up
  // once per channel: a horizontal sum per row was a third of c3's time here). One pass: each
  // vector of g is formed in registers (LeNet's 2 x 2 windows: the pooled gradient's values loaded
  // in pairs) and stored once. (Writing g in scalar steps and reading it back as vectors stalled on
  // store-to-load forwarding.)
  void row(int64_t o, int64_t oh, const T* y_row, T* g, Vec<T>& sum) const {
    constexpr int L = kVecLen<T>;
    const T* gy_row = gy ? gy + (o * OH + oh) * OW : nullptr;
    const T* gp_row = gpool && oh / pool < PH ? gpool + (o * PH + oh / pool) * PW : nullptr;
    auto vec = [&](int64_t ow) {
      Vec<T> up = gy_row ? load(gy_row + ow) : Vec<T>{};
      if (gp_row) up = gy_row ? up + load_pairs(gp_row + ow / 2) * scale : load_pairs(gp_row + ow / 2) * scale;
      const Vec<T> yv = load(y_row + ow);
      const Vec<T> gv = up * (yv * (T(1) - yv));
      store(g + ow, gv);
      return gv;
    };
    int64_t ow = 0;
    // Vectors wholly inside the pooled columns (2 x 2 windows) or, without a pooled gradient, any.
    const int64_t vec_end = gp_row ? (pool == 2 ? 2 * PW : 0) : OW;
    for (; ow + L <= vec_end; ow += L) sum += vec(ow);
    if (ow == OW) return;
    // The rest as the whole vector ending at the row's end (recomputing values already stored, to
    // the same bits; only its new lanes are summed), where that vector's windows line up: LeNet's
    // rows of 28 and 10 end in 4 and 2 values.
    const int64_t last = OW - L;
    if (last >= 0 && (!gp_row || (pool == 2 && 2 * PW == OW && last % 2 == 0))) {
      Vec<T> lane;  // 0, 1, ..., L - 1
      for (int l = 0; l < L; ++l) lane[l] = T(l);
      const Vec<T> gv = vec(last);
      sum += lane >= splat(T(ow - last)) ? gv : Vec<T>{};
      return;
    }
    int64_t pw = ow / pool, j = ow % pool;  // else one by one, window by window
    T rest = 0;
    for (; ow < OW; ++ow) {
      T up = gy_row ? gy_row[ow] : T(0);
      if (gp_row && pw < PW) up = gy_row ? up + gp_row[pw] * scale : gp_row[pw] * scale;
      if (++j == pool) j = 0, ++pw;
      g[ow] = up * (y_row[ow] * (T(1) - y_row[ow]));
      rest += g[ow];
    }
    sum[0] += rest;
  }
};

// The adjoint of reading the padded input's row k at off[k] (see WideScratch) for the taps k of
// one channel: dxpad[off[k] + q] += dcol[k, q] over its taps and every wide output q, as a gather:
// each vector of the channel's padded plane sums its taps' values (i, j order), read from dcol
// rows whose zero guard bands (see wide_dcol_ld) stand for the taps that fall outside; one store
// per vector, no read-modify-write. Writes the channel's whole plane (dxpad: its first value) and
// up to L - 1 values past it (the next plane's first ones, or padded_image()'s slack).
template <typename T>
void gather_taps(const ConvShape& s, const T* dcol, int64_t ld, T* dxpad) {
  constexpr int L = kVecLen<T>, V = 4;
  const int64_t Wp = s.Wp(), plane = s.Hp() * Wp, end = (plane + L - 1) / L * L;
  int64_t p = 0;
  for (; p + V * L <= end; p += V * L) {
    Vec<T> acc[V] = {};
    for (int64_t i = 0; i < s.KH; ++i)
      for (int64_t j = 0; j < s.KW; ++j) {
        const T* src = dcol + (i * s.KW + j) * ld + p - (i * Wp + j);
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) acc[v] += load(src + v * L);
      }
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) store(dxpad + p + v * L, acc[v]);
  }
  for (; p < end; p += L) {
    Vec<T> acc{};
    for (int64_t i = 0; i < s.KH; ++i)
      for (int64_t j = 0; j < s.KW; ++j) acc += load(dcol + (i * s.KW + j) * ld + p - (i * Wp + j));
    store(dxpad + p, acc);
  }
}

template <typename T>
void conv_backward_wide(const ConvShape& s, const T* gy, const T* gpool, int64_t pool, const T* y, const T* x,
                        const T* w, T* gx, T* dw, T* db, int64_t n0, int64_t n1, T* scratch) {
  const int64_t P = s.P(), Pw = s.Pw(), Wp = s.Wp(), Hp = s.Hp(), K = s.K(), image = s.C * s.H * s.W;
  const WideScratch<T> ws = wide_scratch(s, scratch);
  T* g = ws.rest;  // O x Pw, zero in the discarded columns
  // One channel's taps: KH * KW rows ld apart, row t's values from dcol + t * ld + guard.
  const int64_t ld = wide_dcol_ld(s), guard = wide_dcol_guard(s);
  T* dcol = g + s.O * Pw;
  T* dxpad = dcol + s.KH * s.KW * ld;  // padded_image()
  // The channel-vectorized weight gradient (see conv_forward_wide): dw^T (K x O) += the unrolled
  // input (K x P, read in place) times g^T (P x O), accumulated over the chunk, added to dw at the end.
  const bool channels = dw && channel_vectorized<T>(s);
  T* gt = dxpad + s.padded_image();  // P x O
  T* dwt = gt + P * s.O;             // K x O
  if (channels) fill(dwt, K * s.O, T(0));
  fill(g, s.O * Pw, T(0));
  if (gx)  // the guard bands; the products write only the values between them
    for (int64_t k = 0; k < s.KH * s.KW; ++k) {
      fill(dcol + k * ld, guard, T(0));
      fill(dcol + k * ld + guard + Pw, ld - guard - Pw, T(0));
    }
  const int64_t pooled_plane = pool > 0 ? s.pooled_image(pool) : 0;
  for (int64_t n = n0; n < n1; ++n) {
    const Upstream<T> up(s, gy ? gy + n * s.O * P : nullptr, gpool ? gpool + n * pooled_plane : nullptr, pool);
    const T* yn = y + n * s.O * P;
    for (int64_t o = 0; o < s.O; ++o) {
      Vec<T> acc{};
      for (int64_t oh = 0; oh < s.OH; ++oh) up.row(o, oh, yn + o * P + oh * s.OW, g + o * Pw + oh * Wp, acc);
      if (db) db[o] += hsum<T>(acc);
    }
    // The channel-vectorized weight gradient reads only real outputs' taps: without padding,
    // the image itself. The wide one reads whole wide rows: the padded copy.
    const T* xin = x + n * image;
    if (dw && !(channels && s.pad == 0)) {
      pad_image(s, xin, ws.xpad);
      xin = ws.xpad;
    }
    if (channels) {
      for (int64_t oh = 0; oh < s.OH; ++oh) transpose(g + oh * Wp, Pw, s.O, s.OW, gt + oh * s.OW * s.O, s.O);
      gemm_axpy(K, s.O, P, OffsetA<T>{xin, ws.off, ws.qoff}, StridedRows<T>{gt, s.O}, dwt, s.O,
                /*accumulate=*/true);
    } else if (dw) {
      gemm_abt_rows(s.O, K, Pw, g, Pw, OffsetRows<T>{xin, ws.off}, dw, K, /*accumulate=*/true);
    }
    if (gx) {
      // Channel by channel, so that the channel's dcol rows (KH * KW of them) stay in the L1 cache
      // between the product that writes them and the gather that reads them.
      const int64_t taps = s.KH * s.KW;
      for (int64_t c = 0; c < s.C; ++c) {
        gemm_atb(taps, Pw, s.O, w + c * taps, K, g, Pw, dcol + guard, ld);
        gather_taps(s, dcol + guard, ld, dxpad + c * Hp * Wp);
      }
      T* gxn = gx + n * image;
      for (int64_t c = 0; c < s.C; ++c)
        for (int64_t h = 0; h < s.H; ++h) {
          const T* src = dxpad + (c * Hp + h + s.pad) * Wp + s.pad;
          T* dst = gxn + (c * s.H + h) * s.W;
          for (int64_t w2 = 0; w2 < s.W; ++w2) dst[w2] = src[w2];
        }
    }
  }
  if (channels)
    for (int64_t o = 0; o < s.O; ++o)
      for (int64_t k = 0; k < K; ++k) dw[o * K + k] += dwt[k * s.O + o];
}

template <typename T>
void conv_backward(const ConvShape& s, const T* gy, const T* gpool, int64_t pool, const T* y, const T* x, const T* w,
                   T* gx, T* dw, T* db, int64_t n0, int64_t n1, T* scratch) {
  const int64_t P = s.P(), Pp = s.Pp(), K = s.K(), image = s.C * s.H * s.W, plane = s.O * P;
  if (s.wide()) return conv_backward_wide(s, gy, gpool, pool, y, x, w, gx, dw, db, n0, n1, scratch);
  T* g = scratch;          // O x Pp, zero past P
  T* col = g + s.O * Pp;   // K x Pp
  T* dcol = col + K * Pp;  // K x Pp
  const int64_t pooled_plane = pool > 0 ? s.pooled_image(pool) : 0;
  for (int64_t n = n0; n < n1; ++n) {
    const Upstream<T> up(s, gy ? gy + n * plane : nullptr, gpool ? gpool + n * pooled_plane : nullptr, pool);
    const T* yn = y + n * plane;
    for (int64_t o = 0; o < s.O; ++o) {
      T* go = g + o * Pp;
      const T* yo = yn + o * P;
      Vec<T> acc{};
      for (int64_t oh = 0; oh < s.OH; ++oh) up.row(o, oh, yo + oh * s.OW, go + oh * s.OW, acc);
      fill(go + P, Pp - P, T(0));
      if (db) db[o] += hsum<T>(acc);
    }
    if (dw) {
      im2col(s, x + n * image, col, Pp);
      gemm_abt(s.O, K, Pp, g, Pp, col, Pp, dw, K, /*accumulate=*/true);
    }
    if (gx) {
      T* gxn = gx + n * image;
      fill(gxn, image, T(0));
      gemm_atb(K, Pp, s.O, w, K, g, Pp, dcol, Pp);
      col2im_acc(s, dcol, Pp, gxn);
    }
  }
}

// ------------------------------------------------------------------------------------------------
// The table of entry points (kernels.h's CpuKernels, in its field order)
// ------------------------------------------------------------------------------------------------

template <typename T>
CpuKernels<T> make_kernels() {
  return {&conv_forward<T>,     &conv_backward<T>,     &dense_forward<T>,
          &dense_input_grad<T>, &dense_weight_grad<T>, &lenet5_forward<T>};
}

// The includer is one instruction set's translation unit: its tables are made here.
template CpuKernels<float> make_kernels<float>();
template CpuKernels<double> make_kernels<double>();

}  // namespace LENET_EXT_ISA
}  // namespace cpu
}  // namespace lenet_ext

#undef LENET_EXT_SHUFFLE
#undef LENET_EXT_SWAP_BLOCKS
#undef LENET_EXT_SWAP_LO_8
#undef LENET_EXT_SWAP_HI_8
#undef LENET_EXT_SWAP_LO_4
#undef LENET_EXT_SWAP_HI_4
#undef LENET_EXT_SWAP_LO_2
#undef LENET_EXT_SWAP_HI_2
#undef LENET_EXT_SWAP_LO_1
#undef LENET_EXT_SWAP_HI_1
