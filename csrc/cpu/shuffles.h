// Lane shuffles for the CPU kernels: alternate lanes, pair sums, the L x L block transpose and the whole
// matrix transpose built on it, and pair loads. Compiled once per instruction set, like gemm.h:
// the includer (kernels_impl.h) defines LENET_EXT_ISA and LENET_EXT_VEC_BYTES first.
#pragma once

#include <cstdint>

#include "gemm.h"

namespace lenet_ext {
namespace cpu {
namespace LENET_EXT_ISA {

// Lanes 2l + Odd of the 2L values a, b: the even ones (Odd = 0: a0, a2, ..., b0, b2, ...) or the
// odd ones (Odd = 1).
template <typename T, int Odd>
inline Vec<T> alternate_lanes(Vec<T> a, Vec<T> b) {
  constexpr int L = kVecLen<T>;
  using Mask [[maybe_unused]] = LaneMask<T>;  // read by GCC's shuffle only
  if constexpr (L == 16)
    return LENET_EXT_SHUFFLE(a, b, Odd, Odd + 2, Odd + 4, Odd + 6, Odd + 8, Odd + 10, Odd + 12, Odd + 14, Odd + 16,
                             Odd + 18, Odd + 20, Odd + 22, Odd + 24, Odd + 26, Odd + 28, Odd + 30);
  else if constexpr (L == 8)
    return LENET_EXT_SHUFFLE(a, b, Odd, Odd + 2, Odd + 4, Odd + 6, Odd + 8, Odd + 10, Odd + 12, Odd + 14);
  else if constexpr (L == 4)
    return LENET_EXT_SHUFFLE(a, b, Odd, Odd + 2, Odd + 4, Odd + 6);
  else
    return LENET_EXT_SHUFFLE(a, b, Odd, Odd + 2);
}

// The sums of neighbouring lanes of the 2L values a, b, in order: a0 + a1, a2 + a3, ..., b0 + b1,
// b2 + b3, .... For 8 and 16 floats the pairs are taken within each 128-bit lane (two vshufps and
// an add) and put in order by one permute of 64-bit pairs, where alternate_lanes would take two
// cross-lane permutes per operand.
template <typename T>
inline Vec<T> pair_sums(Vec<T> a, Vec<T> b) {
  using Mask [[maybe_unused]] = LaneMask<T>;  // read by GCC's shuffle only
  if constexpr (sizeof(T) == 4 && kVecLen<T> == 8) {
    const Vec<T> s =
        LENET_EXT_SHUFFLE(a, b, 0, 2, 8, 10, 4, 6, 12, 14) + LENET_EXT_SHUFFLE(a, b, 1, 3, 9, 11, 5, 7, 13, 15);
    return LENET_EXT_SHUFFLE(s, s, 0, 1, 4, 5, 2, 3, 6, 7);
  } else if constexpr (sizeof(T) == 4 && kVecLen<T> == 16) {
    const Vec<T> s = LENET_EXT_SHUFFLE(a, b, 0, 2, 16, 18, 4, 6, 20, 22, 8, 10, 24, 26, 12, 14, 28, 30) +
                     LENET_EXT_SHUFFLE(a, b, 1, 3, 17, 19, 5, 7, 21, 23, 9, 11, 25, 27, 13, 15, 29, 31);
    return LENET_EXT_SHUFFLE(s, s, 0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
  } else {
    return alternate_lanes<T, 0>(a, b) + alternate_lanes<T, 1>(a, b);
  }
}

// One round of the 16 x 16 transpose below: rows i and i + S (i's bit S clear) swap their
// off-diagonal S x S blocks. Row i's lanes with bit S set take row i + S's lanes l ^ S, and row
// i + S's lanes with bit S clear take row i's lanes l ^ S (indices past 15 name the second operand).
#define LENET_EXT_SWAP_BLOCKS(S, A, B)                      \
  do {                                                      \
    const Vec<T> a_ = (A), b_ = (B);                        \
    (A) = LENET_EXT_SHUFFLE(a_, b_, LENET_EXT_SWAP_LO_##S); \
    (B) = LENET_EXT_SHUFFLE(a_, b_, LENET_EXT_SWAP_HI_##S); \
  } while (0)
#define LENET_EXT_SWAP_LO_8 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23
#define LENET_EXT_SWAP_HI_8 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31
#define LENET_EXT_SWAP_LO_4 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27
#define LENET_EXT_SWAP_HI_4 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31
#define LENET_EXT_SWAP_LO_2 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29
#define LENET_EXT_SWAP_HI_2 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31
#define LENET_EXT_SWAP_LO_1 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30
#define LENET_EXT_SWAP_HI_1 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31

// dst[j * ldd + i] = src[i * lds + j] for an L x L block: for 8 floats (AVX), in three rounds of
// shuffles (24 of them, where a scalar copy costs 64 loads and 64 stores); for 16 floats
// (AVX-512), in four rounds of block swaps (64 two-source shuffles for 256 values); else one by one.
template <typename T>
inline void transpose_block(const T* src, int64_t lds, T* dst, int64_t ldd) {
  constexpr int L = kVecLen<T>;
  if constexpr (L == 16 && sizeof(T) == 4) {
    using Mask [[maybe_unused]] = LaneMask<T>;  // read by GCC's shuffle only
    Vec<T> r[16];
    for (int i = 0; i < 16; ++i) r[i] = load(src + i * lds);
    for (int i = 0; i < 8; ++i) LENET_EXT_SWAP_BLOCKS(8, r[i], r[i + 8]);
    for (int i = 0; i < 16; i += 8)
      for (int j = 0; j < 4; ++j) LENET_EXT_SWAP_BLOCKS(4, r[i + j], r[i + j + 4]);
    for (int i = 0; i < 16; i += 4)
      for (int j = 0; j < 2; ++j) LENET_EXT_SWAP_BLOCKS(2, r[i + j], r[i + j + 2]);
    for (int i = 0; i < 16; i += 2) LENET_EXT_SWAP_BLOCKS(1, r[i], r[i + 1]);
    for (int i = 0; i < 16; ++i) store(dst + i * ldd, r[i]);
  } else if constexpr (L == 8 && sizeof(T) == 4) {
    using Mask [[maybe_unused]] = LaneMask<T>;  // read by GCC's shuffle only
    Vec<T> r[8], t[8];
    for (int i = 0; i < 8; ++i) r[i] = load(src + i * lds);
    for (int i = 0; i < 8; i += 2) {  // t: pairs of rows interleaved
      t[i] = LENET_EXT_SHUFFLE(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
      t[i + 1] = LENET_EXT_SHUFFLE(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int i = 0; i < 8; i += 4) {  // r: columns (c, c + 4) of four rows, c = 0..3
      r[i] = LENET_EXT_SHUFFLE(t[i], t[i + 2], 0, 1, 8, 9, 4, 5, 12, 13);
      r[i + 1] = LENET_EXT_SHUFFLE(t[i], t[i + 2], 2, 3, 10, 11, 6, 7, 14, 15);
      r[i + 2] = LENET_EXT_SHUFFLE(t[i + 1], t[i + 3], 0, 1, 8, 9, 4, 5, 12, 13);
      r[i + 3] = LENET_EXT_SHUFFLE(t[i + 1], t[i + 3], 2, 3, 10, 11, 6, 7, 14, 15);
    }
    for (int c = 0; c < 4; ++c) {  // the halves of rows 0-3 and 4-7 joined: columns c and c + 4
      store(dst + c * ldd, LENET_EXT_SHUFFLE(r[c], r[c + 4], 0, 1, 2, 3, 8, 9, 10, 11));
      store(dst + (c + 4) * ldd, LENET_EXT_SHUFFLE(r[c], r[c + 4], 4, 5, 6, 7, 12, 13, 14, 15));
    }
  } else {
    for (int i = 0; i < L; ++i)
      for (int j = 0; j < L; ++j) dst[j * ldd + i] = src[i * lds + j];
  }
}

// dst[c * ldd + r] = src[r * lds + c] for rows x cols values, in L x L blocks where both are at
// least L (the last block of a row or column ends at its end, rewriting a few values with the same
// ones), else one by one. src and dst must not overlap.
template <typename T>
void transpose(const T* src, int64_t lds, int64_t rows, int64_t cols, T* dst, int64_t ldd) {
  constexpr int L = kVecLen<T>;
  if (rows >= L && cols >= L) {
    for (int64_t r = 0; r < rows; r += L)
      for (int64_t c = 0; c < cols; c += L) {
        const int64_t r0 = r + L <= rows ? r : rows - L, c0 = c + L <= cols ? c : cols - L;
        transpose_block(src + r0 * lds + c0, lds, dst + c0 * ldd + r0, ldd);
      }
    return;
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[c * ldd + r] = src[r * lds + c];
}

// (p[0], p[0], p[1], p[1], ...): the first L/2 values at p, each twice (a 2 x 2 window's
// gradient spread over its two columns); GCC makes it one load and two in-register permutes.
template <typename T>
inline Vec<T> load_pairs(const T* p) {
  constexpr int L = kVecLen<T>;
  if constexpr (L == 16)
    return Vec<T>{p[0], p[0], p[1], p[1], p[2], p[2], p[3], p[3], p[4], p[4], p[5], p[5], p[6], p[6], p[7], p[7]};
  else if constexpr (L == 8)
    return Vec<T>{p[0], p[0], p[1], p[1], p[2], p[2], p[3], p[3]};
  else if constexpr (L == 4)
    return Vec<T>{p[0], p[0], p[1], p[1]};
  else if constexpr (L == 2)
    return Vec<T>{p[0], p[0]};
  else {
    Vec<T> v{};
    for (int l = 0; l < L; ++l) v[l] = p[l / 2];
    return v;
  }
}

}  // namespace LENET_EXT_ISA
}  // namespace cpu
}  // namespace lenet_ext
