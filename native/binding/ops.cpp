// One generic entry point for every dispatcher operator — ATen's and llmrl's fused ops alike.
// opHandle("aten::add", "Tensor") resolves a schema once; call(handle, ...args) converts the JS
// arguments by the schema's argument types (missing trailing arguments take the schema defaults),
// calls the boxed kernel through the dispatcher (so autograd, CPU/CUDA dispatch and in-place/view
// semantics are libtorch's own), and converts the results back. Errors name the op and the argument.
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>

#include <deque>
#include <string>
#include <vector>

#include "errors.h"
#include "tensor.h"

namespace llmrl::binding {
namespace {

enum class Kind { Tensor, Int, Float, Bool, Scalar, Str, Device, Generator, IntList, FloatList, BoolList,
                  TensorList, OptTensorList, Unsupported };

struct ArgSpec {
  std::string name;
  Kind kind;
  bool optional;
  std::optional<c10::IValue> default_value;
};

struct OpEntry {
  c10::OperatorHandle handle;
  std::string name;  // "aten::add.Tensor"
  std::vector<ArgSpec> args;
  bool returns_written_self;  // in-place op: JS returns the receiver itself
};

std::deque<OpEntry> registry;  // deque: entries never move

Kind kind_of(const c10::TypePtr& type, bool* optional) {
  c10::TypePtr t = type;
  *optional = false;
  if (auto o = t->cast<c10::OptionalType>()) { *optional = true; t = o->getElementType(); }
  switch (t->kind()) {
    case c10::TypeKind::TensorType: return Kind::Tensor;
    case c10::TypeKind::IntType:
    case c10::TypeKind::SymIntType: return Kind::Int;  // also ScalarType/Layout/MemoryFormat codes
    case c10::TypeKind::FloatType:
    case c10::TypeKind::SymFloatType: return Kind::Float;
    case c10::TypeKind::BoolType:
    case c10::TypeKind::SymBoolType: return Kind::Bool;
    case c10::TypeKind::NumberType: return Kind::Scalar;
    case c10::TypeKind::StringType: return Kind::Str;
    case c10::TypeKind::DeviceObjType: return Kind::Device;
    case c10::TypeKind::GeneratorType: return Kind::Generator;
    case c10::TypeKind::ListType: {
      c10::TypePtr e = t->castRaw<c10::ListType>()->getElementType();
      if (auto o = e->cast<c10::OptionalType>()) {
        return o->getElementType()->kind() == c10::TypeKind::TensorType ? Kind::OptTensorList : Kind::Unsupported;
      }
      switch (e->kind()) {
        case c10::TypeKind::IntType:
        case c10::TypeKind::SymIntType: return Kind::IntList;
        case c10::TypeKind::FloatType: return Kind::FloatList;
        case c10::TypeKind::BoolType: return Kind::BoolList;
        case c10::TypeKind::TensorType: return Kind::TensorList;
        default: return Kind::Unsupported;
      }
    }
    default: return Kind::Unsupported;
  }
}

[[noreturn]] void bad_arg(Napi::Env env, const OpEntry& op, const ArgSpec& a, const std::string& expected,
                          const Napi::Value& v) {
  throw type_error(env, op.name + ": argument '" + a.name + "' must be " + expected + ", got " + describe(v));
}

int64_t to_int(Napi::Env env, const OpEntry& op, const ArgSpec& a, const Napi::Value& v) {
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (d != static_cast<double>(static_cast<int64_t>(d))) bad_arg(env, op, a, "an integer", v);
    return static_cast<int64_t>(d);
  }
  if (v.IsBigInt()) { bool lossless; return v.As<Napi::BigInt>().Int64Value(&lossless); }
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? 1 : 0;
  bad_arg(env, op, a, "an integer", v);
}

c10::IValue convert(Napi::Env env, const OpEntry& op, const ArgSpec& a, const Napi::Value& v) {
  if (v.IsUndefined() || v.IsNull()) {
    if (v.IsUndefined() && a.default_value) return *a.default_value;
    if (a.optional) return c10::IValue();
    if (a.default_value) return *a.default_value;
    throw type_error(env, op.name + ": missing argument '" + a.name + "'");
  }
  switch (a.kind) {
    case Kind::Tensor: return unwrap(env, v, op.name.c_str(), a.name.c_str());
    case Kind::Int: return to_int(env, op, a, v);
    case Kind::Float:
      if (!v.IsNumber()) bad_arg(env, op, a, "a number", v);
      return v.As<Napi::Number>().DoubleValue();
    case Kind::Bool:
      if (!v.IsBoolean()) bad_arg(env, op, a, "a boolean", v);
      return v.As<Napi::Boolean>().Value();
    case Kind::Scalar:
      if (v.IsBoolean()) return c10::Scalar(v.As<Napi::Boolean>().Value());
      if (v.IsNumber()) {
        double d = v.As<Napi::Number>().DoubleValue();
        // Integral JS numbers become integer scalars so integer tensors stay integer (PyTorch's rule).
        if (std::abs(d) < 9007199254740992.0 && d == static_cast<double>(static_cast<int64_t>(d)))
          return c10::Scalar(static_cast<int64_t>(d));
        return c10::Scalar(d);
      }
      if (v.IsBigInt()) { bool lossless; return c10::Scalar(v.As<Napi::BigInt>().Int64Value(&lossless)); }
      bad_arg(env, op, a, "a number or a boolean", v);
    case Kind::Str:
      if (!v.IsString()) bad_arg(env, op, a, "a string", v);
      return v.As<Napi::String>().Utf8Value();
    case Kind::Device:
      if (!v.IsString()) bad_arg(env, op, a, "a device string such as 'cpu' or 'cuda:0'", v);
      return c10::Device(v.As<Napi::String>().Utf8Value());
    case Kind::Generator: bad_arg(env, op, a, "null (custom generators are not supported; use manualSeed)", v);
    case Kind::IntList: {
      if (v.IsNumber() || v.IsBigInt()) return std::vector<int64_t>{to_int(env, op, a, v)};
      if (!v.IsArray()) bad_arg(env, op, a, "an array of integers", v);
      auto arr = v.As<Napi::Array>();
      std::vector<int64_t> out(arr.Length());
      for (uint32_t i = 0; i < arr.Length(); ++i) out[i] = to_int(env, op, a, arr.Get(i));
      return out;
    }
    case Kind::FloatList: {
      if (!v.IsArray()) bad_arg(env, op, a, "an array of numbers", v);
      auto arr = v.As<Napi::Array>();
      std::vector<double> out(arr.Length());
      for (uint32_t i = 0; i < arr.Length(); ++i) {
        Napi::Value e = arr.Get(i);
        if (!e.IsNumber()) bad_arg(env, op, a, "an array of numbers", e);
        out[i] = e.As<Napi::Number>().DoubleValue();
      }
      return out;
    }
    case Kind::BoolList: {
      if (!v.IsArray()) bad_arg(env, op, a, "an array of booleans", v);
      auto arr = v.As<Napi::Array>();
      c10::List<bool> out;
      for (uint32_t i = 0; i < arr.Length(); ++i) out.push_back(arr.Get(i).ToBoolean());
      return out;
    }
    case Kind::TensorList: {
      if (!v.IsArray()) bad_arg(env, op, a, "an array of Tensors", v);
      auto arr = v.As<Napi::Array>();
      std::vector<at::Tensor> out;
      out.reserve(arr.Length());
      for (uint32_t i = 0; i < arr.Length(); ++i) {
        std::string name = a.name + "[" + std::to_string(i) + "]";
        out.push_back(unwrap(env, arr.Get(i), op.name.c_str(), name.c_str()));
      }
      return out;
    }
    case Kind::OptTensorList: {
      if (!v.IsArray()) bad_arg(env, op, a, "an array of Tensors or nulls", v);
      auto arr = v.As<Napi::Array>();
      c10::List<std::optional<at::Tensor>> out;
      for (uint32_t i = 0; i < arr.Length(); ++i) {
        Napi::Value e = arr.Get(i);
        std::string name = a.name + "[" + std::to_string(i) + "]";
        if (e.IsNull() || e.IsUndefined()) out.push_back(std::nullopt);
        else out.push_back(unwrap(env, e, op.name.c_str(), name.c_str()));
      }
      return out;
    }
    case Kind::Unsupported: break;
  }
  throw type_error(env, op.name + ": argument '" + a.name + "' has a type the binding does not convert");
}

Napi::Value to_js(Napi::Env env, const c10::IValue& v) {
  if (v.isTensor()) return wrap(env, v.toTensor());
  if (v.isNone()) return env.Null();
  if (v.isBool()) return Napi::Boolean::New(env, v.toBool());
  if (v.isInt()) return Napi::Number::New(env, static_cast<double>(v.toInt()));
  if (v.isDouble()) return Napi::Number::New(env, v.toDouble());
  if (v.isTensorList()) {
    auto list = v.toTensorList();
    auto arr = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); ++i) arr.Set(uint32_t(i), wrap(env, list.get(i)));
    return arr;
  }
  if (v.isTuple()) {
    const auto& elems = v.toTupleRef().elements();
    auto arr = Napi::Array::New(env, elems.size());
    for (size_t i = 0; i < elems.size(); ++i) arr.Set(uint32_t(i), to_js(env, elems[i]));
    return arr;
  }
  if (v.isIntList()) {
    auto list = v.toIntList();
    auto arr = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); ++i) arr.Set(uint32_t(i), Napi::Number::New(env, double(list.get(i))));
    return arr;
  }
  if (v.isString()) return Napi::String::New(env, v.toStringRef());
  if (v.isScalar()) return Napi::Number::New(env, v.toScalar().toDouble());
  throw torch_error(env, "result of type " + v.tagKind() + " cannot be converted to JS");
}

// opHandle(name, overload) → integer handle. Throws if the operator does not exist.
Napi::Value OpHandle(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string name = info[0].As<Napi::String>().Utf8Value();
  const std::string overload = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  return guarded(env, name.c_str(), [&]() -> Napi::Value {
    auto h = c10::Dispatcher::singleton().findSchema({name, overload});
    if (!h) throw torch_error(env, "no operator " + name + (overload.empty() ? "" : "." + overload) +
                                       " is registered (is the llmrl op library loaded?)");
    const c10::FunctionSchema& schema = h->schema();
    OpEntry e{*h, name + (overload.empty() ? "" : "." + overload), {}, false};
    for (const auto& a : schema.arguments()) {
      bool opt = false;
      Kind k = kind_of(a.type(), &opt);
      e.args.push_back({a.name(), k, opt, a.default_value()});
    }
    const auto& rets = schema.returns();
    e.returns_written_self = rets.size() == 1 && rets[0].alias_info() && rets[0].alias_info()->isWrite();
    registry.push_back(std::move(e));
    return Napi::Number::New(env, double(registry.size() - 1));
  });
}

Napi::Value OpSchema(const Napi::CallbackInfo& info) {
  const auto& e = registry.at(info[0].As<Napi::Number>().Uint32Value());
  return Napi::String::New(info.Env(), c10::toString(e.handle.schema()));
}

// call(handle, ...args): positional arguments in schema order (keyword-only ones too).
Napi::Value Call(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint32_t idx = info[0].As<Napi::Number>().Uint32Value();
  if (idx >= registry.size()) throw type_error(env, "call: unknown op handle");
  const OpEntry& op = registry[idx];
  const size_t given = info.Length() - 1;
  if (given > op.args.size())
    throw type_error(env, op.name + ": takes " + std::to_string(op.args.size()) + " arguments, got " + std::to_string(given));
  return guarded(env, op.name.c_str(), [&]() -> Napi::Value {
    torch::jit::Stack stack;
    stack.reserve(op.args.size());
    for (size_t i = 0; i < op.args.size(); ++i)
      stack.push_back(convert(env, op, op.args[i], i < given ? info[i + 1] : env.Undefined()));
    op.handle.callBoxed(stack);
    if (op.returns_written_self) return env.Undefined();
    if (stack.empty()) return env.Undefined();
    if (stack.size() == 1) return to_js(env, stack[0]);
    auto arr = Napi::Array::New(env, stack.size());
    for (size_t i = 0; i < stack.size(); ++i) arr.Set(uint32_t(i), to_js(env, stack[i]));
    return arr;
  });
}

}  // namespace

void init_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("opHandle", Napi::Function::New(env, OpHandle, "opHandle"));
  exports.Set("opSchema", Napi::Function::New(env, OpSchema, "opSchema"));
  exports.Set("call", Napi::Function::New(env, Call, "call"));
}

}  // namespace llmrl::binding
