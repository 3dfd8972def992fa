// The run-time switches of flags.h.
#include "flags.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace lenet_ext {
namespace {

std::atomic<CudaKernels>& generation() {
  static std::atomic<CudaKernels> value([] {
    const char* env = std::getenv("LENET_EXT_CUDA_KERNELS");
    return env != nullptr && std::strcmp(env, "v2") == 0 ? CudaKernels::v2 : CudaKernels::v1;
  }());
  return value;
}

}  // namespace

CudaKernels cuda_kernels() { return generation().load(std::memory_order_relaxed); }
void set_cuda_kernels(CudaKernels value) { generation().store(value, std::memory_order_relaxed); }

}  // namespace lenet_ext
