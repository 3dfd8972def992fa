// Checks each lenet_ext op's C++ entry point (through the dispatcher, as a C++ user calls it)
// against ATen on random inputs: forward, and the backward ops against autograd through the
// ATen reference. Prints one line per check and "N passed, M failed" at the end.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/torch.h>

#include <array>
#include <cstdio>
#include <random>
#include <string>
#include <tuple>

namespace {

int passed = 0, failed = 0;

void check(const std::string& name, const at::Tensor& actual, const at::Tensor& expected, double atol = 1e-5,
           double rtol = 1e-4) {
  const double scale = std::max(1.0, expected.abs().max().item<double>());
  const bool ok = actual.sizes() == expected.sizes() && at::allclose(actual, expected, rtol, atol * scale);
  const double err = actual.sizes() == expected.sizes() ? (actual - expected).abs().max().item<double>() : -1.0;
  std::printf("%s %-48s max |diff| = %.3g\n", ok ? "PASS" : "FAIL", name.c_str(), err);
  ok ? ++passed : ++failed;
}

template <typename Signature>
c10::TypedOperatorHandle<Signature> op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

using Grads = std::tuple<at::Tensor, at::Tensor, at::Tensor>;

void test_conv(int64_t n, int64_t c, int64_t h, int64_t w, int64_t o, int64_t k, int64_t stride, int64_t pad) {
  auto fwd = op<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&, int64_t, int64_t)>(
      "lenet_ext::conv2d_sigmoid");
  auto bwd = op<Grads(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, int64_t,
                      std::array<bool, 3>)>("lenet_ext::conv2d_sigmoid_backward");
  const auto x = torch::randn({n, c, h, w}).requires_grad_();
  const auto weight = torch::randn({o, c, k, k}).requires_grad_();
  const auto bias = torch::randn({o}).requires_grad_();
  const std::string tag = "conv2d_sigmoid N" + std::to_string(n) + " C" + std::to_string(c) + " k" + std::to_string(k) +
                          " s" + std::to_string(stride) + " p" + std::to_string(pad);
  at::Tensor y;
  {
    torch::NoGradGuard no_grad;
    y = fwd.call(x, weight, bias, stride, pad);
  }
  const auto ref = torch::sigmoid(torch::conv2d(x, weight, bias, stride, pad));
  check(tag + " forward", y, ref.detach());
  const auto g = torch::randn_like(ref);
  const auto expected = torch::autograd::grad({ref}, {x, weight, bias}, {g});
  const auto [gx, gw, gb] = bwd.call(g, y, x.detach(), weight.detach(), stride, pad, {true, true, true});
  check(tag + " grad input", gx, expected[0]);
  check(tag + " grad weight", gw, expected[1]);
  check(tag + " grad bias", gb, expected[2]);
}

void test_pool(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t stride) {
  auto fwd = op<at::Tensor(const at::Tensor&, int64_t, int64_t)>("lenet_ext::avg_pool2d");
  auto bwd = op<at::Tensor(const at::Tensor&, c10::SymIntArrayRef, int64_t, int64_t)>("lenet_ext::avg_pool2d_backward");
  const auto x = torch::randn({n, c, h, w}).requires_grad_();
  const std::string tag = "avg_pool2d " + std::to_string(h) + "x" + std::to_string(w) + " k" + std::to_string(k) +
                          " s" + std::to_string(stride);
  at::Tensor y;
  {
    torch::NoGradGuard no_grad;
    y = fwd.call(x, k, stride);
  }
  const auto ref = torch::avg_pool2d(x, k, stride);
  check(tag + " forward", y, ref.detach());
  const auto g = torch::randn_like(ref);
  const auto expected = torch::autograd::grad({ref}, {x}, {g});
  check(tag + " grad input", bwd.call(g, c10::fromIntArrayRefSlow(x.sizes()), k, stride), expected[0]);
}

void test_linear(int64_t m, int64_t in, int64_t out, bool sigmoid) {
  auto fwd =
      op<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&, bool)>("lenet_ext::linear");
  auto bwd = op<Grads(const at::Tensor&, const std::optional<at::Tensor>&, const at::Tensor&, const at::Tensor&, bool,
                      std::array<bool, 3>)>("lenet_ext::linear_backward");
  const auto x = torch::randn({m, in}).requires_grad_();
  const auto weight = torch::randn({out, in}).requires_grad_();
  const auto bias = torch::randn({out}).requires_grad_();
  const std::string tag = "linear " + std::to_string(in) + "->" + std::to_string(out) + (sigmoid ? " +sigmoid" : "");
  at::Tensor y;
  {
    torch::NoGradGuard no_grad;
    y = fwd.call(x, weight, bias, sigmoid);
  }
  auto ref = torch::linear(x, weight, bias);
  if (sigmoid) ref = torch::sigmoid(ref);
  check(tag + " forward", y, ref.detach());
  const auto g = torch::randn_like(ref);
  const auto expected = torch::autograd::grad({ref}, {x, weight, bias}, {g});
  const auto [gx, gw, gb] = bwd.call(g, y, x.detach(), weight.detach(), sigmoid, {true, true, true});
  check(tag + " grad input", gx, expected[0]);
  check(tag + " grad weight", gw, expected[1]);
  check(tag + " grad bias", gb, expected[2]);
}

void test_bad_input() {
  auto fwd = op<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&, int64_t, int64_t)>(
      "lenet_ext::conv2d_sigmoid");
  try {
    fwd.call(torch::randn({2, 3, 8, 8}), torch::randn({4, 2, 3, 3}), std::nullopt, 1, 0);
    std::printf("FAIL channel mismatch was accepted\n");
    ++failed;
  } catch (const c10::ValueError& e) {
    std::printf("PASS channel mismatch raises ValueError\n");
    ++passed;
  }
}

}  // namespace

int main() {
  torch::manual_seed(static_cast<uint64_t>(std::random_device{}()));
  test_conv(4, 1, 28, 28, 6, 5, 1, 2);
  test_conv(8, 6, 14, 14, 16, 5, 1, 0);
  test_conv(3, 16, 5, 5, 120, 5, 1, 0);
  test_conv(5, 3, 11, 9, 4, 3, 2, 1);
  test_pool(4, 6, 28, 28, 2, 2);
  test_pool(3, 2, 11, 9, 3, 2);
  test_linear(16, 120, 84, true);
  test_linear(7, 84, 10, false);
  test_bad_input();
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
