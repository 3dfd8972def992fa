// The CPU kernels at the build's baseline instruction set (SSE2 on x86-64, NEON on arm64), and
// the choice, once per process, between them and the AVX2 + FMA ones (kernels_avx2.cpp).
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

bool cpu_has_avx2() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

// LENET_EXT_CPU_ISA=base forces the baseline kernels; =avx2 (or unset) takes AVX2 where the CPU has it.
bool use_avx2() {
  static const bool use = [] {
    const char* want = std::getenv("LENET_EXT_CPU_ISA");
    if (want && std::strcmp(want, "base") == 0) return false;
    return cpu_has_avx2();
  }();
  return use;
}

}  // namespace

const char* cpu_isa() { return use_avx2() ? "avx2" : "base"; }

template <typename T>
const CpuKernels<T>& kernels() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const CpuKernels<T> table = use_avx2() ? avx2::make_kernels<T>() : base::make_kernels<T>();
#else
  static const CpuKernels<T> table = base::make_kernels<T>();
#endif
  return table;
}

template const CpuKernels<float>& kernels<float>();
template const CpuKernels<double>& kernels<double>();

}  // namespace cpu
}  // namespace lenet_ext
