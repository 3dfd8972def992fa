// The CPU kernels' arithmetic, free of torch: what one thread does for its chunk of the batch.
// The op files (conv2d_sigmoid.cpp, linear.cpp) check arguments, allocate, split the batch and
// reduce partial gradients; they call these through kernels<T>(), a table chosen once per
// process from the CPU's instruction sets:
//   avx512  AVX-512 F/DQ/BW/VL (Intel since Skylake-SP, AMD since Zen 4), 16 floats per vector,
//           32 vector registers
//   avx2  AVX2 + FMA (x86-64 CPUs since 2013/2015), 8 floats per vector, fused multiply-adds
//   base  the build's baseline (SSE2 on x86-64, NEON on arm64), 4 floats per vector
// By default: AVX2 where the CPU has it, with the AVX-512 fused forward (lenet5_forward) on CPUs
// where that measured faster (kernels_base.cpp); else base. LENET_EXT_CPU_ISA=base|avx2|avx512
// forces one set for every kernel (only where the CPU has it); lenet_ext.cpu_isa() tells which
// runs ("avx2+avx512" for the default with the AVX-512 forward) and lenet_ext.cpu_isas() names
// each kernel's. All three compute the same function; their last bits differ (FMA rounds once,
// and the vector widths sum in different orders).
#pragma once

#include <cstdint>

#include "../shapes.h"

namespace lenet_ext {
namespace cpu {

// LeNet-5's parameters, in layer order (weights and biases of c1, c3, c5, f6, output).
template <typename T>
struct LeNet5Params {
  const T *c1w, *c1b, *c3w, *c3b, *c5w, *c5b, *f6w, *f6b, *outw, *outb;
  int64_t classes;
};

// LeNet-5's fixed layer shapes: (N, C, H, W, O, KH, KW, OH, OW, stride, pad), per image.
constexpr ConvShape kLeNetC1{1, 1, 28, 28, 6, 5, 5, 28, 28, 1, 2};
constexpr ConvShape kLeNetC3{1, 6, 14, 14, 16, 5, 5, 10, 10, 1, 0};
constexpr int64_t kLeNetBlock = 8;   // the fewest images in a thread's chunk of the fused forward
constexpr int64_t kLeNetGroup = 64;  // images per group in its dense layers (a multiple of kLeNetBlock)

template <typename T>
struct CpuKernels {
  // y[n] = sigmoid(conv(x[n], w) + b) for images [n0, n1), and, when `pooled` is not null,
  // pooled[n] = its average over pool x pool windows (stride pool, floor: (O, OH/pool, OW/pool)).
  // scratch: conv_scratch_size(s) values, whatever the number of images.
  void (*conv_forward)(const ConvShape& s, const T* x, const T* w, const T* b, T* y, int64_t n0, int64_t n1, T* scratch,
                       int64_t pool, T* pooled);
  // For images [n0, n1): gx[n] written (if gx), dw and db added to (if not null). The gradient
  // reaching y is gy (if not null) plus, if gpool is not null, gpool spread back over its pooling
  // windows (pool x pool, divided by pool^2). scratch: conv_scratch_size(s) values.
  // Not for a window over the whole input (P = 1): that is a dense layer (dense_backward in common.h).
  void (*conv_backward)(const ConvShape& s, const T* gy, const T* gpool, int64_t pool, const T* y, const T* x,
                        const T* w, T* gx, T* dw, T* db, int64_t n0, int64_t n1, T* scratch);
  // A dense layer on `rows` rows: y = act(x w^T + b), x (rows, K), w (O, K), y (rows, O); b may be null.
  void (*dense_forward)(int64_t rows, int64_t K, int64_t O, const T* x, const T* w, const T* b, T* y,
                        bool apply_sigmoid);
  // Its backward from g = dL/d(pre-activation) (rows, O): dx = g w (rows, K) ...
  void (*dense_input_grad)(int64_t rows, int64_t K, int64_t O, const T* g, const T* w, T* dx);
  // ... and dw = g^T x (O, K), db = g's column sums over all `rows` rows, overwritten (either may
  // be null); g's rows ldg apart (O may be a slice of the layer's outputs).
  void (*dense_weight_grad)(int64_t rows, int64_t K, int64_t O, const T* g, int64_t ldg, const T* x, T* dw, T* db);
  // The whole LeNet-5 forward for images [n0, n1) of x (N, 1, 28, 28) into logits (N, classes);
  // scratch: lenet5_scratch_size<T>() values.
  void (*lenet5_forward)(const LeNet5Params<T>& p, const T* x, T* logits, int64_t n0, int64_t n1, T* scratch);
};

// Values of type T that hold the wide form's K tap and P output offsets (int64_t) at the start
// of its scratch (wide_scratch in kernels_impl.h).
template <typename T>
constexpr int64_t wide_offsets_size(const ConvShape& s) {
  return ((s.K() + s.P()) * int64_t(sizeof(int64_t)) + int64_t(sizeof(T)) - 1) / int64_t(sizeof(T));
}

// The wide backward's dcol (the input gradient's unrolled form, one channel's taps at a time):
// rows ld apart, each holding its Pw values after a zero guard band of wide_dcol_guard values (the
// largest offset of a tap within a channel, rounded up to kRowAlign) and followed by zeros up to
// the padded plane's size rounded up to kRowAlign, so that conv_backward_wide's gather reads zeros wherever a
// tap falls outside a row.
constexpr int64_t wide_dcol_guard(const ConvShape& s) { return ConvShape::align((s.KH - 1) * s.Wp() + s.KW - 1); }
constexpr int64_t wide_dcol_ld(const ConvShape& s) {
  const int64_t plane = ConvShape::align(s.Hp() * s.Wp());
  return wide_dcol_guard(s) + (plane > s.Pw() ? plane : s.Pw());
}

// Scratch values of type T a convolution needs for any number of images (one image's worth,
// reused), forward or backward (P = 1: none; the dense layer needs no scratch). The wide form
// (stride 1): the offsets and the padded input, then backward g (O x Pw), dcol (KH * KW rows of
// wide_dcol_ld), the padded input's gradient and, for the channel-vectorized weight gradient,
// g^T (P x O) and dw^T (K x O); forward needs less (z, O x Pw, or w^T and the (P x O) output).
// Else (im2col): g (O x Pp), col and dcol (K x Pp each).
template <typename T>
constexpr int64_t conv_scratch_size(const ConvShape& s) {
  if (s.whole_input()) return 0;
  if (s.wide())
    return wide_offsets_size<T>(s) + 2 * s.padded_image() + s.O * s.Pw() + s.KH * s.KW * wide_dcol_ld(s) +
           (s.P() + s.K()) * s.O;
  return (s.O + 2 * s.K()) * s.Pp();
}

// The fused forward's row copies of c1's input (lenet5_forward in kernels_impl.h): copy j holds
// copy[h][w] = xpad[h][w + j] for the Hp padded rows and the OW output columns, in
// lenet5_copy_plane(s) values: enough for whole vectors of up to kRowAlign values past the last
// output under the lowest tap row (for c1 exactly its Hp x OW values, so every value read is copied).
constexpr int64_t lenet5_copy_plane(const ConvShape& s) { return ConvShape::align(s.Pp() + (s.KH - 1) * s.OW); }
// c1's zero-padded image, with slack for a vector read past its last row.
constexpr int64_t lenet5_c1_xpad_size() { return kLeNetC1.Hp() * kLeNetC1.Wp() + ConvShape::kRowAlign; }

// Scratch values of type T the fused LeNet-5 forward needs (for any number of images): c1's five
// copies and padded image, its six output planes, s2, c3's transposed weight, its outputs and
// their pooling (channels last), and a group's s4, c5 and f6 outputs (the layout lenet5_forward
// in kernels_impl.h uses).
template <typename T>
constexpr int64_t lenet5_scratch_size() {
  return 5 * lenet5_copy_plane(kLeNetC1) + lenet5_c1_xpad_size() + 6 * 784 + 6 * 196 + 150 * 16 + 100 * 16 + 25 * 16 +
         kLeNetGroup * (400 + 120 + 84);
}

template <typename T>
const CpuKernels<T>& kernels();

// "avx2+avx512", "avx512", "avx2" or "base": the sets kernels<T>() draws on in this process ...
const char* cpu_isa();
// ... and the one a kernel (a CpuKernels field's name) comes from.
const char* cpu_kernel_isa(const char* kernel);

// The tables of each instruction set (kernels_base.cpp, kernels_avx2.cpp, kernels_avx512.cpp); the
// avx2 and avx512 ones exist only in x86-64 builds, and kernels<T>() asks for them only there.
namespace base {
template <typename T>
CpuKernels<T> make_kernels();
}
namespace avx2 {
template <typename T>
CpuKernels<T> make_kernels();
}
namespace avx512 {
template <typename T>
CpuKernels<T> make_kernels();
}

}  // namespace cpu
}  // namespace lenet_ext
