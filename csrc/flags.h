// Run-time switches shared by the CPU build and the CUDA kernels.
#pragma once

namespace lenet_ext {

// Whether the CUDA ops run this round's kernels (the second-generation per-op kernels; the
// fused ops have only one generation). Initially LENET_EXT_CUDA_FUSED=1; set from Python with
// lenet_ext.new_cuda_kernels(True/False). Off by default until a GPU run has validated them.
bool cuda_kernels_v2();
void set_cuda_kernels_v2(bool on);

}  // namespace lenet_ext
