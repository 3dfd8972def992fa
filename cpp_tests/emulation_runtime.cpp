// The emulator's runtime (see emulation.h): fibers for a block's threads, the barrier and its
// checks, each block's shared memory, and the shared-memory checks, fed by the hooks that
// -fsanitize=thread instrumentation calls on every load and store of the instrumented code
// (cuda_emulation.cpp). This file is compiled without that instrumentation and is torch-free;
// tests/test_cuda_emulated.py builds it and links it into the emulator module.
#include <ucontext.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "emulation.h"

dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace emulation {
namespace {

struct Fiber {
  ucontext_t context;
  std::vector<char> stack;
  bool done = true;
  const char* file = nullptr;  // where it waits (nullptr: running or done)
  int line = 0;
};

std::vector<Fiber> fibers;
ucontext_t scheduler;
unsigned int current = 0;
const std::function<void()>* body = nullptr;
bool in_block = false;

Order order = Order::index;
uint64_t order_seed = 0;

// Shared memory: one arena per block, sites given offsets in the order they are first reached.
constexpr size_t kArena = 256 * 1024;
alignas(64) unsigned char arena[kArena];
size_t arena_used = 0;
std::vector<std::pair<const void*, size_t>> sites;

// Shadow state of each arena byte. Intervals (the stretches between two barriers) are numbered
// across all blocks, so a byte's state from an earlier block is simply old.
struct Shadow {
  int64_t write_interval = -1;
  int64_t read_interval = -1;
  int32_t writer = -1;
  int32_t reader = -1;
  bool several_readers = false;
};
std::vector<Shadow> shadow(kArena);
int64_t interval = 0;        // the current interval
int64_t block_interval = 0;  // the block's first interval
bool check_races = true, check_uninitialised = true;
std::string problem;  // the first broken rule of the block

std::string where() {
  return "block (" + std::to_string(blockIdx.x) + ", " + std::to_string(blockIdx.y) + ", " +
         std::to_string(blockIdx.z) + ")";
}

void report(const std::string& message) {
  if (problem.empty()) problem = message + " in " + where();
}

void trampoline() {
  (*body)();
  fibers[current].done = true;  // returning resumes the scheduler (uc_link)
}

// Checks a load or store of [p, p + n) by the current thread against shared memory's rules.
inline void access(const void* p, size_t n, bool write) {
  const auto* b = static_cast<const unsigned char*>(p);
  if (!in_block || b + n <= arena || b >= arena + arena_used) return;
  const size_t lo = std::max<ptrdiff_t>(b - arena, 0), hi = std::min<size_t>(b + n - arena, arena_used);
  const int32_t t = static_cast<int32_t>(current);
  for (size_t i = lo; i < hi; ++i) {
    Shadow& s = shadow[i];
    const bool written_now = s.write_interval == interval, read_now = s.read_interval == interval;
    if (check_races) {
      if (written_now && s.writer != t)
        report("shared-memory race: thread " + std::to_string(t) + (write ? " writes" : " reads") + " byte " +
               std::to_string(i) + " that thread " + std::to_string(s.writer) + " wrote since the last barrier");
      else if (write && read_now && (s.reader != t || s.several_readers))
        report("shared-memory race: thread " + std::to_string(t) + " writes byte " + std::to_string(i) + " that " +
               (s.reader == t ? std::string("another thread") : "thread " + std::to_string(s.reader)) +
               " read since the last barrier");
    }
    if (write) {
      s.write_interval = interval;
      s.writer = t;
    } else {
      if (check_uninitialised && s.write_interval < block_interval)
        report("uninitialised shared read: thread " + std::to_string(t) + " reads byte " + std::to_string(i) +
               " that no thread of the block has written");
      if (!read_now) {
        s.read_interval = interval;
        s.reader = t;
        s.several_readers = false;
      } else if (s.reader != t) {
        s.several_readers = true;
      }
    }
  }
}

std::vector<unsigned int> round_order(unsigned int threads, int64_t round) {
  std::vector<unsigned int> ids(threads);
  std::iota(ids.begin(), ids.end(), 0u);
  if (order == Order::reversed) std::reverse(ids.begin(), ids.end());
  if (order == Order::shuffled) {
    std::mt19937_64 rng(order_seed * 1000003u + static_cast<uint64_t>(round));
    std::shuffle(ids.begin(), ids.end(), rng);
  }
  return ids;
}

}  // namespace

void set_thread_order(Order o, uint64_t seed) {
  order = o;
  order_seed = seed;
}

void set_shared_checks(bool races, bool uninitialised) {
  check_races = races;
  check_uninitialised = uninitialised;
}

void* shared_memory(const void* site, size_t bytes, size_t align) {
  for (const auto& [s, offset] : sites)
    if (s == site) return arena + offset;
  const size_t offset = (arena_used + align - 1) / align * align;
  if (offset + bytes > kArena) throw std::runtime_error("emulator: a block asks for more than 256 KB of shared memory");
  sites.emplace_back(site, offset);
  arena_used = offset + bytes;
  return arena + offset;
}

void barrier(const char* file, int line) {
  Fiber& f = fibers[current];
  f.file = file;
  f.line = line;
  swapcontext(&f.context, &scheduler);
}

void run_block(unsigned int threads, const std::function<void()>& kernel) {
  constexpr size_t kStack = 256 * 1024;
  if (fibers.size() < threads) fibers.resize(threads);
  body = &kernel;
  // Fresh shared memory: every byte 0xFF (NaN as float or double), nothing written yet.
  std::memset(arena, 0xFF, kArena);
  arena_used = 0;
  sites.clear();
  problem.clear();
  block_interval = ++interval;
  for (unsigned int t = 0; t < threads; ++t) {
    Fiber& f = fibers[t];
    if (f.stack.empty()) f.stack.resize(kStack);
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = f.stack.data();
    f.context.uc_stack.ss_size = f.stack.size();
    f.context.uc_link = &scheduler;
    makecontext(&f.context, trampoline, 0);
    f.done = false;
    f.file = nullptr;
  }
  in_block = true;
  // Each round runs every unfinished thread up to its next barrier (or its end), in the order set.
  for (int64_t round = 0;; ++round) {
    bool running = false;
    for (unsigned int t : round_order(threads, round)) {
      Fiber& f = fibers[t];
      if (f.done) continue;
      current = t;
      threadIdx = dim3(t);
      f.file = nullptr;
      swapcontext(&scheduler, &f.context);
      running = running || !f.done;
    }
    // Every thread that has not returned waits at one barrier, the same for all, or none waits.
    const Fiber* waiting = nullptr;
    unsigned int returned = 0, first_returned = 0;
    for (unsigned int t = 0; t < threads; ++t) {
      const Fiber& f = fibers[t];
      if (f.done) {
        if (returned++ == 0) first_returned = t;
        continue;
      }
      if (waiting == nullptr) {
        waiting = &f;
      } else if (f.line != waiting->line || std::strcmp(f.file, waiting->file) != 0) {
        report("divergent __syncthreads: thread " + std::to_string(t) + " waits at " + f.file + ":" +
               std::to_string(f.line) + ", thread " + std::to_string(waiting - fibers.data()) + " at " + waiting->file +
               ":" + std::to_string(waiting->line));
        break;
      }
    }
    if (waiting != nullptr && returned > 0)
      report("__syncthreads not reached by every thread: thread " + std::to_string(first_returned) +
             " returned while thread " + std::to_string(waiting - fibers.data()) + " waits at " + waiting->file + ":" +
             std::to_string(waiting->line));
    if (!problem.empty()) break;
    ++interval;
    if (!running) break;
  }
  in_block = false;
  if (!problem.empty()) throw std::runtime_error("emulator: " + problem);
}

}  // namespace emulation

// The hooks of -fsanitize=thread instrumentation (GCC and Clang call these on every access the
// instrumented code makes), in place of libtsan: loads and stores are checked against shared
// memory's rules, atomics done as asked. Never instrumented themselves (this file is not).
extern "C" {
void __tsan_init() {}
void __tsan_func_entry(void*) {}
void __tsan_func_exit() {}
void __tsan_vptr_update(void**, void*) {}
void __tsan_vptr_read(void**) {}
void __tsan_read_range(void* p, unsigned long n) { emulation::access(p, n, false); }
void __tsan_write_range(void* p, unsigned long n) { emulation::access(p, n, true); }
#define LENET_EMU_ACCESS(n)                                                           \
  void __tsan_read##n(void* p) { emulation::access(p, n, false); }                    \
  void __tsan_write##n(void* p) { emulation::access(p, n, true); }                    \
  void __tsan_unaligned_read##n(void* p) { emulation::access(p, n, false); }          \
  void __tsan_unaligned_write##n(void* p) { emulation::access(p, n, true); }          \
  void __tsan_volatile_read##n(void* p) { emulation::access(p, n, false); }           \
  void __tsan_volatile_write##n(void* p) { emulation::access(p, n, true); }           \
  void __tsan_unaligned_volatile_read##n(void* p) { emulation::access(p, n, false); } \
  void __tsan_unaligned_volatile_write##n(void* p) { emulation::access(p, n, true); } \
  void __tsan_read##n##_pc(void* p, void*) { emulation::access(p, n, false); }        \
  void __tsan_write##n##_pc(void* p, void*) { emulation::access(p, n, true); }
LENET_EMU_ACCESS(1)
LENET_EMU_ACCESS(2)
LENET_EMU_ACCESS(4)
LENET_EMU_ACCESS(8)
LENET_EMU_ACCESS(16)
#undef LENET_EMU_ACCESS

// The instrumented code's atomics (torch's reference counts): done with the compiler's builtins.
// The memory-order argument uses TSan's numbering (0 relaxed .. 5 seq_cst); seq_cst for all is
// always correct.
#define LENET_EMU_ATOMIC(bits, type)                                                                            \
  type __tsan_atomic##bits##_load(const volatile type* p, int) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); } \
  void __tsan_atomic##bits##_store(volatile type* p, type v, int) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); } \
  type __tsan_atomic##bits##_exchange(volatile type* p, type v, int) {                                          \
    return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);                                                         \
  }                                                                                                             \
  type __tsan_atomic##bits##_fetch_add(volatile type* p, type v, int) {                                         \
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);                                                          \
  }                                                                                                             \
  type __tsan_atomic##bits##_fetch_sub(volatile type* p, type v, int) {                                         \
    return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST);                                                          \
  }                                                                                                             \
  type __tsan_atomic##bits##_fetch_and(volatile type* p, type v, int) {                                         \
    return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST);                                                          \
  }                                                                                                             \
  type __tsan_atomic##bits##_fetch_or(volatile type* p, type v, int) {                                          \
    return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST);                                                           \
  }                                                                                                             \
  type __tsan_atomic##bits##_fetch_xor(volatile type* p, type v, int) {                                         \
    return __atomic_fetch_xor(p, v, __ATOMIC_SEQ_CST);                                                          \
  }                                                                                                             \
  int __tsan_atomic##bits##_compare_exchange_strong(volatile type* p, type* expected, type v, int, int) {       \
    return __atomic_compare_exchange_n(p, expected, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);              \
  }                                                                                                             \
  int __tsan_atomic##bits##_compare_exchange_weak(volatile type* p, type* expected, type v, int, int) {         \
    return __atomic_compare_exchange_n(p, expected, v, true, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);               \
  }                                                                                                             \
  type __tsan_atomic##bits##_compare_exchange_val(volatile type* p, type expected, type v, int, int) {          \
    __atomic_compare_exchange_n(p, &expected, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                    \
    return expected;                                                                                            \
  }
LENET_EMU_ATOMIC(8, unsigned char)
LENET_EMU_ATOMIC(16, unsigned short)
LENET_EMU_ATOMIC(32, unsigned int)
LENET_EMU_ATOMIC(64, unsigned long long)
#undef LENET_EMU_ATOMIC
void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
void __tsan_atomic_signal_fence(int) { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
}
