// The CPU kernels compiled for AVX2 + FMA (8 floats per vector, fused multiply-adds), chosen at
// run time by kernels_base.cpp where the CPU has both. Only this file's own code is compiled for
// AVX2: the standard headers come first, under the build's baseline flags, and kernels_impl.h
// instantiates nothing outside namespace lenet_ext::cpu::avx2.
#include <cstdint>
#include <type_traits>
#if defined(__x86_64__)
#include <immintrin.h>  // clamp_vec's min and max
#endif

#include "../shapes.h"  // its inline members stay baseline code
#include "kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#if defined(__clang__)  // clang has no GCC target pragma: the same target on every function below
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#pragma clang fp contract(fast)
#else
#pragma GCC target("avx2,fma")
#pragma GCC optimize("fp-contract=fast")
#endif
#define LENET_EXT_ISA avx2
#define LENET_EXT_VEC_BYTES 32
#include "kernels_impl.h"  // instantiates lenet_ext::cpu::avx2::make_kernels<float, double>
#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif
