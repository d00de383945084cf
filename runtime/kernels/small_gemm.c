/* y[M, N] = x[M, K] @ w[N, K]^T for small M (decode steps: one row per sequence).
 *
 * At batch 1..8 a linear layer is a walk over the weight matrix: every weight is read once and
 * used M times, so the speed limit is memory bandwidth. Each output row streams one weight row
 * with AVX2 loads and keeps M running sums in registers (the M input rows stay in L1). Rows are
 * split across OpenMP threads; the library links the libgomp torch itself loads, so the threads
 * are torch's (torch.set_num_threads applies) and nothing is oversubscribed.
 * Sums are float32 FMA chains (8 lanes, then a horizontal add): within 1e-6 relative of MKL.
 */
#include <immintrin.h>
#include <stdint.h>

static inline float hsum(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/* R weight rows at a time, MM input rows: R*MM independent FMA chains hide the FMA latency and
 * give the prefetchers R streams; R*MM <= 8 accumulators leave registers for the loads. */
#define KERNEL(R, MM)                                                                         \
    static void rows_##R##_##MM(const float *x, const float *w, float *y, int64_t n0,          \
                                int64_t n1, int64_t N, int64_t K) {                           \
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
                    __m256 wv = _mm256_loadu_ps(w + (n + r) * K + k);                         \
                    for (int m = 0; m < MM; m++) acc[r][m] = _mm256_fmadd_ps(wv, xv[m], acc[r][m]); \
                }                                                                             \
            }                                                                                 \
            for (int r = 0; r < R; r++)                                                       \
                for (int m = 0; m < MM; m++) {                                                \
                    float s = hsum(acc[r][m]);                                                \
                    for (int64_t kk = k; kk < K; kk++) s += w[(n + r) * K + kk] * x[m * K + kk]; \
                    y[m * N + n + r] = s;                                                     \
                }                                                                             \
        }                                                                                     \
        for (; n < n1; n++) {                                                                 \
            __m256 acc[MM];                                                                   \
            for (int m = 0; m < MM; m++) acc[m] = _mm256_setzero_ps();                        \
            int64_t k = 0;                                                                    \
            for (; k + 8 <= K; k += 8) {                                                      \
                __m256 wv = _mm256_loadu_ps(w + n * K + k);                                   \
                for (int m = 0; m < MM; m++)                                                  \
                    acc[m] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + m * K + k), acc[m]);     \
            }                                                                                 \
            for (int m = 0; m < MM; m++) {                                                    \
                float s = hsum(acc[m]);                                                       \
                for (int64_t kk = k; kk < K; kk++) s += w[n * K + kk] * x[m * K + kk];        \
                y[m * N + n] = s;                                                             \
            }                                                                                 \
        }                                                                                     \
    }

KERNEL(4, 1)
KERNEL(4, 2)
KERNEL(2, 3)
KERNEL(2, 4)
KERNEL(1, 5)
KERNEL(1, 6)
KERNEL(1, 7)
KERNEL(1, 8)

typedef void (*row_fn)(const float *, const float *, float *, int64_t, int64_t, int64_t, int64_t);
static const row_fn KERNELS[9] = {0, rows_4_1, rows_4_2, rows_2_3, rows_2_4, rows_1_5, rows_1_6, rows_1_7, rows_1_8};

/* y[b] = x[b] @ w[b]^T for b < B: x (B, M, K), w (B, N, K), y (B, M, N), any M (input rows go
 * 8 at a time over a task's weight rows, which stay in L1/L2 between the passes). Tasks are
 * (batch entry, 16 weight rows), so the n heads of a multi-token model share one parallel loop. */
int zoo_small_bgemm(const float *x, const float *w, float *y, int64_t B, int64_t M, int64_t N, int64_t K) {
    if (B < 1 || M < 1 || N < 1 || K < 1) return 1;
    const int64_t block = 16;
    const int64_t per = (N + block - 1) / block;
    const int64_t tasks = B * per;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < tasks; t++) {
        int64_t b = t / per, n0 = (t % per) * block, n1 = n0 + block < N ? n0 + block : N;
        for (int64_t m0 = 0; m0 < M; m0 += 8) {
            int64_t mm = M - m0 < 8 ? M - m0 : 8;
            KERNELS[mm](x + (b * M + m0) * K, w + b * N * K, y + b * M * N + m0 * N, n0, n1, N, K);
        }
    }
    return 0;
}

/* One thread's share of a small GEMM: weight rows [n0, n1) for all M input rows (8 at a time).
 * For callers that run their own parallel region (block_step.c). */
void zoo_gemm_rows(const float *x, const float *w, float *y, int64_t M, int64_t n0, int64_t n1, int64_t N, int64_t K) {
    for (int64_t m0 = 0; m0 < M; m0 += 8) {
        int64_t mm = M - m0 < 8 ? M - m0 : 8;
        KERNELS[mm](x + m0 * K, w, y + m0 * N, n0, n1, N, K);
    }
}

int zoo_small_gemm(const float *x, const float *w, float *y, int64_t M, int64_t N, int64_t K) {
    return zoo_small_bgemm(x, w, y, 1, M, N, K);
}

int zoo_kernels_abi(void) { return 3; }
