/* quant.h -- tensor element types: block layouts, half-float conversions and the scalar
 * reference of every per-type kernel (to f32, from f32, dot with f32). Block structs are
 * plain C so the CUDA backend can share them. */
#ifndef LLM_QUANT_H
#define LLM_QUANT_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define QK4_0 32
#define QK8_0 32

typedef struct block_q4_0 {
    uint16_t d;              /* scale, f16 */
    uint8_t qs[QK4_0 / 2];   /* element j in the low nibble of qs[j], j + 16 in the high one;
                                value = (nibble - 8) * d */
} block_q4_0;

typedef struct block_q8_0 {
    uint16_t d;              /* scale, f16 */
    int8_t qs[QK8_0];        /* value = qs[j] * d */
} block_q8_0;

typedef struct block_q4_1 {
    uint16_t d, m;           /* scale and minimum, f16 */
    uint8_t qs[16];          /* nibbles as in q4_0; value = nibble * d + m */
} block_q4_1;

typedef struct block_q5_0 {
    uint16_t d;              /* scale, f16 */
    uint8_t qh[4];           /* bit j of the little-endian 32-bit qh: the fifth bit of element j */
    uint8_t qs[16];          /* low 4 bits as in q4_0; value = (q - 16) * d, q = 0..31 */
} block_q5_0;

typedef struct block_q5_1 {
    uint16_t d, m;           /* scale and minimum, f16 */
    uint8_t qh[4];           /* as in q5_0 */
    uint8_t qs[16];          /* as in q5_0; value = q * d + m */
} block_q5_1;

_Static_assert(sizeof(block_q4_0) == 18, "q4_0 block is 18 bytes");
_Static_assert(sizeof(block_q8_0) == 34, "q8_0 block is 34 bytes");
_Static_assert(sizeof(block_q4_1) == 20, "q4_1 block is 20 bytes");
_Static_assert(sizeof(block_q5_0) == 22, "q5_0 block is 22 bytes");
_Static_assert(sizeof(block_q5_1) == 24, "q5_1 block is 24 bytes");

/* ---- K-quants: super-blocks of 256 values ----
 *
 * Q4_K and Q5_K: 8 sub-blocks of 32 values, each with a 6-bit scale sc[j] and a 6-bit minimum
 * m[j]; value = (d * sc[j]) * q - (dmin * m[j]), q = 0..15 (Q4_K) or 0..31 (Q5_K). The 16
 * six-bit numbers are packed in 12 bytes (kq_scale_min below). Values 64 c .. 64 c + 63
 * (c = 0..3) live in qs[32 c .. 32 c + 31]: sub-block 2 c in the low nibbles, 2 c + 1 in the
 * high ones; Q5_K's fifth bit of value 32 j + l is bit j of qh[l].
 *
 * Q6_K: 16 groups of 16 values, each with an int8 scale; value = (d * scales[i / 16]) *
 * (q - 32), q = 0..63. Value 128 h + 32 k + l (h = 0..1, k = 0..3, l = 0..31) takes its low
 * 4 bits from ql[64 h + 32 (k & 1) + l] (low nibble for k < 2, high for k >= 2) and its top
 * 2 bits from bits 2 k, 2 k + 1 of qh[32 h + l]. */
#define QK_K 256

typedef struct block_q4_k {
    uint16_t d, dmin;        /* super-block scales of sc and m, f16 */
    uint8_t scales[12];      /* sc[8], m[8], 6 bits each */
    uint8_t qs[QK_K / 2];
} block_q4_k;

typedef struct block_q5_k {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} block_q5_k;

typedef struct block_q6_k {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    uint16_t d;              /* f16 */
} block_q6_k;

_Static_assert(sizeof(block_q4_k) == 144, "q4_k block is 144 bytes");
_Static_assert(sizeof(block_q5_k) == 176, "q5_k block is 176 bytes");
_Static_assert(sizeof(block_q6_k) == 210, "q6_k block is 210 bytes");

/* The 8 scales and 8 minimums of a Q4_K / Q5_K super-block: for j < 4 the low 6 bits of
 * bytes j (sc) and j + 4 (m); for j >= 4 the low (sc) and high (m) nibble of byte j + 4,
 * with their top 2 bits in the top bits of bytes j - 4 (sc) and j (m). */
static inline void kq_scale_min(const uint8_t s[12], uint8_t sc[8], uint8_t m[8]) {
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 63;
        m[j] = s[j + 4] & 63;
        sc[j + 4] = (uint8_t)((s[j + 8] & 15) | ((s[j] >> 6) << 4));
        m[j + 4] = (uint8_t)((s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4));
    }
}

/* GGML type ids used here; the full list of ids lives in quant.c's table. */
enum {
    TYPE_F32 = 0,
    TYPE_F16 = 1,
    TYPE_Q4_0 = 2,
    TYPE_Q4_1 = 3,
    TYPE_Q5_0 = 6,
    TYPE_Q5_1 = 7,
    TYPE_Q8_0 = 8,
    TYPE_Q4_K = 12,
    TYPE_Q5_K = 13,
    TYPE_Q6_K = 14,
    TYPE_BF16 = 30,
    TYPE_COUNT = 64          /* ids are < TYPE_COUNT */
};

typedef void (*to_f32_fn)(const void *src, float *dst, int64_t n);
typedef void (*from_f32_fn)(const float *src, void *dst, int64_t n);
typedef float (*dot_f32_fn)(const void *row, const float *x, int64_t n);

typedef struct type_traits {
    const char *name;        /* "Q4_0"; NULL for an id GGUF does not define */
    int64_t block;           /* elements per block */
    int64_t block_bytes;     /* bytes per block */
    to_f32_fn to_f32;        /* NULL when libllm cannot compute with the type */
    from_f32_fn from_f32;    /* NULL when libllm cannot produce the type */
    dot_f32_fn dot_f32;      /* scalar reference dot product of a row with f32 values */
} type_traits;

/* Traits of a GGML type id, or NULL for an id no GGUF file defines. */
const type_traits *type_traits_get(uint32_t type);

/* Bytes of n elements of the type: false if n is not a multiple of the block or overflows. */
bool type_row_bytes(uint32_t type, int64_t n, uint64_t *bytes);

static inline float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {                           /* subnormal: renormalise */
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline uint16_t f32_to_f16(float f) {  /* round to nearest even */
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffff;
    if (absx >= 0x7f800000u) {                 /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
    }
    if (absx >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* overflow to inf */
    if (absx < 0x38800000u) {                  /* subnormal or zero in f16 */
        if (absx < 0x33000000u) return (uint16_t)sign;
        uint32_t man = (absx & 0x7fffff) | 0x800000;
        int shift = 126 - (int)(absx >> 23);   /* 14 .. 24 */
        uint32_t half = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t h = ((absx >> 13) - ((127 - 15) << 10));
    uint32_t rem = absx & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

static inline float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline uint16_t f32_to_bf16(float f) {  /* round to nearest even, nan kept quiet */
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffff) > 0x7f800000u) return (uint16_t)((x >> 16) | 64);
    return (uint16_t)((x + (0x7fff + ((x >> 16) & 1))) >> 16);
}

#endif
