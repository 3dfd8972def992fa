// The CPU kernels at the build's baseline instruction set (SSE2 on x86-64, NEON on arm64), and
// the choice, once per process, between them, the AVX2 + FMA ones (kernels_avx2.cpp) and the
// AVX-512 ones (kernels_avx512.cpp), per kernel: by default the AVX-512 fused forward beside the
// AVX2 rest where that pays (avx512_forward_pays).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#if defined(__x86_64__)
#include <immintrin.h>  // clamp_vec's min and max
#endif

#define LENET_EXT_ISA base
#define LENET_EXT_VEC_BYTES 16
#include "kernels_impl.h"  // instantiates lenet_ext::cpu::base::make_kernels<float, double>

namespace lenet_ext {
namespace cpu {
namespace {

// mixed: the AVX2 kernels, but the fused forward (lenet5_forward) from the AVX-512 set.
enum class Isa { base, avx2, avx512, mixed };

bool cpu_supports(Isa isa) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (isa == Isa::avx2) return avx2;
  if (isa == Isa::avx512)
    return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
#endif
  return isa == Isa::base;
}

// Whether the AVX-512 fused forward is the default: measured on Zen 4 a little faster than the
// AVX2 one at batch 1 and as fast at 64 and 1024, while the AVX-512 training kernels are slower
// (docs/performance.md). Only where the CPU has VBMI2 too, which marks the cores that do not lower
// their clock under 512-bit work (Intel since Ice Lake, AMD since Zen 4; not Skylake-SP or Cascade
// Lake).
bool avx512_forward_pays() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  return cpu_supports(Isa::avx512) && __builtin_cpu_supports("avx512vbmi2");
#else
  return false;
#endif
}

// LENET_EXT_CPU_ISA=base|avx2|avx512 asks for one set for every kernel; what the CPU lacks falls
// back to the best it has below it. Unset (or any other value): mixed where the AVX-512 forward
// pays, else avx2 where the CPU has it, else base.
Isa chosen_isa() {
  static const Isa isa = [] {
    const char* want = std::getenv("LENET_EXT_CPU_ISA");
    if (want && std::strcmp(want, "base") == 0) return Isa::base;
    if (want && std::strcmp(want, "avx512") == 0 && cpu_supports(Isa::avx512)) return Isa::avx512;
    if (want && (std::strcmp(want, "avx2") == 0 || std::strcmp(want, "avx512") == 0))
      return cpu_supports(Isa::avx2) ? Isa::avx2 : Isa::base;
    if (avx512_forward_pays()) return Isa::mixed;
    return cpu_supports(Isa::avx2) ? Isa::avx2 : Isa::base;
  }();
  return isa;
}

}  // namespace

const char* cpu_isa() {
  switch (chosen_isa()) {
    case Isa::mixed:
      return "avx2+avx512";
    case Isa::avx512:
      return "avx512";
    case Isa::avx2:
      return "avx2";
    default:
      return "base";
  }
}

const char* cpu_kernel_isa(const char* kernel) {
  const Isa isa = chosen_isa();
  if (isa != Isa::mixed) return cpu_isa();
  return std::strcmp(kernel, "lenet5_forward") == 0 ? "avx512" : "avx2";
}

template <typename T>
const CpuKernels<T>& kernels() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const CpuKernels<T> table = [] {
    switch (chosen_isa()) {
      case Isa::mixed: {
        CpuKernels<T> t = avx2::make_kernels<T>();
        t.lenet5_forward = avx512::make_kernels<T>().lenet5_forward;
        return t;
      }
      case Isa::avx512:
        return avx512::make_kernels<T>();
      case Isa::avx2:
        return avx2::make_kernels<T>();
      default:
        return base::make_kernels<T>();
    }
  }();
#else
  static const CpuKernels<T> table = base::make_kernels<T>();
#endif
  return table;
}

template const CpuKernels<float>& kernels<float>();
template const CpuKernels<double>& kernels<double>();

}  // namespace cpu
}  // namespace lenet_ext
