// Average pooling on the CPU (square window, no padding, floor mode).
//
// Forward   y[n, c, oh, ow] = (1 / k^2) * sum_{i,j < k} x[n, c, oh*s + i, ow*s + j]
//           x (N, C, H, W), y (N, C, OH, OW), OH = (H - k) / s + 1.
// Backward  dx[n, c, ih, iw] = (1 / k^2) * sum of dy over the windows that contain (ih, iw)
//           (0 where no window reaches; overlapping windows, s < k, add up). Each input element
//           gathers its windows, so it is written once, with no zero-fill or scatter.
// Parallel over the N*C planes.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <vector>

#include "../checks.h"
#include "parallel.h"

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
    parallel_for(0, N * C, 16, [&](int64_t first, int64_t last) {
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
    // Windows [lo, hi] that cover input column iw (likewise rows): oh*s <= ih < oh*s + k.
    std::vector<int64_t> ow_lo(W), ow_hi(W), oh_lo(H), oh_hi(H);
    for (int64_t i = 0; i < W; ++i) {
      ow_lo[i] = i < kernel_size ? 0 : (i - kernel_size) / stride + 1;
      ow_hi[i] = std::min(i / stride, OW - 1);
    }
    for (int64_t i = 0; i < H; ++i) {
      oh_lo[i] = i < kernel_size ? 0 : (i - kernel_size) / stride + 1;
      oh_hi[i] = std::min(i / stride, OH - 1);
    }
    parallel_for(0, N * C, 16, [&](int64_t first, int64_t last) {
      for (int64_t plane = first; plane < last; ++plane) {
        const scalar_t* gyc = gyp + plane * OH * OW;
        scalar_t* gxc = gxp + plane * H * W;
        for (int64_t ih = 0; ih < H; ++ih) {
          for (int64_t iw = 0; iw < W; ++iw) {
            scalar_t acc = 0;
            for (int64_t oh = oh_lo[ih]; oh <= oh_hi[ih]; ++oh)
              for (int64_t ow = ow_lo[iw]; ow <= ow_hi[iw]; ++ow) acc += gyc[oh * OW + ow];
            gxc[ih * W + iw] = acc * scale;
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
