// value_loss — PPO's clipped value (critic) loss with its clip fraction, one fused pass (ALGORITHMS.md
// §6; PPO as in OpenAI baselines / TRL's PPOTrainer).
//
// Per valid token (mask != 0):
//   v_clip = V_old + clamp(V − V_old, −ε_v, ε_v)
//   ℓ_v = ½·max((V − R)², (v_clip − R)²)
// loss = Σ m·ℓ_v / D with D = normalizer (the global valid-token count when micro-batching) else Σ m;
// D = 0 → loss 0 and zero gradient. clip_frac = mean over valid tokens of 1[(v_clip − R)² > (V − R)²]
// (TRL's vf_clipfrac; the batch's own token mean, not divided by the normalizer).
// Gradient flows to V only (V_old and R are constants), with PyTorch's conventions so the op equals the
// eager composition: clamp passes the gradient on the closed interval, max/maximum split it on ties:
//   ∂ℓ_v/∂V = (V − R) if the first term is larger, (v_clip − R)·1[|V − V_old| ≤ ε_v] if the second.
// Fused: the forward computes the loss sums, ∂ℓ_v/∂V (only when a gradient is needed) and the clip
// count in one read of the inputs; autograd saves that [B, T] tensor and the 0-d scale 1/D. Masked
// positions are never read and get gradient 0 (select, never multiply).
//
// Shapes: values, old_values, returns, mask — all the same shape (any rank, e.g. [B, T]).
// Dtypes: values/old_values/returns float32/float64/bfloat16/float16 (all the same); mask bool or any
// dtype. The scalar loss and clip_frac are float32 (float64 for float64 inputs). Sums: CPU in that dtype
// within chunks of 4096 positions, float64 across chunks; CUDA float64 throughout.
#pragma once
#include <ATen/ATen.h>

#include <cmath>
#include <optional>

namespace llmrl::value_loss {

// ℓ_v and ∂ℓ_v/∂V of one valid position; *clipped = the clipped term is strictly larger. T is the
// accumulation type `acc` or (CPU) a GCC vector of it, M the type of T < T: only arithmetic, comparisons,
// `&` and `?:`, so there are no branches (CPU loops vectorise, CUDA warps do not diverge).
template <typename T, typename M, typename acc>
C10_HOST_DEVICE inline void point(T v, T v_old, T r, acc eps, T* loss, T* dloss, M* clipped) {
  const T zero = T{};
  const T d = v - v_old;
  const auto inside = (d >= -eps) & (d <= eps);
  const T vc = v_old + (d < -eps ? zero - eps : (d > eps ? zero + eps : d));
  const T e1 = v - r, e2 = vc - r;
  const T l1 = e1 * e1, l2 = e2 * e2;
  const T d2 = inside ? e2 : zero;
  *clipped = l2 > l1;
  *loss = (l2 > l1 ? l2 : l1) * acc(0.5);
  *dloss = l2 > l1 ? d2 : (l1 > l2 ? e1 : (e1 + d2) * acc(0.5));  // torch.maximum splits ties
}

inline at::ScalarType acc_dtype(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

// Checks shapes/dtypes/devices and options; returns the mask as a contiguous bool tensor.
inline at::Tensor check_inputs(const at::Tensor& values, const at::Tensor& old_values, const at::Tensor& returns,
                               const at::Tensor& mask, double clip, const std::optional<double>& normalizer) {
  TORCH_CHECK(at::isFloatingType(values.scalar_type()), "value_loss: 'values' must be a floating tensor, got ",
              values.scalar_type());
  auto same = [&](const at::Tensor& t, const char* name, bool dtype) {
    TORCH_CHECK(t.sizes() == values.sizes(), "value_loss: '", name, "' must have the shape of 'values' ",
                values.sizes(), ", got ", t.sizes());
    TORCH_CHECK(t.device() == values.device(), "value_loss: '", name, "' must be on ", values.device(),
                " like 'values', got ", t.device());
    TORCH_CHECK(!dtype || t.scalar_type() == values.scalar_type(), "value_loss: '", name, "' must have dtype ",
                values.scalar_type(), " like 'values', got ", t.scalar_type());
  };
  same(old_values, "old_values", true);
  same(returns, "returns", true);
  same(mask, "mask", false);
  TORCH_CHECK(clip >= 0 && std::isfinite(clip), "value_loss: 'clip' must be a finite number >= 0, got ", clip);
  TORCH_CHECK(!normalizer || (*normalizer >= 0 && std::isfinite(*normalizer)),
              "value_loss: 'normalizer' must be a finite number >= 0, got ", normalizer.value_or(0));
  return mask.scalar_type() == at::kBool ? mask.contiguous() : mask.ne(0);
}

// (loss, clip_frac, dvalues [undefined unless with_grad], scale = 1/D or 0).
using Forward = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
Forward forward_cpu(const at::Tensor& values, const at::Tensor& old_values, const at::Tensor& returns,
                    const at::Tensor& mask, double clip, std::optional<double> normalizer, bool with_grad);
at::Tensor backward_cpu(const at::Tensor& grad, const at::Tensor& dvalues, const at::Tensor& scale,
                        at::ScalarType dtype);

}  // namespace llmrl::value_loss
