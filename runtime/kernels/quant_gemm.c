/* y[M, N] = x[M, K] @ W[N, K]^T for decode-sized M, W stored as bfloat16, int8 or int4 and
 * turned into float32 in registers (weight-only quantization: the activations stay float32).
 *
 * A decode step reads every weight once, so bytes per weight set its speed; the work per weight
 * is what is left to keep under the memory time. Two instruction sets, picked at run time by
 * the CPU (`__builtin_cpu_supports`, overridable with zoo_set_isa for tests): AVX-512 (16 lanes)
 * and AVX2 (8 lanes), each in its own `target`-attributed functions, so one library built with
 * -mavx2 carries both.
 *
 * Formats (runtime/quant/functional.py writes them):
 *   int8  q int8 [N, K], scales float32 [N]:               w = q * s[n]
 *   int4  q uint8 [N, K/2] (input 2j in the low nibble of byte j, 2j+1 in the high one),
 *         scales float32 [N, K/g], zeros uint8 [N, K/g] or none (symmetric: zero 8):
 *                                                          w = (q - z) * s
 *   bf16  [N, K], the top half of a float32.
 * int4 and bf16 are read in the order they lie: the low nibbles (bf16: the low halves of each
 * 32-bit word) are the even inputs and the high ones the odd inputs, so x is split once per call
 * into its even and odd elements (`split`) and a weight vector becomes float32 lanes in two
 * cheap integer ops (and / shift) with no shuffles. Per group, an int4 weight is
 * fma(q, s, -z*s): the zero point costs nothing. Each output's sum runs in an order that does
 * not depend on M (a row's result does not depend on how many rows come with it).
 */
#include "simd.h"
#include "weights.h"
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>


void zoo_gemm_rows(const float *x, const void *w, float *y, int64_t M, int64_t n0, int64_t n1, int64_t N, int64_t K,
                   int bf16);

/* 0: not decided yet, 1: AVX2, 2: AVX-512, 3: AVX-512 with bf16 dot products (AVX512_BF16) */
static int isa = 0;

static int best_isa(void) {
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")))
        return 1;
    return __builtin_cpu_supports("avx512bf16") ? 3 : 2;
}

static int level(void) {
    if (!isa) isa = best_isa();
    return isa;
}

static int avx512(void) { return level() >= 2; }

/* Force the instruction set (1 = AVX2, 2 = AVX-512, 3 = AVX-512 + BF16, each where the CPU has
 * it; 0 = the best here); returns the one in use. */
int zoo_set_isa(int which) {
    int best = best_isa();
    isa = which >= 1 && which <= best ? which : best;
    return isa;
}

/* ------------------------------------------------------------------ x split into even / odd */
/* Bumped by every split: a thread's int8 copy of a split x (the AVX2 int4 kernel's) is reused
 * only while no split has happened since it was made (block_step.c splits each phase's input
 * before the phase's projections; its worksharing loops end in barriers). */
static int64_t split_epoch = 0;

void zoo_split(const float *x, float *xs, int64_t M, int64_t K) {
    __atomic_fetch_add(&split_epoch, 1, __ATOMIC_RELAXED);
    const int64_t h = K / 2;
    for (int64_t m = 0; m < M; m++) {
        const float *xr = x + m * K;
        float *e = xs + m * K, *o = e + h;
        for (int64_t j = 0; j < h; j++) {
            e[j] = xr[2 * j];
            o[j] = xr[2 * j + 1];
        }
    }
}

/* thread-local scratch for callers that pass no split x */
static __thread float *scratch = NULL;
static __thread int64_t scratch_n = 0;

static float *split_here(const float *x, int64_t M, int64_t K) {
    int64_t need = M * K;
    if (need > scratch_n) {
        free(scratch);
        scratch = (float *)aligned_alloc(64, ((need * sizeof(float) + 63) / 64) * 64);
        scratch_n = scratch ? need : 0;
        if (!scratch) return NULL;
    }
    zoo_split(x, scratch, M, K);
    return scratch;
}

/* ------------------------------------------------------------------ AVX-512 */
#ifndef PF
#define PF 16384
#endif
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")))

/* The row kernels: R weight rows x MM input rows, R*MM accumulators. `xs` is x as the format
 * wants it (split for bf16 / int4, plain for int8), each input row `K` floats apart. */
#define K512_INT8(R, MM)                                                                                         \
    static T512 void i8_512_##R##_##MM(const float *x, const zoo_weight *w, float *y, int64_t n0, int64_t n1,   \
                                       int64_t N, int64_t K) {                                                  \
        const int8_t *q = (const int8_t *)w->data;                                                              \
        for (int64_t n = n0; n < n1; n += R) {                                                                  \
            const int rr = n1 - n < R ? (int)(n1 - n) : R;                                                      \
            __m512 acc[R][MM];                                                                                  \
            for (int r = 0; r < R; r++)                                                                         \
                for (int m = 0; m < MM; m++) acc[r][m] = _mm512_setzero_ps();                                   \
            int64_t k = 0;                                                                                      \
            for (; k + 16 <= K; k += 16) {                                                                      \
                __m512 xv[MM];                                                                                  \
                for (int m = 0; m < MM; m++) xv[m] = _mm512_loadu_ps(x + m * K + k);                            \
                for (int r = 0; r < R; r++) {                                                                   \
                    if ((k & 63) == 0) PREFETCH(q + (n + (r < rr ? r : rr - 1)) * K + k);                      \
                    __m512 wv = _mm512_cvtepi32_ps(                                                             \
                        _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(q + (n + (r < rr ? r : rr - 1)) * K + k))));         \
                    for (int m = 0; m < MM; m++) acc[r][m] = _mm512_fmadd_ps(wv, xv[m], acc[r][m]);             \
                }                                                                                               \
            }                                                                                                   \
            for (int r = 0; r < rr; r++)                                                                        \
                for (int m = 0; m < MM; m++) {                                                                  \
                    float s = _mm512_reduce_add_ps(acc[r][m]);                                                  \
                    for (int64_t kk = k; kk < K; kk++) s += (float)q[(n + r) * K + kk] * x[m * K + kk];         \
                    y[m * N + n + r] = s * w->scales[n + r];                                                    \
                }                                                                                               \
        }                                                                                                       \
    }

/* int4: 16 bytes = 32 inputs of one row per step (a group is a whole number of steps) */
#define K512_INT4(R, MM)                                                                                         \
    static T512 void i4_512_##R##_##MM(const float *x, const zoo_weight *w, float *y, int64_t n0, int64_t n1,   \
                                       int64_t N, int64_t K) {                                                  \
        const uint8_t *q = (const uint8_t *)w->data;                                                            \
        const int64_t h = K / 2, G = K / w->group, per = w->group / 32;                                          \
        const __m512i low = _mm512_set1_epi32(15);                                                              \
        for (int64_t n = n0; n < n1; n += R) {                                                                  \
            const int rr = n1 - n < R ? (int)(n1 - n) : R;                                                      \
            __m512 acc[R][MM];                                                                                  \
            for (int r = 0; r < R; r++)                                                                         \
                for (int m = 0; m < MM; m++) acc[r][m] = _mm512_setzero_ps();                                   \
            for (int64_t g = 0; g < G; g++) {                                                                   \
                __m512 sv[R], zv[R];                                                                            \
                for (int r = 0; r < R; r++) {                                                                   \
                    int64_t nr = n + (r < rr ? r : 0);                                                          \
                    float s = w->scales[nr * G + g];                                                            \
                    float z = w->zeros ? (float)w->zeros[nr * G + g] : 8.0f;                                    \
                    sv[r] = _mm512_set1_ps(s);                                                                  \
                    zv[r] = _mm512_set1_ps(-z * s);                                                             \
                }                                                                                               \
                for (int64_t b = 0; b < per; b++) {                                                             \
                    const int64_t j = (g * per + b) * 16; /* byte / half-row index */                          \
                    __m512 xe[MM], xo[MM];                                                                      \
                    for (int m = 0; m < MM; m++) {                                                              \
                        xe[m] = _mm512_loadu_ps(x + m * K + j);                                                 \
                        xo[m] = _mm512_loadu_ps(x + m * K + h + j);                                             \
                    }                                                                                           \
                    for (int r = 0; r < R; r++) {                                                               \
                        if ((j & 63) == 0) PREFETCH(q + (n + (r < rr ? r : rr - 1)) * h + j);                   \
                        __m512i bv = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(q + (n + (r < rr ? r : rr - 1)) * h + j))); \
                        __m512 lo = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_and_si512(bv, low)), sv[r], zv[r]); \
                        __m512 hi = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(bv, 4)), sv[r], zv[r]); \
                        for (int m = 0; m < MM; m++) {                                                          \
                            acc[r][m] = _mm512_fmadd_ps(lo, xe[m], acc[r][m]);                                  \
                            acc[r][m] = _mm512_fmadd_ps(hi, xo[m], acc[r][m]);                                  \
                        }                                                                                       \
                    }                                                                                           \
                }                                                                                               \
            }                                                                                                   \
            for (int r = 0; r < rr; r++)                                                                        \
                for (int m = 0; m < MM; m++) y[m * N + n + r] = _mm512_reduce_add_ps(acc[r][m]);                \
        }                                                                                                       \
    }

/* bf16: 32 inputs per 64-byte load; the even ones are the low halves (shift up), the odd the
 * high halves (mask) */
#define K512_BF16(R, MM)                                                                                         \
    static T512 void b16_512_##R##_##MM(const float *x, const zoo_weight *w, float *y, int64_t n0, int64_t n1,  \
                                        int64_t N, int64_t K) {                                                 \
        const uint16_t *q = (const uint16_t *)w->data;                                                          \
        const int64_t h = K / 2;                                                                                \
        const __m512i top = _mm512_set1_epi32((int)0xffff0000u);                                                \
        for (int64_t n = n0; n < n1; n += R) {                                                                  \
            const int rr = n1 - n < R ? (int)(n1 - n) : R;                                                      \
            __m512 acc[R][MM];                                                                                  \
            for (int r = 0; r < R; r++)                                                                         \
                for (int m = 0; m < MM; m++) acc[r][m] = _mm512_setzero_ps();                                   \
            for (int64_t j = 0; j < h; j += 16) {                                                               \
                __m512 xe[MM], xo[MM];                                                                          \
                for (int m = 0; m < MM; m++) {                                                                  \
                    xe[m] = _mm512_loadu_ps(x + m * K + j);                                                     \
                    xo[m] = _mm512_loadu_ps(x + m * K + h + j);                                                 \
                }                                                                                               \
                for (int r = 0; r < R; r++) {                                                                   \
                    PREFETCH(q + (n + (r < rr ? r : rr - 1)) * K + 2 * j);                                    \
                    __m512i v = _mm512_loadu_si512((const void *)(q + (n + (r < rr ? r : rr - 1)) * K + 2 * j));                    \
                    __m512 ev = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));                                  \
                    __m512 ov = _mm512_castsi512_ps(_mm512_and_si512(v, top));                                  \
                    for (int m = 0; m < MM; m++) {                                                              \
                        acc[r][m] = _mm512_fmadd_ps(ev, xe[m], acc[r][m]);                                      \
                        acc[r][m] = _mm512_fmadd_ps(ov, xo[m], acc[r][m]);                                      \
                    }                                                                                           \
                }                                                                                               \
            }                                                                                                   \
            for (int r = 0; r < rr; r++)                                                                        \
                for (int m = 0; m < MM; m++) y[m * N + n + r] = _mm512_reduce_add_ps(acc[r][m]);                \
        }                                                                                                       \
    }

/* float32: 16 inputs per load, no conversion (the AVX-512 twin of small_gemm.c's AVX2 kernel) */
#define K512_F32(R, MM)                                                                                          \
    static T512 void f32_512_##R##_##MM(const float *x, const zoo_weight *w, float *y, int64_t n0, int64_t n1,  \
                                        int64_t N, int64_t K) {                                                 \
        const float *q = (const float *)w->data;                                                                \
        for (int64_t n = n0; n < n1; n += R) {                                                                  \
            const int rr = n1 - n < R ? (int)(n1 - n) : R;                                                      \
            __m512 acc[R][MM];                                                                                  \
            for (int r = 0; r < R; r++)                                                                         \
                for (int m = 0; m < MM; m++) acc[r][m] = _mm512_setzero_ps();                                   \
            for (int64_t k = 0; k < K; k += 16) {                                                               \
                __m512 xv[MM];                                                                                  \
                for (int m = 0; m < MM; m++) xv[m] = _mm512_loadu_ps(x + m * K + k);                            \
                for (int r = 0; r < R; r++) {                                                                   \
                    const float *wr = q + (n + (r < rr ? r : rr - 1)) * K + k;                                  \
                    PREFETCH(wr);                                                                               \
                    __m512 wv = _mm512_loadu_ps(wr);                                                            \
                    for (int m = 0; m < MM; m++) acc[r][m] = _mm512_fmadd_ps(wv, xv[m], acc[r][m]);             \
                }                                                                                               \
            }                                                                                                   \
            for (int r = 0; r < rr; r++)                                                                        \
                for (int m = 0; m < MM; m++) y[m * N + n + r] = _mm512_reduce_add_ps(acc[r][m]);                \
        }                                                                                                       \
    }

/* float32 / bf16, one input row: one weight row at a time (one stream per thread: 36-40 GB/s
 * against 30-36 for four rows side by side at batch 1 here). One FMA chain per output in the
 * order of the multi-row kernels above, so a row's result does not depend on how many rows
 * come with it (self-speculative decoding compares the two). */
static T512 void f32_512_row1(const float *x, const zoo_weight *w, float *y, int64_t n0, int64_t n1, int64_t N,
                              int64_t K) {
    (void)N;
    const float *q = (const float *)w->data;
    for (int64_t n = n0; n < n1; n++) {
        const float *wr = q + n * K;
        __m512 acc = _mm512_setzero_ps();
        for (int64_t k = 0; k < K; k += 16) {
            PREFETCH(wr + k);
            acc = _mm512_fmadd_ps(_mm512_loadu_ps(wr + k), _mm512_loadu_ps(x + k), acc);
        }
        y[n] = _mm512_reduce_add_ps(acc);
    }
}

static T512 void b16_512_row1(const float *x, const zoo_weight *w, float *y, int64_t n0, int64_t n1, int64_t N,
                              int64_t K) {
    (void)N;
    const uint16_t *q = (const uint16_t *)w->data;
    const int64_t h = K / 2;
    const __m512i top = _mm512_set1_epi32((int)0xffff0000u);
    for (int64_t n = n0; n < n1; n++) {
        const uint16_t *wr = q + n * K;
        __m512 acc = _mm512_setzero_ps();
        for (int64_t j = 0; j < h; j += 16) {
            PREFETCH(wr + 2 * j);
            __m512i v = _mm512_loadu_si512((const void *)(wr + 2 * j));
            acc = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v, 16)), _mm512_loadu_ps(x + j), acc);
            acc = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(v, top)), _mm512_loadu_ps(x + h + j), acc);
        }
        y[n] = _mm512_reduce_add_ps(acc);
    }
}

/* ------------------------------------------------------------------ AVX2 */
#define T256 __attribute__((target("avx2,fma")))

/* int8 on AVX2: 16 weights per step, two FMA chains per output (the first 8, the last 8), added
 * at the end, then the K % 16 tail in order; every batch size keeps this order. One weight row
 * per thread at batch 1 (one stream), at most 6 rows of x per call (2 R MM <= 12 sums). */
#define K256_INT8(R, MM)                                                                                         \
    static T256 void i8_256_##R##_##MM(const float *x, const zoo_weight *w, float *y, int64_t n0, int64_t n1,   \
                                       int64_t N, int64_t K) {                                                  \
        const int8_t *q = (const int8_t *)w->data;                                                              \
        const int64_t K16 = K & ~(int64_t)15;                                                                   \
        for (int64_t n = n0; n < n1; n += R) {                                                                  \
            const int rr = n1 - n < R ? (int)(n1 - n) : R;                                                      \
            __m256 a0[R][MM], a1[R][MM];                                                                        \
            for (int r = 0; r < R; r++)                                                                         \
                for (int m = 0; m < MM; m++) a0[r][m] = a1[r][m] = _mm256_setzero_ps();                         \
            for (int64_t k = 0; k < K16; k += 16) {                                                             \
                for (int r = 0; r < R; r++) {                                                                   \
                    const int8_t *wr = q + (n + (r < rr ? r : rr - 1)) * K + k;                                 \
                    if ((k & 63) == 0) PREFETCH_ROWS(wr, R * K);                                                \
                    __m128i v = _mm_loadu_si128((const __m128i *)wr);                                           \
                    __m256 w0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));                                    \
                    __m256 w1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(v, 8)));                 \
                    for (int m = 0; m < MM; m++) {                                                              \
                        a0[r][m] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + m * K + k), a0[r][m]);               \
                        a1[r][m] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + m * K + k + 8), a1[r][m]);           \
                    }                                                                                           \
                }                                                                                               \
            }                                                                                                   \
            for (int r = 0; r < rr; r++)                                                                        \
                for (int m = 0; m < MM; m++) {                                                                  \
                    float s = hsum(_mm256_add_ps(a0[r][m], a1[r][m]));                                          \
                    for (int64_t kk = K16; kk < K; kk++) s += (float)q[(n + r) * K + kk] * x[m * K + kk];       \
                    y[m * N + n + r] = s * w->scales[n + r];                                                    \
                }                                                                                               \
        }                                                                                                       \
    }

/* int4: 8 bytes = 16 inputs per step */
#define K256_INT4(R, MM)                                                                                         \
    static T256 void i4_256_##R##_##MM(const float *x, const zoo_weight *w, float *y, int64_t n0, int64_t n1,   \
                                       int64_t N, int64_t K) {                                                  \
        const uint8_t *q = (const uint8_t *)w->data;                                                            \
        const int64_t h = K / 2, G = K / w->group, per = w->group / 16;                                          \
        const __m256i low = _mm256_set1_epi32(15);                                                              \
        for (int64_t n = n0; n < n1; n += R) {                                                                  \
            const int rr = n1 - n < R ? (int)(n1 - n) : R;                                                      \
            __m256 acc[R][MM];                                                                                  \
            for (int r = 0; r < R; r++)                                                                         \
                for (int m = 0; m < MM; m++) acc[r][m] = _mm256_setzero_ps();                                   \
            for (int64_t g = 0; g < G; g++) {                                                                   \
                __m256 sv[R], zv[R];                                                                            \
                for (int r = 0; r < R; r++) {                                                                   \
                    int64_t nr = n + (r < rr ? r : 0);                                                          \
                    float s = w->scales[nr * G + g];                                                            \
                    float z = w->zeros ? (float)w->zeros[nr * G + g] : 8.0f;                                    \
                    sv[r] = _mm256_set1_ps(s);                                                                  \
                    zv[r] = _mm256_set1_ps(-z * s);                                                             \
                }                                                                                               \
                for (int64_t b = 0; b < per; b++) {                                                             \
                    const int64_t j = (g * per + b) * 8;                                                        \
                    __m256 xe[MM], xo[MM];                                                                      \
                    for (int m = 0; m < MM; m++) {                                                              \
                        xe[m] = _mm256_loadu_ps(x + m * K + j);                                                 \
                        xo[m] = _mm256_loadu_ps(x + m * K + h + j);                                             \
                    }                                                                                           \
                    for (int r = 0; r < R; r++) {                                                               \
                        if ((j & 63) == 0) PREFETCH(q + (n + (r < rr ? r : rr - 1)) * h + j);                   \
                        __m256i bv = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(q + (n + (r < rr ? r : rr - 1)) * h + j))); \
                        __m256 lo = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(bv, low)), sv[r], zv[r]); \
                        __m256 hi = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(bv, 4)), sv[r], zv[r]); \
                        for (int m = 0; m < MM; m++) {                                                          \
                            acc[r][m] = _mm256_fmadd_ps(lo, xe[m], acc[r][m]);                                  \
                            acc[r][m] = _mm256_fmadd_ps(hi, xo[m], acc[r][m]);                                  \
                        }                                                                                       \
                    }                                                                                           \
                }                                                                                               \
            }                                                                                                   \
            for (int r = 0; r < rr; r++)                                                                        \
                for (int m = 0; m < MM; m++) y[m * N + n + r] = hsum(acc[r][m]);                                \
        }                                                                                                       \
    }

/* bf16 on AVX2: 16 inputs per 32-byte load, the even ones the low halves (shift up), the odd ones
 * the high halves (mask): two integer ops per 16 values, where widening 8 at a time takes two
 * per 8. x is read straight from L1 into the FMAs. Two FMA chains per output, one over the even
 * inputs and one over the odd ones, added at the end: at batch 1 a single chain was bound by the
 * FMA latency (23 GB/s where float32 streams 28); every batch size keeps this order, so a row's
 * result is the same whatever rows come with it. */
#define K256_BF16(R, MM)                                                                                         \
    static T256 void b16_256_##R##_##MM(const float *x, const zoo_weight *w, float *y, int64_t n0, int64_t n1,  \
                                        int64_t N, int64_t K) {                                                 \
        const uint16_t *q = (const uint16_t *)w->data;                                                          \
        const int64_t h = K / 2;                                                                                \
        const __m256i top = _mm256_set1_epi32((int)0xffff0000u);                                                \
        for (int64_t n = n0; n < n1; n += R) {                                                                  \
            const int rr = n1 - n < R ? (int)(n1 - n) : R;                                                      \
            __m256 ae[R][MM], ao[R][MM];                                                                        \
            for (int r = 0; r < R; r++)                                                                         \
                for (int m = 0; m < MM; m++) ae[r][m] = ao[r][m] = _mm256_setzero_ps();                         \
            for (int64_t j = 0; j < h; j += 8) {                                                                \
                for (int r = 0; r < R; r++) {                                                                   \
                    const uint16_t *wr = q + (n + (r < rr ? r : rr - 1)) * K + 2 * j;                           \
                    if ((j & 15) == 0) PREFETCH_ROWS(wr, R * K * 2);                                            \
                    __m256i v = _mm256_loadu_si256((const __m256i *)wr);                                        \
                    __m256 ev = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));                                  \
                    __m256 ov = _mm256_castsi256_ps(_mm256_and_si256(v, top));                                  \
                    for (int m = 0; m < MM; m++) {                                                              \
                        ae[r][m] = _mm256_fmadd_ps(ev, _mm256_loadu_ps(x + m * K + j), ae[r][m]);               \
                        ao[r][m] = _mm256_fmadd_ps(ov, _mm256_loadu_ps(x + m * K + h + j), ao[r][m]);           \
                    }                                                                                           \
                }                                                                                               \
            }                                                                                                   \
            for (int r = 0; r < rr; r++)                                                                        \
                for (int m = 0; m < MM; m++) y[m * N + n + r] = hsum(_mm256_add_ps(ae[r][m], ao[r][m]));        \
        }                                                                                                       \
    }

#define FAMILY(K)                                                                                                \
    K(4, 1) K(4, 2) K(2, 3) K(2, 4) K(1, 5) K(1, 6) K(1, 7) K(1, 8)

FAMILY(K512_INT8)
FAMILY(K512_INT4)
FAMILY(K512_BF16)
FAMILY(K512_F32)
FAMILY(K256_INT4)
/* bf16 on AVX2 at most 6 rows of x per call (2 R MM <= 12 sums in registers); batch 1: one weight
 * row at a time per thread */
K256_BF16(1, 1) K256_BF16(2, 2) K256_BF16(2, 3) K256_BF16(1, 4) K256_BF16(1, 5) K256_BF16(1, 6)
K256_INT8(1, 1) K256_INT8(2, 2) K256_INT8(2, 3) K256_INT8(1, 4) K256_INT8(1, 5) K256_INT8(1, 6)

/* ------------------------------------------------------------------ AVX-512 BF16: int4 symmetric */
/* Symmetric int4 with bf16 dot products (vdpbf16ps): x is rounded to bf16 once per call (relative
 * error <= 2^-9, far below int4's own), q - 8 is exact in bf16 (a 32-entry word table, vpermw),
 * products are exact in float32 and summed in float32, then scaled per group. 64 weights (32
 * bytes) per step, 5 integer ops + 2 dot products + 1 FMA, against 14 float ops on the plain
 * AVX-512 path. Needs K % 64 == 0. */
#define T512B __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma")))

#define K512_I4BF(R, MM)                                                                                         \
    static T512B void i4b_512_##R##_##MM(const uint16_t *xb, const zoo_weight *w, float *y, int64_t n0,         \
                                         int64_t n1, int64_t N, int64_t K) {                                    \
        const uint8_t *q = (const uint8_t *)w->data;                                                            \
        const int64_t h = K / 2, G = K / w->group;                                                               \
        const int two = w->group == 32; /* a 64-weight step spans two groups */                                  \
        const __m512i tbl = _mm512_set_epi16(                                                                   \
            0x40e0, 0x40c0, 0x40a0, 0x4080, 0x4040, 0x4000, 0x3f80, 0, 0xbf80, 0xc000, 0xc040, 0xc080, 0xc0a0,     \
            0xc0c0, 0xc0e0, 0xc100, 0x40e0, 0x40c0, 0x40a0, 0x4080, 0x4040, 0x4000, 0x3f80, 0, 0xbf80, 0xc000,     \
            0xc040, 0xc080, 0xc0a0, 0xc0c0, 0xc0e0, 0xc100); /* word t: bf16(t % 16 - 8) */                       \
        const __m512i low = _mm512_set1_epi16(15);                                                              \
        for (int64_t n = n0; n < n1; n += R) {                                                                  \
            const int rr = n1 - n < R ? (int)(n1 - n) : R;                                                      \
            __m512 acc[R][MM];                                                                                  \
            for (int r = 0; r < R; r++)                                                                         \
                for (int m = 0; m < MM; m++) acc[r][m] = _mm512_setzero_ps();                                   \
            for (int64_t j = 0; j < h; j += 32) {                                                               \
                const int64_t gi = 2 * j / w->group;                                                            \
                __m512i xe[MM], xo[MM];                                                                         \
                for (int m = 0; m < MM; m++) {                                                                  \
                    xe[m] = _mm512_loadu_si512((const void *)(xb + m * K + j));                                 \
                    xo[m] = _mm512_loadu_si512((const void *)(xb + m * K + h + j));                             \
                }                                                                                               \
                for (int r = 0; r < R; r++) {                                                                   \
                    const int64_t row = n + (r < rr ? r : rr - 1);                                              \
                    if ((j & 63) == 0) PREFETCH(q + row * h + j);                                               \
                    __m512i b = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(q + row * h + j)));   \
                    __m512i lo = _mm512_permutexvar_epi16(_mm512_and_si512(b, low), tbl);                       \
                    __m512i hi = _mm512_permutexvar_epi16(_mm512_srli_epi16(b, 4), tbl);                        \
                    const float *sr = w->scales + row * G + gi;                                                 \
                    __m512 sv = two ? _mm512_insertf32x8(_mm512_set1_ps(sr[0]), _mm256_set1_ps(sr[1]), 1)       \
                                    : _mm512_set1_ps(sr[0]);                                                    \
                    for (int m = 0; m < MM; m++) {                                                              \
                        __m512 p = _mm512_dpbf16_ps(_mm512_setzero_ps(), (__m512bh)lo, (__m512bh)xe[m]);        \
                        p = _mm512_dpbf16_ps(p, (__m512bh)hi, (__m512bh)xo[m]);                                 \
                        acc[r][m] = _mm512_fmadd_ps(p, sv, acc[r][m]);                                          \
                    }                                                                                           \
                }                                                                                               \
            }                                                                                                   \
            for (int r = 0; r < rr; r++)                                                                        \
                for (int m = 0; m < MM; m++) y[m * N + n + r] = _mm512_reduce_add_ps(acc[r][m]);                \
        }                                                                                                       \
    }

FAMILY(K512_I4BF)


/* split x (M rows of K) rounded to bf16, nearest even */
static T512B void to_bf16(const float *xs, uint16_t *xb, int64_t n) {
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        _mm512_storeu_si512((void *)(xb + i),
                            (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(xs + i + 16), _mm512_loadu_ps(xs + i)));
    for (; i < n; i++) xb[i] = f32_to_bf16(xs[i]);
}

static __thread uint16_t *bscratch = NULL;
static __thread int64_t bscratch_n = 0;

static int bf16_dots(const zoo_weight *w, int64_t K) {
    return w->type == ZW_INT4 && !w->zeros && K % 64 == 0 && level() >= 3;
}

/* ------------------------------------------------------------------ AVX2: int4 x int8 */
/* On AVX2-only CPUs the float int4 path is compute-bound (7 ops per 16 weights before the FMAs).
 * Symmetric or not, int4 there multiplies with x rounded to int8 per block of 32 inputs (scale
 * absmax / 127: llama.cpp's Q4_0 x Q8_0), unsigned nibbles times signed bytes with
 * _mm256_maddubs_epi16 (no overflow: 2 * 15 * 127 < 2^15), pairs summed with _mm256_madd_epi16,
 * then per block float32: sum (q - z) xq = sum q xq - z sum xq, times s_w s_x. */
typedef struct {
    const float *src;
    int64_t M, K, epoch, cap;
    int8_t *q;      /* M x K: per block of 32 inputs, 16 even ones then 16 odd ones */
    float *scale;   /* M x K/32 */
    int32_t *sum;   /* M x K/32: sum of the block's int8 values */
} xq_cache;
static __thread xq_cache xqc = {0};

static T256 const xq_cache *quantize_x(const float *xs, int64_t M, int64_t K) {
    const int64_t epoch = __atomic_load_n(&split_epoch, __ATOMIC_RELAXED);
    if (xqc.src == xs && xqc.M == M && xqc.K == K && xqc.epoch == epoch) return &xqc;
    if (M * K > xqc.cap) {
        free(xqc.q);
        free(xqc.scale);
        free(xqc.sum);
        xqc.q = (int8_t *)malloc(M * K);
        xqc.scale = (float *)malloc(M * (K / 32) * sizeof(float));
        xqc.sum = (int32_t *)malloc(M * (K / 32) * sizeof(int32_t));
        xqc.cap = xqc.q && xqc.scale && xqc.sum ? M * K : 0;
        xqc.src = NULL;
        if (!xqc.cap) return NULL;
    }
    const int64_t h = K / 2, B = K / 32;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t m = 0; m < M; m++) {
        const float *e = xs + m * K, *o = e + h;
        for (int64_t b = 0; b < B; b++) {
            __m256 v[4] = {_mm256_loadu_ps(e + 16 * b), _mm256_loadu_ps(e + 16 * b + 8), _mm256_loadu_ps(o + 16 * b),
                           _mm256_loadu_ps(o + 16 * b + 8)};
            __m256 mx = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                                      _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
            __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
            m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
            m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
            const float amax = _mm_cvtss_f32(m4), d = amax / 127.0f, inv = amax > 0 ? 127.0f / amax : 0.0f;
            const __m256 iv = _mm256_set1_ps(inv);
            __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v[0], iv)), i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v[1], iv));
            __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v[2], iv)), i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v[3], iv));
            /* packs work per 128-bit lane: restore the order with one dword permute */
            __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
            p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256((__m256i *)(xqc.q + m * K + 32 * b), p);
            __m256i s16 = _mm256_maddubs_epi16(_mm256_set1_epi8(1), p);
            __m256i s32 = _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
            __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1));
            t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4e));
            t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1));
            xqc.scale[m * B + b] = d;
            xqc.sum[m * B + b] = _mm_cvtsi128_si32(t);
        }
    }
    xqc.src = xs;
    xqc.M = M;
    xqc.K = K;
    xqc.epoch = epoch;
    return &xqc;
}

#define K256_I4Q(R, MM)                                                                                          \
    static T256 void i4q_256_##R##_##MM(const xq_cache *c, int64_t m0, const zoo_weight *w, float *y, int64_t n0, \
                                        int64_t n1, int64_t N, int64_t K) {                                     \
        const uint8_t *q = (const uint8_t *)w->data;                                                            \
        const int64_t h = K / 2, G = K / w->group, B = K / 32, per = w->group / 32;                              \
        const __m256i shift = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4), low = _mm256_set1_epi8(15);            \
        const __m256i ones = _mm256_set1_epi16(1);                                                               \
        for (int64_t n = n0; n < n1; n += R) {                                                                  \
            const int rr = n1 - n < R ? (int)(n1 - n) : R;                                                      \
            __m256 acc[R][MM];                                                                                  \
            float corr[R][MM];                                                                                  \
            for (int r = 0; r < R; r++)                                                                         \
                for (int m = 0; m < MM; m++) acc[r][m] = _mm256_setzero_ps(), corr[r][m] = 0.f;                 \
            for (int64_t b = 0; b < B; b++) {                                                                   \
                const int64_t g = b / per;                                                                      \
                for (int r = 0; r < R; r++) {                                                                   \
                    const int64_t row = n + (r < rr ? r : rr - 1);                                              \
                    if ((b & 3) == 0) PREFETCH(q + row * h + 16 * b);                                           \
                    __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(q + row * h + 16 * b))); \
                    v = _mm256_and_si256(_mm256_srlv_epi32(v, shift), low);                                     \
                    const float sw = w->scales[row * G + g];                                                    \
                    const float z = w->zeros ? (float)w->zeros[row * G + g] : 8.0f;                             \
                    for (int m = 0; m < MM; m++) {                                                              \
                        const int64_t mi = (m0 + m) * B + b;                                                    \
                        __m256i xv = _mm256_loadu_si256((const __m256i *)(c->q + (m0 + m) * K + 32 * b));       \
                        __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(v, xv), ones);                       \
                        const float d = sw * c->scale[mi];                                                      \
                        acc[r][m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d), acc[r][m]);       \
                        corr[r][m] += d * z * (float)c->sum[mi];                                                \
                    }                                                                                           \
                }                                                                                               \
            }                                                                                                   \
            for (int r = 0; r < rr; r++)                                                                        \
                for (int m = 0; m < MM; m++) y[m * N + n + r] = hsum(acc[r][m]) - corr[r][m];                   \
        }                                                                                                       \
    }

FAMILY(K256_I4Q)

typedef void (*xqrow_fn)(const xq_cache *, int64_t, const zoo_weight *, float *, int64_t, int64_t, int64_t, int64_t);

typedef void (*qrow_fn)(const float *, const zoo_weight *, float *, int64_t, int64_t, int64_t, int64_t);
#define QTABLE(P)                                                                                                \
    {0, P##_4_1, P##_4_2, P##_2_3, P##_2_4, P##_1_5, P##_1_6, P##_1_7, P##_1_8}
static const qrow_fn I8_512[9] = QTABLE(i8_512), I4_512[9] = QTABLE(i4_512), B16_512[9] = QTABLE(b16_512);
static const qrow_fn I4_256[9] = QTABLE(i4_256), F32_512[9] = QTABLE(f32_512);
#define QTABLE6(P) {0, P##_1_1, P##_2_2, P##_2_3, P##_1_4, P##_1_5, P##_1_6}
static const qrow_fn I8_256[7] = QTABLE6(i8_256);
static const qrow_fn B16_256[7] = QTABLE6(b16_256);
typedef void (*brow_fn)(const uint16_t *, const zoo_weight *, float *, int64_t, int64_t, int64_t, int64_t);
static const xqrow_fn I4Q_256[9] = QTABLE(i4q_256);
static const brow_fn I4B_512[9] = QTABLE(i4b_512);

/* Whether the stored format can be read by the kernels at this K (checked by the callers too). */
int zoo_weight_ok(const zoo_weight *w, int64_t K) {
    switch (w->type) {
    case ZW_F32: case ZW_BF16: case ZW_INT8: return K > 0;
    case ZW_INT4: return K > 0 && w->group >= 32 && w->group % 32 == 0 && K % w->group == 0;
    default: return 0;
    }
}

int zoo_weight_wide(const zoo_weight *w, int64_t K) {
    return avx512() && ((w->type == ZW_F32 && K % 16 == 0) || (w->type == ZW_BF16 && K % 32 == 0) ||
                        w->type == ZW_INT8 || w->type == ZW_INT4);
}

int zoo_weight_split(const zoo_weight *w, int64_t K) {
    return w->type == ZW_INT4 || (w->type == ZW_BF16 && K % (avx512() ? 32 : 16) == 0);
}

void zoo_wgemm_rows(const float *x, const float *xs, const zoo_weight *w, float *y, int64_t M, int64_t n0, int64_t n1,
                    int64_t N, int64_t K) {
    const int wide = avx512();
    if (w->type == ZW_F32 && wide && K % 16 == 0) {
        for (int64_t m0 = 0; m0 < M; m0 += 8) {
            int64_t mm = M - m0 < 8 ? M - m0 : 8;
            (mm == 1 ? f32_512_row1 : F32_512[mm])(x + m0 * K, w, y + m0 * N, n0, n1, N, K);
        }
        return;
    }
    if (w->type == ZW_F32 || (w->type == ZW_BF16 && !zoo_weight_split(w, K))) {
        zoo_gemm_rows(x, w->data, y, M, n0, n1, N, K, w->type == ZW_BF16);
        return;
    }
    const float *in = x;
    if (w->type != ZW_INT8) { /* int4 and bf16 read x split into even and odd elements */
        in = xs ? xs : split_here(x, M, K);
        if (!in) return;
    }
    if (w->type == ZW_INT4 && !wide) { /* AVX2: int4 times x rounded to int8 blocks */
        const xq_cache *c = quantize_x(in, M, K);
        if (!c) return;
        for (int64_t m0 = 0; m0 < M; m0 += 8) {
            int64_t mm = M - m0 < 8 ? M - m0 : 8;
            I4Q_256[mm](c, m0, w, y + m0 * N, n0, n1, N, K);
        }
        return;
    }
    if (bf16_dots(w, K)) {
        if (M * K > bscratch_n) {
            free(bscratch);
            bscratch = (uint16_t *)aligned_alloc(64, ((M * K * 2 + 63) / 64) * 64);
            bscratch_n = bscratch ? M * K : 0;
            if (!bscratch) return;
        }
        to_bf16(in, bscratch, M * K);
        for (int64_t m0 = 0; m0 < M; m0 += 8) {
            int64_t mm = M - m0 < 8 ? M - m0 : 8;
            I4B_512[mm](bscratch + m0 * K, w, y + m0 * N, n0, n1, N, K);
        }
        return;
    }
    const qrow_fn *table = w->type == ZW_INT8 ? (wide ? I8_512 : I8_256)
                         : w->type == ZW_INT4 ? (wide ? I4_512 : I4_256) : (wide ? B16_512 : B16_256);
    const int64_t most = table == B16_256 || table == I8_256 ? 6 : 8;
    for (int64_t m0 = 0; m0 < M; m0 += most) {
        int64_t mm = M - m0 < most ? M - m0 : most;
        qrow_fn f = table[mm];
        if (mm == 1 && w->type == ZW_BF16 && wide) f = b16_512_row1;
        f(in + m0 * K, w, y + m0 * N, n0, n1, N, K);
    }
}

/* y = x @ W^T over all rows of W, split across OpenMP threads in tiles of 16 rows. */
int zoo_wgemm(const float *x, const zoo_weight *w, float *y, int64_t M, int64_t N, int64_t K) {
    if (M < 1 || N < 1 || !zoo_weight_ok(w, K) || (w->type == ZW_BF16 && K % 2)) return 1;
    const float *xs = zoo_weight_split(w, K) ? split_here(x, M, K) : NULL; /* once, shared by the threads */
    if (zoo_weight_split(w, K) && !xs) return 2;
    const int64_t tiles = (N + 15) / 16;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < tiles; t++) {
        int64_t n0 = t * 16, n1 = n0 + 16 < N ? n0 + 16 : N;
        zoo_wgemm_rows(x, xs, w, y, M, n0, n1, N, K);
    }
    return 0;
}

/* Whether the CPU has AVX512_BF16 and the level in force allows it (bf16 dot products: torch's
 * bf16 GEMM is ~5x its float32 one there). */
int zoo_cpu_bf16(void) { return level() >= 3; }

/* One row of the float32 weight an int8 / int4 one stands for, 16 or 32 values at a time: the
 * same arithmetic as the scalar definition ((q - z) * s, one rounding), so the results are equal. */
static T512 void dequant_row_512(const zoo_weight *w, int64_t n, int64_t K, float *o) {
    if (w->type == ZW_INT8) {
        const int8_t *q = (const int8_t *)w->data + n * K;
        const __m512 sv = _mm512_set1_ps(w->scales[n]);
        int64_t k = 0;
        for (; k + 16 <= K; k += 16)
            _mm512_storeu_ps(o + k, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                                                      _mm_loadu_si128((const __m128i *)(q + k)))), sv));
        for (; k < K; k++) o[k] = (float)q[k] * w->scales[n];
        return;
    }
    const uint8_t *q = (const uint8_t *)w->data + n * (K / 2);
    const int64_t G = K / w->group;
    const __m512i low = _mm512_set1_epi32(15);
    const __m512i even = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i odd = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    for (int64_t g = 0; g < G; g++) {
        const __m512 sv = _mm512_set1_ps(w->scales[n * G + g]);
        const __m512 zv = _mm512_set1_ps(w->zeros ? (float)w->zeros[n * G + g] : 8.0f);
        for (int64_t k = g * w->group; k < (g + 1) * w->group; k += 32) {
            __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(q + k / 2)));
            __m512 lo = _mm512_mul_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(_mm512_and_si512(b, low)), zv), sv);
            __m512 hi = _mm512_mul_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(b, 4)), zv), sv);
            _mm512_storeu_ps(o + k, _mm512_permutex2var_ps(lo, even, hi));
            _mm512_storeu_ps(o + k + 16, _mm512_permutex2var_ps(lo, odd, hi));
        }
    }
}

static T256 void dequant_row_256(const zoo_weight *w, int64_t n, int64_t K, float *o) {
    if (w->type == ZW_INT8) {
        const int8_t *q = (const int8_t *)w->data + n * K;
        const __m256 sv = _mm256_set1_ps(w->scales[n]);
        int64_t k = 0;
        for (; k + 8 <= K; k += 8)
            _mm256_storeu_ps(o + k, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                                                      _mm_loadl_epi64((const __m128i *)(q + k)))), sv));
        for (; k < K; k++) o[k] = (float)q[k] * w->scales[n];
        return;
    }
    const uint8_t *q = (const uint8_t *)w->data + n * (K / 2);
    const int64_t G = K / w->group;
    const __m256i low = _mm256_set1_epi32(15);
    for (int64_t g = 0; g < G; g++) {
        const __m256 sv = _mm256_set1_ps(w->scales[n * G + g]);
        const __m256 zv = _mm256_set1_ps(w->zeros ? (float)w->zeros[n * G + g] : 8.0f);
        for (int64_t k = g * w->group; k < (g + 1) * w->group; k += 16) {
            __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(q + k / 2)));
            __m256 lo = _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_and_si256(b, low)), zv), sv);
            __m256 hi = _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(b, 4)), zv), sv);
            __m256 a = _mm256_unpacklo_ps(lo, hi), c = _mm256_unpackhi_ps(lo, hi); /* per 128-bit lane */
            _mm256_storeu_ps(o + k, _mm256_permute2f128_ps(a, c, 0x20));
            _mm256_storeu_ps(o + k + 8, _mm256_permute2f128_ps(a, c, 0x31));
        }
    }
}

static void dequant_row(const zoo_weight *w, int64_t n, int64_t K, float *o) {
    if (avx512() && (w->type == ZW_INT8 || w->group % 32 == 0)) {
        dequant_row_512(w, n, K, o);
        return;
    }
    if (w->type == ZW_INT8 || w->group % 16 == 0) {
        dequant_row_256(w, n, K, o);
        return;
    }
    if (w->type == ZW_INT8) {
        const int8_t *q = (const int8_t *)w->data + n * K;
        const float s = w->scales[n];
        for (int64_t k = 0; k < K; k++) o[k] = (float)q[k] * s;
        return;
    }
    const uint8_t *q = (const uint8_t *)w->data + n * (K / 2);
    const int64_t G = K / w->group;
    for (int64_t g = 0; g < G; g++) {
        const float s = w->scales[n * G + g];
        const float z = w->zeros ? (float)w->zeros[n * G + g] : 8.0f;
        for (int64_t k = g * w->group; k < (g + 1) * w->group; k += 2) {
            uint8_t b = q[k / 2];
            o[k] = ((float)(b & 15) - z) * s;
            o[k + 1] = ((float)(b >> 4) - z) * s;
        }
    }
}

/* A tile of the float32 matrix (weights.h); AVX2, 8 or 16 values at a time, the same arithmetic as
 * dequant_row. */
static T256 void dequant_block_256(const zoo_weight *w, int64_t K, int64_t n0, int64_t rows, int64_t k0, int64_t kc,
                                   float *out, int64_t ldo) {
    const int64_t k1 = k0 + kc;
    for (int64_t i = 0; i < rows; i++) {
        const int64_t n = n0 + i;
        float *o = out + i * ldo;
        int64_t k = k0;
        if (w->type == ZW_INT8) {
            const int8_t *q = (const int8_t *)w->data + n * K;
            const float s = w->scales[n];
            const __m256 sv = _mm256_set1_ps(s);
            for (; k + 8 <= k1; k += 8)
                _mm256_storeu_ps(o + (k - k0), _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                                                          _mm_loadl_epi64((const __m128i *)(q + k)))), sv));
            for (; k < k1; k++) o[k - k0] = (float)q[k] * s;
            continue;
        }
        const uint8_t *q = (const uint8_t *)w->data + n * (K / 2);
        const int64_t G = K / w->group;
        const __m256i low = _mm256_set1_epi32(15);
        for (; k < k1 && k % 16; k++) { /* to a multiple of 16 (groups are multiples of 32) */
            const float s = w->scales[n * G + k / w->group], z = w->zeros ? (float)w->zeros[n * G + k / w->group] : 8.0f;
            o[k - k0] = ((float)((q[k / 2] >> (4 * (k & 1))) & 15) - z) * s;
        }
        for (; k + 16 <= k1; k += 16) {
            const int64_t g = k / w->group;
            const __m256 sv = _mm256_set1_ps(w->scales[n * G + g]);
            const __m256 zv = _mm256_set1_ps(w->zeros ? (float)w->zeros[n * G + g] : 8.0f);
            __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(q + k / 2)));
            __m256 lo = _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_and_si256(b, low)), zv), sv);
            __m256 hi = _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(b, 4)), zv), sv);
            __m256 a = _mm256_unpacklo_ps(lo, hi), c = _mm256_unpackhi_ps(lo, hi); /* per 128-bit lane */
            _mm256_storeu_ps(o + (k - k0), _mm256_permute2f128_ps(a, c, 0x20));
            _mm256_storeu_ps(o + (k - k0) + 8, _mm256_permute2f128_ps(a, c, 0x31));
        }
        for (; k < k1; k++) {
            const float s = w->scales[n * G + k / w->group], z = w->zeros ? (float)w->zeros[n * G + k / w->group] : 8.0f;
            o[k - k0] = ((float)((q[k / 2] >> (4 * (k & 1))) & 15) - z) * s;
        }
    }
}

void zoo_dequant_block(const zoo_weight *w, int64_t K, int64_t n0, int64_t rows, int64_t k0, int64_t kc, float *out,
                       int64_t ldo) {
    dequant_block_256(w, K, n0, rows, k0, kc, out, ldo);
}

/* The weight [N, K] an int8 / int4 one stands for, as float32 or (bf16 != 0) bfloat16 rounded to
 * nearest even: for prefill, then a float GEMM. Rows over the OpenMP threads, vectorized on
 * AVX-512 (a 134M model's prefill spent most of its time here when this was scalar). */
int zoo_dequantize(const zoo_weight *w, void *out, int64_t N, int64_t K, int bf16) {
    if (N < 1 || !zoo_weight_ok(w, K) || (w->type != ZW_INT8 && w->type != ZW_INT4)) return 1;
    const int wide_bf16 = bf16 && level() >= 3;
    int failed = 0;
#pragma omp parallel
    {
        float *row = bf16 ? (float *)malloc(K * sizeof(float)) : NULL;
        if (bf16 && !row) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t n = 0; n < N; n++) {
            if (bf16 && !row) continue;
            float *o = bf16 ? row : (float *)out + n * K;
            dequant_row(w, n, K, o);
            if (bf16) {
                uint16_t *ob = (uint16_t *)out + n * K;
                if (wide_bf16)
                    to_bf16(o, ob, K);
                else
                    for (int64_t k = 0; k < K; k++) ob[k] = f32_to_bf16(o[k]);
            }
        }
        free(row);
    }
    return failed ? 2 : 0;
}
