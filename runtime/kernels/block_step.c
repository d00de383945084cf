/* LLaMA-style decoder blocks for a decode step, all of them in one call and one OpenMP region;
 * each block is
 *
 *   xn = rmsnorm(x) ; q, k, v = xn Wq^T, xn Wk^T, xn Wv^T ; RoPE(q, k) ; cache[start + t] = k, v
 *   x += attention(q, cache[: start + t + 1]) Wo^T
 *   xn = rmsnorm(x) ; x += (silu(xn Wg^T) * xn Wu^T) Wd^T
 *
 * for R = B * T <= 32 rows (B sequences, T new tokens each, all at cache slot `start`). At
 * batch 1 a 110M model's step reads ~440 MB of weights, which takes ~20 ms at this machine's
 * bandwidth, while the same block as ~25 separate torch ops costs ~1 ms of dispatch per layer.
 * Here every block's phases are worksharing loops of one parallel region (an implicit barrier
 * between them), the projections reuse small_gemm.c's streaming kernel, and nothing returns to
 * Python until the last block is done.
 *
 * Parameters and cache may be bfloat16 (widened on load, cache entries rounded to nearest even);
 * the arithmetic and the residual stream are float32 either way.
 * Semantics equal runtime/modules (float32): RMSNorm x * rsqrt(mean(x^2) + eps) * w; half-split
 * RoPE with the caller's cos/sin tables (shared by the blocks); causal attention over cache slots (a query at slot s sees
 * slots <= s, and with a window w only slots > s - w), softmax in float32; GQA by head groups.
 */
#include "simd.h"
#include "weights.h"
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>


#define TILE 16 /* weight rows per task */

typedef struct {               /* one block: shapes, parameters, its cache layer */
    int64_t D, H, Hkv, hd, F, window, max_len, rope; /* rope: 1 = rotate q and k with the step's tables */
    int64_t wbf16, kvbf16;      /* norm weights / cache in bfloat16 (else float32); arithmetic is float32 */
    float eps, scale;
    const void *attn_norm, *ffn_norm;
    void *kc, *vc;              /* (B, Hkv, max_len, hd) */
    zoo_weight wq, wk, wv, wo, wg, wu, wd; /* projections: float32, bf16, int8 or int4 (weights.h) */
} zoo_block;

static inline float at(const void *p, int64_t i, int64_t bf16) {
    return bf16 ? bf16_to_f32(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

int64_t zoo_block_work(int64_t R, int64_t D, int64_t H, int64_t Hkv, int64_t hd, int64_t F, int64_t max_len,
                       int64_t nthreads) {
    return R * (2 * D + 2 * H * hd + 2 * Hkv * hd + 2 * F) + R * (D + H * hd + F) + nthreads * max_len;
}

static float dot(const float *a, const void *bp, int64_t n, int64_t bf16) {
    int64_t i = 0;
    float s = 0.f;
    if (n >= 8) {
        __m256 acc = _mm256_setzero_ps();
        if (bf16) {
            const uint16_t *b = (const uint16_t *)bp;
            for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), load8_bf16(b + i), acc);
        } else {
            const float *b = (const float *)bp;
            for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
        }
        s = hsum(acc);
    }
    for (; i < n; i++) s += a[i] * at(bp, i, bf16);
    return s;
}

static void rmsnorm(const float *x, const void *w, int64_t wbf16, float *out, int64_t D, float eps) {
    double ss = 0.0;
    for (int64_t i = 0; i < D; i++) ss += (double)x[i] * x[i];
    float r = 1.0f / sqrtf((float)(ss / D) + eps);
    for (int64_t i = 0; i < D; i++) out[i] = (x[i] * r) * at(w, i, wbf16);
}

static void rope(float *v, const float *cos, const float *sin, int64_t hd) {
    int64_t h2 = hd / 2;
    for (int64_t i = 0; i < h2; i++) {
        float a = v[i], b = v[i + h2];
        v[i] = a * cos[i] - b * sin[i];
        v[i + h2] = b * cos[i + h2] + a * sin[i + h2];
    }
}

/* tasks over three matrices' rows at once (the q/k/v or gate/up projections share one loop) */
static inline int64_t tiles(int64_t n) { return (n + TILE - 1) / TILE; }

static int check(const zoo_block *p, int64_t B, int64_t T, int64_t start) {
    if (B * T < 1 || B * T > 32 || p->D < 1 || p->H < 1 || p->Hkv < 1 || p->H % p->Hkv || p->hd < 2 || p->hd % 2 ||
        p->F < 1)
        return 1;
    const int64_t qn = p->H * p->hd, kvn = p->Hkv * p->hd;
    if (!zoo_weight_ok(&p->wq, p->D) || !zoo_weight_ok(&p->wk, p->D) || !zoo_weight_ok(&p->wv, p->D) ||
        !zoo_weight_ok(&p->wo, qn) || !zoo_weight_ok(&p->wg, p->D) || !zoo_weight_ok(&p->wu, p->D) ||
        !zoo_weight_ok(&p->wd, p->F) || kvn < 1)
        return 6;
    if (start < 0 || start + T > p->max_len) return 2;
    return 0;
}

/* one block's phases, called by every thread of the enclosing parallel region (the worksharing
 * loops bind to it; each ends in a barrier) */
static void block_phases(const zoo_block *p, int64_t B, int64_t T, int64_t start, const float *cos,
                         const float *sin, float *x, float *work, int tid) {
    const int64_t R = B * T, D = p->D, H = p->H, Hkv = p->Hkv, hd = p->hd, F = p->F;
    const int64_t qn = H * hd, kvn = Hkv * hd, rep = H / Hkv;
    float *xn = work, *q = xn + R * D, *k = q + R * qn, *v = k + R * kvn, *att = v + R * kvn;
    float *tmp = att + R * qn, *g = tmp + R * D, *u = g + R * F, *scores = u + R * F;
    /* the projections' inputs split into even / odd elements, for the weights read that way */
    float *xns = scores + omp_get_num_threads() * p->max_len, *atts = xns + R * D, *gs = atts + R * qn;
    const int64_t tq = tiles(qn), tk = tiles(kvn), td = tiles(D), tf = tiles(F);
    {
#pragma omp for schedule(static)
        for (int64_t r = 0; r < R; r++) {
            rmsnorm(x + r * D, p->attn_norm, p->wbf16, xn + r * D, D, p->eps);
            zoo_split(xn + r * D, xns + r * D, 1, D);
        }

#pragma omp for schedule(static)
        for (int64_t t = 0; t < tq + 2 * tk; t++) {
            const zoo_weight *w;
            float *y;
            int64_t n, N;
            if (t < tq) { w = &p->wq; y = q; n = t; N = qn; }
            else if (t < tq + tk) { w = &p->wk; y = k; n = t - tq; N = kvn; }
            else { w = &p->wv; y = v; n = t - tq - tk; N = kvn; }
            int64_t n0 = n * TILE, n1 = n0 + TILE < N ? n0 + TILE : N;
            zoo_wgemm_rows(xn, xns, w, y, R, n0, n1, N, D);
        }

        /* RoPE on every q and k head; k and v go into the cache */
#pragma omp for schedule(static)
        for (int64_t i = 0; i < R * (H + Hkv); i++) {
            int64_t r = i / (H + Hkv), h = i % (H + Hkv), b = r / T, t = r % T;
            if (h < H) {
                if (p->rope) rope(q + r * qn + h * hd, cos + r * hd, sin + r * hd, hd);
            } else {
                int64_t gh = h - H;
                float *kk = k + r * kvn + gh * hd;
                if (p->rope) rope(kk, cos + r * hd, sin + r * hd, hd);
                int64_t slot = ((b * Hkv + gh) * p->max_len + start + t) * hd;
                const float *vv = v + r * kvn + gh * hd;
                if (p->kvbf16) {
                    for (int64_t d = 0; d < hd; d++) {
                        ((uint16_t *)p->kc)[slot + d] = f32_to_bf16(kk[d]);
                        ((uint16_t *)p->vc)[slot + d] = f32_to_bf16(vv[d]);
                    }
                } else {
                    memcpy((float *)p->kc + slot, kk, hd * sizeof(float));
                    memcpy((float *)p->vc + slot, vv, hd * sizeof(float));
                }
            }
        }

        /* attention: one (row, head) per task, scores in this thread's slice of the scratch */
#pragma omp for schedule(static)
        for (int64_t i = 0; i < R * H; i++) {
            int64_t r = i / H, h = i % H, b = r / T, t = r % T, gh = h / rep;
            int64_t hi = start + t + 1, lo = 0;
            if (p->window > 0 && hi > p->window) lo = hi - p->window;
            const float *qv = q + r * qn + h * hd;
            const int64_t base = (b * Hkv + gh) * p->max_len * hd, es = p->kvbf16 ? 2 : 4;
            const char *kb = (const char *)p->kc + base * es, *vb = (const char *)p->vc + base * es;
            float *s = scores + tid * p->max_len, mx = -INFINITY, sum = 0.f;
            for (int64_t j = lo; j < hi; j++) {
                s[j] = dot(qv, kb + j * hd * es, hd, p->kvbf16) * p->scale;
                if (s[j] > mx) mx = s[j];
            }
            for (int64_t j = lo; j < hi; j++) {
                s[j] = expf(s[j] - mx);
                sum += s[j];
            }
            float *o = att + r * qn + h * hd, inv = 1.0f / sum;
            memset(o, 0, hd * sizeof(float));
            for (int64_t j = lo; j < hi; j++) {
                const void *vj = vb + j * hd * es;
                float pj = s[j] * inv;
                if (p->kvbf16)
                    for (int64_t d = 0; d < hd; d++) o[d] += pj * bf16_to_f32(((const uint16_t *)vj)[d]);
                else
                    for (int64_t d = 0; d < hd; d++) o[d] += pj * ((const float *)vj)[d];
            }
        }

#pragma omp for schedule(static)
        for (int64_t r = 0; r < R; r++) zoo_split(att + r * qn, atts + r * qn, 1, qn);

#pragma omp for schedule(static)
        for (int64_t n = 0; n < td; n++) {
            int64_t n0 = n * TILE, n1 = n0 + TILE < D ? n0 + TILE : D;
            zoo_wgemm_rows(att, atts, &p->wo, tmp, R, n0, n1, D, qn);
        }

#pragma omp for schedule(static)
        for (int64_t r = 0; r < R; r++) {
            for (int64_t i = 0; i < D; i++) x[r * D + i] += tmp[r * D + i];
            rmsnorm(x + r * D, p->ffn_norm, p->wbf16, xn + r * D, D, p->eps);
            zoo_split(xn + r * D, xns + r * D, 1, D);
        }

        /* gate and up for the same rows in one task, then silu(gate) * up in place */
#pragma omp for schedule(static)
        for (int64_t n = 0; n < tf; n++) {
            int64_t n0 = n * TILE, n1 = n0 + TILE < F ? n0 + TILE : F;
            zoo_wgemm_rows(xn, xns, &p->wg, g, R, n0, n1, F, D);
            zoo_wgemm_rows(xn, xns, &p->wu, u, R, n0, n1, F, D);
            for (int64_t r = 0; r < R; r++)
                for (int64_t c = n0; c < n1; c++) {
                    float a = g[r * F + c];
                    g[r * F + c] = a / (1.0f + expf(-a)) * u[r * F + c];
                }
        }

#pragma omp for schedule(static)
        for (int64_t r = 0; r < R; r++) zoo_split(g + r * F, gs + r * F, 1, F);

#pragma omp for schedule(static)
        for (int64_t n = 0; n < td; n++) {
            int64_t n0 = n * TILE, n1 = n0 + TILE < D ? n0 + TILE : D;
            zoo_wgemm_rows(g, gs, &p->wd, tmp, R, n0, n1, D, F);
        }

#pragma omp for schedule(static)
        for (int64_t r = 0; r < R; r++)
            for (int64_t i = 0; i < D; i++) x[r * D + i] += tmp[r * D + i];
    }
}

/* Blocks over x (B * T, D), in place, in one parallel region: the first n - npar in order, then
 * the last npar side by side (a multi-token model's heads over its trunk): x holds max(npar, 1)
 * slots of (B * T, D), the input in slot 0; the sequential blocks update slot 0, which is then
 * copied to every slot, and parallel block l updates slot l. `work` holds zoo_block_work(...)
 * floats for the largest block; cos and sin (B, T, hd) are the RoPE tables of every block with
 * rope = 1 (one head_dim). Nonzero (and nothing written) on bad shapes. */
int zoo_stack_step(const zoo_block *blocks, int64_t n, int64_t B, int64_t T, int64_t start, int64_t nthreads,
                   const float *cos, const float *sin, float *x, float *work, int64_t npar) {
    if (n < 1 || nthreads < 1 || npar < 0 || npar > n) return 3;
    for (int64_t l = 0; l < n; l++) {
        int rc = check(blocks + l, B, T, start);
        if (rc) return rc;
        if (blocks[l].D != blocks[0].D) return 4;
        if (blocks[l].rope && (!cos || !sin)) return 5;
    }
    const int64_t nseq = n - npar, slot = B * T * blocks[0].D;
#pragma omp parallel num_threads((int)nthreads)
    {
        const int tid = omp_get_thread_num();
        /* flush denormals to zero (FTZ | DAZ) while the step runs, as a guard: softmax weights
         * far below the maximum underflow into them, and each denormal operation costs a
         * microcode assist. (No effect measured on the models here; restored before returning.) */
        const unsigned int csr = _mm_getcsr();
        _mm_setcsr(csr | 0x8040);
        for (int64_t l = 0; l < nseq; l++) block_phases(blocks + l, B, T, start, cos, sin, x, work, tid);
        if (npar > 1) {
#pragma omp for schedule(static)
            for (int64_t s = 1; s < npar; s++) memcpy(x + s * slot, x, slot * sizeof(float));
        }
        for (int64_t l = 0; l < npar; l++)
            block_phases(blocks + nseq + l, B, T, start, cos, sin, x + l * slot, work, tid);
        _mm_setcsr(csr);
    }
    return 0;
}
