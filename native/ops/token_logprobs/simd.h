// token_logprobs CPU SIMD paths: AVX-512 and AVX2 primitives (float32 lanes) and the row kernels built
// from them (rows.inc, compiled once per instruction set). Why not at::vec::Vectorized<float>: the
// library is built without -mavx2/-mavx512f (the build machine and users' CPUs differ), so Vectorized
// falls back to its generic form, whose exp() is a scalar std::exp per element. Instead every function
// here carries __attribute__((target(...))) and cpu.cpp picks a path at run time with
// __builtin_cpu_supports — never -march=native for the whole library.
//
// exp: Cephes-style range reduction x = n·ln2 + r, |r| ≤ ln2/2, degree-6 polynomial for e^r (≈1–2 ulp
// in float32), scaled by 2^n (AVX-512: vscalefps, which underflows to 0 cleanly; AVX2: exponent bits,
// with inputs below −87.3 flushed to 0). Its domain is what the row kernels pass: log-probabilities
// floored at kLogFloor = −200, so x ∈ [−200, ~0] (or NaN → NaN); no clamping beyond that is done.
// bfloat16 → float is a 16-bit shift; float → bfloat16 rounds to nearest even like c10::BFloat16
// (NaN → 0x7FC0); float16 uses the F16C / AVX-512 conversion instructions (round to nearest even).
#pragma once
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define LLMRL_TLP_X86 1
#include <immintrin.h>
#endif

#include "token_logprobs/token_logprobs.h"

#ifdef LLMRL_TLP_X86
// GCC 12 warns about the deliberately undefined pass-through operand (_mm512_undefined_ps) inside
// its own AVX-512 intrinsics once they are inlined; the warning is spurious.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
namespace llmrl::token_logprobs {

// Cephes expf constants: ln2 split in a high part exact in float and a low correction.
namespace expc {
constexpr float kLog2e = 1.44269504088896341f, kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
constexpr float kP0 = 1.9875691500e-4f, kP1 = 1.3981999507e-3f, kP2 = 8.3334519073e-3f, kP3 = 4.1665795894e-2f,
                kP4 = 1.6666665459e-1f, kP5 = 5.0000001201e-1f;
}  // namespace expc

// ---------------------------------------------------------------------------------------------------
namespace avx512 {
namespace {
#define LLMRL_TLP_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))
#define LLMRL_TLP_INL LLMRL_TLP_TARGET __attribute__((always_inline)) inline

using vec = __m512;
constexpr int W = 16;

LLMRL_TLP_INL vec vset(float a) { return _mm512_set1_ps(a); }
LLMRL_TLP_INL vec vadd(vec a, vec b) { return _mm512_add_ps(a, b); }
LLMRL_TLP_INL vec vsub(vec a, vec b) { return _mm512_sub_ps(a, b); }
LLMRL_TLP_INL vec vmul(vec a, vec b) { return _mm512_mul_ps(a, b); }
LLMRL_TLP_INL vec vfma(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }  // a·b + c
// max(a, x) with x's NaN kept: (v)maxps returns its second operand when either is NaN.
LLMRL_TLP_INL vec vmax(vec a, vec x) { return _mm512_max_ps(a, x); }
LLMRL_TLP_INL bool vany_gt(vec a, vec b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ) != 0; }
LLMRL_TLP_INL float vhmax(vec a) { return _mm512_reduce_max_ps(a); }
LLMRL_TLP_INL float vhsum(vec a) { return _mm512_reduce_add_ps(a); }

// e^x for x ∈ [−200, 88] (or NaN), as the row kernels call it: no clamping needed, since
// n ≤ −289 makes vscalefps return exactly 0.
LLMRL_TLP_INL vec vexp(vec x) {
  using namespace expc;
  const vec n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  vec r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
  vec y = _mm512_set1_ps(kP0);
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kP1));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kP2));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kP3));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kP4));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kP5));
  y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  return _mm512_scalef_ps(y, n);
}

LLMRL_TLP_INL vec vload(const float* p) { return _mm512_loadu_ps(p); }
LLMRL_TLP_INL vec vload(const c10::BFloat16* p) {
  const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}
LLMRL_TLP_INL vec vload(const c10::Half* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
LLMRL_TLP_INL void vstore(float* p, vec a) { _mm512_storeu_ps(p, a); }
LLMRL_TLP_INL void vstore(c10::BFloat16* p, vec a) {
  const __m512i u = _mm512_castps_si512(a);
  const __m512i bias = _mm512_add_epi32(_mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1)),
                                        _mm512_set1_epi32(0x7FFF));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, bias), 16);
  r = _mm512_mask_blend_epi32(_mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q), r, _mm512_set1_epi32(0x7FC0));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(r));
}
LLMRL_TLP_INL void vstore(c10::Half* p, vec a) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

#include "token_logprobs/rows.inc"
#undef LLMRL_TLP_INL
#undef LLMRL_TLP_TARGET
}  // namespace
}  // namespace avx512

// ---------------------------------------------------------------------------------------------------
namespace avx2 {
namespace {
#define LLMRL_TLP_TARGET __attribute__((target("avx2,fma,f16c")))
#define LLMRL_TLP_INL LLMRL_TLP_TARGET __attribute__((always_inline)) inline

using vec = __m256;
constexpr int W = 8;

LLMRL_TLP_INL vec vset(float a) { return _mm256_set1_ps(a); }
LLMRL_TLP_INL vec vadd(vec a, vec b) { return _mm256_add_ps(a, b); }
LLMRL_TLP_INL vec vsub(vec a, vec b) { return _mm256_sub_ps(a, b); }
LLMRL_TLP_INL vec vmul(vec a, vec b) { return _mm256_mul_ps(a, b); }
LLMRL_TLP_INL vec vfma(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
LLMRL_TLP_INL vec vmax(vec a, vec x) { return _mm256_max_ps(a, x); }
LLMRL_TLP_INL bool vany_gt(vec a, vec b) { return _mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_GT_OQ)) != 0; }
LLMRL_TLP_INL float vhmax(vec a) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}
LLMRL_TLP_INL float vhsum(vec a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

// e^x for x ∈ [−200, 88] (or NaN), as the row kernels call it: below −87.3 (where the exponent bits
// cannot express 2^n) the result is flushed to 0.
LLMRL_TLP_INL vec vexp(vec x0) {
  using namespace expc;
  const vec lo = _mm256_set1_ps(-87.3f);
  const vec x = _mm256_max_ps(lo, x0);  // NaN stays NaN
  const vec n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  vec r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
  vec y = _mm256_set1_ps(kP0);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kP1));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kP2));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kP3));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kP4));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kP5));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(_mm256_cmp_ps(x0, lo, _CMP_LT_OQ), _mm256_mul_ps(y, _mm256_castsi256_ps(e)));
}

LLMRL_TLP_INL vec vload(const float* p) { return _mm256_loadu_ps(p); }
LLMRL_TLP_INL vec vload(const c10::BFloat16* p) {
  const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
LLMRL_TLP_INL vec vload(const c10::Half* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
LLMRL_TLP_INL void vstore(float* p, vec a) { _mm256_storeu_ps(p, a); }
LLMRL_TLP_INL void vstore(c10::BFloat16* p, vec a) {
  const __m256i u = _mm256_castps_si256(a);
  const __m256i bias = _mm256_add_epi32(_mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1)),
                                        _mm256_set1_epi32(0x7FFF));
  __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, bias), 16);
  r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7FC0), _mm256_castps_si256(_mm256_cmp_ps(a, a, _CMP_UNORD_Q)));
  // values are ≤ 0xFFFF, so the unsigned-saturating pack is exact; halves stay in order
  const __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), packed);
}
LLMRL_TLP_INL void vstore(c10::Half* p, vec a) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

#include "token_logprobs/rows.inc"
#undef LLMRL_TLP_INL
#undef LLMRL_TLP_TARGET
}  // namespace
}  // namespace avx2

}  // namespace llmrl::token_logprobs
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif  // LLMRL_TLP_X86
