// Minimal test harness for the native op tests: LLMRL_TEST(name) { ... } registers a case;
// CHECK_* throw with a message. Oracles are eager at:: compositions in float64.
#pragma once
#include <ATen/ATen.h>

#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace llmrl::test {
struct Case {
  const char* name;
  void (*fn)();
};
std::vector<Case>& cases();
struct Register {
  Register(const char* name, void (*fn)()) { cases().push_back({name, fn}); }
};

inline void fail(const std::string& what, const char* file, int line) {
  std::ostringstream s;
  s << file << ":" << line << ": " << what;
  throw std::runtime_error(s.str());
}

inline void check_close(const at::Tensor& actual, const at::Tensor& expected, double atol, double rtol,
                        const char* what, const char* file, int line) {
  if (actual.sizes() != expected.sizes()) {
    std::ostringstream s;
    s << what << ": shape " << actual.sizes() << " != " << expected.sizes();
    fail(s.str(), file, line);
  }
  at::Tensor a = actual.to(at::kDouble), e = expected.to(at::kDouble);
  if (!at::isfinite(a).all().item<bool>()) fail(std::string(what) + ": non-finite values", file, line);
  double err = (a - e).abs().max().item<double>();
  double tol = atol + rtol * e.abs().max().item<double>();
  if (err > tol) {
    std::ostringstream s;
    s << what << ": max abs diff " << err << " > " << tol;
    fail(s.str(), file, line);
  }
}
}  // namespace llmrl::test

#define LLMRL_TEST(name)                                              \
  static void name();                                                 \
  static llmrl::test::Register name##_reg(#name, &name);              \
  static void name()
#define CHECK_TRUE(cond) \
  do { if (!(cond)) llmrl::test::fail("expected " #cond, __FILE__, __LINE__); } while (0)
#define CHECK_CLOSE(a, e, atol, rtol) llmrl::test::check_close((a), (e), (atol), (rtol), #a, __FILE__, __LINE__)
