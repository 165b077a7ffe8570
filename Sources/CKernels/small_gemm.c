#include "small_gemm.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))
#define INLINE __attribute__((always_inline)) static inline

bool small_gemm_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

// The micro-kernel: rows [0, MR) × columns [0, 8·NV) of C from a(i, p) = a[i·ars + p·acs] and
// the rows of B (k × n, row-major). MR ≤ 6 rows by two 8-lane vectors: 12 accumulators, two
// loads of B and MR broadcasts of A per p. Partial column tiles use masked loads and stores.
INLINE AVX2 void tile(int MR, int NV, bool masked, int k, const float *a, long ars, long acs, const float *b, long ldb,
                      float alpha, float beta, float *c, long ldc, __m256i mask0, __m256i mask1) {
    __m256 acc[6][2];
    for (int i = 0; i < 6; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int p = 0; p < k; p++) {
        const float *bp = b + p * ldb, *ap = a + p * acs;
        __m256 b0 = masked ? _mm256_maskload_ps(bp, mask0) : _mm256_loadu_ps(bp);
        __m256 b1 = _mm256_setzero_ps();
        if (NV == 2) b1 = masked ? _mm256_maskload_ps(bp + 8, mask1) : _mm256_loadu_ps(bp + 8);
        for (int i = 0; i < MR; i++) {
            __m256 ai = _mm256_broadcast_ss(ap + i * ars);
            acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
            if (NV == 2) acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
        }
    }
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    for (int i = 0; i < MR; i++) {
        float *ci = c + i * ldc;
        for (int v = 0; v < NV; v++) {
            const __m256i mask = v == 0 ? mask0 : mask1;
            __m256 r = _mm256_mul_ps(acc[i][v], va);
            if (beta != 0) r = _mm256_fmadd_ps(masked ? _mm256_maskload_ps(ci + 8 * v, mask) : _mm256_loadu_ps(ci + 8 * v), vb, r);
            if (masked) _mm256_maskstore_ps(ci + 8 * v, mask, r);
            else _mm256_storeu_ps(ci + 8 * v, r);
        }
    }
}

typedef void (*tile_fn)(int, const float *, long, long, const float *, long, float, float, float *, long, __m256i, __m256i);

// One instance per (rows, vectors, masked), so that every loop above is unrolled.
#define TILE(MR, NV, M)                                                                                               \
    static AVX2 void tile_##MR##_##NV##_##M(int k, const float *a, long ars, long acs, const float *b, long ldb,     \
                                            float alpha, float beta, float *c, long ldc, __m256i m0, __m256i m1) {   \
        tile(MR, NV, M, k, a, ars, acs, b, ldb, alpha, beta, c, ldc, m0, m1);                                        \
    }
#define TILES(MR) TILE(MR, 1, 0) TILE(MR, 1, 1) TILE(MR, 2, 0) TILE(MR, 2, 1)
TILES(1) TILES(2) TILES(3) TILES(4) TILES(5) TILES(6)
#define ROW(MR) {tile_##MR##_1_0, tile_##MR##_1_1, tile_##MR##_2_0, tile_##MR##_2_1}
static const tile_fn tiles[7][4] = {{0, 0, 0, 0}, ROW(1), ROW(2), ROW(3), ROW(4), ROW(5), ROW(6)};

// The first `lanes` lanes set.
static AVX2 __m256i lane_mask(int lanes) {
    const __m256i index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(lanes), index);
}

// out (cols × rows, row-major) ← in (rows × cols, `ld` apart)ᵀ, 8×8 blocks in registers.
static AVX2 void transpose(int rows, int cols, const float *in, int ld, float *out) {
    int r = 0;
    for (; r + 8 <= rows; r += 8) {
        int c = 0;
        for (; c + 8 <= cols; c += 8) {
            __m256 x[8], t[8];
            for (int i = 0; i < 8; i++) x[i] = _mm256_loadu_ps(in + (r + i) * ld + c);
            for (int i = 0; i < 8; i += 2) {
                t[i] = _mm256_unpacklo_ps(x[i], x[i + 1]);
                t[i + 1] = _mm256_unpackhi_ps(x[i], x[i + 1]);
            }
            for (int i = 0; i < 8; i += 4) {
                x[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
                x[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
                x[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
                x[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
            }
            for (int i = 0; i < 4; i++) {
                t[i] = _mm256_permute2f128_ps(x[i], x[i + 4], 0x20);
                t[i + 4] = _mm256_permute2f128_ps(x[i], x[i + 4], 0x31);
            }
            // t[i] is column c + i, rows r … r + 7.
            for (int i = 0; i < 8; i++) _mm256_storeu_ps(out + (c + i) * rows + r, t[i]);
        }
        for (; c < cols; c++)
            for (int i = 0; i < 8; i++) out[c * rows + r + i] = in[(r + i) * ld + c];
    }
    for (; r < rows; r++)
        for (int c = 0; c < cols; c++) out[c * rows + r] = in[r * ld + c];
}

// C ← alpha·op(A)·op(B) + beta·C over 6×16 tiles; with `upper_only`, tiles wholly below the
// diagonal are skipped.
static AVX2 void tiles_product(bool trans_a, bool trans_b, bool upper_only, int m, int n, int k, float alpha, const float *a,
                               int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    if (m <= 0 || n <= 0) return;
    // The kernel reads rows of op(B): a transposed B is transposed first (k·n floats).
    float bt[SMALL_GEMM_MAX_DIM * SMALL_GEMM_MAX_DIM];
    if (trans_b && k > 0) {
        transpose(n, k, b, ldb, bt);
        b = bt;
        ldb = n;
    }
    const long ars = trans_a ? 1 : lda, acs = trans_a ? lda : 1;
    const __m256i all = _mm256_set1_epi32(-1);
    for (int j = 0; j < n; j += 16) {
        const int width = n - j < 16 ? n - j : 16;
        const int vectors = width > 8 ? 2 : 1;
        const bool masked = width % 8 != 0;
        const __m256i m0 = masked && vectors == 1 ? lane_mask(width) : all;
        const __m256i m1 = masked && vectors == 2 ? lane_mask(width - 8) : all;
        const int variant = (vectors - 1) * 2 + masked;
        for (int i = 0; i < m && !(upper_only && j + width <= i); i += 6) {
            const int rows = m - i < 6 ? m - i : 6;
            tiles[rows][variant](k, a + i * ars, ars, acs, b + j, ldb, alpha, beta, c + (long)i * ldc + j, ldc, m0, m1);
        }
    }
}

AVX2 void small_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                      const float *b, int ldb, float beta, float *c, int ldc) {
    tiles_product(trans_a, trans_b, false, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

AVX2 void small_ssyrk_upper(bool trans, int n, int k, float alpha, const float *a, int lda, float beta, float *c, int ldc) {
    tiles_product(trans, !trans, true, n, n, k, alpha, a, lda, a, lda, beta, c, ldc);
}

#else

bool small_gemm_available(void) { return false; }

void small_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc) {
    (void)trans_a, (void)trans_b, (void)m, (void)n, (void)k, (void)alpha, (void)a, (void)lda, (void)b, (void)ldb,
        (void)beta, (void)c, (void)ldc;
    __builtin_trap();
}

void small_ssyrk_upper(bool trans, int n, int k, float alpha, const float *a, int lda, float beta, float *c, int ldc) {
    (void)trans, (void)n, (void)k, (void)alpha, (void)a, (void)lda, (void)beta, (void)c, (void)ldc;
    __builtin_trap();
}

#endif
