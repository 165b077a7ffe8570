// Small single-precision matrix products without packing, for the many GEMMs of order ≤ 96 that
// blocked preconditioners (Shampoo, SOAP) run per step, where OpenBLAS spends a quarter of its
// time copying operands into its packed layout. AVX2 + FMA only; callers check availability.
#ifndef CKERNELS_SMALL_GEMM_H
#define CKERNELS_SMALL_GEMM_H

#include <stdbool.h>

/// The largest m, n and k `small_sgemm` accepts.
#define SMALL_GEMM_MAX_DIM 96

/// Whether this CPU runs `small_sgemm` (AVX2 and FMA).
bool small_gemm_available(void);

/// Row-major C (m×n) ← alpha·op(A)·op(B) + beta·C, as `cblas_sgemm(CblasRowMajor, …)`:
/// op(A) is m×k (A stored k×m, `lda` apart, when `trans_a`), op(B) is k×n (B stored n×k when
/// `trans_b`). With beta = 0, C is not read. Requires m, n, k ≤ SMALL_GEMM_MAX_DIM and
/// `small_gemm_available()`. Single-threaded and deterministic: the sum over k runs in order for
/// every element, whatever the sizes.
void small_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc);

/// The upper triangle of row-major C (n×n) ← alpha·op(A)·op(A)ᵀ + beta·C (op(A) = A, n×k, or with
/// `trans` Aᵀ for A stored k×n), as `cblas_ssyrk(CblasRowMajor, CblasUpper, …)`; the strictly lower
/// triangle is left unspecified (tiles that cross the diagonal write some of it). About two thirds
/// of the work of the full product at order 64. Same requirements as `small_sgemm`.
void small_ssyrk_upper(bool trans, int n, int k, float alpha, const float *a, int lda, float beta, float *c, int ldc);

#endif
