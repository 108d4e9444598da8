// token_logprobs CUDA kernels: same contract as cpu.cpp (see token_logprobs.h). Forward: one block per
// row (grid-stride over rows); each thread runs the online logsumexp (`push`) over a strided slice of
// the row, then the block merges the (m, s, t) states with warp shuffles (`merge`) and thread 0 finishes
// the row. Backward: the same row mapping, one elementwise pass writing grad_logits. Current stream,
// 64-bit offsets, float32 accumulation (float64 for float64). The out-of-range target check sets a
// device flag that is read back once after the forward kernel (one device sync per forward call).
#include "token_logprobs/token_logprobs.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

namespace llmrl::token_logprobs {
namespace {

constexpr int kMaxWarps = 32;

template <typename acc>
__device__ inline Stats<acc> shfl_down(const Stats<acc>& a, int delta) {
  return {__shfl_down_sync(0xffffffffu, a.m, delta), __shfl_down_sync(0xffffffffu, a.s, delta),
          __shfl_down_sync(0xffffffffu, a.t, delta)};
}

// Merges the states of all threads of the block; the result is valid in thread 0.
template <typename acc>
__device__ inline Stats<acc> block_merge(Stats<acc> st) {
  __shared__ acc sm[kMaxWarps], ss[kMaxWarps], stt[kMaxWarps];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = (blockDim.x + 31) / 32;
  for (int d = 16; d > 0; d /= 2) st = merge(st, shfl_down(st, d));
  if (lane == 0) { sm[warp] = st.m; ss[warp] = st.s; stt[warp] = st.t; }
  __syncthreads();
  if (warp == 0) {
    st = lane < nwarps ? Stats<acc>{sm[lane], ss[lane], stt[lane]}
                       : Stats<acc>{kLowest<acc>, acc(0), acc(0)};
    for (int d = 16; d > 0; d /= 2) st = merge(st, shfl_down(st, d));
  }
  __syncthreads();  // the shared arrays are reused by the next row of this block
  return st;
}

template <typename scalar_t>
__global__ void forward_kernel(const scalar_t* __restrict__ x, const int64_t* __restrict__ offsets,
                               const int64_t* __restrict__ targets, int64_t n, int64_t v,
                               at::opmath_type<scalar_t> inv_tau, scalar_t* __restrict__ logp,
                               at::opmath_type<scalar_t>* __restrict__ logz, at::opmath_type<scalar_t>* __restrict__ ent,
                               unsigned long long* __restrict__ bad) {
  using acc = at::opmath_type<scalar_t>;
  for (int64_t row = blockIdx.x; row < n; row += gridDim.x) {
    const int64_t t = targets[row];
    if (t < 0 || t >= v) {  // uniform over the block: every thread skips the row
      if (threadIdx.x == 0) {
        atomicCAS(bad, ~0ull, static_cast<unsigned long long>(row));
        logp[row] = static_cast<scalar_t>(NAN);
      }
      continue;
    }
    const scalar_t* xr = x + (offsets ? offsets[row] : row * v);
    Stats<acc> st{kLowest<acc>, acc(0), acc(0)};
    for (int64_t i = threadIdx.x; i < v; i += blockDim.x) push(st, static_cast<acc>(xr[i]) * inv_tau);
    st = block_merge(st);
    if (threadIdx.x == 0) {
      acc lz, lp, h;
      finish(st, static_cast<acc>(xr[t]) * inv_tau, &lz, &lp, &h);
      logp[row] = static_cast<scalar_t>(lp);
      logz[row] = lz;
      if (ent) ent[row] = h;
    }
  }
}

template <typename scalar_t>
__global__ void backward_kernel(const scalar_t* __restrict__ x, const int64_t* __restrict__ offsets,
                                const int64_t* __restrict__ targets, int64_t n, int64_t v,
                                at::opmath_type<scalar_t> inv_tau, const at::opmath_type<scalar_t>* __restrict__ logz,
                                const at::opmath_type<scalar_t>* __restrict__ g,
                                const at::opmath_type<scalar_t>* __restrict__ gh,
                                const at::opmath_type<scalar_t>* __restrict__ ent, scalar_t* __restrict__ dx) {
  using acc = at::opmath_type<scalar_t>;
  for (int64_t row = blockIdx.x; row < n; row += gridDim.x) {
    const int64_t t = targets[row];
    const acc gr = g ? g[row] : acc(0), ghr = gh ? gh[row] : acc(0), hr = gh ? ent[row] : acc(0);
    const acc c0 = -(gr + ghr * hr) * inv_tau, c1 = -ghr * inv_tau, g_tau = gr * inv_tau, lz = logz[row];
    const scalar_t* xr = x + (offsets ? offsets[row] : row * v);
    scalar_t* dr = dx + row * v;
    for (int64_t i = threadIdx.x; i < v; i += blockDim.x) {
      const acc d = static_cast<acc>(xr[i]) * inv_tau - lz;
      dr[i] = static_cast<scalar_t>(grad_logit(d, c0, c1) + (i == t ? g_tau : acc(0)));
    }
  }
}

int threads_for(int64_t v) { return v >= 4096 ? 512 : (v >= 512 ? 256 : 64); }
int64_t blocks_for(int64_t n) { return std::min<int64_t>(n, int64_t(1) << 20); }

std::tuple<at::Tensor, at::Tensor, at::Tensor> token_logprobs_forward_cuda(const at::Tensor& logits,
                                                                           const at::Tensor& targets,
                                                                           double temperature, bool with_entropy) {
  const Inputs in = check_inputs("token_logprobs", logits, targets, temperature);
  c10::cuda::CUDAGuard device_guard(logits.device());
  const auto acc_t = acc_dtype(logits.scalar_type());
  at::Tensor logp = at::empty(targets.sizes(), logits.options());
  at::Tensor logz = at::empty(targets.sizes(), logits.options().dtype(acc_t));
  at::Tensor ent = with_entropy ? at::empty(targets.sizes(), logits.options().dtype(acc_t)) : at::Tensor();
  if (in.n == 0) return {logp, ent, logz};
  const at::Tensor off = in.offsets.defined() ? in.offsets.to(logits.device()) : at::Tensor();
  at::Tensor bad = at::full({1}, -1, targets.options());
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "token_logprobs_cuda", [&] {
    using acc = at::opmath_type<scalar_t>;
    forward_kernel<scalar_t><<<blocks_for(in.n), threads_for(in.v), 0, stream>>>(
        in.logits.const_data_ptr<scalar_t>(), off.defined() ? off.const_data_ptr<int64_t>() : nullptr,
        in.targets.const_data_ptr<int64_t>(), in.n, in.v, static_cast<acc>(in.inv_tau),
        logp.mutable_data_ptr<scalar_t>(), logz.mutable_data_ptr<acc>(),
        with_entropy ? ent.mutable_data_ptr<acc>() : nullptr,
        reinterpret_cast<unsigned long long*>(bad.mutable_data_ptr<int64_t>()));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  const int64_t b = bad.item<int64_t>();  // the one sync: report a bad target with its value
  if (b >= 0) bad_target("token_logprobs", in.targets[b].item<int64_t>(), b, in.v);
  return {logp, ent, logz};
}

// Backward: targets were validated by the forward; here an out-of-range target only skips the one-hot
// term (no read out of the row).
at::Tensor token_logprobs_backward_cuda(const std::optional<at::Tensor>& grad_logprobs,
                                        const std::optional<at::Tensor>& grad_entropy, const at::Tensor& logits,
                                        const at::Tensor& targets, const at::Tensor& logz,
                                        const std::optional<at::Tensor>& entropy, double temperature) {
  constexpr const char* op = "token_logprobs_backward";
  const Inputs in = check_inputs(op, logits, targets, temperature);
  c10::cuda::CUDAGuard device_guard(logits.device());
  const auto acc_t = acc_dtype(logits.scalar_type());
  auto per_row = [&](const at::Tensor& t, const char* name) {
    TORCH_CHECK(t.sizes() == targets.sizes(), op, ": '", name, "' must have shape ", targets.sizes(), ", got ", t.sizes());
    TORCH_CHECK(t.device() == logits.device(), op, ": '", name, "' must be on ", logits.device(), ", got ", t.device());
    return t.to(acc_t).contiguous();
  };
  const bool has_g = grad_logprobs && grad_logprobs->defined();
  const bool has_gh = grad_entropy && grad_entropy->defined();
  const at::Tensor lz = per_row(logz, "logz");
  const at::Tensor g = has_g ? per_row(*grad_logprobs, "grad_logprobs") : at::Tensor();
  const at::Tensor gh = has_gh ? per_row(*grad_entropy, "grad_entropy") : at::Tensor();
  TORCH_CHECK(!has_gh || (entropy && entropy->defined()), op, ": 'entropy' is required with 'grad_entropy'");
  const at::Tensor h = has_gh ? per_row(*entropy, "entropy") : at::Tensor();
  at::Tensor dx = at::empty(logits.sizes(), logits.options().memory_format(at::MemoryFormat::Contiguous));
  if (in.n == 0 || in.v == 0) return dx;
  if (!has_g && !has_gh) return dx.zero_();
  const at::Tensor off = in.offsets.defined() ? in.offsets.to(logits.device()) : at::Tensor();
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "token_logprobs_backward_cuda", [&] {
    using acc = at::opmath_type<scalar_t>;
    backward_kernel<scalar_t><<<blocks_for(in.n), threads_for(in.v), 0, stream>>>(
        in.logits.const_data_ptr<scalar_t>(), off.defined() ? off.const_data_ptr<int64_t>() : nullptr,
        in.targets.const_data_ptr<int64_t>(), in.n, in.v, static_cast<acc>(in.inv_tau), lz.const_data_ptr<acc>(),
        has_g ? g.const_data_ptr<acc>() : nullptr, has_gh ? gh.const_data_ptr<acc>() : nullptr,
        has_gh ? h.const_data_ptr<acc>() : nullptr, dx.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return dx;
}

}  // namespace
}  // namespace llmrl::token_logprobs

TORCH_LIBRARY_IMPL(llmrl, CUDA, m) {
  m.impl("token_logprobs_forward", &llmrl::token_logprobs::token_logprobs_forward_cuda);
  m.impl("token_logprobs_backward", &llmrl::token_logprobs::token_logprobs_backward_cuda);
}
