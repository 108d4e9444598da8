// Error translation at the N-API boundary: c10::Error → JS Error named TorchError with libtorch's
// message (no C++ backtrace unless LLMRL_DEBUG is set); any other C++ exception → JS Error. No C++
// exception ever crosses into Node (that would abort the process).
#pragma once
#include <c10/util/Exception.h>
#include <napi.h>

#include <cstdlib>
#include <string>

namespace llmrl::binding {

inline bool debug_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("LLMRL_DEBUG");
    return v && *v && std::string(v) != "0";
  }();
  return on;
}

inline Napi::Error torch_error(Napi::Env env, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("name", Napi::String::New(env, "TorchError"));
  return err;
}

// Runs `fn`, turning C++ exceptions into pending JS exceptions; `what` names the op for the message.
template <typename Fn>
Napi::Value guarded(Napi::Env env, const char* what, Fn&& fn) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;  // already a JS error (argument checks)
  } catch (const c10::Error& e) {
    std::string msg = debug_enabled() ? e.what() : e.what_without_backtrace();
    throw torch_error(env, std::string(what) + ": " + msg);
  } catch (const std::exception& e) {
    throw torch_error(env, std::string(what) + ": " + e.what());
  }
}

inline Napi::TypeError type_error(Napi::Env env, const std::string& message) {
  return Napi::TypeError::New(env, message);
}

}  // namespace llmrl::binding
