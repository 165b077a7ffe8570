#include "activations.h"

#include <math.h>

// Φ(x) = ½·erfc(−x/√2). With z = |x|/√2 and t = 1/(1 + p·z), erfc(z) ≈ t·P(t)·e^(−z²) where P
// is the degree-4 polynomial of Abramowitz & Stegun's formula 7.1.26 (Handbook of Mathematical
// Functions, 1964; |error| ≤ 1.5e-7 for erf). Computing erfc directly, not 1 − erf, keeps the
// relative error small in the left tail, where GELU's output is tiny. The same e^(−z²) = e^(−x²/2)
// gives the density for the backward pass, so each element costs one exponential.
static const float AS_P = 0.3275911f;
static const float AS_A1 = 0.254829592f, AS_A2 = -0.284496736f, AS_A3 = 1.421413741f, AS_A4 = -1.453152027f,
                   AS_A5 = 1.061405429f;
static const float INV_SQRT2 = 0.70710678118654752f, INV_SQRT2PI = 0.39894228040143268f;

static inline float scalar_cdf(float x) { return 0.5f * erfcf(-x * INV_SQRT2); }
static inline float scalar_pdf(float x) { return INV_SQRT2PI * expf(-0.5f * x * x); }

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))
#define INLINE __attribute__((always_inline)) static inline

bool activations_vectorized(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

// e^v for v ≤ 0 (here v = −x²/2): v = n·ln2 + r with |r| ≤ ln2/2, e^r by its Taylor polynomial
// to degree 7 (truncation below 6e-9 relative), 2^n built in the exponent bits. Inputs below
// −87 (where e^v underflows float's normal range) give 0.
INLINE AVX2 __m256 exp_nonpositive(__m256 v) {
    const __m256 lowest = _mm256_set1_ps(-87.0f);
    __m256 underflow = _mm256_cmp_ps(v, lowest, _CMP_LT_OQ);
    v = _mm256_max_ps(v, lowest);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(v, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    // r = v − n·ln2, ln2 split so that n·LN2_HI is exact.
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), v);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860682030941723e-6f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(underflow, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

// Φ(x) and e^(−x²/2) for eight values.
INLINE AVX2 void cdf_and_gauss(__m256 x, __m256 *cdf, __m256 *gauss) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 z = _mm256_mul_ps(_mm256_andnot_ps(sign, x), _mm256_set1_ps(INV_SQRT2));
    __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_fmadd_ps(_mm256_set1_ps(AS_P), z, _mm256_set1_ps(1.0f)));
    __m256 q = _mm256_set1_ps(AS_A5);
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(AS_A4));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(AS_A3));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(AS_A2));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(AS_A1));
    q = _mm256_mul_ps(q, t);
    __m256 g = exp_nonpositive(_mm256_mul_ps(_mm256_set1_ps(-1.0f), _mm256_mul_ps(z, z)));
    __m256 half_erfc = _mm256_mul_ps(_mm256_set1_ps(0.5f), _mm256_mul_ps(q, g));  // Φ(−|x|)
    __m256 negative = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
    *cdf = _mm256_blendv_ps(_mm256_sub_ps(_mm256_set1_ps(1.0f), half_erfc), half_erfc, negative);
    *gauss = g;
}

AVX2 static void gelu_forward_avx2(const float *x, float *y, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i), cdf, gauss;
        cdf_and_gauss(v, &cdf, &gauss);
        _mm256_storeu_ps(y + i, _mm256_mul_ps(v, cdf));
    }
    if (i < n) {
        float in[8] = {0}, out[8];
        for (long j = i; j < n; j++) in[j - i] = x[j];
        gelu_forward_avx2(in, out, 8);
        for (long j = i; j < n; j++) y[j] = out[j - i];
    }
}

AVX2 static void gelu_backward_avx2(const float *x, const float *dy, float *dx, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i), cdf, gauss;
        cdf_and_gauss(v, &cdf, &gauss);
        __m256 slope = _mm256_fmadd_ps(_mm256_mul_ps(v, _mm256_set1_ps(INV_SQRT2PI)), gauss, cdf);
        _mm256_storeu_ps(dx + i, _mm256_mul_ps(_mm256_loadu_ps(dy + i), slope));
    }
    if (i < n) {
        float in[8] = {0}, grad[8] = {0}, out[8];
        for (long j = i; j < n; j++) { in[j - i] = x[j]; grad[j - i] = dy[j]; }
        gelu_backward_avx2(in, grad, out, 8);
        for (long j = i; j < n; j++) dx[j] = out[j - i];
    }
}

static bool use_avx2(void) { return activations_vectorized(); }

AVX2 static void relu_backward_f32_avx2(const float *y, const float *dy, float *dx, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 keep = _mm256_cmp_ps(_mm256_loadu_ps(y + i), _mm256_setzero_ps(), _CMP_GT_OQ);
        _mm256_storeu_ps(dx + i, _mm256_and_ps(keep, _mm256_loadu_ps(dy + i)));
    }
    for (; i < n; i++) dx[i] = y[i] > 0 ? dy[i] : 0;
}

AVX2 static void relu_backward_f64_avx2(const double *y, const double *dy, double *dx, long n) {
    long i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256d keep = _mm256_cmp_pd(_mm256_loadu_pd(y + i), _mm256_setzero_pd(), _CMP_GT_OQ);
        _mm256_storeu_pd(dx + i, _mm256_and_pd(keep, _mm256_loadu_pd(dy + i)));
    }
    for (; i < n; i++) dx[i] = y[i] > 0 ? dy[i] : 0;
}
#else
bool activations_vectorized(void) { return false; }
static bool use_avx2(void) { return false; }
#endif

void gelu_forward_f32(const float *x, float *y, long n) {
#if defined(__x86_64__)
    if (use_avx2()) { gelu_forward_avx2(x, y, n); return; }
#endif
    for (long i = 0; i < n; i++) y[i] = x[i] * scalar_cdf(x[i]);
}

void gelu_backward_f32(const float *x, const float *dy, float *dx, long n) {
#if defined(__x86_64__)
    if (use_avx2()) { gelu_backward_avx2(x, dy, dx, n); return; }
#endif
    for (long i = 0; i < n; i++) dx[i] = dy[i] * (scalar_cdf(x[i]) + x[i] * scalar_pdf(x[i]));
}

void relu_backward_f32(const float *y, const float *dy, float *dx, long n) {
#if defined(__x86_64__)
    if (use_avx2()) { relu_backward_f32_avx2(y, dy, dx, n); return; }
#endif
    for (long i = 0; i < n; i++) dx[i] = y[i] > 0 ? dy[i] : 0;
}

void relu_backward_f64(const double *y, const double *dy, double *dx, long n) {
#if defined(__x86_64__)
    if (use_avx2()) { relu_backward_f64_avx2(y, dy, dx, n); return; }
#endif
    for (long i = 0; i < n; i++) dx[i] = y[i] > 0 ? dy[i] : 0;
}
