// The run-time switches of flags.h.
#include "flags.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace lenet_ext {
namespace {

std::atomic<bool>& v2_flag() {
  static std::atomic<bool> flag([] {
    const char* value = std::getenv("LENET_EXT_CUDA_FUSED");
    return value != nullptr && std::strcmp(value, "1") == 0;
  }());
  return flag;
}

}  // namespace

bool cuda_kernels_v2() { return v2_flag().load(std::memory_order_relaxed); }
void set_cuda_kernels_v2(bool on) { v2_flag().store(on, std::memory_order_relaxed); }

}  // namespace lenet_ext
