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

/* Every id GGUF defines, with its block geometry; kernels where libllm computes with it. */
static const type_traits g_types[TYPE_COUNT] = {
    [0] = {"F32", 1, 4, f32_to_f32, f32_from_f32, f32_dot},
    [1] = {"F16", 1, 2, f16_row_to_f32, f16_row_from_f32, f16_dot},
    [2] = {"Q4_0", 32, 18, q4_0_to_f32, q4_0_from_f32, q4_0_dot},
    [3] = {"Q4_1", 32, 20, 0, 0, 0},
    [6] = {"Q5_0", 32, 22, 0, 0, 0},
    [7] = {"Q5_1", 32, 24, 0, 0, 0},
    [8] = {"Q8_0", 32, 34, q8_0_to_f32, q8_0_from_f32, q8_0_dot},
    [9] = {"Q8_1", 32, 40, 0, 0, 0},
    [10] = {"Q2_K", 256, 84, 0, 0, 0},
    [11] = {"Q3_K", 256, 110, 0, 0, 0},
    [12] = {"Q4_K", 256, 144, 0, 0, 0},
    [13] = {"Q5_K", 256, 176, 0, 0, 0},
    [14] = {"Q6_K", 256, 210, 0, 0, 0},
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
