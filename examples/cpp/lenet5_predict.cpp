// lenet5_predict: LeNet-5 on our kernels from C++, without Python.
//
//   lenet5_predict MODEL.pt2 DIGITS [--logits] [--repeat N]
//
// MODEL.pt2 is the AOTInductor package that `python -m lenet_ext.export --format aoti` writes: the
// model compiled ahead of time, whose graph calls our op lenet_ext::lenet5_forward through the
// dispatcher. This program links the op library (lenet_ext_ops, built by the CMake project): its
// static registrations put the op there before the package is loaded.
//
// DIGITS: a 28 x 28 PNG (8-bit grey, or RGB/RGBA turned grey as PIL's "L" does, alpha ignored),
// white digit on black as in MNIST; or an IDX file of 28 x 28 digits (MNIST's own format, .gz or
// not). The pixels are normalized as in training: (p / 255 - 0.1307) / 0.3081.
//
// Prints one line per digit (its index, the predicted class and its probability; with --logits,
// the ten logits too, each as printf's %.9g, which reads back to the same float), then the
// latency of one batch-1 call: the median of --repeat calls (default 200) after 20 warm-up calls.
// Any failure is one line, `error: ...`, and exit status 1 (2 for bad arguments).
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/torch.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

constexpr int kSide = 28;
constexpr float kMean = 0.1307f, kStd = 0.3081f;

struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Failure(path + ": cannot open it (no such file, or not readable)");
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// The whole of a gzip file (zlib reads plain files through the same call).
std::vector<uint8_t> read_maybe_gzip(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw Failure(path + ": cannot open it (no such file, or not readable)");
  std::vector<uint8_t> out;
  uint8_t buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) out.insert(out.end(), buf, buf + n);
  const bool bad = n < 0;
  gzclose(f);
  if (bad) throw Failure(path + ": not a readable gzip file");
  return out;
}

uint32_t big_endian(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

// MNIST's IDX image format: magic 0x00000803, count, rows, columns, then the pixels.
std::vector<uint8_t> read_idx(const std::string& path, int64_t& count) {
  const std::vector<uint8_t> bytes = read_maybe_gzip(path);
  if (bytes.size() < 16 || big_endian(bytes.data()) != 0x803)
    throw Failure(path + ": not an IDX file of images (magic 0x00000803)");
  count = big_endian(bytes.data() + 4);
  const uint32_t rows = big_endian(bytes.data() + 8), cols = big_endian(bytes.data() + 12);
  if (rows != kSide || cols != kSide)
    throw Failure(path + ": holds " + std::to_string(rows) + "x" + std::to_string(cols) +
                  " images; expected 28x28 (MNIST-style)");
  if (count == 0) throw Failure(path + ": holds no images");
  if (bytes.size() - 16 < uint64_t(count) * kSide * kSide)
    throw Failure(path + ": truncated (" + std::to_string(count) + " images announced)");
  return std::vector<uint8_t>(bytes.begin() + 16, bytes.begin() + 16 + count * kSide * kSide);
}

// A PNG of 28 x 28 pixels, 8 bits per channel, not interlaced: its grey values.
std::vector<uint8_t> read_png(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file(path);
  static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (bytes.size() < 8 || std::memcmp(bytes.data(), signature, 8) != 0) throw Failure(path + ": not a PNG file");
  uint32_t width = 0, height = 0;
  int depth = 0, colour = -1, interlace = 0;
  std::vector<uint8_t> packed;
  for (size_t at = 8; at + 12 <= bytes.size();) {
    const uint32_t length = big_endian(&bytes[at]);
    if (length > bytes.size() - at - 12) throw Failure(path + ": a truncated PNG");
    const std::string type(reinterpret_cast<const char*>(&bytes[at + 4]), 4);
    const uint8_t* data = &bytes[at + 8];
    if (type == "IHDR" && length >= 13) {
      width = big_endian(data), height = big_endian(data + 4);
      depth = data[8], colour = data[9], interlace = data[12];
    } else if (type == "IDAT") {
      packed.insert(packed.end(), data, data + length);
    } else if (type == "IEND") {
      break;
    }
    at += 12 + length;
  }
  if (width != kSide || height != kSide)
    throw Failure(path + ": " + std::to_string(width) + "x" + std::to_string(height) +
                  " pixels; expected 28x28, white on black (python -m lenet_ext.predict prepares other images)");
  const int channels = colour == 0 ? 1 : colour == 2 ? 3 : colour == 4 ? 2 : colour == 6 ? 4 : 0;
  if (depth != 8 || channels == 0 || interlace != 0)
    throw Failure(path + ": a PNG this reader does not take (8-bit grey, grey+alpha, RGB or RGBA, not interlaced)");
  const size_t stride = size_t(width) * channels;
  std::vector<uint8_t> raw((stride + 1) * height);
  uLongf raw_size = raw.size();
  if (uncompress(raw.data(), &raw_size, packed.data(), packed.size()) != Z_OK || raw_size != raw.size())
    throw Failure(path + ": its image data does not decompress");
  // Undo each row's filter (PNG: none, sub, up, average, Paeth), in place.
  std::vector<uint8_t> pixels(stride * height), zero(stride, 0);
  for (uint32_t y = 0; y < height; ++y) {
    const uint8_t filter = raw[y * (stride + 1)];
    const uint8_t* in = &raw[y * (stride + 1) + 1];
    uint8_t* out = &pixels[y * stride];
    const uint8_t* up = y ? &pixels[(y - 1) * stride] : zero.data();
    for (size_t i = 0; i < stride; ++i) {
      const int a = i >= size_t(channels) ? out[i - channels] : 0, b = up[i],
                c = i >= size_t(channels) ? up[i - channels] : 0;
      int p;
      switch (filter) {
        case 0:
          p = 0;
          break;
        case 1:
          p = a;
          break;
        case 2:
          p = b;
          break;
        case 3:
          p = (a + b) / 2;
          break;
        case 4: {
          const int pa = std::abs(b - c), pb = std::abs(a - c), pc = std::abs(a + b - 2 * c);
          p = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
          break;
        }
        default:
          throw Failure(path + ": a PNG row with an unknown filter");
      }
      out[i] = uint8_t(in[i] + p);
    }
  }
  std::vector<uint8_t> grey(size_t(width) * height);
  for (size_t i = 0; i < grey.size(); ++i) {
    const uint8_t* p = &pixels[i * channels];
    // PIL's RGB -> L: ITU-R 601-2 luma (0.299 R + 0.587 G + 0.114 B) in its 16-bit fixed point.
    grey[i] = channels >= 3 ? uint8_t((p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16) : p[0];
  }
  return grey;
}

// uint8 digits -> normalized float32 (N, 1, 28, 28), the arithmetic of lenet_ext.data.to_tensor.
at::Tensor normalized(const std::vector<uint8_t>& pixels, int64_t count) {
  at::Tensor x = torch::empty({count, 1, kSide, kSide}, torch::kFloat32);
  float* p = x.data_ptr<float>();
  for (size_t i = 0; i < pixels.size(); ++i) p[i] = (float(pixels[i]) / 255.0f - kMean) / kStd;
  return x;
}

int usage(const char* message) {
  std::fprintf(stderr, "usage: lenet5_predict MODEL.pt2 DIGITS.png|DIGITS-idx3-ubyte[.gz] [--logits] [--repeat N]\n");
  std::fprintf(stderr, "lenet5_predict: error: %s\n", message);
  return 2;
}

std::string first_line(const std::string& text) {
  const std::string line = text.substr(0, text.find('\n'));
  return line.size() > 300 ? line.substr(0, 300) + "..." : line;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> positional;
  bool print_logits = false;
  int repeat = 200;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--logits") {
      print_logits = true;
    } else if (arg == "--repeat") {
      if (i + 1 >= argc) return usage("--repeat needs a number");
      try {
        repeat = std::stoi(argv[++i]);
      } catch (const std::exception&) {
        return usage("--repeat needs a number");
      }
      if (repeat < 1) return usage("--repeat must be >= 1");
    } else if (arg == "-h" || arg == "--help") {
      std::printf("usage: lenet5_predict MODEL.pt2 DIGITS.png|DIGITS-idx3-ubyte[.gz] [--logits] [--repeat N]\n");
      return 0;
    } else if (!arg.empty() && arg[0] == '-') {
      return usage(("unknown option " + arg).c_str());
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.size() != 2) return usage("give the model package and the digits");
  const std::string& model_path = positional[0];
  const std::string& digits_path = positional[1];
  try {
    int64_t count = 1;
    const std::vector<uint8_t> pixels = ends_with(digits_path, ".png") || ends_with(digits_path, ".PNG")
                                            ? read_png(digits_path)
                                            : read_idx(digits_path, count);
    const at::Tensor images = normalized(pixels, count);

    if (!std::ifstream(model_path)) throw Failure(model_path + ": cannot open it (no such file, or not readable)");
    std::unique_ptr<torch::inductor::AOTIModelPackageLoader> model;
    try {
      model = std::make_unique<torch::inductor::AOTIModelPackageLoader>(model_path);
    } catch (const std::exception& e) {
      throw Failure(model_path + ": not an AOTInductor package of the model (" + first_line(e.what()) +
                    "); write one with python -m lenet_ext.export --format aoti");
    }
    c10::InferenceMode inference;
    std::vector<at::Tensor> out;
    try {
      out = model->run({images});
    } catch (const std::exception& e) {
      throw Failure(model_path + ": the model failed on " + digits_path + " (" + first_line(e.what()) + ")");
    }
    if (out.size() != 1 || out[0].dim() != 2 || out[0].size(0) != count)
      throw Failure(model_path + ": the package's output is not (N, classes) logits");
    const at::Tensor logits = out[0].contiguous();
    const at::Tensor probs = torch::softmax(logits.to(torch::kFloat64), 1);
    const int64_t classes = logits.size(1);
    for (int64_t n = 0; n < count; ++n) {
      const double* p = probs[n].data_ptr<double>();
      const int64_t best = std::max_element(p, p + classes) - p;
      std::printf("%lld: %lld (p=%.4f)", static_cast<long long>(n), static_cast<long long>(best), p[best]);
      if (print_logits) {
        const float* l = logits[n].data_ptr<float>();
        std::printf(" logits");
        for (int64_t c = 0; c < classes; ++c) std::printf(" %.9g", l[c]);
      }
      std::printf("\n");
    }

    // Batch-1 latency: the first digit, alone, through the package.
    const std::vector<at::Tensor> one{images.slice(0, 0, 1).contiguous()};
    for (int i = 0; i < 20; ++i) model->run(one);
    std::vector<double> us(repeat);
    for (int i = 0; i < repeat; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      model->run(one);
      us[i] = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    }
    std::nth_element(us.begin(), us.begin() + repeat / 2, us.end());
    std::printf("batch-1 latency: %.1f us (median of %d calls, %d threads)\n", us[repeat / 2], repeat,
                at::get_num_threads());
    return 0;
  } catch (const Failure& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", first_line(e.what()).c_str());
  }
  return 1;
}
