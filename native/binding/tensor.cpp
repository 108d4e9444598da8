// Tensor handles and everything that is not an ATen operator: creation from/to bytes, metadata,
// autograd entry points, grad/inference modes, RNG seed, memory accounting.
#include "tensor.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <c10/core/InferenceMode.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <unordered_set>
#include <vector>

#include "errors.h"

namespace llmrl::binding {
namespace {

// Private tag: a handle is ours only if it carries this (napi_type_tag_object on the External).
constexpr napi_type_tag kTensorTag = {0x6c6c6d726c54656eULL, 0x736f7248616e646cULL};

thread_local TensorBox* live_head = nullptr;
thread_local int64_t live_count = 0;

void link(TensorBox* b) {
  b->next = live_head;
  if (live_head) live_head->prev = b;
  live_head = b;
  ++live_count;
}

void unlink(TensorBox* b) {
  if (b->prev) b->prev->next = b->next; else live_head = b->next;
  if (b->next) b->next->prev = b->prev;
  b->prev = b->next = nullptr;
  --live_count;
}

void release(Napi::Env env, TensorBox* b) {
  if (b->disposed) return;
  b->disposed = true;
  b->tensor.reset();
  if (b->external_bytes) Napi::MemoryManagement::AdjustExternalMemory(env, -b->external_bytes);
  b->external_bytes = 0;
  unlink(b);
}

TensorBox* box_of(Napi::Env env, const Napi::Value& v) {
  if (!v.IsExternal()) return nullptr;
  bool ok = false;
  if (napi_check_object_type_tag(env, v, &kTensorTag, &ok) != napi_ok || !ok) return nullptr;
  return v.As<Napi::External<TensorBox>>().Data();
}

}  // namespace

std::string describe(const Napi::Value& v) {
  switch (v.Type()) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return "a boolean";
    case napi_number: return "a number";
    case napi_string: return "a string";
    case napi_bigint: return "a bigint";
    case napi_function: return "a function";
    case napi_external: return "a native handle that is not a tensor";
    default: return v.IsArray() ? "an array" : "an object";
  }
}

Napi::Value wrap(Napi::Env env, at::Tensor tensor) {
  if (!tensor.defined()) return env.Null();
  auto* b = new TensorBox();
  b->tensor = std::move(tensor);
  if (b->tensor.device().is_cpu()) {
    b->external_bytes = static_cast<int64_t>(b->tensor.nbytes());
    if (b->external_bytes) Napi::MemoryManagement::AdjustExternalMemory(env, b->external_bytes);
  }
  link(b);
  auto ext = Napi::External<TensorBox>::New(env, b, [](Napi::Env env, TensorBox* box) {
    release(env, box);
    delete box;
  });
  napi_type_tag_object(env, ext, &kTensorTag);
  return ext;
}

bool is_tensor(Napi::Env env, const Napi::Value& v) { return box_of(env, v) != nullptr; }

const at::Tensor& unwrap(Napi::Env env, const Napi::Value& v, const char* op, const char* arg) {
  TensorBox* b = box_of(env, v);
  if (!b) throw type_error(env, std::string(op) + ": argument '" + arg + "' must be a Tensor, got " + describe(v));
  if (b->disposed)
    throw Napi::Error::New(env, std::string(op) + ": argument '" + arg +
                                    "' is a disposed tensor (it was freed by dispose() or tidy(); keep() it or "
                                    "return it from tidy() to use it later)");
  return b->tensor;
}

namespace {

std::vector<int64_t> int_list(Napi::Env env, const Napi::Value& v, const char* op, const char* arg) {
  if (!v.IsArray()) throw type_error(env, std::string(op) + ": '" + arg + "' must be an array of integers, got " + describe(v));
  auto a = v.As<Napi::Array>();
  std::vector<int64_t> out(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value e = a.Get(i);
    if (!e.IsNumber()) throw type_error(env, std::string(op) + ": '" + arg + "' must be an array of integers, got " + describe(e) + " at index " + std::to_string(i));
    out[i] = e.As<Napi::Number>().Int64Value();
  }
  return out;
}

// fromBuffer(data: ArrayBuffer | ArrayBufferView, shape: number[], dtype: number, device?: string)
// Copies raw bytes (native endianness, the dtype's own layout) into a new tensor.
Napi::Value FromBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, "tensor", [&]() -> Napi::Value {
    const uint8_t* data = nullptr;
    size_t len = 0;
    if (info[0].IsArrayBuffer()) {
      auto ab = info[0].As<Napi::ArrayBuffer>();
      data = static_cast<const uint8_t*>(ab.Data());
      len = ab.ByteLength();
    } else if (info[0].IsTypedArray()) {
      auto ta = info[0].As<Napi::TypedArray>();
      data = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
      len = ta.ByteLength();
    } else if (info[0].IsDataView()) {
      auto dv = info[0].As<Napi::DataView>();
      data = static_cast<const uint8_t*>(dv.ArrayBuffer().Data()) + dv.ByteOffset();
      len = dv.ByteLength();
    } else {
      throw type_error(env, "tensor: 'data' must be an ArrayBuffer or a TypedArray, got " + describe(info[0]));
    }
    std::vector<int64_t> shape = int_list(env, info[1], "tensor", "shape");
    auto dtype = static_cast<at::ScalarType>(info[2].As<Napi::Number>().Int32Value());
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dtype));
    if (t.nbytes() != len)
      throw Napi::RangeError::New(env, "tensor: data has " + std::to_string(len) + " bytes but shape " +
                                           c10::str(t.sizes()) + " of " + c10::toString(dtype) + " needs " +
                                           std::to_string(t.nbytes()));
    if (len) std::memcpy(t.data_ptr(), data, len);
    if (info.Length() > 3 && info[3].IsString()) t = t.to(at::Device(info[3].As<Napi::String>().Utf8Value()));
    return wrap(env, std::move(t));
  });
}

// toBuffer(t) → ArrayBuffer with the raw bytes of a contiguous CPU copy.
Napi::Value ToBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, "toTypedArray", [&]() -> Napi::Value {
    at::Tensor t = unwrap(env, info[0], "toTypedArray", "self");
    t = t.detach().to(at::kCPU).contiguous();
    auto ab = Napi::ArrayBuffer::New(env, t.nbytes());
    if (t.nbytes()) std::memcpy(ab.Data(), t.const_data_ptr(), t.nbytes());
    return ab;
  });
}

Napi::Value Item(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, "item", [&]() -> Napi::Value {
    const at::Tensor& t = unwrap(env, info[0], "item", "self");
    TORCH_CHECK(t.numel() == 1, "a Tensor with ", t.numel(), " elements cannot be converted to a number (shape ",
                t.sizes(), "); use toArray()");
    at::Scalar s = t.item();
    if (s.isBoolean()) return Napi::Boolean::New(env, s.toBool());
    if (s.isIntegral(false)) return Napi::Number::New(env, static_cast<double>(s.toLong()));
    return Napi::Number::New(env, s.toDouble());
  });
}

Napi::Value Shape(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const at::Tensor& t = unwrap(env, info[0], "shape", "self");
  auto a = Napi::Array::New(env, t.dim());
  for (int64_t i = 0; i < t.dim(); ++i) a.Set(uint32_t(i), Napi::Number::New(env, double(t.size(i))));
  return a;
}

Napi::Value Dtype(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), int(unwrap(info.Env(), info[0], "dtype", "self").scalar_type()));
}

Napi::Value DeviceOf(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), unwrap(info.Env(), info[0], "device", "self").device().str());
}

Napi::Value RequiresGrad(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), unwrap(info.Env(), info[0], "requiresGrad", "self").requires_grad());
}

Napi::Value SetRequiresGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, "requiresGrad", [&]() -> Napi::Value {
    at::Tensor t = unwrap(env, info[0], "requiresGrad", "self");
    t.set_requires_grad(info[1].ToBoolean());
    return env.Undefined();
  });
}

Napi::Value IsLeaf(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), unwrap(info.Env(), info[0], "isLeaf", "self").is_leaf());
}

Napi::Value Grad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, "grad", [&]() -> Napi::Value { return wrap(env, unwrap(env, info[0], "grad", "self").grad()); });
}

Napi::Value SetGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, "grad", [&]() -> Napi::Value {
    at::Tensor t = unwrap(env, info[0], "grad", "self");
    if (info[1].IsNull() || info[1].IsUndefined()) t.mutable_grad().reset();
    else t.mutable_grad() = unwrap(env, info[1], "grad", "value");
    return env.Undefined();
  });
}

// backward(t, gradient | null, retainGraph, createGraph)
Napi::Value Backward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, "backward", [&]() -> Napi::Value {
    const at::Tensor& t = unwrap(env, info[0], "backward", "self");
    at::Tensor g;
    if (!info[1].IsNull() && !info[1].IsUndefined()) g = unwrap(env, info[1], "backward", "gradient");
    const bool retain = info[2].ToBoolean(), create = info[3].ToBoolean();
    t.backward(g, retain, create);
    return env.Undefined();
  });
}

Napi::Value Dispose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorBox* b = box_of(env, info[0]);
  if (!b) throw type_error(env, "dispose: argument must be a Tensor, got " + describe(info[0]));
  release(env, b);
  return env.Undefined();
}

Napi::Value IsDisposed(const Napi::CallbackInfo& info) {
  TensorBox* b = box_of(info.Env(), info[0]);
  return Napi::Boolean::New(info.Env(), !b || b->disposed);
}

Napi::Value IsTensor(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), is_tensor(info.Env(), info[0]));
}

// memory() → { liveTensors, bytes: { cpu, cuda? } }; bytes count each storage once (views share).
Napi::Value Memory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::unordered_set<const void*> seen;
  double cpu = 0, cuda = 0;
  bool any_cuda = false;
  for (TensorBox* b = live_head; b; b = b->next) {
    if (!b->tensor.defined() || !b->tensor.has_storage()) continue;
    const auto& st = b->tensor.storage();
    if (!seen.insert(st.unsafeGetStorageImpl()).second) continue;
    if (b->tensor.device().is_cuda()) { cuda += double(st.nbytes()); any_cuda = true; }
    else cpu += double(st.nbytes());
  }
  auto bytes = Napi::Object::New(env);
  bytes.Set("cpu", cpu);
  if (any_cuda || at::hasCUDA()) bytes.Set("cuda", cuda);
  auto out = Napi::Object::New(env);
  out.Set("liveTensors", double(live_count));
  out.Set("bytes", bytes);
  return out;
}

Napi::Value SetGradEnabled(const Napi::CallbackInfo& info) {
  const bool prev = c10::GradMode::is_enabled();
  c10::GradMode::set_enabled(info[0].ToBoolean());
  return Napi::Boolean::New(info.Env(), prev);
}

Napi::Value IsGradEnabled(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), c10::GradMode::is_enabled());
}

// Inference mode spans several JS calls, so the RAII guard lives on a per-thread stack.
thread_local std::vector<std::unique_ptr<c10::InferenceMode>> inference_guards;

Napi::Value EnterInferenceMode(const Napi::CallbackInfo& info) {
  inference_guards.push_back(std::make_unique<c10::InferenceMode>(true));
  return Napi::Number::New(info.Env(), double(inference_guards.size()));
}

Napi::Value ExitInferenceMode(const Napi::CallbackInfo& info) {
  if (!inference_guards.empty()) inference_guards.pop_back();
  return info.Env().Undefined();
}

Napi::Value IsInferenceMode(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), c10::InferenceMode::is_enabled());
}

Napi::Value ManualSeed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, "manualSeed", [&]() -> Napi::Value {
    bool lossless = false;
    uint64_t seed = info[0].IsBigInt() ? info[0].As<Napi::BigInt>().Uint64Value(&lossless)
                                       : uint64_t(info[0].As<Napi::Number>().Int64Value());
    at::manual_seed(seed);
    return env.Undefined();
  });
}

// getRngState() → uint8 tensor of the default CPU generator's state; setRngState(t) restores it
// (checkpoints resume with the same random stream).
Napi::Value GetRngState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, "getRngState", [&]() -> Napi::Value {
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    return wrap(env, gen.get_state());
  });
}

Napi::Value SetRngState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, "setRngState", [&]() -> Napi::Value {
    const at::Tensor& state = unwrap(env, info[0], "setRngState", "state");
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state);
    return env.Undefined();
  });
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  at::set_num_threads(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

Napi::Value GetNumThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), at::get_num_threads());
}

}  // namespace

void init_tensor(Napi::Env env, Napi::Object exports) {
  auto fn = [&](const char* name, Napi::Function::Callback cb) { exports.Set(name, Napi::Function::New(env, cb, name)); };
  fn("fromBuffer", FromBuffer);
  fn("toBuffer", ToBuffer);
  fn("item", Item);
  fn("shape", Shape);
  fn("dtype", Dtype);
  fn("device", DeviceOf);
  fn("requiresGrad", RequiresGrad);
  fn("setRequiresGrad", SetRequiresGrad);
  fn("isLeaf", IsLeaf);
  fn("grad", Grad);
  fn("setGrad", SetGrad);
  fn("backward", Backward);
  fn("dispose", Dispose);
  fn("isDisposed", IsDisposed);
  fn("isTensor", IsTensor);
  fn("memory", Memory);
  fn("setGradEnabled", SetGradEnabled);
  fn("isGradEnabled", IsGradEnabled);
  fn("enterInferenceMode", EnterInferenceMode);
  fn("exitInferenceMode", ExitInferenceMode);
  fn("isInferenceMode", IsInferenceMode);
  fn("manualSeed", ManualSeed);
  fn("getRngState", GetRngState);
  fn("setRngState", SetRngState);
  fn("setNumThreads", SetNumThreads);
  fn("getNumThreads", GetNumThreads);

  auto dtypes = Napi::Object::New(env);
  dtypes.Set("float32", int(at::kFloat));
  dtypes.Set("float64", int(at::kDouble));
  dtypes.Set("bfloat16", int(at::kBFloat16));
  dtypes.Set("float16", int(at::kHalf));
  dtypes.Set("int64", int(at::kLong));
  dtypes.Set("int32", int(at::kInt));
  dtypes.Set("bool", int(at::kBool));
  dtypes.Set("uint8", int(at::kByte));
  dtypes.Set("int8", int(at::kChar));
  dtypes.Set("int16", int(at::kShort));
  exports.Set("dtypes", dtypes);
}

}  // namespace llmrl::binding
