// Small dense loops shared by the CPU kernels: the matrix products that a convolution
// (as im2col + product) and a linear layer need, forward and backward.
//
// All matrices are row-major with explicit strides. The inner loops work on Vec<T>, a
// GCC/Clang vector of LENET_EXT_VEC_BYTES (16: an SSE2/NEON register, 32: AVX, 64: AVX-512), with no
// intrinsics and no -ffast-math; with FMA enabled a * b + c contracts to one fused
// multiply-add. Accumulators are kept in registers for a whole reduction and combined in a
// fixed order, so results are deterministic for a given instruction set.
//
// This header is compiled once per instruction set (kernels_base.cpp, kernels_avx2.cpp,
// kernels_avx512.cpp): the includer defines LENET_EXT_ISA (the namespace) and LENET_EXT_VEC_BYTES first.
#pragma once

#include <cstdint>
#include <type_traits>

#if !defined(LENET_EXT_ISA) || !defined(LENET_EXT_VEC_BYTES)
#error "define LENET_EXT_ISA and LENET_EXT_VEC_BYTES before including gemm.h (see kernels_impl.h)"
#endif

namespace lenet_ext {
namespace cpu {
namespace LENET_EXT_ISA {

constexpr int kVecBytes = LENET_EXT_VEC_BYTES;

// GCC: element-aligned (aligned(4) / aligned(8)), so that load() and store() can cast. clang
// drops a typedef's reduced alignment in templates, and a local Vec placed at 4 bytes was then
// stored with an aligned move: there Vec keeps its natural alignment, and load() and store()
// copy instead of casting.
#if defined(__clang__)
#define LENET_EXT_ELEMENT_ALIGNED(bytes)
#else
#define LENET_EXT_ELEMENT_ALIGNED(bytes) aligned(bytes),
#endif
template <typename T>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(kVecBytes), LENET_EXT_ELEMENT_ALIGNED(4) may_alias));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(kVecBytes), LENET_EXT_ELEMENT_ALIGNED(8) may_alias));
};
template <typename T>
using Vec = typename VecOf<T>::type;

template <typename T>
constexpr int kVecLen = kVecBytes / sizeof(T);

// Unaligned loads and stores, one vmovups each. GCC: through the element-aligned, may_alias
// vector type (a memcpy of a 32-byte vector is split by GCC into two 16-byte copies through the
// stack, whose store-to-load forwarding stall made AVX builds 5-10x slower). clang: a memcpy,
// which it compiles to the one move.
template <typename T>
inline Vec<T> load(const T* p) {
#if defined(__clang__)
  Vec<T> v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
#else
  return *reinterpret_cast<const Vec<T>*>(p);
#endif
}

template <typename T>
inline void store(T* p, const Vec<T>& v) {
#if defined(__clang__)
  __builtin_memcpy(p, &v, sizeof v);  // as in load()
#else
  *reinterpret_cast<Vec<T>*>(p) = v;
#endif
}

// x in every lane. (Not Vec<T>{} + x: 0 + x is not x for x = -0, so GCC keeps that add, and the
// broadcast then runs on the FP pipes instead of being folded into a load.)
template <typename T>
inline Vec<T> splat(T x) {
  return x - Vec<T>{};
}

template <typename T>
inline T hsum(const Vec<T>& v) {
  T s = 0;
#pragma GCC unroll 8
  for (int l = 0; l < kVecLen<T>; ++l) s += v[l];
  return s;
}

// GCC's __builtin_shuffle, or Clang's __builtin_shufflevector (GCC has it only from version 12);
// Mask: a lane-index vector type of the operands' width (LaneMask32 for float, LaneMask64 for double).
#if defined(__clang__)
#define LENET_EXT_SHUFFLE(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define LENET_EXT_SHUFFLE(a, b, ...) __builtin_shuffle(a, b, Mask{__VA_ARGS__})
#endif
typedef int32_t LaneMask32 __attribute__((vector_size(kVecBytes)));
typedef int64_t LaneMask64 __attribute__((vector_size(kVecBytes)));
// The mask type for vectors of T (a type that depends on T, so that a shuffle of another width is
// checked only where it is instantiated).
template <typename T>
using LaneMask = std::conditional_t<sizeof(T) == 4, LaneMask32, LaneMask64>;

// out[i] = the sum of v[i]'s lanes for four vectors. For 8 and 16 floats, lanes added pairwise
// across the four at once (rounds of shuffles and adds): about a fifth of the work of four hsum
// calls, which the dense layers' short rows (84 and 120 values) spend as much time in as in their
// multiply-adds. Else hsum each.
template <typename T>
inline void hsum4(const Vec<T>* v, T* out) {
  if constexpr (kVecLen<T> == 8 && sizeof(T) == 4) {
    using Mask [[maybe_unused]] = LaneMask<T>;  // read by GCC's shuffle only
    // (v0 lanes 0+1, v1 0+1, v0 2+3, v1 2+3, ...), the same for v2, v3
    const Vec<T> t0 = LENET_EXT_SHUFFLE(v[0], v[1], 0, 8, 2, 10, 4, 12, 6, 14) +
                      LENET_EXT_SHUFFLE(v[0], v[1], 1, 9, 3, 11, 5, 13, 7, 15);
    const Vec<T> t1 = LENET_EXT_SHUFFLE(v[2], v[3], 0, 8, 2, 10, 4, 12, 6, 14) +
                      LENET_EXT_SHUFFLE(v[2], v[3], 1, 9, 3, 11, 5, 13, 7, 15);
    // (v0 lanes 0-3, v1 0-3, v2 0-3, v3 0-3, then the same of lanes 4-7)
    const Vec<T> u =
        LENET_EXT_SHUFFLE(t0, t1, 0, 1, 8, 9, 4, 5, 12, 13) + LENET_EXT_SHUFFLE(t0, t1, 2, 3, 10, 11, 6, 7, 14, 15);
    const Vec<T> w = u + LENET_EXT_SHUFFLE(u, u, 4, 5, 6, 7, 0, 1, 2, 3);
    for (int i = 0; i < 4; ++i) out[i] = w[i];
  } else if constexpr (kVecLen<T> == 16 && sizeof(T) == 4) {
    // The same for 16 floats: each vector's halves added (v0 and v1 into t0, v2 and v3 into t1),
    // then the 8-float rounds on lanes 0-15 of (t0, t1).
    using Mask [[maybe_unused]] = LaneMask<T>;  // read by GCC's shuffle only
    const Vec<T> t0 = LENET_EXT_SHUFFLE(v[0], v[1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
                      LENET_EXT_SHUFFLE(v[0], v[1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    const Vec<T> t1 = LENET_EXT_SHUFFLE(v[2], v[3], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
                      LENET_EXT_SHUFFLE(v[2], v[3], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    // (v0: 4 lanes, v1: 4, v2: 4, v3: 4), each the sum of 4 of t's
    const Vec<T> u = LENET_EXT_SHUFFLE(t0, t1, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
                     LENET_EXT_SHUFFLE(t0, t1, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    const Vec<T> w = u + LENET_EXT_SHUFFLE(u, u, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
    const Vec<T> x = w + LENET_EXT_SHUFFLE(w, w, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
    for (int i = 0; i < 4; ++i) out[i] = x[4 * i];
  } else {
    for (int i = 0; i < 4; ++i) out[i] = hsum<T>(v[i]);
  }
}

// The rows of a B operand: a strided matrix, row(k) = p + k * ld ...
template <typename T>
struct StridedRows {
  const T* p;
  int64_t ld;
  const T* operator[](int64_t k) const { return p + k * ld; }
};

// ... or rows read in place at offsets, row(k) = base + off[k]: the unrolled input of a
// stride-1 convolution without copying it (see conv_forward in kernels_impl.h).
template <typename T>
struct OffsetRows {
  const T* base;
  const int64_t* off;
  const T* operator[](int64_t k) const { return base + off[k]; }
};

// out[m * R + r] = dot(a + m * lda, b[r]) for MR rows of a and R rows b[r], K long: MR x R
// accumulators, each loaded vector of a used R times and of b MR times. (3 x 4: 12 accumulators,
// the 3 a vectors and one b vector in the other registers; 7 loads per 12 multiply-adds.)
template <typename T, int MR, int R>
inline void dot_block(const T* a, int64_t lda, const T* const* b, int64_t K, T* out) {
  constexpr int L = kVecLen<T>;
  Vec<T> acc[MR][R] = {};
  int64_t k = 0;
#pragma GCC unroll 2
  for (; k + L <= K; k += L) {
    Vec<T> av[MR];
#pragma GCC unroll 4
    for (int m = 0; m < MR; ++m) av[m] = load(a + m * lda + k);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const Vec<T> bv = load(b[r] + k);
#pragma GCC unroll 4
      for (int m = 0; m < MR; ++m) acc[m][r] += av[m] * bv;
    }
  }
#pragma GCC unroll 4
  for (int m = 0; m < MR; ++m) {
    T sums[R];
    if constexpr (R % 4 == 0) {
      for (int r = 0; r < R; r += 4) hsum4<T>(acc[m] + r, sums + r);
    } else {
      for (int r = 0; r < R; ++r) sums[r] = hsum<T>(acc[m][r]);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      T sum = sums[r];
      for (int64_t t = k; t < K; ++t) sum += a[m * lda + t] * b[r][t];
      out[m * R + r] = sum;
    }
  }
}

// MR rows of C: C[m, n] (+)= dot(A row m, B(n)), N columns, R at a time: 4, or 8 for a single row
// (a matrix-vector product, batch 1's dense layers: 8 accumulators fed by one load of the row).
// The same bits either way: each output's lanes are summed by hsum4 in the same order.
template <typename T, int MR, int R, typename Rows>
inline int64_t abt_block(int64_t n, int64_t N, int64_t K, const T* A, int64_t lda, const Rows& B, T* C, int64_t ldc,
                         bool accumulate) {
  T s[MR * R];
  for (; n + R <= N; n += R) {
    const T* b[R];
    for (int r = 0; r < R; ++r) b[r] = B[n + r];
    dot_block<T, MR, R>(A, lda, b, K, s);
    for (int m = 0; m < MR; ++m)
      for (int r = 0; r < R; ++r) C[m * ldc + n + r] = accumulate ? C[m * ldc + n + r] + s[m * R + r] : s[m * R + r];
  }
  return n;
}

template <typename T, int MR, typename Rows>
inline void abt_rows(int64_t N, int64_t K, const T* A, int64_t lda, const Rows& B, T* C, int64_t ldc, bool accumulate) {
  T s[MR];
  int64_t n = 0;
  if constexpr (MR == 1) n = abt_block<T, 1, 8>(n, N, K, A, lda, B, C, ldc, accumulate);
  n = abt_block<T, MR, 4>(n, N, K, A, lda, B, C, ldc, accumulate);
  for (; n < N; ++n) {
    const T* b[1] = {B[n]};
    dot_block<T, MR, 1>(A, lda, b, K, s);
    for (int m = 0; m < MR; ++m) C[m * ldc + n] = accumulate ? C[m * ldc + n] + s[m] : s[m];
  }
}

// C[m, n] (+)= sum_k A[m, k] * B(n)[k]       A: (M, K), B: N rows of K, C: (M, N).
// Dot-product form: the reduction runs along contiguous rows of A and B.
// Overwrites C unless `accumulate`.
template <typename T, typename Rows>
inline void gemm_abt_rows(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const Rows& B, T* C, int64_t ldc,
                          bool accumulate) {
  int64_t m = 0;
  for (; m + 3 <= M; m += 3) abt_rows<T, 3>(N, K, A + m * lda, lda, B, C + m * ldc, ldc, accumulate);
  for (; m < M; ++m) abt_rows<T, 1>(N, K, A + m * lda, lda, B, C + m * ldc, ldc, accumulate);
}

template <typename T>
inline void gemm_abt(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb, T* C,
                     int64_t ldc, bool accumulate) {
  gemm_abt_rows(M, N, K, A, lda, StridedRows<T>{B, ldb}, C, ldc, accumulate);
}

// The A operand of the broadcast form, read element by element: a strided matrix,
// A(r, k) = p[r * sm + k * sk] (so one loop serves A and A transposed) ...
template <typename T>
struct StridedA {
  const T* p;
  int64_t sm, sk;
  T operator()(int64_t r, int64_t k) const { return p[r * sm + k * sk]; }
  StridedA from_row(int64_t m) const { return {p + m * sm, sm, sk}; }
};

// ... or A(r, k) = base[roff[r] + koff[k]]: an unrolled convolution input read in place, its
// rows and columns at offsets (see conv_forward_wide and conv_backward_wide in kernels_impl.h).
template <typename T>
struct OffsetA {
  const T* base;
  const int64_t* roff;
  const int64_t* koff;
  T operator()(int64_t r, int64_t k) const { return base[roff[r] + koff[k]]; }
  OffsetA from_row(int64_t m) const { return {base, roff + m, koff}; }
};

// R rows of C: C[r, n] (+)= sum_k A(r, k) * B(k)[n]. Each block of R rows x V vectors of outputs
// stays in registers for the whole k loop (C is read and written once per block), and each
// broadcast A(r, k) is used for V vectors.
template <typename T, int R, int V, typename AOp, typename Rows>
inline int64_t axpy_block(int64_t n, int64_t N, int64_t K, const AOp& A, const Rows& B, T* C, int64_t ldc,
                          bool accumulate) {
  constexpr int L = kVecLen<T>;
  for (; n + V * L <= N; n += V * L) {
    Vec<T> acc[R][V];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) acc[r][v] = accumulate ? load(C + r * ldc + n + v * L) : Vec<T>{};
    for (int64_t k = 0; k < K; ++k) {
      const T* bk = B[k] + n;
      Vec<T> b[V];
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) b[v] = load(bk + v * L);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const Vec<T> a = splat(A(r, k));
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) acc[r][v] += a * b[v];
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) store(C + r * ldc + n + v * L, acc[r][v]);
  }
  return n;
}

template <typename T, int R, typename AOp, typename Rows>
inline void axpy_rows(int64_t N, int64_t K, const AOp& A, const Rows& B, T* C, int64_t ldc, bool accumulate) {
  // 12 accumulators where they fit (R x V = 4 x 3 or 6 x 2): enough independent multiply-adds in
  // flight to cover the FMA latency, with the loaded and broadcast operands in the other registers.
  constexpr int V = R <= 4 ? 3 : 2;
  int64_t n = axpy_block<T, R, V>(0, N, K, A, B, C, ldc, accumulate);
  if constexpr (V == 3) n = axpy_block<T, R, 2>(n, N, K, A, B, C, ldc, accumulate);
  n = axpy_block<T, R, 1>(n, N, K, A, B, C, ldc, accumulate);
  for (; n < N; ++n) {
    for (int r = 0; r < R; ++r) {
      T s = accumulate ? C[r * ldc + n] : T(0);
      for (int64_t k = 0; k < K; ++k) s += A(r, k) * B[k][n];
      C[r * ldc + n] = s;
    }
  }
}

// C (M x N) (+)= A (M x K, read through AOp) times B (K rows of N).
template <typename T, typename AOp, typename Rows>
inline void gemm_axpy(int64_t M, int64_t N, int64_t K, const AOp& A, const Rows& B, T* C, int64_t ldc,
                      bool accumulate) {
  int64_t m = 0;
  // 16-lane vectors (AVX-512, 32 registers) where one vector spans N (LeNet's c3: 16 channels):
  // 12 rows at a time, 12 accumulators (6 would leave the FMA pipes waiting on their latency).
  if constexpr (kVecLen<T> == 16) {
    if (N <= kVecLen<T>)
      for (; m + 12 <= M; m += 12) axpy_rows<T, 12>(N, K, A.from_row(m), B, C + m * ldc, ldc, accumulate);
  }
  // 6 rows at a time where the rows are 6 (LeNet's c1 channels) or where fewer than 3 vectors
  // span N (6 x 2 accumulators instead of 4 x 2), else 4 (x 3 vectors).
  if (M % 6 == 0 || N < 3 * kVecLen<T>) {
    for (; m + 6 <= M; m += 6) axpy_rows<T, 6>(N, K, A.from_row(m), B, C + m * ldc, ldc, accumulate);
  }
  for (; m + 4 <= M; m += 4) axpy_rows<T, 4>(N, K, A.from_row(m), B, C + m * ldc, ldc, accumulate);
  switch (M - m) {
    case 3:
      axpy_rows<T, 3>(N, K, A.from_row(m), B, C + m * ldc, ldc, accumulate);
      break;
    case 2:
      axpy_rows<T, 2>(N, K, A.from_row(m), B, C + m * ldc, ldc, accumulate);
      break;
    case 1:
      axpy_rows<T, 1>(N, K, A.from_row(m), B, C + m * ldc, ldc, accumulate);
      break;
    default:
      break;
  }
}

// C[m, n] (+)= sum_k A[m, k] * B[k, n]       A: (M, K), B: (K, N), C: (M, N).
// Overwrites C unless `accumulate`.
template <typename T>
inline void gemm_ab(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb, T* C,
                    int64_t ldc, bool accumulate) {
  gemm_axpy(M, N, K, StridedA<T>{A, lda, 1}, StridedRows<T>{B, ldb}, C, ldc, accumulate);
}

// C[m, n] = sum_k A[k, m] * B[k, n]          A: (K, M), B: (K, N), C: (M, N).
template <typename T>
inline void gemm_atb(int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb, T* C,
                     int64_t ldc) {
  gemm_axpy(M, N, K, StridedA<T>{A, 1, lda}, StridedRows<T>{B, ldb}, C, ldc, /*accumulate=*/false);
}

}  // namespace LENET_EXT_ISA
}  // namespace cpu
}  // namespace lenet_ext
