// CPU-only 4-lane float helpers for the surrogate kernels (GCC/Clang vector extensions: portable, SSE2
// on baseline x86-64, NEON on arm64 — no -mavx flags and no run-time dispatch needed). Why not
// at::vec::Vectorized<float>: the library is built without CPU-capability flags, so Vectorized falls
// back to its generic form (a scalar loop, std::exp per element), and scalar code with data-dependent
// selects compiles to mispredicted branches (measured: 3–5× slower than these lanes).
// exp4: Cephes' expf — x = n·ln2 + r, degree-5 polynomial for e^r, 2^n added to the exponent bits;
// about 1 ulp for |x| ≤ 87 (callers pass the clamped log-ratio, |x| ≤ 20); NaN stays NaN.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace llmrl::clipped_surrogate::simd4 {

using f4 = float __attribute__((vector_size(16)));
using i4 = int32_t __attribute__((vector_size(16)));
using u4 = uint32_t __attribute__((vector_size(16)));

inline f4 splat(float v) { return f4{} + v; }

inline f4 exp4(f4 x) {
  const f4 fx0 = x * 1.44269504088896341f + 0.5f;
  const f4 t = __builtin_convertvector(__builtin_convertvector(fx0, i4), f4);  // trunc (|x| small)
  const f4 fx = t > fx0 ? t - 1.0f : t;                                          // floor
  const f4 r = x - fx * 0.693359375f + fx * 2.12194440e-4f;
  const f4 z = r * r;
  f4 y = splat(1.9875691500e-4f);
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * z + r + 1.0f;
  u4 bits;
  std::memcpy(&bits, &y, sizeof bits);
  bits += __builtin_convertvector(__builtin_convertvector(fx, i4), u4) << 23;  // · 2^n
  std::memcpy(&y, &bits, sizeof y);
  return x != x ? x : y;  // NaN in, NaN out
}

inline double hsum(f4 v) { return double(v[0]) + double(v[1]) + double(v[2]) + double(v[3]); }

// Lane loads/stores of n ≤ 4 elements (n < 4 only at a row's tail): lanes ≥ n read as 0 / false and
// are not written. Full float32 blocks move as one unaligned vector.
template <typename scalar_t>
inline f4 load4(const scalar_t* p, int n) {
  f4 v = {};
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (n == 4) {
      std::memcpy(&v, p, sizeof v);
      return v;
    }
  }
  for (int j = 0; j < 4; ++j) v[j] = j < n ? float(p[j]) : 0.f;
  return v;
}
inline i4 load_mask4(const bool* m, int n) {
  // The 4 bytes as one word, broadcast, one byte per lane tested (GCC scalarises u8x4 → i4 conversions).
  uint32_t w = 0;
  if (n == 4) std::memcpy(&w, m, sizeof w);
  else
    for (int j = 0; j < n; ++j) w |= uint32_t(m[j]) << (8 * j);
  const u4 bytes = u4{} + w;
  const u4 sel = {0xffu, 0xff00u, 0xff0000u, 0xff000000u};
  return (bytes & sel) != 0;
}
template <typename scalar_t>
inline void store4(scalar_t* p, f4 v, int n) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (n == 4) {
      std::memcpy(p, &v, sizeof v);
      return;
    }
  }
  for (int j = 0; j < 4; ++j)
    if (j < n) p[j] = static_cast<scalar_t>(v[j]);
}

}  // namespace llmrl::clipped_surrogate::simd4
