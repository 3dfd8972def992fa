// The CPU kernels compiled for AVX-512 (F, DQ, BW, VL, with FMA: 16 floats per vector, 32 vector
// registers), chosen at run time by kernels_base.cpp: by default only the fused forward
// (lenet5_forward), on CPUs where it measured faster than the AVX2 one; every kernel when asked for
// (LENET_EXT_CPU_ISA=avx512), as the training kernels measured slower (docs/performance.md). Only
// this file's own code is compiled for AVX-512, as kernels_avx2.cpp does for AVX2.
#include <cstdint>
#include <type_traits>
#if defined(__x86_64__)
#include <immintrin.h>  // clamp_vec's min and max
#endif

#include "../shapes.h"  // its inline members stay baseline code
#include "kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#if defined(__clang__)  // clang has no GCC target pragma: the same target on every function below
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma"))), \
                             apply_to = function)
#pragma clang fp contract(fast)
#else
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")
#pragma GCC optimize("fp-contract=fast")
#endif
#define LENET_EXT_ISA avx512
#define LENET_EXT_VEC_BYTES 64
#include "kernels_impl.h"  // instantiates lenet_ext::cpu::avx512::make_kernels<float, double>
#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif
