// Counting CPU allocator: wraps libtorch's default CPU allocator (keeping its alignment and huge-page
// behaviour) to track current and peak bytes, so benchmarks and tests can measure an op's peak extra
// memory exactly (RSS is too coarse). Installed once at addon load with a priority above the default.
#include <c10/core/CPUAllocator.h>

#include <atomic>
#include <cstring>

#include "tensor.h"

namespace llmrl::binding {
namespace {

// Each block is allocated with a 64-byte header in front (keeping libtorch's 64-byte alignment) that
// records its size, so the returned DataPtr can keep context == data (libtorch's raw_allocate, used
// by oneDNN paths, asserts that) and the deleter still knows how many bytes it frees.
class CountingAllocator final : public c10::Allocator {
 public:
  explicit CountingAllocator(c10::Allocator* base) : base_(base), base_deleter_(base->raw_deleter()) {}

  c10::DataPtr allocate(size_t n) override {
    TORCH_CHECK(base_deleter_ != nullptr, "llmrl: the default CPU allocator has no raw deleter");
    void* raw = base_->raw_allocate(n + kHeader);
    auto* header = static_cast<Header*>(raw);
    header->bytes = n;
    header->owner = this;
    void* data = static_cast<char*>(raw) + kHeader;
    const int64_t cur = current_.fetch_add(int64_t(n)) + int64_t(n);
    int64_t p = peak_.load();
    while (cur > p && !peak_.compare_exchange_weak(p, cur)) {}
    return c10::DataPtr(data, data, &CountingAllocator::release, c10::Device(c10::DeviceType::CPU));
  }

  c10::DeleterFnPtr raw_deleter() const override { return &CountingAllocator::release; }
  void copy_data(void* dest, const void* src, std::size_t count) const override { std::memcpy(dest, src, count); }

  int64_t current() const { return current_.load(); }
  int64_t peak() const { return peak_.load(); }
  void reset_peak() { peak_.store(current_.load()); }

 private:
  struct Header {
    size_t bytes;
    CountingAllocator* owner;
  };
  static constexpr size_t kHeader = 64;
  static_assert(sizeof(Header) <= kHeader);

  static void release(void* data) {
    if (!data) return;
    void* raw = static_cast<char*>(data) - kHeader;
    auto* header = static_cast<Header*>(raw);
    CountingAllocator* self = header->owner;
    self->current_.fetch_sub(int64_t(header->bytes));
    self->base_deleter_(raw);
  }

  c10::Allocator* base_;
  c10::DeleterFnPtr base_deleter_;
  std::atomic<int64_t> current_{0};
  std::atomic<int64_t> peak_{0};
};

CountingAllocator* counting() {
  // Never destroyed: tensors may outlive static destruction at process exit.
  static auto* alloc = [] {
    auto* a = new CountingAllocator(c10::GetCPUAllocator());
    c10::SetCPUAllocator(a, /*priority=*/1);
    return a;
  }();
  return alloc;
}

// memoryStats() → { cpu: { current, peak } } bytes allocated through libtorch's CPU allocator.
Napi::Value MemoryStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto cpu = Napi::Object::New(env);
  cpu.Set("current", double(counting()->current()));
  cpu.Set("peak", double(counting()->peak()));
  auto out = Napi::Object::New(env);
  out.Set("cpu", cpu);
  return out;
}

Napi::Value ResetPeakMemory(const Napi::CallbackInfo& info) {
  counting()->reset_peak();
  return info.Env().Undefined();
}

}  // namespace

void init_allocator(Napi::Env env, Napi::Object exports) {
  counting();
  exports.Set("memoryStats", Napi::Function::New(env, MemoryStats, "memoryStats"));
  exports.Set("resetPeakMemory", Napi::Function::New(env, ResetPeakMemory, "resetPeakMemory"));
}

}  // namespace llmrl::binding
