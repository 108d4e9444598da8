// linear_token_logprobs — token log-probs (and entropy) straight from the last hidden states and the
// lm_head, without ever materialising the [N, V] logits (ALGORITHMS.md §1b; the chunked
// "fused linear cross-entropy" idea of Liger-Kernel / Cut Cross-Entropy, Wijmans et al. 2024).
//
// Math (same as token_logprobs §1 on logits = hidden·Wᵀ (+ bias)):
//   z = (hidden·Wᵀ + bias) / τ                           [N, V], never stored whole
//   logZ = logsumexp_v z;  logp = z[target] − logZ (≤ 0);  H = logZ − Σ_v p_v z_v (≥ 0), p = softmax(z)
//   ∂logp/∂z_v = 1[v = target] − p_v;   ∂H/∂z_v = −p_v·(log p_v + H);   ∂/∂logits = ∂/∂z / τ
//   grad_hidden = dZ·W,  grad_W = dZᵀ·hidden,  grad_bias = Σ_rows dZ   (dZ = ∂L/∂logits)
//
// Algorithm: the N tokens are processed in chunks of `chunk_size` rows. Per chunk, one GEMM writes the
// chunk's logits [chunk, V] into ONE reused buffer (addmm with the bias), and a fused per-row pass
// (parallel over rows, vectorised; max, then Σe^{z−m} and Σe^{z−m}(z−m) in one sweep) reduces each row to
// logZ, logp and H. Forward saves only (hidden, W, bias, targets, logZ [, H]). Backward recomputes each
// chunk's logits into the buffer, overwrites them in place with dZ (same row pass), then
//   grad_hidden[chunk] = dZ·W   and   grad_W += dZᵀ·hidden[chunk],  grad_bias += Σ dZ.
// Peak extra memory: the chunk buffer (chunk·V elements) plus the outputs — O(chunk·V), not O(N·V).
// chunk_size = 0 (auto): max(kAutoMinRows = 256, rows whose buffer fits kAutoChunkBytes = 64 MiB), at most N;
// e.g. V = 151936 float32 → 256 rows (a 148 MiB buffer), V = 32000 → 524 rows (64 MiB). The row floor is
// there because the GEMMs lose efficiency on thin chunks: measured on one AVX-512 core, the forward GEMMs
// over 512 tokens of Qwen2.5's head took 1.60 s unchunked, 1.70 s in 256-row chunks, 1.99 s in 110-row
// chunks (the 64 MiB size) and 2.89 s in 32-row chunks.
//
// Shapes: hidden [..., H] (any leading dims, e.g. [B, T, H] or [N, H]), weight [V, H], bias [V],
// targets [...] int64 with hidden's leading dims; logprobs and entropy have targets' shape.
// Dtypes: hidden, weight, bias share one floating dtype. The GEMMs run in that dtype (as frameworks do
// for bf16/f16: libtorch's BLAS accumulates internally in fp32); the row pass (softmax, logZ, entropy,
// dZ) runs in fp32 (fp64 for fp64 inputs). Outputs logprobs/entropy are in the input dtype; logZ is
// saved in fp32 (fp64). For bf16/f16 with more than one chunk, grad_W is accumulated across chunks in a
// fp32 [V, H] buffer (one bf16 partial per chunk), so it is rounded once, not once per chunk.
// Errors: a target outside [0, V) is an error (checked up front; on CUDA that is one device sync).
// −inf logits on non-target entries (e.g. a −inf bias masking part of the vocabulary) are fine: they
// get p = 0, contribute 0 to H and get gradient 0.
#pragma once
#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <optional>

namespace llmrl::linear_token_logprobs {

// Auto chunk size: as many rows as fit this many bytes of [chunk, V] buffer, but at least kAutoMinRows.
constexpr int64_t kAutoChunkBytes = int64_t(64) << 20;
constexpr int64_t kAutoMinRows = 256;

// d below this counts as "p = 0" in the entropy terms: e^d underflows long before, and clamping d here
// keeps 0·(−inf) = NaN out of e^d·d and p·(log p + H).
constexpr double kLogFloor = -1000.0;

// Validated, flattened inputs shared by every kernel.
struct Inputs {
  at::Tensor hidden;   // [N, H] contiguous
  at::Tensor weight;   // [V, H] contiguous
  at::Tensor bias;     // [V] contiguous, or undefined
  at::Tensor targets;  // [N] int64 contiguous
  int64_t n = 0, h = 0, v = 0, chunk = 1;
};

// Checks shapes/dtypes/devices/temperature/chunk size and target range; names the op and argument.
Inputs check_inputs(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                    const std::optional<at::Tensor>& bias, double temperature, int64_t chunk_size);

// Rows per chunk for `chunk_size` (0 = auto) with n rows, v columns, element size `itemsize`.
int64_t resolve_chunk(int64_t chunk_size, int64_t n, int64_t v, int64_t itemsize);

// ---- per-element math shared by the CPU and CUDA row passes (acc = float or double) ----

// Finishes one row from m = max z, s = Σ e^{z−m}, e = Σ e^{z−m}·(z−m), zt = z[target].
// logp = (zt − m) − log s ≤ 0 exactly; H = log s − e/s, clamped at 0 (it is ≥ 0 mathematically).
template <typename acc>
C10_HOST_DEVICE inline void finish_row(acc m, acc s, acc e, acc zt, acc* logz, acc* logp, acc* ent) {
#ifdef __CUDA_ARCH__
  const acc ls = ::log(s);
#else
  const acc ls = std::log(s);
#endif
  *logz = m + ls;
  *logp = (zt - m) - ls;
  const acc hh = ls - e / s;
  *ent = hh > acc(0) ? hh : acc(0);
}

// ∂L/∂logit_v for one element, with d = log p_v = z_v − logZ, p = e^d, g = ∂L/∂logp, gh = ∂L/∂H,
// a = g + gh·H: (1[target]·g − p·(g + gh·(d + H))) / τ.
template <typename acc>
C10_HOST_DEVICE inline acc grad_logit(acc d, acc p, acc a, acc gh, acc inv_tau) {
  const acc dc = d > acc(kLogFloor) ? d : acc(kLogFloor);
  return -p * (a + gh * dc) * inv_tau;
}

// ---- the chunk driver: GEMMs through at:: (any device), per-row passes per device ----

// Forward row pass over buf [rows, V] (raw logits, input dtype) for global rows [row0, row0 + rows):
// writes logp, ent (may be null) and logz (acc dtype, [N] each) at those rows.
using ForwardRows = void (*)(const at::Tensor& buf, const at::Tensor& targets, int64_t row0, double inv_tau,
                             const at::Tensor& logp, const at::Tensor& ent, const at::Tensor& logz);
// Backward row pass: overwrites buf [rows, V] with dZ = ∂L/∂logits. g / gh / ent ([N], acc dtype) may be
// undefined (no gradient through logprobs / entropy).
using BackwardRows = void (*)(const at::Tensor& buf, const at::Tensor& targets, int64_t row0, double inv_tau,
                              const at::Tensor& logz, const at::Tensor& ent, const at::Tensor& g,
                              const at::Tensor& gh);

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_driver(
    const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
    const std::optional<at::Tensor>& bias, double temperature, int64_t chunk_size, bool with_entropy,
    ForwardRows rows_fn);

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_driver(
    const std::optional<at::Tensor>& grad_logprobs, const std::optional<at::Tensor>& grad_entropy,
    const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
    const std::optional<at::Tensor>& bias, const at::Tensor& logz, const std::optional<at::Tensor>& entropy,
    double temperature, int64_t chunk_size, std::array<bool, 3> output_mask, BackwardRows rows_fn);

}  // namespace llmrl::linear_token_logprobs
