// bradley_terry_loss CPU kernels (see bradley_terry_loss.h, ALGORITHMS.md §8): the forward is one pass
// over the pairs computing the loss, accuracy and mean margin; the backward is one pass writing both
// scores' gradients. Fixed chunks with float64 partials combined in chunk order: deterministic.
#include "bradley_terry_loss/bradley_terry_loss.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <vector>

namespace llmrl::bradley_terry_loss {

Inputs check_inputs(const at::Tensor& chosen, const at::Tensor& rejected, const std::optional<at::Tensor>& margin,
                    double center_coef) {
  TORCH_CHECK(chosen.dim() == 1, "bradley_terry_loss: 'chosen_scores' must have shape [B], got ", chosen.sizes());
  TORCH_CHECK(at::isFloatingType(chosen.scalar_type()),
              "bradley_terry_loss: 'chosen_scores' must be a floating tensor, got ", chosen.scalar_type());
  auto same = [&](const at::Tensor& t, const char* name) {
    TORCH_CHECK(t.sizes() == chosen.sizes(), "bradley_terry_loss: '", name,
                "' must have the shape of 'chosen_scores' ", chosen.sizes(), ", got ", t.sizes());
    TORCH_CHECK(t.device() == chosen.device(), "bradley_terry_loss: '", name, "' must be on ", chosen.device(),
                " like 'chosen_scores', got ", t.device());
  };
  same(rejected, "rejected_scores");
  TORCH_CHECK(rejected.scalar_type() == chosen.scalar_type(), "bradley_terry_loss: 'rejected_scores' must have dtype ",
              chosen.scalar_type(), " like 'chosen_scores', got ", rejected.scalar_type());
  TORCH_CHECK(std::isfinite(center_coef) && center_coef >= 0,
              "bradley_terry_loss: 'center_coef' must be a finite number ≥ 0, got ", center_coef);
  Inputs in;
  in.acc_dtype = chosen.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  if (margin && margin->defined()) {
    same(*margin, "margin");
    TORCH_CHECK(at::isFloatingType(margin->scalar_type()), "bradley_terry_loss: 'margin' must be a floating tensor, got ",
                margin->scalar_type());
    in.margin = margin->to(in.acc_dtype).contiguous();
  }
  in.chosen = chosen.contiguous();
  in.rejected = rejected.contiguous();
  return in;
}

namespace {

constexpr int64_t kChunk = 2048;  // pairs per partial sum and per parallel task (B = 4096 uses 2 threads)

}  // namespace

Outputs bradley_terry_loss_cpu(const at::Tensor& chosen, const at::Tensor& rejected,
                               const std::optional<at::Tensor>& margin, double center_coef) {
  const Inputs in = check_inputs(chosen, rejected, margin, center_coef);
  const int64_t n = in.chosen.numel();
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<std::array<double, kSums>> partial(static_cast<size_t>(chunks), std::array<double, kSums>{});
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.chosen.scalar_type(), "bradley_terry_loss_cpu", [&] {
    using acc = at::opmath_type<scalar_t>;
    const scalar_t* pc = in.chosen.const_data_ptr<scalar_t>();
    const scalar_t* pr = in.rejected.const_data_ptr<scalar_t>();
    const acc* pm = in.margin.defined() ? in.margin.const_data_ptr<acc>() : nullptr;
    const acc center = static_cast<acc>(center_coef);
    at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        std::array<double, kSums> s{};
        const int64_t end = std::min(n, (c + 1) * kChunk);
        for (int64_t i = c * kChunk; i < end; ++i) {
          const acc rc = acc(pc[i]), rr = acc(pr[i]);
          acc l, dc, dr;
          pair<acc, true>(rc, rr, pm ? pm[i] : acc(0), center, &l, &dc, &dr);
          s[0] += double(l);
          s[1] += rc > rr ? 1.0 : 0.0;
          s[2] += double(rc - rr);
        }
        partial[static_cast<size_t>(c)] = s;
      }
    });
  });
  std::array<double, kSums> total{};
  for (const auto& p : partial)
    for (int k = 0; k < kSums; ++k) total[k] += p[k];
  const double inv = n > 0 ? 1.0 / double(n) : 0.0;  // B == 0 → every output 0
  const auto opts = in.chosen.options().dtype(in.acc_dtype);
  return {at::full({}, total[0] * inv, opts), at::full({}, total[1] * inv, opts), at::full({}, total[2] * inv, opts)};
}

std::tuple<at::Tensor, at::Tensor> bradley_terry_loss_backward_cpu(const at::Tensor& grad, const at::Tensor& chosen,
                                                                   const at::Tensor& rejected,
                                                                   const std::optional<at::Tensor>& margin,
                                                                   double center_coef) {
  const Inputs in = check_inputs(chosen, rejected, margin, center_coef);
  TORCH_CHECK(grad.numel() == 1,
              "bradley_terry_loss_backward: 'grad' must have one element (the loss is a scalar), got ", grad.sizes());
  const int64_t n = in.chosen.numel();
  at::Tensor gc = at::empty_like(in.chosen), gr = at::empty_like(in.rejected);
  if (n == 0) return {gc, gr};
  const double g = grad.item<double>() / double(n);  // ∂mean/∂loss_b = 1/B
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.chosen.scalar_type(), "bradley_terry_loss_backward_cpu", [&] {
    using acc = at::opmath_type<scalar_t>;
    const scalar_t* pc = in.chosen.const_data_ptr<scalar_t>();
    const scalar_t* pr = in.rejected.const_data_ptr<scalar_t>();
    const acc* pm = in.margin.defined() ? in.margin.const_data_ptr<acc>() : nullptr;
    scalar_t* pgc = gc.mutable_data_ptr<scalar_t>();
    scalar_t* pgr = gr.mutable_data_ptr<scalar_t>();
    const acc center = static_cast<acc>(center_coef), ga = static_cast<acc>(g);
    at::parallel_for(0, n, kChunk, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        acc l, dc, dr;
        pair<acc, false>(acc(pc[i]), acc(pr[i]), pm ? pm[i] : acc(0), center, &l, &dc, &dr);
        pgc[i] = static_cast<scalar_t>(ga * dc);
        pgr[i] = static_cast<scalar_t>(ga * dr);
      }
    });
  });
  return {gc, gr};
}

}  // namespace llmrl::bradley_terry_loss

TORCH_LIBRARY_IMPL(llmrl, CPU, m) {
  m.impl("bradley_terry_loss", &llmrl::bradley_terry_loss::bradley_terry_loss_cpu);
  m.impl("bradley_terry_loss_backward", &llmrl::bradley_terry_loss::bradley_terry_loss_backward_cpu);
}
