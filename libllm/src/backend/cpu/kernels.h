/* kernels.h -- the CPU compute kernels behind one dispatch table.
 *
 * Matmul scheme. A weight row of type T is multiplied with an activation row already in T's
 * activation format:
 *   F32, F16, BF16 weights  -> f32 activations (the caller's rows, used as they are); f16 and
 *                              bf16 weights are widened to f32 in registers, so these are
 *                              exact f32 dot products up to summation order.
 *   Q8_0, Q4_0 weights      -> activations quantized once per matmul to 8-bit blocks of 32
 *                              with an f32 scale (block_q8a below, or a level's own layout
 *                              of the same values): the block dot product is an exact
 *                              integer sum, scaled by d_weight * d_activation.
 *   Q4_K, Q5_K, Q6_K weights -> activations quantized once per matmul to 8-bit blocks of 256
 *                              (block_q8k below: one f32 scale per 256 values, and the sum
 *                              of each 32 values; or a level's own layout of the same
 *                              values, as AVX-512's). Per super-block the sub-block products
 *                              are exact integer sums, weighted by the integer sub-block
 *                              scales in integers too:
 *                                Q4_K / Q5_K: d_w d_a sum_j sc_j (q_j . a_j)
 *                                             - dmin_w d_a sum_j m_j sum(a_j)
 *                                Q6_K:        d_w d_a sum_g sc_g ((q_g - 32) . a_g)
 *                              so a super-block costs two float operations (AVX-512
 *                              weights each exact sub-block sum in floats instead, with
 *                              d_w sc_j in its lane: one float step per 16 sub-blocks). The coarser
 *                              activation step (max |x| / 127 over 256 values instead of 32)
 *                              is what llama.cpp's Q8_K does too; its error bound is the
 *                              same half step per value.
 * Every level (scalar, avx2, avx512, neon) implements the same scheme; kernels_scalar.c is
 * the oracle the SIMD levels are tested against, and quant.c's dot_f32 stays the reference of
 * the scheme itself. */
#ifndef LLM_CPU_KERNELS_H
#define LLM_CPU_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../../quant.h"

#define QK8A 32

/* An activation block: 32 values x[j] ~= qs[j] * d, with d = max|x| / 127 (f32 scale, so the
 * only error is the 8-bit rounding of the values). */
typedef struct block_q8a {
    float d;
    int8_t qs[QK8A];
} block_q8a;

_Static_assert(sizeof(block_q8a) == 36, "q8a block is 36 bytes");

/* An activation super-block for the K-quant weights: 256 values x[j] ~= qs[j] * d with
 * d = max|x| / 127 over the 256, and sums[i] = qs[32 i] + ... + qs[32 i + 31] (Q4_K and Q5_K
 * subtract their minimums with them). 276 bytes: a row never takes more than as block_q8a,
 * which the backend's scratch is sized for. */
typedef struct block_q8k {
    float d;
    int16_t sums[8];
    int8_t qs[QK_K];
} block_q8k;

_Static_assert(sizeof(block_q8k) == 276, "q8k block is 276 bytes");

typedef enum cpu_level {
    CPU_LEVEL_SCALAR = 0,
    CPU_LEVEL_AVX2 = 1,      /* AVX2 + FMA + F16C */
    CPU_LEVEL_AVX512 = 2,    /* AVX-512 F/BW/DQ/VL/VNNI + FMA + F16C */
    CPU_LEVEL_NEON = 3,      /* aarch64 Advanced SIMD (+ dot product where present) */
    CPU_LEVEL_COUNT
} cpu_level;

/* The largest register tile a matmul kernel computes: MM_TILE_ROWS weight rows by
 * MM_TILE_TOKS activation rows; a kernel may take up to MM_TILE_TOKS_MAX activation rows
 * per call (mm_kernel.max_toks), to reuse what it unpacks of a weight row over more of them. */
#define MM_TILE_ROWS 4
#define MM_TILE_TOKS 4
#define MM_TILE_TOKS_MAX 8

/* y[t * ldy + r] = dot(weight row r, activation row t) for r < nr, t < nt, with
 * 1 <= nr <= MM_TILE_ROWS and 1 <= nt <= the kernel's mm_max_toks. Weight row r starts at
 * w + r * w_stride bytes, activation row t at a + t * a_stride bytes; rows hold n elements
 * (a multiple of 32 for the quantized types). */
typedef void (*mm_tile_fn)(int64_t n, const void *w, size_t w_stride, int nr, const void *a,
                           size_t a_stride, int nt, float *y, int64_t ldy);

/* The dot product of one weight row with one activation row (n elements). */
typedef float (*vec_dot_fn)(int64_t n, const void *w, const void *a);

/* bytes of a row of n values as block_q8a */
static inline int64_t q8a_row_bytes(int64_t n) { return n / QK8A * (int64_t)sizeof(block_q8a); }

/* bytes of a row of n values as block_q8k (n a multiple of 256) */
static inline int64_t q8k_row_bytes(int64_t n) { return n / QK_K * (int64_t)sizeof(block_q8k); }

/* Blocks g .. g + cnt - 1 of a row for a kernel that takes 8 at a time: the row itself when
 * cnt is 8, else a copy in tmp (room for 8 blocks) with the missing blocks zero. */
static inline const void *oct_blocks(const void *q, int cnt, size_t block_bytes, void *tmp) {
    if (cnt >= 8) return q;
    memset(tmp, 0, 8 * block_bytes);
    memcpy(tmp, q, (size_t)cnt * block_bytes);
    return tmp;
}

typedef struct mm_kernel {
    /* the activation format: NULL for f32 rows used as they are; else the bytes a row of n
     * values takes (n a multiple of 32) and the conversion of an f32 row into it. Levels may
     * use their own layout of the q8a values (the AVX-512 one does); only their kernels
     * read it. */
    int64_t (*act_bytes)(int64_t n);
    void (*quantize)(const float *x, void *a, int64_t n);
    vec_dot_fn vec_dot;
    mm_tile_fn tile;
    /* the most activation rows one tile call takes: MM_TILE_TOKS when 0, at most
     * MM_TILE_TOKS_MAX (mm_max_toks below) */
    int max_toks;
    /* optional: a row converted only as far as vec_dot and one-token tiles read it (a decode
     * of one token then skips the layout its prompt tiles use); NULL: quantize */
    void (*quantize_one)(const float *x, void *a, int64_t n);
} mm_kernel;

/* the most activation rows one call of mk->tile takes */
static inline int mm_max_toks(const struct mm_kernel *mk) {
    return mk->max_toks > 0 ? mk->max_toks : MM_TILE_TOKS;
}

typedef struct cpu_kernels {
    const char *name;            /* "scalar", "avx2", "avx512", "neon" */
    cpu_level level;
    mm_kernel f32, f16, bf16, q8_0, q4_0;
    mm_kernel q4_k, q5_k, q6_k;  /* activations as block_q8k (AVX-512: its own layout) */

    /* f32 row -> block_q8a row; n a multiple of 32 */
    void (*quantize_q8a)(const float *x, void *y, int64_t n);
    /* sum of x[i] * y[i] */
    float (*dot_f32)(int64_t n, const float *x, const float *y);
    /* y[i] += alpha * x[i], with x f32 or f16 */
    void (*axpy_f32)(int64_t n, float alpha, const float *x, float *y);
    void (*axpy_f16)(int64_t n, float alpha, const uint16_t *x, float *y);
    /* y[i] *= s */
    void (*scale_f32)(int64_t n, float s, float *y);
    /* y[i] = x[i] * scale * (w ? w[i] : 1), scale = 1 / sqrt(mean(x^2) + eps); y may be x */
    void (*rmsnorm_f32)(int64_t n, const float *x, const float *w, float eps, float *y);
    /* g[i] = silu(g[i]) * u[i] */
    void (*swiglu_f32)(int64_t n, float *g, const float *u);
    /* y[i] = exp(x[i] - m) (0 where x[i] - m < -87, -inf included); returns the sum of y */
    float (*exp_sum_f32)(int64_t n, const float *x, float m, float *y);
    /* attention's weighted sum of values, for nt <= MM_TILE_TOKS queries:
     * out[t * ldo + i] += sum over j < nc of p[t * ldp + idx[j]] * V(idx[j])[i], i < dv,
     * where V(c) is the f32 / f16 row at v + c * v_stride bytes */
    void (*pv_f32)(int nc, const int32_t *idx, int nt, const float *p, int64_t ldp,
                   const uint8_t *v, size_t v_stride, int64_t dv, float *out, int64_t ldo);
    void (*pv_f16)(int nc, const int32_t *idx, int nt, const float *p, int64_t ldp,
                   const uint8_t *v, size_t v_stride, int64_t dv, float *out, int64_t ldo);
    /* f32 -> f16, rounding to nearest even (quant.h's f32_to_f16) */
    void (*f32_to_f16_row)(int64_t n, const float *x, uint16_t *y);
} cpu_kernels;

/* Scalar row kernels every level shares (no SIMD version yet):
 * g[i] = gelu_tanh(g[i]) * u[i], gelu_tanh(x) = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)));
 * y[i] = cap * tanh(y[i] / cap). */
void cpu_geglu_f32(int64_t n, float *g, const float *u);
void cpu_softcap_f32(int64_t n, float cap, float *y);

/* The scalar level's f32 row -> block_q8k row (n a multiple of 256); the SIMD levels'
 * versions write the same bytes. */
void cpu_quantize_q8k(const float *x, void *y, int64_t n);

/* The kernels of the best level this CPU runs, at most LIBLLM_CPU_LEVEL (scalar, avx2,
 * avx512, neon) when that variable is set. Chosen once, thread-safe; never NULL. */
const cpu_kernels *cpu_kernels_get(void);

/* The kernels of one level, or NULL when this build or this CPU lacks it (for tests). */
const cpu_kernels *cpu_kernels_get_level(cpu_level level);

/* The matmul kernel for a weight type, or NULL when the type has none. */
const mm_kernel *cpu_kernels_mm(const cpu_kernels *k, uint32_t type);

/* Per-level tables, filled by each ISA file (kernels_scalar.c, x86_avx2.c, x86_avx512.c,
 * arm_neon.c); a file built for another architecture leaves its table NULL. */
const cpu_kernels *cpu_kernels_scalar(void);
const cpu_kernels *cpu_kernels_avx2(void);
const cpu_kernels *cpu_kernels_avx512(void);
const cpu_kernels *cpu_kernels_neon(void);

#endif
