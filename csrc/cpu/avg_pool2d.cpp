// Average pooling on the CPU (square window, no padding, floor mode).
//
// Forward   y[n, c, oh, ow] = (1 / k^2) * sum_{i,j < k} x[n, c, oh*s + i, ow*s + j]
//           x (N, C, H, W), y (N, C, OH, OW), OH = (H - k) / s + 1.
// Backward  dx[n, c, oh*s + i, ow*s + j] += dy[n, c, oh, ow] / k^2   (rows/columns no window
//           touches get 0; overlapping windows, s < k, add up).
// Parallel over the N*C planes; each plane is written by one thread only.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <array>

#include "../checks.h"

namespace lenet_ext {
namespace cpu {
namespace {

at::Tensor avg_pool2d_cpu(const at::Tensor& input, int64_t kernel_size, int64_t stride) {
  check_avg_pool2d(input, kernel_size, stride);
  const at::Tensor x = input.contiguous();
  const PoolShape s = pool_shape(x.sizes(), kernel_size, stride);
  const int64_t N = s.N, C = s.C, H = s.H, W = s.W, OH = s.OH, OW = s.OW;
  at::Tensor y = at::empty({N, C, OH, OW}, x.options());
  if (y.numel() == 0) return y;

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "avg_pool2d_cpu", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    const scalar_t scale = scalar_t(1) / scalar_t(kernel_size * kernel_size);
    at::parallel_for(0, N * C, 16, [&](int64_t first, int64_t last) {
      for (int64_t plane = first; plane < last; ++plane) {
        const scalar_t* xc = xp + plane * H * W;
        scalar_t* yc = yp + plane * OH * OW;
        for (int64_t oh = 0; oh < OH; ++oh) {
          for (int64_t ow = 0; ow < OW; ++ow) {
            scalar_t acc = 0;
            for (int64_t i = 0; i < kernel_size; ++i) {
              const scalar_t* xr = xc + (oh * stride + i) * W + ow * stride;
              for (int64_t j = 0; j < kernel_size; ++j) acc += xr[j];
            }
            yc[oh * OW + ow] = acc * scale;
          }
        }
      }
    });
  });
  return y;
}

at::Tensor avg_pool2d_backward_cpu(const at::Tensor& grad_output, c10::SymIntArrayRef input_size_sym,
                                   int64_t kernel_size, int64_t stride) {
  const at::IntArrayRef input_size = C10_AS_INTARRAYREF_SLOW(input_size_sym);
  const PoolShape s = check_avg_pool2d_backward(grad_output, input_size, kernel_size, stride);
  const int64_t N = s.N, C = s.C, H = s.H, W = s.W, OH = s.OH, OW = s.OW;
  const at::Tensor gy = grad_output.contiguous();
  at::Tensor gx = at::empty(input_size, gy.options());
  if (gy.numel() == 0) return gx;

  AT_DISPATCH_FLOATING_TYPES(gy.scalar_type(), "avg_pool2d_backward_cpu", [&] {
    const scalar_t* gyp = gy.const_data_ptr<scalar_t>();
    scalar_t* gxp = gx.mutable_data_ptr<scalar_t>();
    const scalar_t scale = scalar_t(1) / scalar_t(kernel_size * kernel_size);
    at::parallel_for(0, N * C, 16, [&](int64_t first, int64_t last) {
      for (int64_t plane = first; plane < last; ++plane) {
        const scalar_t* gyc = gyp + plane * OH * OW;
        scalar_t* gxc = gxp + plane * H * W;
        std::fill(gxc, gxc + H * W, scalar_t(0));
        for (int64_t oh = 0; oh < OH; ++oh) {
          for (int64_t ow = 0; ow < OW; ++ow) {
            const scalar_t g = gyc[oh * OW + ow] * scale;
            for (int64_t i = 0; i < kernel_size; ++i) {
              scalar_t* gxr = gxc + (oh * stride + i) * W + ow * stride;
              for (int64_t j = 0; j < kernel_size; ++j) gxr[j] += g;
            }
          }
        }
      }
    });
  });
  return gx;
}

}  // namespace

TORCH_LIBRARY_IMPL(lenet_ext, CPU, m) {
  m.impl("avg_pool2d", &avg_pool2d_cpu);
  m.impl("avg_pool2d_backward", &avg_pool2d_backward_cpu);
}

}  // namespace cpu
}  // namespace lenet_ext
