// AddonTensor: the handle JS holds for one at::Tensor. It is a Napi::External tagged with a private
// type tag (cheaper to create than an ObjectWrap instance, and still checked on every unwrap).
// Lifetime: dispose() releases the tensor at once; GC finalisation is only the safety net.
// Live handles form a per-thread intrusive list so memory() can report live tensors and bytes.
#pragma once
#include <ATen/ATen.h>
#include <napi.h>

#include <string>

namespace llmrl::binding {

struct TensorBox {
  at::Tensor tensor;
  TensorBox* prev = nullptr;
  TensorBox* next = nullptr;
  int64_t external_bytes = 0;  // CPU bytes reported to V8 (never GPU bytes)
  bool disposed = false;
};

// Wraps a tensor into a new JS handle (undefined tensor → null).
Napi::Value wrap(Napi::Env env, at::Tensor tensor);

// Unwraps a handle; throws a TypeError naming `op` and `arg` for non-tensors and disposed tensors.
const at::Tensor& unwrap(Napi::Env env, const Napi::Value& v, const char* op, const char* arg);
bool is_tensor(Napi::Env env, const Napi::Value& v);
std::string describe(const Napi::Value& v);  // "a number", "undefined", … for error messages

void init_tensor(Napi::Env env, Napi::Object exports);
void init_ops(Napi::Env env, Napi::Object exports);
void init_optim(Napi::Env env, Napi::Object exports);
void init_allocator(Napi::Env env, Napi::Object exports);

}  // namespace llmrl::binding
