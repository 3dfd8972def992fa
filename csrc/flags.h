// Run-time switches shared by the CPU build and the CUDA kernels.
#pragma once

namespace lenet_ext {

// The generation of CUDA kernels the ops run. v1: the first-generation per-op kernels, with
// LeNet5 running layer by layer on CUDA. v2: the second-generation per-op kernels (tiled
// products, channel groups, chunked weight gradients) and the fused whole-network ops. v1 is the
// default until a GPU run has validated v2. The process starts with LENET_EXT_CUDA_KERNELS
// (v1 or v2; lenet_ext refuses any other value at import) and lenet_ext.cuda_kernels("v1"|"v2")
// switches it; Python reads it from here, the one place it is kept.
enum class CudaKernels { v1 = 1, v2 = 2 };

CudaKernels cuda_kernels();
void set_cuda_kernels(CudaKernels generation);

}  // namespace lenet_ext
