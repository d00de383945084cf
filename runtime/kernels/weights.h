/* A weight matrix [N, K] as the decode kernels read it: float32, bfloat16, or integers with
 * float32 scales (quant_gemm.c has the formats). */
#ifndef ZOO_WEIGHTS_H
#define ZOO_WEIGHTS_H
#include <stdint.h>

typedef struct {
    const void *data;     /* float32 | bf16 | int8 | packed int4 */
    const float *scales;  /* int8 [N]; int4 [N, K/group] */
    const uint8_t *zeros; /* int4 asymmetric [N, K/group]; NULL = 8 */
    int64_t type;         /* ZW_* */
    int64_t group;        /* int4 */
} zoo_weight;

enum { ZW_F32 = 0, ZW_BF16 = 1, ZW_INT8 = 2, ZW_INT4 = 3 };

/* Whether the kernels read this format at this K. */
int zoo_weight_ok(const zoo_weight *w, int64_t K);
/* Whether x must be given split (even elements, then odd ones, per row) for this weight. */
int zoo_weight_split(const zoo_weight *w, int64_t K);
/* Whether an AVX-512 kernel reads this weight here (else small_gemm.c's AVX2 one). */
int zoo_weight_wide(const zoo_weight *w, int64_t K);
/* x split into xs (M rows of K: the K/2 even elements, then the K/2 odd ones). */
void zoo_split(const float *x, float *xs, int64_t M, int64_t K);
/* One thread's share of y = x @ W^T: weight rows [n0, n1), all M rows; xs is x split (where
 * zoo_weight_split says it is read) or NULL (then split here, into this thread's scratch). */
void zoo_wgemm_rows(const float *x, const float *xs, const zoo_weight *w, float *y, int64_t M, int64_t n0, int64_t n1,
                    int64_t N, int64_t K);
/* W[n0 : n0 + rows, k0 : k0 + kc] as float32 (int8 / int4: (q - z) * s, the scalar definition) into
 * out, row stride ldo: a tile of the packed GEMM's (gemm.c). */
void zoo_dequant_block(const zoo_weight *w, int64_t K, int64_t n0, int64_t rows, int64_t k0, int64_t kc, float *out,
                       int64_t ldo);
/* y = x @ W^T for all N rows of W over the OpenMP threads; nonzero on a format the kernels do not read. */
int zoo_wgemm(const float *x, const zoo_weight *w, float *y, int64_t M, int64_t N, int64_t K);
#endif
