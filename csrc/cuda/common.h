// Host-side helpers of the CUDA ops (csrc/cuda/*.cpp): the device guard, the current stream, and
// the launch entry points (launchers.h), whose errors the ops raise with C10_CUDA_CHECK.
#pragma once

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "launchers.h"
