// llmrl N-API addon: the exports list. Tensor handles and non-operator calls (tensor.cpp), the generic
// dispatcher call for every ATen and llmrl op (ops.cpp), optimisers and clipping (optim.cpp), the
// counting CPU allocator behind memoryStats() (allocator.cpp).
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <torch/version.h>

#include "errors.h"
#include "tensor.h"

namespace llmrl::binding {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  init_allocator(env, exports);  // first: every later CPU allocation is counted
  init_tensor(env, exports);
  init_ops(env, exports);
  init_optim(env, exports);
  auto info = Napi::Object::New(env);
  info.Set("torchVersion", TORCH_VERSION);
  info.Set("cudaBuilt", at::hasCUDA());
#ifdef LLMRL_WITH_CUDA
  info.Set("llmrlCudaKernels", true);
#else
  info.Set("llmrlCudaKernels", false);
#endif
  info.Set("cudaDeviceCount", at::hasCUDA() ? double(at::getNumGPUs()) : 0.0);
  info.Set("config", at::show_config());
  info.Set("parallel", at::get_parallel_info());
  exports.Set("buildInfo", info);
  return exports;
}

}  // namespace llmrl::binding

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return llmrl::binding::Init(env, exports); }

NODE_API_MODULE(llmrl, InitAddon)
