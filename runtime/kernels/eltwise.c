/* Fused element-wise ops of a prefill forward, one pass each over activations that torch would
 * walk several times: RMSNorm (LLaMA's: float32 statistics, then the weight), SiLU(gate) * up,
 * and half-split RoPE applied in place. float32; rows split over the OpenMP threads. */
#include <math.h>
#include <stdint.h>
#include <immintrin.h>

#include "simd.h"

/* out[r] = x[r] * rsqrt(mean(x[r]^2) + eps) * w, rows of `dim` floats at stride ldx (out contiguous) */
void zoo_rmsnorm(const float *x, int64_t ldx, const float *w, float *out, int64_t rows, int64_t dim, float eps) {
#pragma omp parallel for schedule(static) if (rows * dim >= 65536)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * ldx;
        float *o = out + r * dim;
        __m256 acc = _mm256_setzero_ps();
        int64_t j = 0;
        for (; j + 8 <= dim; j += 8) {
            __m256 v = _mm256_loadu_ps(xr + j);
            acc = _mm256_fmadd_ps(v, v, acc);
        }
        float ss = hsum(acc);
        for (; j < dim; j++) ss += xr[j] * xr[j];
        float s = 1.0f / sqrtf(ss / (float)dim + eps);
        __m256 vs = _mm256_set1_ps(s);
        for (j = 0; j + 8 <= dim; j += 8)
            _mm256_storeu_ps(o + j, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(xr + j), vs), _mm256_loadu_ps(w + j)));
        for (; j < dim; j++) o[j] = (xr[j] * s) * w[j];
    }
}

/* g = silu(g) * u = g / (1 + e^-g) * u, n floats each, in place in g */
void zoo_silu_mul(float *g, const float *u, int64_t n) {
    int64_t blocks = n / 8;
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (int64_t b = 0; b < blocks; b++) {
        __m256 v = _mm256_loadu_ps(g + 8 * b);
        __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), v));
        __m256 s = _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
        _mm256_storeu_ps(g + 8 * b, _mm256_mul_ps(s, _mm256_loadu_ps(u + 8 * b)));
    }
    for (int64_t i = blocks * 8; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* half-split RoPE in place: x (B, H, T, D) at strides xs (floats: batch, head, token; D contiguous),
 * cos/sin (B or 1, T, D) contiguous: x[:h] <- x[:h] cos - x[h:] sin, x[h:] <- x[h:] cos + x[:h] sin */
void zoo_rope(float *x, const float *cos_t, const float *sin_t, int64_t B, int64_t H, int64_t T, int64_t D,
              const int64_t *xs, int64_t table_batches) {
    int64_t half = D / 2;
#pragma omp parallel for collapse(2) schedule(static) if (B * H * T * D >= 65536)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t t = 0; t < T; t++) {
                float *r = x + b * xs[0] + h * xs[1] + t * xs[2];
                const float *c = cos_t + ((table_batches > 1 ? b : 0) * T + t) * D;
                const float *s = sin_t + ((table_batches > 1 ? b : 0) * T + t) * D;
                int64_t j = 0;
                for (; j + 8 <= half; j += 8) {
                    __m256 x1 = _mm256_loadu_ps(r + j), x2 = _mm256_loadu_ps(r + half + j);
                    __m256 y1 = _mm256_sub_ps(_mm256_mul_ps(x1, _mm256_loadu_ps(c + j)), _mm256_mul_ps(x2, _mm256_loadu_ps(s + j)));
                    __m256 y2 = _mm256_add_ps(_mm256_mul_ps(x2, _mm256_loadu_ps(c + half + j)),
                                              _mm256_mul_ps(x1, _mm256_loadu_ps(s + half + j)));
                    _mm256_storeu_ps(r + j, y1);
                    _mm256_storeu_ps(r + half + j, y2);
                }
                for (; j < half; j++) {
                    float x1 = r[j], x2 = r[half + j];
                    r[j] = x1 * c[j] - x2 * s[j];
                    r[half + j] = x2 * c[half + j] + x1 * s[half + j];
                }
            }
}
