// libtorch's optimisers (AdamW, SGD) behind handles, their state for checkpoints, and global-norm
// gradient clipping. Learning-rate schedules live in TS (src/optim/schedulers.ts) and call setLr.
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <memory>

#include "errors.h"
#include "tensor.h"

namespace llmrl::binding {
namespace {

constexpr napi_type_tag kOptimTag = {0x6c6c6d726c4f7074ULL, 0x696d697a65724864ULL};

struct OptimBox {
  std::unique_ptr<torch::optim::Optimizer> opt;
  bool adamw = false;
};

OptimBox* unwrap_optim(Napi::Env env, const Napi::Value& v, const char* op) {
  bool ok = false;
  if (!v.IsExternal() || napi_check_object_type_tag(env, v, &kOptimTag, &ok) != napi_ok || !ok)
    throw type_error(env, std::string(op) + ": expected an optimizer handle, got " + describe(v));
  OptimBox* b = v.As<Napi::External<OptimBox>>().Data();
  if (!b->opt) throw Napi::Error::New(env, std::string(op) + ": the optimizer was disposed");
  return b;
}

std::vector<at::Tensor> tensors(Napi::Env env, const Napi::Value& v, const char* op, const char* arg) {
  if (!v.IsArray()) throw type_error(env, std::string(op) + ": '" + arg + "' must be an array of Tensors, got " + describe(v));
  auto arr = v.As<Napi::Array>();
  std::vector<at::Tensor> out;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    std::string name = std::string(arg) + "[" + std::to_string(i) + "]";
    out.push_back(unwrap(env, arr.Get(i), op, name.c_str()));
  }
  return out;
}

double num(const Napi::Object& o, const char* key, double dflt) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : dflt;
}

Napi::Value make_handle(Napi::Env env, std::unique_ptr<torch::optim::Optimizer> opt, bool adamw) {
  auto* b = new OptimBox{std::move(opt), adamw};
  auto ext = Napi::External<OptimBox>::New(env, b, [](Napi::Env, OptimBox* box) { delete box; });
  napi_type_tag_object(env, ext, &kOptimTag);
  return ext;
}

// createAdamW(groups: {params: Tensor[], lr?, weightDecay?}[], defaults: {lr, beta1, beta2, eps, weightDecay, amsgrad})
Napi::Value CreateAdamW(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, "AdamW", [&]() -> Napi::Value {
    auto d = info[1].As<Napi::Object>();
    torch::optim::AdamWOptions defaults(num(d, "lr", 1e-3));
    defaults.betas({num(d, "beta1", 0.9), num(d, "beta2", 0.999)}).eps(num(d, "eps", 1e-8))
        .weight_decay(num(d, "weightDecay", 0.01)).amsgrad(d.Get("amsgrad").ToBoolean());
    std::vector<torch::optim::OptimizerParamGroup> groups;
    auto arr = info[0].As<Napi::Array>();
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      auto g = arr.Get(i).As<Napi::Object>();
      auto opts = std::make_unique<torch::optim::AdamWOptions>(defaults);
      opts->lr(num(g, "lr", defaults.lr())).weight_decay(num(g, "weightDecay", defaults.weight_decay()));
      groups.emplace_back(tensors(env, g.Get("params"), "AdamW", "params"), std::move(opts));
    }
    return make_handle(env, std::make_unique<torch::optim::AdamW>(std::move(groups), defaults), true);
  });
}

// createSGD(groups, defaults: {lr, momentum, dampening, weightDecay, nesterov})
Napi::Value CreateSGD(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, "SGD", [&]() -> Napi::Value {
    auto d = info[1].As<Napi::Object>();
    torch::optim::SGDOptions defaults(num(d, "lr", 1e-2));
    defaults.momentum(num(d, "momentum", 0)).dampening(num(d, "dampening", 0))
        .weight_decay(num(d, "weightDecay", 0)).nesterov(d.Get("nesterov").ToBoolean());
    std::vector<torch::optim::OptimizerParamGroup> groups;
    auto arr = info[0].As<Napi::Array>();
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      auto g = arr.Get(i).As<Napi::Object>();
      auto opts = std::make_unique<torch::optim::SGDOptions>(defaults);
      opts->lr(num(g, "lr", defaults.lr())).weight_decay(num(g, "weightDecay", defaults.weight_decay()));
      groups.emplace_back(tensors(env, g.Get("params"), "SGD", "params"), std::move(opts));
    }
    return make_handle(env, std::make_unique<torch::optim::SGD>(std::move(groups), defaults), false);
  });
}

Napi::Value Step(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, "optimizer.step", [&]() -> Napi::Value {
    c10::NoGradGuard no_grad;
    unwrap_optim(env, info[0], "optimizer.step")->opt->step();
    return env.Undefined();
  });
}

Napi::Value ZeroGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, "optimizer.zeroGrad", [&]() -> Napi::Value {
    unwrap_optim(env, info[0], "optimizer.zeroGrad")->opt->zero_grad(info.Length() < 2 || info[1].ToBoolean());
    return env.Undefined();
  });
}

// setLr(handle, lr): every param group (schedulers scale the base lr of each group in TS).
Napi::Value SetLr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto* b = unwrap_optim(env, info[0], "optimizer.setLr");
  auto& groups = b->opt->param_groups();
  if (info[1].IsArray()) {
    auto arr = info[1].As<Napi::Array>();
    for (size_t i = 0; i < groups.size() && i < arr.Length(); ++i)
      groups[i].options().set_lr(arr.Get(uint32_t(i)).As<Napi::Number>().DoubleValue());
  } else {
    for (auto& g : groups) g.options().set_lr(info[1].As<Napi::Number>().DoubleValue());
  }
  return env.Undefined();
}

Napi::Value GetLr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto* b = unwrap_optim(env, info[0], "optimizer.lr");
  auto& groups = b->opt->param_groups();
  auto arr = Napi::Array::New(env, groups.size());
  for (size_t i = 0; i < groups.size(); ++i) arr.Set(uint32_t(i), groups[i].options().get_lr());
  return arr;
}

// getState(handle) → per parameter (in group order): AdamW {step, expAvg, expAvgSq, maxExpAvgSq?} | SGD {momentumBuffer}
// or null when that parameter has no state yet. Tensors are copies (safe to save and dispose).
Napi::Value GetState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, "optimizer.state", [&]() -> Napi::Value {
    auto* b = unwrap_optim(env, info[0], "optimizer.state");
    auto& state = b->opt->state();
    std::vector<Napi::Value> out;
    for (auto& g : b->opt->param_groups()) {
      for (auto& p : g.params()) {
        auto it = state.find(p.unsafeGetTensorImpl());
        if (it == state.end()) { out.push_back(env.Null()); continue; }
        auto o = Napi::Object::New(env);
        if (b->adamw) {
          auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
          o.Set("step", double(s.step()));
          o.Set("expAvg", wrap(env, s.exp_avg().clone()));
          o.Set("expAvgSq", wrap(env, s.exp_avg_sq().clone()));
          if (s.max_exp_avg_sq().defined()) o.Set("maxExpAvgSq", wrap(env, s.max_exp_avg_sq().clone()));
        } else {
          auto& s = static_cast<torch::optim::SGDParamState&>(*it->second);
          o.Set("momentumBuffer", wrap(env, s.momentum_buffer().clone()));
        }
        out.push_back(o);
      }
    }
    auto arr = Napi::Array::New(env, out.size());
    for (size_t i = 0; i < out.size(); ++i) arr.Set(uint32_t(i), out[i]);
    return arr;
  });
}

Napi::Value SetState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, "optimizer.loadState", [&]() -> Napi::Value {
    auto* b = unwrap_optim(env, info[0], "optimizer.loadState");
    auto arr = info[1].As<Napi::Array>();
    auto& state = b->opt->state();
    size_t i = 0, n = 0;
    for (auto& g : b->opt->param_groups()) n += g.params().size();
    TORCH_CHECK(arr.Length() == n, "state has ", arr.Length(), " entries but the optimizer has ", n, " parameters");
    for (auto& g : b->opt->param_groups()) {
      for (auto& p : g.params()) {
        Napi::Value v = arr.Get(uint32_t(i++));
        void* key = p.unsafeGetTensorImpl();
        if (v.IsNull() || v.IsUndefined()) { state.erase(key); continue; }
        auto o = v.As<Napi::Object>();
        auto take = [&](const char* k) {
          at::Tensor t = unwrap(env, o.Get(k), "optimizer.loadState", k).to(p.device(), p.scalar_type()).clone();
          TORCH_CHECK(t.sizes() == p.sizes(), "state '", k, "' has shape ", t.sizes(), " but its parameter has ", p.sizes());
          return t;
        };
        if (b->adamw) {
          auto s = std::make_unique<torch::optim::AdamWParamState>();
          s->step(int64_t(num(o, "step", 0)));
          s->exp_avg(take("expAvg"));
          s->exp_avg_sq(take("expAvgSq"));
          if (is_tensor(env, o.Get("maxExpAvgSq"))) s->max_exp_avg_sq(take("maxExpAvgSq"));
          state[key] = std::move(s);
        } else {
          auto s = std::make_unique<torch::optim::SGDParamState>();
          s->momentum_buffer(take("momentumBuffer"));
          state[key] = std::move(s);
        }
      }
    }
    return env.Undefined();
  });
}

Napi::Value DisposeOptim(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool ok = false;
  if (info[0].IsExternal() && napi_check_object_type_tag(env, info[0], &kOptimTag, &ok) == napi_ok && ok)
    info[0].As<Napi::External<OptimBox>>().Data()->opt.reset();
  return env.Undefined();
}

// clipGradNorm(params, maxNorm, normType=2) → total norm before clipping (as torch.nn.utils.clip_grad_norm_).
Napi::Value ClipGradNorm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, "clipGradNorm", [&]() -> Napi::Value {
    c10::NoGradGuard no_grad;
    std::vector<at::Tensor> params = tensors(env, info[0], "clipGradNorm", "params");
    const double max_norm = info[1].As<Napi::Number>().DoubleValue();
    const double p = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().DoubleValue() : 2.0;
    std::vector<at::Tensor> grads;
    for (auto& t : params) if (t.grad().defined()) grads.push_back(t.grad());
    if (grads.empty()) return Napi::Number::New(env, 0.0);
    at::Tensor total;
    if (std::isinf(p)) {
      std::vector<at::Tensor> m;
      for (auto& g : grads) m.push_back(g.detach().abs().max().to(at::kDouble));
      total = at::stack(m).max();
    } else {
      std::vector<at::Tensor> norms;
      for (auto& g : grads) norms.push_back(g.detach().to(at::kDouble).norm(p));
      total = at::stack(norms).norm(p);
    }
    const double tn = total.item<double>();
    const double coef = max_norm / (tn + 1e-6);
    if (coef < 1.0) for (auto& g : grads) g.mul_(coef);
    return Napi::Number::New(env, tn);
  });
}

}  // namespace

void init_optim(Napi::Env env, Napi::Object exports) {
  auto fn = [&](const char* name, Napi::Function::Callback cb) { exports.Set(name, Napi::Function::New(env, cb, name)); };
  fn("createAdamW", CreateAdamW);
  fn("createSGD", CreateSGD);
  fn("optimStep", Step);
  fn("optimZeroGrad", ZeroGrad);
  fn("optimSetLr", SetLr);
  fn("optimGetLr", GetLr);
  fn("optimGetState", GetState);
  fn("optimSetState", SetState);
  fn("optimDispose", DisposeOptim);
  fn("clipGradNorm", ClipGradNorm);
}

}  // namespace llmrl::binding
