/* quant.c -- the type table and the scalar reference kernels of every supported type. */
#include "quant.h"

#include <math.h>

/* ---- F32 ---- */
static void f32_to_f32(const void *src, float *dst, int64_t n) { memcpy(dst, src, (size_t)n * 4); }
static void f32_from_f32(const float *src, void *dst, int64_t n) { memcpy(dst, src, (size_t)n * 4); }
static float f32_dot(const void *row, const float *x, int64_t n) {
    const float *w = row;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += w[i] * x[i];
    return sum;
}

/* ---- F16 ---- */
static void f16_row_to_f32(const void *src, float *dst, int64_t n) {
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++) dst[i] = f16_to_f32(h[i]);
}
static void f16_row_from_f32(const float *src, void *dst, int64_t n) {
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++) h[i] = f32_to_f16(src[i]);
}
static float f16_dot(const void *row, const float *x, int64_t n) {
    const uint16_t *h = row;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += f16_to_f32(h[i]) * x[i];
    return sum;
}

/* ---- BF16 ---- */
static void bf16_row_to_f32(const void *src, float *dst, int64_t n) {
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_f32(h[i]);
}
static void bf16_row_from_f32(const float *src, void *dst, int64_t n) {
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++) h[i] = f32_to_bf16(src[i]);
}
static float bf16_dot(const void *row, const float *x, int64_t n) {
    const uint16_t *h = row;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += bf16_to_f32(h[i]) * x[i];
    return sum;
}

/* ---- Q8_0 ---- */
static void q8_0_to_f32(const void *src, float *dst, int64_t n) {
    const block_q8_0 *b = src;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        float d = f16_to_f32(b[i].d);
        for (int j = 0; j < QK8_0; j++) dst[i * QK8_0 + j] = b[i].qs[j] * d;
    }
}
static void q8_0_from_f32(const float *src, void *dst, int64_t n) {
    block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const float *x = src + i * QK8_0;
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = f32_to_f16(d);
        for (int j = 0; j < QK8_0; j++) b[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}
static float q8_0_dot(const void *row, const float *x, int64_t n) {
    const block_q8_0 *b = row;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        float s = 0.0f;
        for (int j = 0; j < QK8_0; j++) s += b[i].qs[j] * x[i * QK8_0 + j];
        sum += s * f16_to_f32(b[i].d);
    }
    return sum;
}

/* ---- Q4_0 ---- */
static void q4_0_to_f32(const void *src, float *dst, int64_t n) {
    const block_q4_0 *b = src;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        float d = f16_to_f32(b[i].d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            dst[i * QK4_0 + j] = ((b[i].qs[j] & 0x0f) - 8) * d;
            dst[i * QK4_0 + j + QK4_0 / 2] = ((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}
static void q4_0_from_f32(const float *src, void *dst, int64_t n) {
    block_q4_0 *b = dst;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        const float *x = src + i * QK4_0;
        float amax = 0.0f, max = 0.0f;     /* the value of largest magnitude, with its sign */
        for (int j = 0; j < QK4_0; j++) {
            if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }
        }
        float d = max / -8.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = f32_to_f16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            int lo = (int)(x[j] * id + 8.5f), hi = (int)(x[j + QK4_0 / 2] * id + 8.5f);
            lo = lo > 15 ? 15 : lo;
            hi = hi > 15 ? 15 : hi;
            b[i].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}
static float q4_0_dot(const void *row, const float *x, int64_t n) {
    const block_q4_0 *b = row;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        const float *xb = x + i * QK4_0;
        float s = 0.0f;
        for (int j = 0; j < QK4_0 / 2; j++) {
            s += ((b[i].qs[j] & 0x0f) - 8) * xb[j] + ((b[i].qs[j] >> 4) - 8) * xb[j + QK4_0 / 2];
        }
        sum += s * f16_to_f32(b[i].d);
    }
    return sum;
}

/* ---- Q4_1, Q5_0, Q5_1: 32-value blocks (dequantization and the f32 dot product only) ---- */

/* the 5-bit values of a Q5_0 / Q5_1 block: low 4 bits from the nibbles, bit 4 from qh */
static void q5_values(const uint8_t qs[16], const uint8_t qh[4], int q[32]) {
    uint32_t h = (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
    for (int j = 0; j < 16; j++) {
        q[j] = (qs[j] & 0x0f) | (int)((h >> j) & 1) << 4;
        q[j + 16] = (qs[j] >> 4) | (int)((h >> (j + 16)) & 1) << 4;
    }
}

static void q4_1_to_f32(const void *src, float *dst, int64_t n) {
    const block_q4_1 *b = src;
    for (int64_t i = 0; i < n / 32; i++) {
        float d = f16_to_f32(b[i].d), m = f16_to_f32(b[i].m);
        for (int j = 0; j < 16; j++) {
            dst[i * 32 + j] = (b[i].qs[j] & 0x0f) * d + m;
            dst[i * 32 + j + 16] = (b[i].qs[j] >> 4) * d + m;
        }
    }
}

static void q5_0_to_f32(const void *src, float *dst, int64_t n) {
    const block_q5_0 *b = src;
    for (int64_t i = 0; i < n / 32; i++) {
        float d = f16_to_f32(b[i].d);
        int q[32];
        q5_values(b[i].qs, b[i].qh, q);
        for (int j = 0; j < 32; j++) dst[i * 32 + j] = (float)(q[j] - 16) * d;
    }
}

static void q5_1_to_f32(const void *src, float *dst, int64_t n) {
    const block_q5_1 *b = src;
    for (int64_t i = 0; i < n / 32; i++) {
        float d = f16_to_f32(b[i].d), m = f16_to_f32(b[i].m);
        int q[32];
        q5_values(b[i].qs, b[i].qh, q);
        for (int j = 0; j < 32; j++) dst[i * 32 + j] = (float)q[j] * d + m;
    }
}

/* ---- Q4_K, Q5_K, Q6_K: 256-value super-blocks (quant.h has the layouts) ---- */

static void q4_k_to_f32(const void *src, float *dst, int64_t n) {
    const block_q4_k *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        float d = f16_to_f32(b[i].d), dmin = f16_to_f32(b[i].dmin);
        uint8_t sc[8], m[8];
        kq_scale_min(b[i].scales, sc, m);
        for (int j = 0; j < 8; j++) {
            float dj = d * sc[j], mj = dmin * m[j];
            const uint8_t *q = b[i].qs + 32 * (j / 2);
            int shift = 4 * (j % 2);
            for (int l = 0; l < 32; l++) dst[32 * j + l] = dj * (float)((q[l] >> shift) & 15) - mj;
        }
    }
}

static void q5_k_to_f32(const void *src, float *dst, int64_t n) {
    const block_q5_k *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        float d = f16_to_f32(b[i].d), dmin = f16_to_f32(b[i].dmin);
        uint8_t sc[8], m[8];
        kq_scale_min(b[i].scales, sc, m);
        for (int j = 0; j < 8; j++) {
            float dj = d * sc[j], mj = dmin * m[j];
            const uint8_t *q = b[i].qs + 32 * (j / 2);
            int shift = 4 * (j % 2);
            for (int l = 0; l < 32; l++) {
                int v = ((q[l] >> shift) & 15) | ((b[i].qh[l] >> j) & 1) << 4;
                dst[32 * j + l] = dj * (float)v - mj;
            }
        }
    }
}

/* the 6-bit value of element e (0..255) of a Q6_K super-block, minus 32 */
static inline int q6_k_value(const block_q6_k *b, int e) {
    int h = e / 128, k = (e / 32) % 4, l = e % 32;
    int lo = (b->ql[64 * h + 32 * (k & 1) + l] >> (4 * (k >> 1))) & 15;
    int hi = (b->qh[32 * h + l] >> (2 * k)) & 3;
    return (lo | hi << 4) - 32;
}

static void q6_k_to_f32(const void *src, float *dst, int64_t n) {
    const block_q6_k *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        float d = f16_to_f32(b[i].d);
        for (int g = 0; g < 16; g++) {
            float dg = d * b[i].scales[g];
            for (int l = 0; l < 16; l++) dst[16 * g + l] = dg * (float)q6_k_value(&b[i], 16 * g + l);
        }
    }
}

/* The f32 dot product of a block-quantized row: the row dequantized one block at a time
 * (to_f32 above), then multiplied; for the types whose kernels are not specialised. */
static float dot_by_blocks(to_f32_fn to_f32, int64_t block, int64_t block_bytes,
                           const void *row, const float *x, int64_t n) {
    float tmp[QK_K], sum = 0.0f;
    for (int64_t i = 0; i < n / block; i++) {
        to_f32((const uint8_t *)row + i * block_bytes, tmp, block);
        float s = 0.0f;
        for (int64_t j = 0; j < block; j++) s += tmp[j] * x[i * block + j];
        sum += s;
    }
    return sum;
}

static float q4_1_dot(const void *row, const float *x, int64_t n) {
    return dot_by_blocks(q4_1_to_f32, 32, sizeof(block_q4_1), row, x, n);
}
static float q5_0_dot(const void *row, const float *x, int64_t n) {
    return dot_by_blocks(q5_0_to_f32, 32, sizeof(block_q5_0), row, x, n);
}
static float q5_1_dot(const void *row, const float *x, int64_t n) {
    return dot_by_blocks(q5_1_to_f32, 32, sizeof(block_q5_1), row, x, n);
}
static float q4_k_dot(const void *row, const float *x, int64_t n) {
    return dot_by_blocks(q4_k_to_f32, QK_K, sizeof(block_q4_k), row, x, n);
}
static float q5_k_dot(const void *row, const float *x, int64_t n) {
    return dot_by_blocks(q5_k_to_f32, QK_K, sizeof(block_q5_k), row, x, n);
}
static float q6_k_dot(const void *row, const float *x, int64_t n) {
    return dot_by_blocks(q6_k_to_f32, QK_K, sizeof(block_q6_k), row, x, n);
}

/* Every id GGUF defines, with its block geometry; kernels where libllm computes with it. */
static const type_traits g_types[TYPE_COUNT] = {
    [0] = {"F32", 1, 4, f32_to_f32, f32_from_f32, f32_dot},
    [1] = {"F16", 1, 2, f16_row_to_f32, f16_row_from_f32, f16_dot},
    [2] = {"Q4_0", 32, 18, q4_0_to_f32, q4_0_from_f32, q4_0_dot},
    [3] = {"Q4_1", 32, 20, q4_1_to_f32, 0, q4_1_dot},
    [6] = {"Q5_0", 32, 22, q5_0_to_f32, 0, q5_0_dot},
    [7] = {"Q5_1", 32, 24, q5_1_to_f32, 0, q5_1_dot},
    [8] = {"Q8_0", 32, 34, q8_0_to_f32, q8_0_from_f32, q8_0_dot},
    [9] = {"Q8_1", 32, 40, 0, 0, 0},
    [10] = {"Q2_K", 256, 84, 0, 0, 0},
    [11] = {"Q3_K", 256, 110, 0, 0, 0},
    [12] = {"Q4_K", 256, 144, q4_k_to_f32, 0, q4_k_dot},
    [13] = {"Q5_K", 256, 176, q5_k_to_f32, 0, q5_k_dot},
    [14] = {"Q6_K", 256, 210, q6_k_to_f32, 0, q6_k_dot},
    [15] = {"Q8_K", 256, 292, 0, 0, 0},
    [16] = {"IQ2_XXS", 256, 66, 0, 0, 0},
    [17] = {"IQ2_XS", 256, 74, 0, 0, 0},
    [18] = {"IQ3_XXS", 256, 98, 0, 0, 0},
    [19] = {"IQ1_S", 256, 50, 0, 0, 0},
    [20] = {"IQ4_NL", 32, 18, 0, 0, 0},
    [21] = {"IQ3_S", 256, 110, 0, 0, 0},
    [22] = {"IQ2_S", 256, 82, 0, 0, 0},
    [23] = {"IQ4_XS", 256, 136, 0, 0, 0},
    [24] = {"I8", 1, 1, 0, 0, 0},
    [25] = {"I16", 1, 2, 0, 0, 0},
    [26] = {"I32", 1, 4, 0, 0, 0},
    [27] = {"I64", 1, 8, 0, 0, 0},
    [28] = {"F64", 1, 8, 0, 0, 0},
    [29] = {"IQ1_M", 256, 56, 0, 0, 0},
    [30] = {"BF16", 1, 2, bf16_row_to_f32, bf16_row_from_f32, bf16_dot},
    [34] = {"TQ1_0", 256, 54, 0, 0, 0},
    [35] = {"TQ2_0", 256, 66, 0, 0, 0},
    [39] = {"MXFP4", 32, 17, 0, 0, 0},
    [40] = {"NVFP4", 64, 36, 0, 0, 0},
    [41] = {"Q1_0", 128, 18, 0, 0, 0},
};

const type_traits *type_traits_get(uint32_t type) {
    if (type >= TYPE_COUNT || !g_types[type].name) return 0;
    return &g_types[type];
}

bool type_row_bytes(uint32_t type, int64_t n, uint64_t *bytes) {
    const type_traits *t = type_traits_get(type);
    if (!t || n < 0 || n % t->block != 0) return false;
    uint64_t blocks = (uint64_t)(n / t->block);
    if (blocks != 0 && (uint64_t)t->block_bytes > UINT64_MAX / blocks) return false;
    *bytes = blocks * (uint64_t)t->block_bytes;
    return true;
}
