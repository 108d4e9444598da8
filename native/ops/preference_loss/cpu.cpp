// preference_loss CPU kernels (see preference_loss.h, ALGORITHMS.md §7): the forward is one pass over
// the pairs that computes the loss and the four metrics; the backward is one pass that writes both
// log-probs' gradients. Pairs are processed in fixed chunks whose float64 partial sums are combined in
// chunk order, so results do not depend on the thread count.
#include "preference_loss/preference_loss.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <vector>

namespace llmrl::preference_loss {

LossType parse_loss_type(std::string_view name) {
  if (name == "sigmoid") return LossType::sigmoid;
  if (name == "ipo") return LossType::ipo;
  if (name == "hinge") return LossType::hinge;
  if (name == "robust") return LossType::robust;
  TORCH_CHECK(false, "preference_loss: 'loss_type' must be one of 'sigmoid', 'ipo', 'hinge', 'robust', got '",
              name, "'");
}

Inputs check_inputs(const at::Tensor& chosen, const at::Tensor& rejected,
                    const std::optional<at::Tensor>& ref_chosen, const std::optional<at::Tensor>& ref_rejected,
                    c10::string_view loss_type, double beta, double label_smoothing,
                    const std::optional<at::Tensor>& chosen_lengths,
                    const std::optional<at::Tensor>& rejected_lengths, bool reference_free,
                    bool check_lengths_positive) {
  Inputs in;
  in.type = parse_loss_type(std::string_view(loss_type.data(), loss_type.size()));
  TORCH_CHECK(chosen.dim() == 1, "preference_loss: 'chosen_logps' must have shape [B], got ", chosen.sizes());
  TORCH_CHECK(at::isFloatingType(chosen.scalar_type()),
              "preference_loss: 'chosen_logps' must be a floating tensor, got ", chosen.scalar_type());
  auto same = [&](const at::Tensor& t, const char* name) {
    TORCH_CHECK(t.sizes() == chosen.sizes(), "preference_loss: '", name, "' must have the shape of 'chosen_logps' ",
                chosen.sizes(), ", got ", t.sizes());
    TORCH_CHECK(t.device() == chosen.device(), "preference_loss: '", name, "' must be on ", chosen.device(),
                " like 'chosen_logps', got ", t.device());
  };
  auto same_dtype = [&](const at::Tensor& t, const char* name) {
    same(t, name);
    TORCH_CHECK(t.scalar_type() == chosen.scalar_type(), "preference_loss: '", name, "' must have dtype ",
                chosen.scalar_type(), " like 'chosen_logps', got ", t.scalar_type());
  };
  same_dtype(rejected, "rejected_logps");
  const bool has_rc = ref_chosen && ref_chosen->defined(), has_rr = ref_rejected && ref_rejected->defined();
  if (has_rc) same_dtype(*ref_chosen, "ref_chosen_logps");
  if (has_rr) same_dtype(*ref_rejected, "ref_rejected_logps");
  if (!reference_free) {
    TORCH_CHECK(has_rc && has_rr, "preference_loss: 'ref_chosen_logps' and 'ref_rejected_logps' are required "
                "unless reference_free=True, got ", has_rc ? "" : "no ref_chosen_logps ",
                has_rr ? "" : "no ref_rejected_logps");
  }
  TORCH_CHECK(std::isfinite(beta) && beta > 0, "preference_loss: 'beta' must be a finite number > 0, got ", beta);
  TORCH_CHECK(std::isfinite(label_smoothing), "preference_loss: 'label_smoothing' must be finite, got ",
              label_smoothing);
  switch (in.type) {
    case LossType::sigmoid:
      TORCH_CHECK(label_smoothing >= 0 && label_smoothing <= 0.5,
                  "preference_loss: 'label_smoothing' must be in [0, 0.5] for 'sigmoid', got ", label_smoothing);
      break;
    case LossType::robust:
      TORCH_CHECK(label_smoothing >= 0 && label_smoothing < 0.5,
                  "preference_loss: 'label_smoothing' must be in [0, 0.5) for 'robust' (it divides by 1 − 2ε), got ",
                  label_smoothing);
      break;
    default:
      TORCH_CHECK(label_smoothing == 0, "preference_loss: 'label_smoothing' applies only to 'sigmoid' and "
                  "'robust'; it must be 0 for '", loss_type, "', got ", label_smoothing);
  }
  in.acc_dtype = chosen.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto length = [&](const std::optional<at::Tensor>& l, const char* name) {
    const bool has = l && l->defined();
    if (has) {
      same(*l, name);
      TORCH_CHECK(!l->is_complex() && l->scalar_type() != at::kBool, "preference_loss: '", name,
                  "' must be a real (integer or floating) tensor of token counts, got ", l->scalar_type());
    }
    if (in.type != LossType::ipo) return at::Tensor();
    TORCH_CHECK(has, "preference_loss: 'ipo' averages the log-ratios per token, so '", name,
                "' (the number of completion tokens of each pair) is required");
    at::Tensor t = l->to(in.acc_dtype).contiguous();
    if (check_lengths_positive && t.numel() > 0) {
      // A value check reads the data (a device sync on CUDA); once per forward, on a [B] tensor.
      const double lo = t.min().item<double>();
      TORCH_CHECK(lo > 0, "preference_loss: '", name, "' must be > 0 (token counts), got a minimum of ", lo);
    }
    return t;
  };
  in.chosen_len = length(chosen_lengths, "chosen_lengths");
  in.rejected_len = length(rejected_lengths, "rejected_lengths");
  in.chosen = chosen.contiguous();
  in.rejected = rejected.contiguous();
  if (!reference_free) {
    in.ref_chosen = ref_chosen->contiguous();
    in.ref_rejected = ref_rejected->contiguous();
  }
  return in;
}

namespace {

constexpr int64_t kChunk = 2048;  // pairs per partial sum and per parallel task (B = 4096 uses 2 threads)

at::Tensor scalar_out(double v, at::ScalarType dt, const at::Tensor& like) {
  return at::full({}, v, like.options().dtype(dt));
}

}  // namespace

Outputs preference_loss_cpu(const at::Tensor& chosen, const at::Tensor& rejected,
                            const std::optional<at::Tensor>& ref_chosen,
                            const std::optional<at::Tensor>& ref_rejected, c10::string_view loss_type,
                            double beta, double label_smoothing, const std::optional<at::Tensor>& chosen_lengths,
                            const std::optional<at::Tensor>& rejected_lengths, bool reference_free) {
  const Inputs in = check_inputs(chosen, rejected, ref_chosen, ref_rejected, loss_type, beta, label_smoothing,
                                 chosen_lengths, rejected_lengths, reference_free, true);
  const int64_t n = in.chosen.numel();
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<std::array<double, kSums>> partial(static_cast<size_t>(chunks), std::array<double, kSums>{});
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.chosen.scalar_type(), "preference_loss_cpu", [&] {
    using acc = at::opmath_type<scalar_t>;
    const scalar_t* pc = in.chosen.const_data_ptr<scalar_t>();
    const scalar_t* pr = in.rejected.const_data_ptr<scalar_t>();
    const scalar_t* prc = in.ref_chosen.defined() ? in.ref_chosen.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* prr = in.ref_rejected.defined() ? in.ref_rejected.const_data_ptr<scalar_t>() : nullptr;
    const acc* plc = in.chosen_len.defined() ? in.chosen_len.const_data_ptr<acc>() : nullptr;
    const acc* plr = in.rejected_len.defined() ? in.rejected_len.const_data_ptr<acc>() : nullptr;
    const int type = static_cast<int>(in.type);
    const acc b = static_cast<acc>(beta), eps = static_cast<acc>(label_smoothing);
    at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        std::array<double, kSums> s{};
        const int64_t end = std::min(n, (c + 1) * kChunk);
        for (int64_t i = c * kChunk; i < end; ++i) {
          acc l, dc, dr, xc, xr;
          pair<acc, true>(acc(pc[i]), acc(pr[i]), prc ? acc(prc[i]) : acc(0), prr ? acc(prr[i]) : acc(0),
                    plc ? plc[i] : acc(1), plr ? plr[i] : acc(1), type, b, eps, &l, &dc, &dr, &xc, &xr);
          s[0] += double(l);
          s[1] += double(b * xc);
          s[2] += double(b * xr);
          s[3] += xc > xr ? 1.0 : 0.0;
          s[4] += double(b * (xc - xr));
        }
        partial[static_cast<size_t>(c)] = s;
      }
    });
  });
  std::array<double, kSums> total{};
  for (const auto& p : partial)
    for (int k = 0; k < kSums; ++k) total[k] += p[k];
  const double inv = n > 0 ? 1.0 / double(n) : 0.0;  // B == 0 → every output 0
  const at::Tensor& like = in.chosen;
  return {scalar_out(total[0] * inv, in.acc_dtype, like), scalar_out(total[1] * inv, in.acc_dtype, like),
          scalar_out(total[2] * inv, in.acc_dtype, like), scalar_out(total[3] * inv, in.acc_dtype, like),
          scalar_out(total[4] * inv, in.acc_dtype, like)};
}

std::tuple<at::Tensor, at::Tensor> preference_loss_backward_cpu(
    const at::Tensor& grad, const at::Tensor& chosen, const at::Tensor& rejected,
    const std::optional<at::Tensor>& ref_chosen, const std::optional<at::Tensor>& ref_rejected,
    c10::string_view loss_type, double beta, double label_smoothing,
    const std::optional<at::Tensor>& chosen_lengths, const std::optional<at::Tensor>& rejected_lengths,
    bool reference_free) {
  const Inputs in = check_inputs(chosen, rejected, ref_chosen, ref_rejected, loss_type, beta, label_smoothing,
                                 chosen_lengths, rejected_lengths, reference_free, false);
  TORCH_CHECK(grad.numel() == 1, "preference_loss_backward: 'grad' must have one element (the loss is a scalar), got ",
              grad.sizes());
  const int64_t n = in.chosen.numel();
  at::Tensor gc = at::empty_like(in.chosen), gr = at::empty_like(in.rejected);
  if (n == 0) return {gc, gr};
  const double g = grad.item<double>() / double(n);  // ∂mean/∂loss_b = 1/B
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.chosen.scalar_type(), "preference_loss_backward_cpu", [&] {
    using acc = at::opmath_type<scalar_t>;
    const scalar_t* pc = in.chosen.const_data_ptr<scalar_t>();
    const scalar_t* pr = in.rejected.const_data_ptr<scalar_t>();
    const scalar_t* prc = in.ref_chosen.defined() ? in.ref_chosen.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* prr = in.ref_rejected.defined() ? in.ref_rejected.const_data_ptr<scalar_t>() : nullptr;
    const acc* plc = in.chosen_len.defined() ? in.chosen_len.const_data_ptr<acc>() : nullptr;
    const acc* plr = in.rejected_len.defined() ? in.rejected_len.const_data_ptr<acc>() : nullptr;
    scalar_t* pgc = gc.mutable_data_ptr<scalar_t>();
    scalar_t* pgr = gr.mutable_data_ptr<scalar_t>();
    const int type = static_cast<int>(in.type);
    const acc b = static_cast<acc>(beta), eps = static_cast<acc>(label_smoothing), ga = static_cast<acc>(g);
    at::parallel_for(0, n, kChunk, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        acc l, dc, dr, xc, xr;
        pair<acc, false>(acc(pc[i]), acc(pr[i]), prc ? acc(prc[i]) : acc(0), prr ? acc(prr[i]) : acc(0),
                  plc ? plc[i] : acc(1), plr ? plr[i] : acc(1), type, b, eps, &l, &dc, &dr, &xc, &xr);
        pgc[i] = static_cast<scalar_t>(ga * dc);
        pgr[i] = static_cast<scalar_t>(ga * dr);
      }
    });
  });
  return {gc, gr};
}

}  // namespace llmrl::preference_loss

TORCH_LIBRARY_IMPL(llmrl, CPU, m) {
  m.impl("preference_loss", &llmrl::preference_loss::preference_loss_cpu);
  m.impl("preference_loss_backward", &llmrl::preference_loss::preference_loss_backward_cpu);
}
