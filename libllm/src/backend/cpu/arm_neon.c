/* arm_neon.c -- the aarch64 Advanced SIMD level: 4 floats per register, quant blocks as two
 * 16-byte halves. Uses only baseline ARMv8-A NEON (no dot-product extension), so it needs no
 * target flags and runs on every aarch64 CPU.
 *
 * Quantized dot products widen byte products to 16 bits (|q_w * q_a| <= 128 * 127 fits) and
 * add them pairwise into 32-bit lanes; Q4_0 nibbles are turned into -8..7 first. The integer
 * sums are exact, so the results differ from the scalar level only by float summation order. */
#if defined(__aarch64__)

#include <arm_neon.h>
#include <math.h>

#include "kernels.h"

#define INLINE static inline __attribute__((always_inline))

/* ---- f32, f16, bf16 weights with f32 activations ---- */

enum { W_F32, W_F16, W_BF16 };

INLINE float32x4_t load_w4(int kind, const uint8_t *row, int64_t i) {
    if (kind == W_F32) return vld1q_f32((const float *)row + i);
    uint16x4_t h = vld1_u16((const uint16_t *)row + i);
    if (kind == W_F16) return vcvt_f32_f16(vreinterpret_f16_u16(h));
    return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
}

INLINE float load_w1(int kind, const uint8_t *row, int64_t i) {
    if (kind == W_F32) return ((const float *)row)[i];
    uint16_t h = ((const uint16_t *)row)[i];
    return kind == W_F16 ? f16_to_f32(h) : bf16_to_f32(h);
}

INLINE void tile_float(int kind, int R, int T, int64_t n, const uint8_t *w, size_t ws,
                       const uint8_t *a, size_t as, float *y, int64_t ldy) {
    float32x4_t acc[MM_TILE_ROWS][MM_TILE_TOKS];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[r][t] = vdupq_n_f32(0.0f);
    }
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t x[MM_TILE_TOKS];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) x[t] = vld1q_f32((const float *)(a + t * as) + i);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            float32x4_t wv = load_w4(kind, w + r * ws, i);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) acc[r][t] = vfmaq_f32(acc[r][t], wv, x[t]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            float s = vaddvq_f32(acc[r][t]);
            for (int64_t j = i; j < n; j++) {
                s += load_w1(kind, w + r * ws, j) * ((const float *)(a + t * as))[j];
            }
            y[t * ldy + r] = s;
        }
    }
}

/* ---- Q8_0, Q4_0 weights with block_q8a activations ---- */

enum { W_Q8_0, W_Q4_0 };

/* the 32 weights of block b as signed bytes (Q4_0: nibble - 8), and the block's scale */
INLINE void load_w_block(int kind, const uint8_t *row, int64_t b, int8x16_t *lo, int8x16_t *hi,
                         float *d) {
    if (kind == W_Q8_0) {
        const block_q8_0 *q = (const block_q8_0 *)row + b;
        *lo = vld1q_s8(q->qs);
        *hi = vld1q_s8(q->qs + 16);
        *d = f16_to_f32(q->d);
        return;
    }
    const block_q4_0 *q = (const block_q4_0 *)row + b;
    uint8x16_t p = vld1q_u8(q->qs);
    int8x16_t eight = vdupq_n_s8(8);
    *lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(p, vdupq_n_u8(0x0f))), eight);
    *hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(p, 4)), eight);
    *d = f16_to_f32(q->d);
}

INLINE int32x4_t dot32(int8x16_t wl, int8x16_t wh, int8x16_t xl, int8x16_t xh) {
    int32x4_t s = vpaddlq_s16(vmull_s8(vget_low_s8(wl), vget_low_s8(xl)));
    s = vpadalq_s16(s, vmull_high_s8(wl, xl));
    s = vpadalq_s16(s, vmull_s8(vget_low_s8(wh), vget_low_s8(xh)));
    return vpadalq_s16(s, vmull_high_s8(wh, xh));
}

INLINE void tile_quant(int kind, int R, int T, int64_t n, const uint8_t *w, size_t ws,
                       const uint8_t *a, size_t as, float *y, int64_t ldy) {
    float32x4_t acc[MM_TILE_ROWS][MM_TILE_TOKS];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[r][t] = vdupq_n_f32(0.0f);
    }
    for (int64_t b = 0; b < n / 32; b++) {
        int8x16_t xl[MM_TILE_TOKS], xh[MM_TILE_TOKS];
        float dx[MM_TILE_TOKS];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const block_q8a *ab = (const block_q8a *)(a + t * as) + b;
            xl[t] = vld1q_s8(ab->qs);
            xh[t] = vld1q_s8(ab->qs + 16);
            dx[t] = ab->d;
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            int8x16_t wl, wh;
            float dw;
            load_w_block(kind, w + r * ws, b, &wl, &wh, &dw);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                float32x4_t s = vcvtq_f32_s32(dot32(wl, wh, xl[t], xh[t]));
                acc[r][t] = vfmaq_n_f32(acc[r][t], s, dw * dx[t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) y[t * ldy + r] = vaddvq_f32(acc[r][t]);
    }
}

/* ---- per-type entry points: full 4 x 4 tiles (16 of the 32 registers accumulate), 1 x 4
 * for the last rows, 1 x 1 otherwise: a single token (decode) streams one row at a time, as
 * on x86 ---- */

INLINE void sub_tile(int kind, bool quant, int R, int T, int64_t n, const uint8_t *w,
                     size_t ws, const uint8_t *a, size_t as, float *y, int64_t ldy) {
    if (quant) tile_quant(kind, R, T, n, w, ws, a, as, y, ldy);
    else tile_float(kind, R, T, n, w, ws, a, as, y, ldy);
}

INLINE void tile_any(int kind, bool quant, int64_t n, const void *w, size_t ws, int nr,
                     const void *a, size_t as, int nt, float *y, int64_t ldy) {
    const uint8_t *wb = w, *ab = a;
    if (nr == 4 && nt == 4) {
        sub_tile(kind, quant, 4, 4, n, wb, ws, ab, as, y, ldy);
        return;
    }
    for (int r = 0; r < nr; r++) {
        if (nt == 4) {
            sub_tile(kind, quant, 1, 4, n, wb + r * ws, ws, ab, as, y + r, ldy);
            continue;
        }
        for (int t = 0; t < nt; t++) {
            sub_tile(kind, quant, 1, 1, n, wb + r * ws, ws, ab + t * as, as, y + t * ldy + r, ldy);
        }
    }
}

static void neon_tile_f32(int64_t n, const void *w, size_t ws, int nr, const void *a,
                          size_t as, int nt, float *y, int64_t ldy) {
    tile_any(W_F32, false, n, w, ws, nr, a, as, nt, y, ldy);
}
static void neon_tile_f16(int64_t n, const void *w, size_t ws, int nr, const void *a,
                          size_t as, int nt, float *y, int64_t ldy) {
    tile_any(W_F16, false, n, w, ws, nr, a, as, nt, y, ldy);
}
static void neon_tile_bf16(int64_t n, const void *w, size_t ws, int nr, const void *a,
                           size_t as, int nt, float *y, int64_t ldy) {
    tile_any(W_BF16, false, n, w, ws, nr, a, as, nt, y, ldy);
}
static void neon_tile_q8_0(int64_t n, const void *w, size_t ws, int nr, const void *a,
                           size_t as, int nt, float *y, int64_t ldy) {
    tile_any(W_Q8_0, true, n, w, ws, nr, a, as, nt, y, ldy);
}
static void neon_tile_q4_0(int64_t n, const void *w, size_t ws, int nr, const void *a,
                           size_t as, int nt, float *y, int64_t ldy) {
    tile_any(W_Q4_0, true, n, w, ws, nr, a, as, nt, y, ldy);
}

static float neon_vec_dot_f32(int64_t n, const void *w, const void *a) {
    float y;
    tile_float(W_F32, 1, 1, n, w, 0, a, 0, &y, 0);
    return y;
}
static float neon_vec_dot_f16(int64_t n, const void *w, const void *a) {
    float y;
    tile_float(W_F16, 1, 1, n, w, 0, a, 0, &y, 0);
    return y;
}
static float neon_vec_dot_bf16(int64_t n, const void *w, const void *a) {
    float y;
    tile_float(W_BF16, 1, 1, n, w, 0, a, 0, &y, 0);
    return y;
}
static float neon_vec_dot_q8_0(int64_t n, const void *w, const void *a) {
    float y;
    tile_quant(W_Q8_0, 1, 1, n, w, 0, a, 0, &y, 0);
    return y;
}
static float neon_vec_dot_q4_0(int64_t n, const void *w, const void *a) {
    float y;
    tile_quant(W_Q4_0, 1, 1, n, w, 0, a, 0, &y, 0);
    return y;
}

/* ---- Q4_K, Q5_K, Q6_K weights with block_q8k activations ----
 * 16 values at a time as signed bytes (Q4_K 0..15, Q5_K 0..31, Q6_K q - 32), products widened
 * to 16 bits and added pairwise into 32-bit lanes, times the sub-block scale (VMLA by a
 * scalar); one conversion to float per super-block. Activations are quantized by the scalar
 * level's cpu_quantize_q8k. */

enum { W_Q4_K, W_Q5_K, W_Q6_K };

/* the 16 signed weights of values 16 i .. 16 i + 15 of a super-block */
INLINE int8x16_t kq_part(int kind, const uint8_t *blk, int i) {
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
    if (kind == W_Q6_K) {
        const block_q6_k *q = (const block_q6_k *)blk;
        int e = 16 * i, h = e / 128, k = (e / 32) % 4, l = e % 32;
        uint8x16_t lo = vld1q_u8(q->ql + 64 * h + 32 * (k & 1) + l);
        lo = k >= 2 ? vshrq_n_u8(lo, 4) : vandq_u8(lo, m4);
        uint8x16_t hi = vld1q_u8(q->qh + 32 * h + l);
        hi = vandq_u8(vshlq_u8(hi, vdupq_n_s8((int8_t)(-2 * k))), vdupq_n_u8(3));
        uint8x16_t v = vorrq_u8(lo, vshlq_n_u8(hi, 4));
        return vsubq_s8(vreinterpretq_s8_u8(v), vdupq_n_s8(32));
    }
    int j = i / 2, l = 16 * (i % 2);       /* sub-block j, offset l in it */
    const uint8_t *qs = kind == W_Q4_K ? ((const block_q4_k *)blk)->qs : ((const block_q5_k *)blk)->qs;
    uint8x16_t v = vld1q_u8(qs + 32 * (j / 2) + l);
    v = j % 2 ? vshrq_n_u8(v, 4) : vandq_u8(v, m4);
    if (kind == W_Q5_K) {
        uint8x16_t h = vld1q_u8(((const block_q5_k *)blk)->qh + l);
        h = vandq_u8(vshlq_u8(h, vdupq_n_s8((int8_t)-j)), vdupq_n_u8(1));
        v = vorrq_u8(v, vshlq_n_u8(h, 4));
    }
    return vreinterpretq_s8_u8(v);
}

INLINE int32x4_t dot16(int8x16_t w, int8x16_t x) {
    int32x4_t s = vpaddlq_s16(vmull_s8(vget_low_s8(w), vget_low_s8(x)));
    return vpadalq_s16(s, vmull_high_s8(w, x));
}

INLINE void tile_kquant(int kind, int R, int T, int64_t n, const uint8_t *w, size_t ws,
                        const uint8_t *a, size_t as, float *y, int64_t ldy) {
    const size_t bb = kind == W_Q4_K ? sizeof(block_q4_k)
                    : kind == W_Q5_K ? sizeof(block_q5_k) : sizeof(block_q6_k);
    float32x4_t acc[MM_TILE_ROWS][MM_TILE_TOKS];
    float mfix[MM_TILE_ROWS][MM_TILE_TOKS];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            acc[r][t] = vdupq_n_f32(0.0f);
            mfix[r][t] = 0.0f;
        }
    }
    for (int64_t b = 0; b < n / QK_K; b++) {
        const block_q8k *ab[MM_TILE_TOKS];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) ab[t] = (const block_q8k *)(a + t * as) + b;
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *wr = w + r * ws + b * bb;
            int32_t sc[16];
            uint8_t s8[8], m8[8];
            float d, dmin = 0.0f;
            if (kind == W_Q6_K) {
                const block_q6_k *q = (const block_q6_k *)wr;
                for (int g = 0; g < 16; g++) sc[g] = q->scales[g];
                d = f16_to_f32(q->d);
            } else {
                const block_q4_k *q = (const block_q4_k *)wr;   /* same offsets in Q5_K */
                kq_scale_min(q->scales, s8, m8);
                for (int g = 0; g < 16; g++) sc[g] = s8[g / 2];
                d = f16_to_f32(q->d);
                dmin = f16_to_f32(q->dmin);
            }
            int32x4_t isum[MM_TILE_TOKS];
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) isum[t] = vdupq_n_s32(0);
            for (int i = 0; i < 16; i++) {
                int8x16_t q = kq_part(kind, wr, i);
#pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                    isum[t] = vmlaq_n_s32(isum[t], dot16(q, vld1q_s8(ab[t]->qs + 16 * i)), sc[i]);
                }
            }
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                acc[r][t] = vfmaq_n_f32(acc[r][t], vcvtq_f32_s32(isum[t]), d * ab[t]->d);
                if (kind != W_Q6_K) {
                    int32_t msum = 0;
                    for (int j = 0; j < 8; j++) msum += m8[j] * ab[t]->sums[j];
                    mfix[r][t] -= (float)msum * (dmin * ab[t]->d);
                }
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) y[t * ldy + r] = vaddvq_f32(acc[r][t]) + mfix[r][t];
    }
}

INLINE void tile_any_k(int kind, int64_t n, const void *w, size_t ws, int nr, const void *a,
                       size_t as, int nt, float *y, int64_t ldy) {
    const uint8_t *wb = w, *ab = a;
    for (int r = 0; r < nr; r++) {
        if (nt == 4) {
            tile_kquant(kind, 1, 4, n, wb + r * ws, ws, ab, as, y + r, ldy);
            continue;
        }
        for (int t = 0; t < nt; t++) {
            tile_kquant(kind, 1, 1, n, wb + r * ws, ws, ab + t * as, as, y + t * ldy + r, ldy);
        }
    }
}

static void neon_tile_q4_k(int64_t n, const void *w, size_t ws, int nr, const void *a,
                           size_t as, int nt, float *y, int64_t ldy) {
    tile_any_k(W_Q4_K, n, w, ws, nr, a, as, nt, y, ldy);
}
static void neon_tile_q5_k(int64_t n, const void *w, size_t ws, int nr, const void *a,
                           size_t as, int nt, float *y, int64_t ldy) {
    tile_any_k(W_Q5_K, n, w, ws, nr, a, as, nt, y, ldy);
}
static void neon_tile_q6_k(int64_t n, const void *w, size_t ws, int nr, const void *a,
                           size_t as, int nt, float *y, int64_t ldy) {
    tile_any_k(W_Q6_K, n, w, ws, nr, a, as, nt, y, ldy);
}
static float neon_vec_dot_q4_k(int64_t n, const void *w, const void *a) {
    float y;
    tile_kquant(W_Q4_K, 1, 1, n, w, 0, a, 0, &y, 0);
    return y;
}
static float neon_vec_dot_q5_k(int64_t n, const void *w, const void *a) {
    float y;
    tile_kquant(W_Q5_K, 1, 1, n, w, 0, a, 0, &y, 0);
    return y;
}
static float neon_vec_dot_q6_k(int64_t n, const void *w, const void *a) {
    float y;
    tile_kquant(W_Q6_K, 1, 1, n, w, 0, a, 0, &y, 0);
    return y;
}

/* ---- activation quantization ---- */

static void neon_quantize_q8a(const float *x, void *out, int64_t n) {
    block_q8a *y = out;
    for (int64_t b = 0; b < n / QK8A; b++) {
        float32x4_t v[8];
        float32x4_t m = vdupq_n_f32(0.0f);
        for (int k = 0; k < 8; k++) {
            v[k] = vld1q_f32(x + b * QK8A + 4 * k);
            m = vmaxq_f32(m, vabsq_f32(v[k]));
        }
        float d = vmaxvq_f32(m) / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = d;
        for (int k = 0; k < 8; k += 2) {
            /* vcvtnq rounds half to even, like the scalar level's nearbyintf */
            int32x4_t i0 = vcvtnq_s32_f32(vmulq_n_f32(v[k], id));
            int32x4_t i1 = vcvtnq_s32_f32(vmulq_n_f32(v[k + 1], id));
            int16x8_t h = vcombine_s16(vqmovn_s32(i0), vqmovn_s32(i1));
            vst1_s8(y[b].qs + 4 * k, vqmovn_s16(h));
        }
    }
}

/* ---- f32 helpers ---- */

static float neon_dot_f32(int64_t n, const float *x, const float *y) {
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        s0 = vfmaq_f32(s0, vld1q_f32(x + i), vld1q_f32(y + i));
        s1 = vfmaq_f32(s1, vld1q_f32(x + i + 4), vld1q_f32(y + i + 4));
    }
    float s = vaddvq_f32(vaddq_f32(s0, s1));
    for (; i < n; i++) s += x[i] * y[i];
    return s;
}

static void neon_axpy_f32(int64_t n, float alpha, const float *x, float *y) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vld1q_f32(x + i), alpha));
    for (; i < n; i++) y[i] = fmaf(alpha, x[i], y[i]);
}

static void neon_axpy_f16(int64_t n, float alpha, const uint16_t *x, float *y) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t xv = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(x + i)));
        vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), xv, alpha));
    }
    for (; i < n; i++) y[i] = fmaf(alpha, f16_to_f32(x[i]), y[i]);
}

static void neon_scale_f32(int64_t n, float s, float *y) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vmulq_n_f32(vld1q_f32(y + i), s));
    for (; i < n; i++) y[i] *= s;
}

static void neon_rmsnorm_f32(int64_t n, const float *x, const float *w, float eps, float *y) {
    float64x2_t s0 = vdupq_n_f64(0.0), s1 = vdupq_n_f64(0.0);   /* squares in double */
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t v = vld1q_f32(x + i);
        float64x2_t lo = vcvt_f64_f32(vget_low_f32(v)), hi = vcvt_high_f64_f32(v);
        s0 = vfmaq_f64(s0, lo, lo);
        s1 = vfmaq_f64(s1, hi, hi);
    }
    double ss = vaddvq_f64(vaddq_f64(s0, s1));
    for (; i < n; i++) ss += (double)x[i] * x[i];
    float scale = 1.0f / sqrtf((float)(ss / (double)n) + eps);
    for (i = 0; i + 4 <= n; i += 4) {
        float32x4_t v = vmulq_n_f32(vld1q_f32(x + i), scale);
        if (w) v = vmulq_f32(v, vld1q_f32(w + i));
        vst1q_f32(y + i, v);
    }
    for (; i < n; i++) y[i] = x[i] * scale * (w ? w[i] : 1.0f);
}

/* e^x for x in [-87, 88] to about 2 ulp (Cody-Waite reduction by ln 2, degree-6 polynomial);
 * inputs beyond are clamped. 2^k is built in the exponent bits. */
INLINE float32x4_t exp4(float32x4_t x) {
    x = vmaxq_f32(vminq_f32(x, vdupq_n_f32(88.0f)), vdupq_n_f32(-87.0f));
    float32x4_t k = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
    float32x4_t r = vfmsq_n_f32(x, k, 0.693359375f);
    r = vfmsq_n_f32(r, k, -2.12194440e-4f);
    float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
    p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
    int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(k), vdupq_n_s32(127)), 23);
    return vmulq_f32(p, vreinterpretq_f32_s32(e));
}

static void neon_swiglu_f32(int64_t n, float *g, const float *u) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t a = vld1q_f32(g + i);
        float32x4_t s = vdivq_f32(a, vaddq_f32(vdupq_n_f32(1.0f), exp4(vnegq_f32(a))));
        vst1q_f32(g + i, vmulq_f32(s, vld1q_f32(u + i)));
    }
    for (; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static float neon_exp_sum_f32(int64_t n, const float *x, float m, float *y) {
    float32x4_t sum = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t d = vsubq_f32(vld1q_f32(x + i), vdupq_n_f32(m));
        uint32x4_t keep = vcgeq_f32(d, vdupq_n_f32(-87.0f));
        float32x4_t e = vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(exp4(d)), keep));
        sum = vaddq_f32(sum, e);
        vst1q_f32(y + i, e);
    }
    float s = vaddvq_f32(sum);
    for (; i < n; i++) {
        float d = x[i] - m;
        y[i] = d < -87.0f ? 0.0f : expf(d);
        s += y[i];
    }
    return s;
}

static void pv_rows(bool f16, int nc, const int32_t *idx, int nt, const float *p, int64_t ldp,
                    const uint8_t *v, size_t v_stride, int64_t dv, float *out, int64_t ldo) {
    for (int t = 0; t < nt; t++) {
        for (int j = 0; j < nc; j++) {
            const uint8_t *row = v + idx[j] * v_stride;
            float pj = p[t * ldp + idx[j]];
            if (f16) neon_axpy_f16(dv, pj, (const uint16_t *)row, out + t * ldo);
            else neon_axpy_f32(dv, pj, (const float *)row, out + t * ldo);
        }
    }
}

static void neon_pv_f32(int nc, const int32_t *idx, int nt, const float *p, int64_t ldp,
                        const uint8_t *v, size_t v_stride, int64_t dv, float *out, int64_t ldo) {
    pv_rows(false, nc, idx, nt, p, ldp, v, v_stride, dv, out, ldo);
}

static void neon_pv_f16(int nc, const int32_t *idx, int nt, const float *p, int64_t ldp,
                        const uint8_t *v, size_t v_stride, int64_t dv, float *out, int64_t ldo) {
    pv_rows(true, nc, idx, nt, p, ldp, v, v_stride, dv, out, ldo);
}

static void neon_f32_to_f16_row(int64_t n, const float *x, uint16_t *y) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        vst1_u16(y + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
    }
    for (; i < n; i++) y[i] = f32_to_f16(x[i]);
}

static const cpu_kernels g_neon = {
    .name = "neon",
    .level = CPU_LEVEL_NEON,
    .f32 = {NULL, NULL, neon_vec_dot_f32, neon_tile_f32},
    .f16 = {NULL, NULL, neon_vec_dot_f16, neon_tile_f16},
    .bf16 = {NULL, NULL, neon_vec_dot_bf16, neon_tile_bf16},
    .q8_0 = {q8a_row_bytes, neon_quantize_q8a, neon_vec_dot_q8_0, neon_tile_q8_0},
    .q4_0 = {q8a_row_bytes, neon_quantize_q8a, neon_vec_dot_q4_0, neon_tile_q4_0},
    .q4_k = {q8k_row_bytes, cpu_quantize_q8k, neon_vec_dot_q4_k, neon_tile_q4_k},
    .q5_k = {q8k_row_bytes, cpu_quantize_q8k, neon_vec_dot_q5_k, neon_tile_q5_k},
    .q6_k = {q8k_row_bytes, cpu_quantize_q8k, neon_vec_dot_q6_k, neon_tile_q6_k},
    .quantize_q8a = neon_quantize_q8a,
    .dot_f32 = neon_dot_f32,
    .axpy_f32 = neon_axpy_f32,
    .axpy_f16 = neon_axpy_f16,
    .scale_f32 = neon_scale_f32,
    .rmsnorm_f32 = neon_rmsnorm_f32,
    .swiglu_f32 = neon_swiglu_f32,
    .exp_sum_f32 = neon_exp_sum_f32,
    .pv_f32 = neon_pv_f32,
    .pv_f16 = neon_pv_f16,
    .f32_to_f16_row = neon_f32_to_f16_row,
};

const cpu_kernels *cpu_kernels_neon(void) { return &g_neon; }

#else /* not aarch64: this level does not exist in the build */

#include "kernels.h"

const cpu_kernels *cpu_kernels_neon(void) { return NULL; }

#endif
