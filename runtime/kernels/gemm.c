/* A packed float32 GEMM for prefill-sized linears on AVX2 CPUs: C (M x N) = A (M x K) . W^T, with
 * W (N x K) row-major as nn.Linear stores it, float32 or bfloat16 (widened while packing), or
 * int8 / int4 (weights.h: dequantized while packing, 16 rows x KC at a time, so no float copy
 * of the matrix is made).
 *
 * The loop nest is the usual Goto/BLIS one: W is packed KC x NC at a time into 16-column
 * micro-panels (k-major, 16 floats per k), A into 6-row micro-panels (6 floats per k), and a 6 x 16
 * register tile (12 accumulators) is swept over them: the W micro-panel stays in L1 across the
 * tiles of one A block (MC x KC, in L2), the packed W block in L3. Threads take disjoint column
 * ranges of C (whole micro-panels), each packing its own blocks, so there is no barrier inside.
 * Partial tiles (M % 6, N % 16) are computed on zero-padded panels into a scratch tile and copied.
 *
 * Summation order: each C element is a sum over k in KC-sized chunks, each chunk in k order, the
 * chunks added in order; independent of M and of the thread count. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <immintrin.h>
#include <math.h>
#include <omp.h>

#include "simd.h"
#include "weights.h"

#define MR 6
#define NR 16
#define KC 256
#define MC 144 /* A block 144 x 256 floats = 144 KB: half of a Zen core's L2 */
#define NC 1024 /* W block 256 x 1024 floats = 1 MB per thread */

/* c[i][0..15] (+)= sum_k a[k*6+i] * b[k*16+0..15]; `acc` says whether to add to what C holds */
static inline void micro_6x16(int64_t kc, const float *restrict a, const float *restrict b, float *c, int64_t ldc,
                              int acc) {
    for (int i = 0; i < MR; i++) { /* the C tile is needed last: start fetching it now */
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + 15), _MM_HINT_T0);
    }
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(),
           c11 = _mm256_setzero_ps(), c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(),
           c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps(), c40 = _mm256_setzero_ps(),
           c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
        __m256 x;
        x = _mm256_broadcast_ss(a + 0); c00 = _mm256_fmadd_ps(x, b0, c00); c01 = _mm256_fmadd_ps(x, b1, c01);
        x = _mm256_broadcast_ss(a + 1); c10 = _mm256_fmadd_ps(x, b0, c10); c11 = _mm256_fmadd_ps(x, b1, c11);
        x = _mm256_broadcast_ss(a + 2); c20 = _mm256_fmadd_ps(x, b0, c20); c21 = _mm256_fmadd_ps(x, b1, c21);
        x = _mm256_broadcast_ss(a + 3); c30 = _mm256_fmadd_ps(x, b0, c30); c31 = _mm256_fmadd_ps(x, b1, c31);
        x = _mm256_broadcast_ss(a + 4); c40 = _mm256_fmadd_ps(x, b0, c40); c41 = _mm256_fmadd_ps(x, b1, c41);
        x = _mm256_broadcast_ss(a + 5); c50 = _mm256_fmadd_ps(x, b0, c50); c51 = _mm256_fmadd_ps(x, b1, c51);
        a += MR;
        b += NR;
    }
#define STORE(row, lo, hi)                                                                    \
    do {                                                                                      \
        float *r = c + (row) * ldc;                                                           \
        if (acc) {                                                                            \
            lo = _mm256_add_ps(_mm256_loadu_ps(r), lo);                                       \
            hi = _mm256_add_ps(_mm256_loadu_ps(r + 8), hi);                                   \
        }                                                                                     \
        _mm256_storeu_ps(r, lo);                                                              \
        _mm256_storeu_ps(r + 8, hi);                                                          \
    } while (0)
    STORE(0, c00, c01); STORE(1, c10, c11); STORE(2, c20, c21);
    STORE(3, c30, c31); STORE(4, c40, c41); STORE(5, c50, c51);
#undef STORE
}

static inline void transpose8(__m256 *r) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20); r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20); r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31); r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31); r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

/* Where W comes from: row-major (N x K, row stride ld), float32 or bf16; or float32 given as its
 * transpose (K x N, row stride ld: the V of attention, whose rows are W's columns); or an int8 /
 * int4 zoo_weight (p points to it, ld is K) */
enum { W_F32 = 0, W_BF16 = 1, W_F32_T = 2, W_Q = 3 };
typedef struct {
    const void *p;
    int64_t ld;
    int kind;
} wsrc;

static inline float w_at(const wsrc *w, int64_t j, int64_t k) {
    if (w->kind == W_BF16) return bf16_to_f32(((const uint16_t *)w->p)[j * w->ld + k]);
    if (w->kind == W_F32_T) return ((const float *)w->p)[k * w->ld + j];
    return ((const float *)w->p)[j * w->ld + k];
}

/* W rows [j0, j0+nc) x cols [p0, p0+kc) -> micro-panels of 16 rows, k-major (8 x 8 transposes;
 * a transposed W is copied 16 floats at a time); rows past the range are zero */
static void pack_w(const wsrc *src, int64_t j0, int64_t nc, int64_t p0, int64_t kc, float *restrict out) {
    float tmp[NR * KC] __attribute__((aligned(32)));
    for (int64_t jp = 0; jp < nc; jp += NR) {
        float *panel = out + jp * kc;
        const wsrc *w = src;
        wsrc deq;
        int64_t row0 = j0 + jp, col0 = p0; /* where the panel's first element lies in *w */
        if (src->kind == W_Q) { /* the panel's rows dequantized first, then packed as float32 */
            zoo_dequant_block((const zoo_weight *)src->p, src->ld, row0, nc - jp < NR ? nc - jp : NR, p0, kc, tmp, KC);
            deq = (wsrc){tmp, KC, W_F32};
            w = &deq;
            row0 = col0 = 0;
        }
        if (w->kind == W_F32_T && nc - jp >= NR) {
            const float *t = (const float *)w->p + p0 * w->ld + j0 + jp;
            for (int64_t k = 0; k < kc; k++) {
                _mm256_store_ps(panel + k * NR, _mm256_loadu_ps(t + k * w->ld));
                _mm256_store_ps(panel + k * NR + 8, _mm256_loadu_ps(t + k * w->ld + 8));
            }
            continue;
        }
        for (int h = 0; h < NR; h += 8) {
            int64_t rows = nc - jp - h; /* valid rows in this group of 8 */
            rows = rows < 0 ? 0 : rows > 8 ? 8 : rows;
            int64_t k = 0;
            if (rows == 8 && w->kind != W_F32_T) {
                for (; k + 8 <= kc; k += 8) {
                    __m256 v[8];
                    for (int q = 0; q < 8; q++) {
                        int64_t off = (row0 + h + q) * w->ld + col0 + k;
                        v[q] = w->kind == W_BF16 ? load8_bf16((const uint16_t *)w->p + off)
                                                 : _mm256_loadu_ps((const float *)w->p + off);
                    }
                    transpose8(v);
                    for (int q = 0; q < 8; q++) _mm256_store_ps(panel + (k + q) * NR + h, v[q]);
                }
            }
            for (; k < kc; k++)
                for (int q = 0; q < 8; q++)
                    panel[k * NR + h + q] = q < rows ? w_at(w, row0 + h + q, col0 + k) : 0.0f;
        }
    }
}

/* A rows [i0, i0+mc) x cols [p0, p0+kc) -> micro-panels of 6 rows, k-major; rows past M repeat
 * the block's first row (their results are discarded). 8 k at a time through an 8 x 8 transpose
 * (rows 6 and 7 are dummies): each column's 8 floats are stored at k*6, the next store overwriting
 * the 2 dummies, so the buffer needs 2 floats of slack past the last panel. */
static void pack_a(const float *a, int64_t lda, int64_t M, int64_t i0, int64_t mc, int64_t p0, int64_t kc,
                   float *restrict out) {
    for (int64_t ip = 0; ip < mc; ip += MR) {
        const float *src[8];
        for (int r = 0; r < MR; r++) src[r] = a + (i0 + ip + r < M && ip + r < mc ? i0 + ip + r : i0) * lda + p0;
        src[6] = src[7] = src[5];
        float *panel = out + ip * kc;
        int64_t k = 0;
        for (; k + 8 <= kc; k += 8) {
            __m256 v[8];
            for (int r = 0; r < 8; r++) v[r] = _mm256_loadu_ps(src[r] + k);
            transpose8(v);
            for (int q = 0; q < 8; q++) _mm256_storeu_ps(panel + (k + q) * MR, v[q]);
        }
        for (; k < kc; k++)
            for (int r = 0; r < MR; r++) panel[k * MR + r] = src[r][k];
    }
}

/* the serial GEMM: C[:, n0:n1] (+)= A . W^T over all of K, with one thread's scratch buffers */
static void gemm_cols(const float *a, int64_t lda, const wsrc *w, float *c, int64_t ldc, int64_t M, int64_t K,
                      int64_t n0, int64_t n1, float *wbuf, float *abuf) {
    float tile[MR * NR] __attribute__((aligned(32)));
    for (int64_t jc = n0; jc < n1; jc += NC) {
        int64_t nc = n1 - jc < NC ? n1 - jc : NC;
        for (int64_t pc = 0; pc < K; pc += KC) {
            int64_t kc = K - pc < KC ? K - pc : KC;
            pack_w(w, jc, nc, pc, kc, wbuf);
            for (int64_t ic = 0; ic < M; ic += MC) {
                int64_t mc = M - ic < MC ? M - ic : MC;
                pack_a(a, lda, M, ic, mc, pc, kc, abuf);
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    const float *bp = wbuf + jr * kc;
                    int64_t nr = nc - jr < NR ? nc - jr : NR;
                    for (int64_t ir = 0; ir < mc; ir += MR) {
                        int64_t mr = mc - ir < MR ? mc - ir : MR;
                        const float *ap = abuf + ir * kc;
                        float *cp = c + (ic + ir) * ldc + jc + jr;
                        if (mr == MR && nr == NR) {
                            micro_6x16(kc, ap, bp, cp, ldc, pc > 0);
                        } else {  /* an edge tile, through a scratch tile */
                            micro_6x16(kc, ap, bp, tile, NR, 0);
                            for (int64_t i = 0; i < mr; i++)
                                for (int64_t j = 0; j < nr; j++)
                                    cp[i * ldc + j] = pc > 0 ? cp[i * ldc + j] + tile[i * NR + j] : tile[i * NR + j];
                        }
                    }
                }
            }
        }
    }
}

#define WBUF() aligned_alloc(64, (size_t)KC * NC * sizeof(float))
#define ABUF() aligned_alloc(64, ((size_t)KC * ((MC + MR - 1) / MR * MR) + 64) * sizeof(float))

static int gemm_nt(const float *a, int64_t lda, wsrc ws, float *c, int64_t ldc, int64_t M, int64_t N, int64_t K);

/* C (M x N, row stride ldc) = A (M x K, row stride lda) . W^T, W (N x K) contiguous float32 (bf16 = 0)
 * or bfloat16 (bf16 = 1). Returns 0, or -1 when scratch memory could not be had. */
int zoo_gemm_nt(const float *a, int64_t lda, const void *w, int bf16, float *c, int64_t ldc, int64_t M, int64_t N,
                int64_t K) {
    return gemm_nt(a, lda, (wsrc){w, K, bf16 ? W_BF16 : W_F32}, c, ldc, M, N, K);
}

/* The same with an int8 / int4 W (weights.h), dequantized while packing: equal to the float32
 * GEMM on the dequantized matrix. 1 for a format the kernels do not read. */
int zoo_gemm_nt_q(const float *a, int64_t lda, const zoo_weight *w, float *c, int64_t ldc, int64_t M, int64_t N,
                  int64_t K) {
    if (!zoo_weight_ok(w, K) || (w->type != ZW_INT8 && w->type != ZW_INT4)) return 1;
    return gemm_nt(a, lda, (wsrc){w, K, W_Q}, c, ldc, M, N, K);
}

static int gemm_nt(const float *a, int64_t lda, wsrc ws, float *c, int64_t ldc, int64_t M, int64_t N, int64_t K) {
    if (M <= 0 || N <= 0) return 0;
    if (K <= 0) {
        for (int64_t i = 0; i < M; i++) memset(c + i * ldc, 0, (size_t)N * sizeof(float));
        return 0;
    }
    int64_t panels = (N + NR - 1) / NR;
    int nt = omp_get_max_threads();
    if (nt > panels) nt = (int)panels;
    if (nt < 1) nt = 1;
    int failed = 0;
#pragma omp parallel num_threads(nt) reduction(| : failed)
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        int64_t p0 = panels * t / n, p1 = panels * (t + 1) / n;
        int64_t n0 = p0 * NR, n1 = p1 * NR < N ? p1 * NR : N;
        float *wbuf = WBUF(), *abuf = ABUF();
        if (!wbuf || !abuf) {
            failed = 1;
        } else if (n1 > n0) {
            gemm_cols(a, lda, &ws, c, ldc, M, K, n0, n1, wbuf, abuf);
        }
        free(wbuf);
        free(abuf);
    }
    return failed ? -1 : 0;
}

/* ---- causal attention on the packed GEMM (prefill) ------------------------------------------- */

/* p[0:n] = exp(scale * (s - max)) for j < allowed, 0 for allowed <= j < n; returns the sum */
static float softmax_row(float *p, int64_t n, int64_t allowed, float scale) {
    __m256 vm = _mm256_set1_ps(-INFINITY);
    int64_t j = 0;
    for (; j + 8 <= allowed; j += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(p + j));
    float m = -INFINITY, lanes[8];
    _mm256_storeu_ps(lanes, vm);
    for (int l = 0; l < 8; l++) m = lanes[l] > m ? lanes[l] : m;
    for (; j < allowed; j++) m = p[j] > m ? p[j] : m;
    __m256 vs = _mm256_set1_ps(scale), vms = _mm256_set1_ps(m * scale), vsum = _mm256_setzero_ps();
    for (j = 0; j + 8 <= allowed; j += 8) {
        __m256 e = exp256(_mm256_fmsub_ps(_mm256_loadu_ps(p + j), vs, vms));
        _mm256_storeu_ps(p + j, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    float sum = hsum(vsum);
    for (; j < allowed; j++) {
        float t[8] = {p[j] * scale - m * scale};
        __m256 e = exp256(_mm256_loadu_ps(t));
        _mm256_storeu_ps(t, e);
        p[j] = t[0];
        sum += t[0];
    }
    for (; j < n; j++) p[j] = 0.0f;
    return sum;
}

#define ARB 48 /* query rows per task: a multiple of MR */

/* out = softmax(scale * q k^T, causal) v for queries that are the last T of S positions (query t
 * sees keys 0 .. S-T+t). q (B, H, T, D), k and v (B, Hkv, S, D), out (B, H, T, D), each given by
 * its base pointer and its (batch, head, token) strides in floats, the D values contiguous; head h
 * reads kv head h / (H / Hkv). Tasks are (batch, head, block of 48 queries), largest first, over
 * the OpenMP threads; each computes its scores block with the packed GEMM (keys only up to the
 * block's last query), a row softmax in float32, then P v with the same GEMM and 1/sum per row.
 * Returns 0, or -1 when scratch memory could not be had. */
int zoo_causal_attention(const float *q, const float *k, const float *v, float *out, int64_t B, int64_t H,
                         int64_t Hkv, int64_t T, int64_t S, int64_t D, const int64_t *qs, const int64_t *ks,
                         const int64_t *vs, const int64_t *os, float scale) {
    if (B <= 0 || H <= 0 || T <= 0) return 0;
    if (Hkv <= 0 || H % Hkv || S < T || D <= 0) return -1;
    int64_t blocks = (T + ARB - 1) / ARB, tasks = B * H * blocks, rep = H / Hkv;
    int failed = 0;
#pragma omp parallel reduction(| : failed)
    {
        float *wbuf = WBUF(), *abuf = ABUF();
        float *scores = aligned_alloc(64, (size_t)ARB * ((S + 15) / 16 * 16) * sizeof(float));
        if (!wbuf || !abuf || !scores) failed = 1;
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < tasks; task++) {
            if (!wbuf || !abuf || !scores) continue;
            int64_t blk = blocks - 1 - task % blocks, bh = task / blocks, b = bh / H, h = bh % H;
            int64_t i0 = blk * ARB, n = T - i0 < ARB ? T - i0 : ARB;
            int64_t keys = S - T + i0 + n; /* the block's last query sees keys [0, keys) */
            const float *qb = q + b * qs[0] + h * qs[1] + i0 * qs[2];
            const float *kb = k + b * ks[0] + (h / rep) * ks[1];
            const float *vb = v + b * vs[0] + (h / rep) * vs[1];
            float *ob = out + b * os[0] + h * os[1] + i0 * os[2];
            wsrc kw = {kb, ks[2], W_F32}, vw = {vb, vs[2], W_F32_T};
            gemm_cols(qb, qs[2], &kw, scores, keys, n, D, 0, keys, wbuf, abuf);
            float inv[ARB];
            for (int64_t r = 0; r < n; r++) inv[r] = 1.0f / softmax_row(scores + r * keys, keys, S - T + i0 + r + 1, scale);
            gemm_cols(scores, keys, &vw, ob, os[2], n, keys, 0, D, wbuf, abuf);
            for (int64_t r = 0; r < n; r++) {
                float *row = ob + r * os[2];
                __m256 s = _mm256_set1_ps(inv[r]);
                int64_t j = 0;
                for (; j + 8 <= D; j += 8) _mm256_storeu_ps(row + j, _mm256_mul_ps(_mm256_loadu_ps(row + j), s));
                for (; j < D; j++) row[j] *= inv[r];
            }
        }
        free(wbuf);
        free(abuf);
        free(scores);
    }
    return failed ? -1 : 0;
}
