/* y[M, N] = x[M, K] @ w[N, K]^T for small M (decode steps: one row per sequence).
 *
 * At batch 1..8 a linear layer is a walk over the weight matrix: every weight is read once and
 * used M times, so the speed limit is memory bandwidth. Each output row streams one weight row
 * with AVX2 loads and keeps M running sums in registers (the M input rows stay in L1). Rows are
 * split across OpenMP threads; the library links the libgomp torch itself loads, so the threads
 * are torch's (torch.set_num_threads applies) and nothing is oversubscribed.
 * Sums are float32 FMA chains (8 lanes, then a horizontal add): within 1e-6 relative of MKL.
 * Each output's sum runs in the same order whatever M is, so a row's result does not depend on
 * how many rows come with it (self-speculative decoding relies on that).
 */
#include "simd.h"
#include "weights.h"
#include <immintrin.h>
#include <stdint.h>
#include <string.h>


/* Weights are float32 or bfloat16 (widened by simd.h), always multiplied and summed in float32. */
#define LOADW_f32(p) _mm256_loadu_ps(p)
#define LOADW_bf16(p) load8_bf16(p)
static inline float w1_f32(const float *p) { return *p; }
static inline float w1_bf16(const uint16_t *p) { return bf16_to_f32(*p); }

/* R weight rows at a time, MM input rows: R*MM independent FMA chains hide the FMA latency and
 * give the prefetchers R streams; R*MM <= 8 accumulators leave registers for the loads. */
#define KERNEL(T, WT, R, MM)                                                                  \
    static void rows_##T##_##R##_##MM(const float *x, const WT *w, float *y, int64_t n0,      \
                                      int64_t n1, int64_t N, int64_t K) {                     \
        int64_t n = n0;                                                                       \
        for (; n + R <= n1; n += R) {                                                         \
            __m256 acc[R][MM];                                                                \
            for (int r = 0; r < R; r++)                                                       \
                for (int m = 0; m < MM; m++) acc[r][m] = _mm256_setzero_ps();                 \
            int64_t k = 0;                                                                    \
            for (; k + 8 <= K; k += 8) {                                                      \
                __m256 xv[MM];                                                                \
                for (int m = 0; m < MM; m++) xv[m] = _mm256_loadu_ps(x + m * K + k);          \
                for (int r = 0; r < R; r++) {                                                 \
                    if (((k * (int64_t)sizeof(WT)) & 63) == 0) PREFETCH(w + (n + r) * K + k);   \
                    __m256 wv = LOADW_##T(w + (n + r) * K + k);                               \
                    for (int m = 0; m < MM; m++) acc[r][m] = _mm256_fmadd_ps(wv, xv[m], acc[r][m]); \
                }                                                                             \
            }                                                                                 \
            for (int r = 0; r < R; r++)                                                       \
                for (int m = 0; m < MM; m++) {                                                \
                    float s = hsum(acc[r][m]);                                                \
                    for (int64_t kk = k; kk < K; kk++) s += w1_##T(w + (n + r) * K + kk) * x[m * K + kk]; \
                    y[m * N + n + r] = s;                                                     \
                }                                                                             \
        }                                                                                     \
        for (; n < n1; n++) {                                                                 \
            __m256 acc[MM];                                                                   \
            for (int m = 0; m < MM; m++) acc[m] = _mm256_setzero_ps();                        \
            int64_t k = 0;                                                                    \
            for (; k + 8 <= K; k += 8) {                                                      \
                if (((k * (int64_t)sizeof(WT)) & 63) == 0) PREFETCH(w + n * K + k);            \
                __m256 wv = LOADW_##T(w + n * K + k);                                         \
                for (int m = 0; m < MM; m++)                                                  \
                    acc[m] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + m * K + k), acc[m]);     \
            }                                                                                 \
            for (int m = 0; m < MM; m++) {                                                    \
                float s = hsum(acc[m]);                                                       \
                for (int64_t kk = k; kk < K; kk++) s += w1_##T(w + n * K + kk) * x[m * K + kk]; \
                y[m * N + n] = s;                                                             \
            }                                                                                 \
        }                                                                                     \
    }

#define KERNELS_FOR(T, WT)                                                                    \
    KERNEL(T, WT, 4, 2)                                                                       \
    KERNEL(T, WT, 2, 3)                                                                       \
    KERNEL(T, WT, 2, 4)                                                                       \
    KERNEL(T, WT, 1, 5)                                                                       \
    KERNEL(T, WT, 1, 6)                                                                       \
    KERNEL(T, WT, 1, 7)                                                                       \
    KERNEL(T, WT, 1, 8)

KERNELS_FOR(f32, float)
KERNELS_FOR(bf16, uint16_t)

/* One input row, float32 or bf16: one weight row at a time (one stream per thread; at batch 1
 * the prefetchers follow it better than 4 rows side by side). One FMA chain per output, in the
 * order of the kernels above, so a row's result does not depend on M. */
#define ROW1(T, WT)                                                                           \
    static void rows_##T##_row1(const float *x, const WT *w, float *y, int64_t n0, int64_t n1, \
                                int64_t N, int64_t K) {                                       \
        (void)N;                                                                              \
        for (int64_t n = n0; n < n1; n++) {                                                   \
            const WT *wr = w + n * K;                                                         \
            __m256 acc = _mm256_setzero_ps();                                                 \
            int64_t k = 0;                                                                    \
            for (; k + 8 <= K; k += 8) {                                                      \
                if (((k * (int64_t)sizeof(WT)) & 63) == 0) PREFETCH(wr + k);                  \
                acc = _mm256_fmadd_ps(LOADW_##T(wr + k), _mm256_loadu_ps(x + k), acc);        \
            }                                                                                 \
            float s = hsum(acc);                                                              \
            for (; k < K; k++) s += w1_##T(wr + k) * x[k];                                    \
            y[n] = s;                                                                         \
        }                                                                                     \
    }
ROW1(f32, float)
ROW1(bf16, uint16_t)

typedef void (*row_fn)(const float *, const void *, float *, int64_t, int64_t, int64_t, int64_t);
#define TABLE(T)                                                                                              \
    {0, (row_fn)rows_##T##_row1, (row_fn)rows_##T##_4_2, (row_fn)rows_##T##_2_3, (row_fn)rows_##T##_2_4,     \
     (row_fn)rows_##T##_1_5, (row_fn)rows_##T##_1_6, (row_fn)rows_##T##_1_7, (row_fn)rows_##T##_1_8}
static const row_fn KERNELS[2][9] = {TABLE(f32), TABLE(bf16)}; /* [weights are bf16][input rows] */
static inline size_t wsize(int bf16) { return bf16 ? 2 : 4; }

/* y[b] = x[b] @ w[b]^T for b < B: x (B, M, K), w (B, N, K) float32 or (bf16 != 0) bfloat16,
 * y (B, M, N), any M (input rows go 8 at a time over a task's weight rows, which stay in L1/L2
 * between the passes). Tasks are (batch entry, 16 weight rows), so the n heads of a multi-token
 * model share one parallel loop. */
int zoo_small_bgemm_t(const float *x, const void *w, float *y, int64_t B, int64_t M, int64_t N, int64_t K, int bf16) {
    if (B < 1 || M < 1 || N < 1 || K < 1) return 1;
    const int64_t block = 16;
    const int64_t per = (N + block - 1) / block;
    const int64_t tasks = B * per;
    const char *wb = (const char *)w;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < tasks; t++) {
        int64_t b = t / per, n0 = (t % per) * block, n1 = n0 + block < N ? n0 + block : N;
        for (int64_t m0 = 0; m0 < M; m0 += 8) {
            int64_t mm = M - m0 < 8 ? M - m0 : 8;
            KERNELS[bf16 != 0][mm](x + (b * M + m0) * K, wb + b * N * K * wsize(bf16), y + b * M * N + m0 * N, n0, n1,
                                   N, K);
        }
    }
    return 0;
}

int zoo_small_bgemm(const float *x, const float *w, float *y, int64_t B, int64_t M, int64_t N, int64_t K) {
    return zoo_small_bgemm_t(x, w, y, B, M, N, K, 0);
}

/* One thread's share of a small GEMM: weight rows [n0, n1) for all M input rows (8 at a time).
 * For callers that run their own parallel region (block_step.c). */
void zoo_gemm_rows(const float *x, const void *w, float *y, int64_t M, int64_t n0, int64_t n1, int64_t N, int64_t K,
                   int bf16) {
    for (int64_t m0 = 0; m0 < M; m0 += 8) {
        int64_t mm = M - m0 < 8 ? M - m0 : 8;
        KERNELS[bf16 != 0][mm](x + m0 * K, w, y + m0 * N, n0, n1, N, K);
    }
}

/* float32 weights: quant_gemm.c's AVX-512 kernel where the CPU has it (and K % 16 == 0), else the one here */
int zoo_small_gemm(const float *x, const float *w, float *y, int64_t M, int64_t N, int64_t K) {
    const zoo_weight wt = {w, NULL, NULL, ZW_F32, 0};
    if (zoo_weight_wide(&wt, K)) return zoo_wgemm(x, &wt, y, M, N, K);
    return zoo_small_bgemm_t(x, w, y, 1, M, N, K, 0);
}

/* bf16 weights: quant_gemm.c's AVX-512 kernel where the CPU has it (and K % 32 == 0), else the one here */
int zoo_small_gemm_bf16(const float *x, const uint16_t *w, float *y, int64_t M, int64_t N, int64_t K) {
    const zoo_weight wt = {w, NULL, NULL, ZW_BF16, 0};
    if (zoo_weight_split(&wt, K)) return zoo_wgemm(x, &wt, y, M, N, K);
    return zoo_small_bgemm_t(x, w, y, 1, M, N, K, 1);
}

int zoo_kernels_abi(void) { return 4; }
