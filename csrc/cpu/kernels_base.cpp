// The CPU kernels at the build's baseline instruction set (SSE2 on x86-64, NEON on arm64), and
// the choice, once per process, between them, the AVX2 + FMA ones (kernels_avx2.cpp) and the
// AVX-512 ones (kernels_avx512.cpp).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#define LENET_EXT_ISA base
#define LENET_EXT_VEC_BYTES 16
#include "kernels_impl.h"  // instantiates lenet_ext::cpu::base::make_kernels<float, double>

namespace lenet_ext {
namespace cpu {
namespace {

enum class Isa { base, avx2, avx512 };

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

// LENET_EXT_CPU_ISA=base|avx2|avx512 asks for one; what the CPU lacks falls back to the best it
// has below it. Unset (or any other value): avx2 where the CPU has it, else base.
Isa chosen_isa() {
  static const Isa isa = [] {
    const char* want = std::getenv("LENET_EXT_CPU_ISA");
    if (want && std::strcmp(want, "base") == 0) return Isa::base;
    if (want && std::strcmp(want, "avx512") == 0 && cpu_supports(Isa::avx512)) return Isa::avx512;
    return cpu_supports(Isa::avx2) ? Isa::avx2 : Isa::base;
  }();
  return isa;
}

}  // namespace

const char* cpu_isa() {
  switch (chosen_isa()) {
    case Isa::avx512:
      return "avx512";
    case Isa::avx2:
      return "avx2";
    default:
      return "base";
  }
}

template <typename T>
const CpuKernels<T>& kernels() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const CpuKernels<T> table = chosen_isa() == Isa::avx512 ? avx512::make_kernels<T>()
                                     : chosen_isa() == Isa::avx2 ? avx2::make_kernels<T>()
                                                                 : base::make_kernels<T>();
#else
  static const CpuKernels<T> table = base::make_kernels<T>();
#endif
  return table;
}

template const CpuKernels<float>& kernels<float>();
template const CpuKernels<double>& kernels<double>();

}  // namespace cpu
}  // namespace lenet_ext
