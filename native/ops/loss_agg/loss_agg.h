// loss_agg — scalar aggregation of a per-token loss (ALGORITHMS.md §5): DAPO's token mean, the GRPO
// paper's sequence mean of token means, Dr. GRPO's constant-normaliser sum, and the sequence mean of
// token sums.
//
// With per-token loss L [B, T], mask m, n_b = Σ_t m[b, t], rowsum_b = Σ_t m·L, valid rows S = #{n_b > 0}:
//   token_mean              Σ_b rowsum_b / N,          N = normalizer, else Σ_b n_b
//   seq_mean_token_mean     Σ_b rowsum_b / n_b / S',   S' = num_sequences, else S   (rows with n_b > 0)
//   seq_mean_token_sum_norm Σ_b rowsum_b / (S'·L_max), L_max = max_length, else T
//   seq_mean_token_sum      Σ_b rowsum_b / S'
// i.e. out = Σ_b coef_b · rowsum_b with a per-row coefficient, which is also ∂out/∂L[b, t] on valid
// tokens (the backward: grad_L = m ? g·coef_b : 0). Fully masked rows have coef 0 and count in no
// denominator; a zero denominator (all-masked batch, or a normalizer of 0) gives 0 and zero gradient,
// never NaN. Masked entries of L are never read (they may hold NaN/Inf).
//
// Micro-batching (§5: split batches must give the full batch's gradient): pass the GLOBAL counts of the
// whole optimisation batch — normalizer = total valid tokens (token_mean), num_sequences = total valid
// sequences (seq_* modes), and for seq_mean_token_sum_norm the same max_length in every micro-batch.
// Then every mode is a sum over rows of per-row terms divided by a global constant, so the micro-batch
// losses (and gradients) add up to the full batch's exactly. Each mode reads only its own count, so a
// trainer may always pass both.
//
// Shapes: loss [B, T], mask [B, T] (bool or any dtype, != 0). Dtypes: float32/float64/bfloat16/float16.
// The scalar output is float32 (float64 for float64 input); sums accumulate in float64.
#pragma once
#include <ATen/ATen.h>

#include <cmath>
#include <optional>
#include <string_view>

namespace llmrl::loss_agg {

enum class Mode : int { token_mean = 0, seq_mean_token_mean = 1, seq_mean_token_sum_norm = 2, seq_mean_token_sum = 3 };

inline Mode parse_mode(std::string_view name) {
  if (name == "token_mean") return Mode::token_mean;
  if (name == "seq_mean_token_mean") return Mode::seq_mean_token_mean;
  if (name == "seq_mean_token_sum_norm") return Mode::seq_mean_token_sum_norm;
  if (name == "seq_mean_token_sum") return Mode::seq_mean_token_sum;
  TORCH_CHECK(false, "loss_agg: 'mode' must be one of 'token_mean', 'seq_mean_token_mean', "
              "'seq_mean_token_sum_norm', 'seq_mean_token_sum', got '", name, "'");
}

// Checks shapes/dtypes/devices and the options; returns the mask as a contiguous bool tensor.
inline at::Tensor check_inputs(const at::Tensor& loss, const at::Tensor& mask, const std::optional<double>& normalizer,
                               const std::optional<double>& num_sequences, const std::optional<int64_t>& max_length) {
  TORCH_CHECK(loss.dim() == 2, "loss_agg: 'loss' must have shape [B, T], got ", loss.sizes());
  TORCH_CHECK(at::isFloatingType(loss.scalar_type()), "loss_agg: 'loss' must be a floating tensor, got ",
              loss.scalar_type());
  TORCH_CHECK(mask.sizes() == loss.sizes(), "loss_agg: 'mask' must have the shape of 'loss' ", loss.sizes(), ", got ",
              mask.sizes());
  TORCH_CHECK(mask.device() == loss.device(), "loss_agg: 'mask' must be on ", loss.device(), " like 'loss', got ",
              mask.device());
  TORCH_CHECK(!normalizer || (*normalizer >= 0 && std::isfinite(*normalizer)),
              "loss_agg: 'normalizer' must be a finite number >= 0, got ", normalizer.value_or(0));
  TORCH_CHECK(!num_sequences || (*num_sequences >= 0 && std::isfinite(*num_sequences)),
              "loss_agg: 'num_sequences' must be a finite number >= 0, got ", num_sequences.value_or(0));
  TORCH_CHECK(!max_length || *max_length > 0, "loss_agg: 'max_length' must be > 0, got ", max_length.value_or(0));
  return mask.scalar_type() == at::kBool ? mask.contiguous() : mask.ne(0);
}

// Options in the form the kernels use: has_* = given, else the batch's own count.
struct Norm {
  int mode;
  bool has_normalizer, has_num_sequences;
  double normalizer, num_sequences, max_length;
};

inline Norm make_norm(Mode mode, const std::optional<double>& normalizer, const std::optional<double>& num_sequences,
                      const std::optional<int64_t>& max_length, int64_t T) {
  return {static_cast<int>(mode), normalizer.has_value(), num_sequences.has_value(), normalizer.value_or(0),
          num_sequences.value_or(0), double(max_length.value_or(T))};
}

// The denominator from the batch counts (N valid tokens, S valid rows).
C10_HOST_DEVICE inline double denominator(const Norm& nm, double N, double S) {
  if (nm.mode == 0) return nm.has_normalizer ? nm.normalizer : N;
  const double seqs = nm.has_num_sequences ? nm.num_sequences : S;
  return nm.mode == 2 ? seqs * nm.max_length : seqs;
}

// ∂out/∂L[b, t] for the valid tokens of a row with n_b valid tokens; 0 for empty rows or denominators.
C10_HOST_DEVICE inline double row_coef(const Norm& nm, double n_b, double denom) {
  if (n_b <= 0 || denom <= 0) return 0.0;
  return nm.mode == 1 ? 1.0 / (denom * n_b) : 1.0 / denom;
}

inline at::ScalarType acc_dtype(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

std::tuple<at::Tensor, at::Tensor> forward_cpu(const at::Tensor& loss, const at::Tensor& mask, c10::string_view mode,
                                               std::optional<double> normalizer,
                                               std::optional<double> num_sequences,
                                               std::optional<int64_t> max_length);
at::Tensor backward_cpu(const at::Tensor& grad, const at::Tensor& mask, const at::Tensor& coef, at::ScalarType dtype);

}  // namespace llmrl::loss_agg
