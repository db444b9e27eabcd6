/* x86_avx512.c -- the AVX-512 level (F, BW, DQ, VL, VNNI with FMA and F16C): 16 floats or
 * two 32-value quant blocks per register. Built with its own target flags (CMakeLists.txt);
 * only called after cpu_dispatch.c has checked the CPU.
 *
 * Quantized dot products use VPDPBUSD (unsigned bytes times signed bytes, summed in groups
 * of four into 32-bit lanes). The weights are the unsigned operand:
 *   Q8_0: offset by 128 (w ^ 0x80 = w + 128 as unsigned); the extra 128 * sum(a) per lane
 *         is cancelled by starting the lane at -128 * sum(a);
 *   Q4_0: the nibbles 0..15 as they are; the format's -8 becomes a start of -8 * sum(a).
 * The starts depend only on the activations, so they are computed once per matmul, when the
 * activations are quantized (into this level's own layout, act_pair below). The integer sums
 * are exact, so the results differ from the scalar level only by float summation order. */
#if defined(__x86_64__)

#include <immintrin.h>
#include <math.h>

#include "kernels.h"

#define INLINE static inline __attribute__((always_inline))

/* The tile loops over rows and tokens are unrolled by pragma: unrolled late, gcc leaves the
 * accumulator array in memory and stores it on every step. */

/* lanes [0, left) of a 16-lane step */
INLINE __mmask16 tail_mask(int64_t left) {
    return left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
}

/* ---- f32, f16, bf16 weights with f32 activations ---- */

enum { W_F32, W_F16, W_BF16 };

/* 16 weights from element i of a row (or the first `m` of them), widened to f32 */
INLINE __m512 load_w16(int kind, const uint8_t *row, int64_t i, __mmask16 m) {
    if (kind == W_F32) return _mm512_maskz_loadu_ps(m, (const float *)row + i);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)row + i);
    if (kind == W_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

INLINE void tile_float(int kind, int R, int T, int64_t n, const uint8_t *w, size_t ws,
                       const uint8_t *a, size_t as, float *y, int64_t ldy) {
    __m512 acc[MM_TILE_ROWS][MM_TILE_TOKS];
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    }
    /* one loop, the last step masked: a separate tail loop makes gcc keep acc in memory */
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 x[MM_TILE_TOKS];
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) x[t] = _mm512_maskz_loadu_ps(m, (const float *)(a + t * as) + i);
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m512 wv = load_w16(kind, w + r * ws, i, m);
            #pragma GCC unroll 4
            for (int t = 0; t < T; t++) acc[r][t] = _mm512_fmadd_ps(wv, x[t], acc[r][t]);
        }
    }
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
    }
}

/* ---- Q8_0, Q4_0 weights with activations in pairs of blocks ---- */

enum { W_Q8_0, W_Q4_0 };

/* This level's activation layout: the q8a values of each pair of blocks (64 values; an odd
 * last block is paired with zeros), laid out so that every operand of the inner loop is one
 * aligned 64-byte load:
 *   qs     the values; for Q4_0 in the order unpacked nibbles come in:
 *          [b0 0..15, b1 0..15, b0 16..31, b1 16..31], for Q8_0 as they are
 *   d      the block scale of each 32-bit VPDPBUSD lane (4 values per lane)
 *   start  what each lane's sum starts from: -128 * (sum of its 4 values) for Q8_0, whose
 *          weights enter offset by 128 (w ^ 0x80 as unsigned); -8 * (sum) for Q4_0, whose
 *          nibbles enter as they are (0..15 instead of -8..7) */
typedef struct act_pair {
    int8_t qs[64];
    float d[16];
    int32_t start[16];
} act_pair;

_Static_assert(sizeof(act_pair) == 192, "act_pair is three cache lines");

static int64_t avx512_act_bytes(int64_t n) {
    return (n / 32 + 1) / 2 * (int64_t)sizeof(act_pair);
}

static void avx512_quantize_q8a(const float *x, void *out, int64_t n);

INLINE void quantize_pairs(int kind, const float *x, void *out, int64_t n) {
    act_pair *p = out;
    const __m512i zero = _mm512_setzero_si512();
    int64_t nb = n / 32;
    for (int64_t b = 0; b < nb; b += 2, p++) {
        bool two = b + 1 < nb;
        block_q8a blk[2] = {{0}};
        avx512_quantize_q8a(x + b * 32, blk, two ? 64 : 32);
        __m512i q = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)blk[0].qs)),
            _mm256_loadu_si256((const __m256i *)blk[1].qs), 1);
        __m512 d;
        if (kind == W_Q4_0) {
            q = _mm512_shuffle_i64x2(q, q, _MM_SHUFFLE(3, 1, 2, 0));
            __m128 d4 = _mm_unpacklo_ps(_mm_set1_ps(blk[0].d), _mm_set1_ps(blk[1].d));
            d = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1),
                                      _mm512_castps128_ps512(d4));
        } else {
            d = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(blk[0].d)),
                                   _mm256_set1_ps(blk[1].d), 1);
        }
        __m512i c = _mm512_set1_epi8(kind == W_Q4_0 ? 8 : (char)0x80);
        _mm512_storeu_si512(p->qs, q);
        _mm512_storeu_ps(p->d, d);
        _mm512_storeu_si512(p->start, _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, c, q)));
    }
}

static void avx512_quantize_q8_0(const float *x, void *out, int64_t n) {
    quantize_pairs(W_Q8_0, x, out, n);
}

static void avx512_quantize_q4_0(const float *x, void *out, int64_t n) {
    quantize_pairs(W_Q4_0, x, out, n);
}

INLINE __m512 f16_pair_scales(uint16_t d0, uint16_t d1) {
    return _mm512_cvtph_ps(_mm256_set_m128i(_mm_set1_epi16((short)d1), _mm_set1_epi16((short)d0)));
}

/* weights of blocks b and b + 1 of a row in the activation layout's order, as the unsigned
 * operand (Q8_0: w ^ 0x80; Q4_0: the nibbles), and the scales of their lanes. `two` is false
 * for an odd last block: the second block is then not read (masked loads do not touch
 * masked-out memory) and counts as zeros. */
INLINE __m512i load_w_qs(int kind, bool two, const uint8_t *row, int64_t b) {
    if (kind == W_Q8_0) {
        const block_q8_0 *q = (const block_q8_0 *)row + b;
        __m256i lo = _mm256_loadu_si256((const __m256i *)q[0].qs);
        __m256i hi = _mm256_maskz_loadu_epi8(two ? 0xffffffffu : 0u, q[1].qs);
        __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
        return _mm512_xor_si512(z, _mm512_set1_epi8((char)0x80));
    }
    const block_q4_0 *q = (const block_q4_0 *)row + b;
    __m128i p0 = _mm_loadu_si128((const __m128i *)q[0].qs);
    __m128i p1 = _mm_maskz_loadu_epi8(two ? 0xffff : 0, q[1].qs);
    __m256i p = _mm256_set_m128i(p1, p0);
    /* [p0, p1, p0 >> 4, p1 >> 4] = [b0 0..15, b1 0..15, b0 16..31, b1 16..31] */
    __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(p), _mm256_srli_epi16(p, 4), 1);
    return _mm512_and_si512(z, _mm512_set1_epi8(0x0f));
}

INLINE __m512 load_w_scales(int kind, bool two, const uint8_t *row, int64_t b) {
    if (kind == W_Q8_0) {
        const block_q8_0 *q = (const block_q8_0 *)row + b;
        return f16_pair_scales(q[0].d, two ? q[1].d : 0);
    }
    const block_q4_0 *q = (const block_q4_0 *)row + b;
    __m128i h = _mm_unpacklo_epi64(_mm_set1_epi16((short)q[0].d),
                                   _mm_set1_epi16((short)(two ? q[1].d : 0)));
    return _mm512_cvtph_ps(_mm256_broadcastsi128_si256(h));
}

INLINE void tile_quant(int kind, int R, int T, int64_t n, const uint8_t *w, size_t ws,
                       const uint8_t *a, size_t as, float *y, int64_t ldy) {
    __m512 acc[MM_TILE_ROWS][MM_TILE_TOKS];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    }
    int64_t nb = n / 32;
    for (int64_t b = 0; b < nb; b += 2) {
        bool two = b + 1 < nb;
        __m512i x[MM_TILE_TOKS];
        __m512 dx[MM_TILE_TOKS];
        const act_pair *ap[MM_TILE_TOKS];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            ap[t] = (const act_pair *)(a + t * as) + b / 2;
            x[t] = _mm512_loadu_si512(ap[t]->qs);
            dx[t] = _mm512_loadu_ps(ap[t]->d);
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m512i wq = load_w_qs(kind, two, w + r * ws, b);
            __m512 dw = load_w_scales(kind, two, w + r * ws, b);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                __m512i s = _mm512_dpbusd_epi32(_mm512_loadu_si512(ap[t]->start), wq, x[t]);
                acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, dx[t]), acc[r][t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
    }
}

/* ---- per-type entry points: full 4 x 4 tiles, 1 x 4 for the last rows, 1 x 1 otherwise:
 * a single token (decode) streams one row at a time, since interleaving the streams of
 * several rows measured up to 2x slower on Zen 4 ---- */

INLINE void tile_any(int kind, bool quant, int64_t n, const void *w, size_t ws, int nr,
                     const void *a, size_t as, int nt, float *y, int64_t ldy) {
    const uint8_t *wb = w, *ab = a;
    if (nr == 4 && nt == 4) {
        if (quant) tile_quant(kind, 4, 4, n, wb, ws, ab, as, y, ldy);
        else tile_float(kind, 4, 4, n, wb, ws, ab, as, y, ldy);
        return;
    }
    for (int r = 0; r < nr; r++) {
        if (nt == 4) {
            if (quant) tile_quant(kind, 1, 4, n, wb + r * ws, ws, ab, as, y + r, ldy);
            else tile_float(kind, 1, 4, n, wb + r * ws, ws, ab, as, y + r, ldy);
            continue;
        }
        for (int t = 0; t < nt; t++) {
            if (quant) tile_quant(kind, 1, 1, n, wb + r * ws, ws, ab + t * as, as, y + t * ldy + r, ldy);
            else tile_float(kind, 1, 1, n, wb + r * ws, ws, ab + t * as, as, y + t * ldy + r, ldy);
        }
    }
}

static void avx512_tile_f32(int64_t n, const void *w, size_t ws, int nr, const void *a,
                            size_t as, int nt, float *y, int64_t ldy) {
    tile_any(W_F32, false, n, w, ws, nr, a, as, nt, y, ldy);
}
static void avx512_tile_f16(int64_t n, const void *w, size_t ws, int nr, const void *a,
                            size_t as, int nt, float *y, int64_t ldy) {
    tile_any(W_F16, false, n, w, ws, nr, a, as, nt, y, ldy);
}
static void avx512_tile_bf16(int64_t n, const void *w, size_t ws, int nr, const void *a,
                             size_t as, int nt, float *y, int64_t ldy) {
    tile_any(W_BF16, false, n, w, ws, nr, a, as, nt, y, ldy);
}
static void avx512_tile_q8_0(int64_t n, const void *w, size_t ws, int nr, const void *a,
                             size_t as, int nt, float *y, int64_t ldy) {
    tile_any(W_Q8_0, true, n, w, ws, nr, a, as, nt, y, ldy);
}
static void avx512_tile_q4_0(int64_t n, const void *w, size_t ws, int nr, const void *a,
                             size_t as, int nt, float *y, int64_t ldy) {
    tile_any(W_Q4_0, true, n, w, ws, nr, a, as, nt, y, ldy);
}

static float avx512_vec_dot_f32(int64_t n, const void *w, const void *a) {
    float y;
    tile_float(W_F32, 1, 1, n, w, 0, a, 0, &y, 0);
    return y;
}
static float avx512_vec_dot_f16(int64_t n, const void *w, const void *a) {
    float y;
    tile_float(W_F16, 1, 1, n, w, 0, a, 0, &y, 0);
    return y;
}
static float avx512_vec_dot_bf16(int64_t n, const void *w, const void *a) {
    float y;
    tile_float(W_BF16, 1, 1, n, w, 0, a, 0, &y, 0);
    return y;
}
static float avx512_vec_dot_q8_0(int64_t n, const void *w, const void *a) {
    float y;
    tile_quant(W_Q8_0, 1, 1, n, w, 0, a, 0, &y, 0);
    return y;
}
static float avx512_vec_dot_q4_0(int64_t n, const void *w, const void *a) {
    float y;
    tile_quant(W_Q4_0, 1, 1, n, w, 0, a, 0, &y, 0);
    return y;
}

/* ---- activation quantization ---- */

static void avx512_quantize_q8a(const float *x, void *out, int64_t n) {
    block_q8a *y = out;
    const __m512 sign = _mm512_set1_ps(-0.0f);
    for (int64_t b = 0; b < n / QK8A; b++) {
        __m512 v0 = _mm512_loadu_ps(x + b * QK8A), v1 = _mm512_loadu_ps(x + b * QK8A + 16);
        __m512 m = _mm512_max_ps(_mm512_andnot_ps(sign, v0), _mm512_andnot_ps(sign, v1));
        float amax = _mm512_reduce_max_ps(m);
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = d;
        __m512 vid = _mm512_set1_ps(id);
        /* cvtps rounds half to even, like the scalar level's nearbyintf */
        __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, vid));
        __m512i i1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, vid));
        _mm_storeu_si128((__m128i *)y[b].qs, _mm512_cvtsepi32_epi8(i0));
        _mm_storeu_si128((__m128i *)(y[b].qs + 16), _mm512_cvtsepi32_epi8(i1));
    }
}

/* ---- f32 helpers ---- */

static float avx512_dot_f32(int64_t n, const float *x, const float *y) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16), s1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

static void avx512_axpy_f32(int64_t n, float alpha, const float *x, float *y) {
    __m512 va = _mm512_set1_ps(alpha);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 v = _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i));
        _mm512_mask_storeu_ps(y + i, m, v);
    }
}

static void avx512_axpy_f16(int64_t n, float alpha, const uint16_t *x, float *y) {
    __m512 va = _mm512_set1_ps(alpha);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 xv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + i));
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, xv, _mm512_maskz_loadu_ps(m, y + i)));
    }
}

static void avx512_scale_f32(int64_t n, float s, float *y) {
    __m512 vs = _mm512_set1_ps(s);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(vs, _mm512_maskz_loadu_ps(m, y + i)));
    }
}

static void avx512_rmsnorm_f32(int64_t n, const float *x, const float *w, float eps, float *y) {
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();   /* squares in double */
    for (int64_t i = 0; i < n; i += 16) {
        __m512 v = _mm512_maskz_loadu_ps(tail_mask(n - i), x + i);
        __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
        __m512d hi = _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1));
        s0 = _mm512_fmadd_pd(lo, lo, s0);
        s1 = _mm512_fmadd_pd(hi, hi, s1);
    }
    double ss = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
    __m512 scale = _mm512_set1_ps(1.0f / sqrtf((float)(ss / (double)n) + eps));
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), scale);
        if (w) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, w + i));
        _mm512_mask_storeu_ps(y + i, m, v);
    }
}

/* e^x for x in [-87, 88] to about 2 ulp (Cody-Waite reduction by ln 2, degree-6 polynomial);
 * inputs beyond are clamped. */
INLINE __m512 exp512(__m512 x) {
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.0f)), _mm512_set1_ps(-87.0f));
    __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, k);
}

static void avx512_swiglu_f32(int64_t n, float *g, const float *u) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 a = _mm512_maskz_loadu_ps(m, g + i);
        __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), a));
        __m512 s = _mm512_div_ps(a, _mm512_add_ps(one, e));
        _mm512_mask_storeu_ps(g + i, m, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(m, u + i)));
    }
}

static float avx512_exp_sum_f32(int64_t n, const float *x, float m, float *y) {
    const __m512 vm = _mm512_set1_ps(m), lim = _mm512_set1_ps(-87.0f);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 k = tail_mask(n - i);
        __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vm);
        __mmask16 keep = _mm512_mask_cmp_ps_mask(k, d, lim, _CMP_GE_OQ);
        __m512 e = _mm512_maskz_mov_ps(keep, exp512(d));
        sum = _mm512_add_ps(sum, e);
        _mm512_mask_storeu_ps(y + i, k, e);
    }
    return _mm512_reduce_add_ps(sum);
}

/* 16 values of a V row from element i (the first `m` of them), as f32 */
INLINE __m512 load_v16(bool f16, const uint8_t *row, int64_t i, __mmask16 m) {
    if (f16) return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)row + i));
    return _mm512_maskz_loadu_ps(m, (const float *)row + i);
}

/* 16 output values of nt queries stay in registers while every listed cell is added */
INLINE void pv_tile(bool f16, int NT, int nc, const int32_t *idx, const float *p, int64_t ldp,
                    const uint8_t *v, size_t v_stride, int64_t dv, float *out, int64_t ldo) {
    for (int64_t i = 0; i < dv; i += 16) {
        __mmask16 m = tail_mask(dv - i);
        __m512 acc[MM_TILE_TOKS];
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) acc[t] = _mm512_maskz_loadu_ps(m, out + t * ldo + i);
        for (int j = 0; j < nc; j++) {
            __m512 vv = load_v16(f16, v + idx[j] * v_stride, i, m);
#pragma GCC unroll 4
            for (int t = 0; t < NT; t++) {
                acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(p[t * ldp + idx[j]]), vv, acc[t]);
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) _mm512_mask_storeu_ps(out + t * ldo + i, m, acc[t]);
    }
}

INLINE void pv_any(bool f16, int nc, const int32_t *idx, int nt, const float *p, int64_t ldp,
                   const uint8_t *v, size_t v_stride, int64_t dv, float *out, int64_t ldo) {
    switch (nt) {
    case 4: pv_tile(f16, 4, nc, idx, p, ldp, v, v_stride, dv, out, ldo); break;
    case 3: pv_tile(f16, 3, nc, idx, p, ldp, v, v_stride, dv, out, ldo); break;
    case 2: pv_tile(f16, 2, nc, idx, p, ldp, v, v_stride, dv, out, ldo); break;
    default: pv_tile(f16, 1, nc, idx, p, ldp, v, v_stride, dv, out, ldo); break;
    }
}

static void avx512_pv_f32(int nc, const int32_t *idx, int nt, const float *p, int64_t ldp,
                          const uint8_t *v, size_t v_stride, int64_t dv, float *out,
                          int64_t ldo) {
    pv_any(false, nc, idx, nt, p, ldp, v, v_stride, dv, out, ldo);
}

static void avx512_pv_f16(int nc, const int32_t *idx, int nt, const float *p, int64_t ldp,
                          const uint8_t *v, size_t v_stride, int64_t dv, float *out,
                          int64_t ldo) {
    pv_any(true, nc, idx, nt, p, ldp, v, v_stride, dv, out, ldo);
}

static void avx512_f32_to_f16_row(int64_t n, const float *x, uint16_t *y) {
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, x + i), _MM_FROUND_TO_NEAREST_INT);
        _mm256_mask_storeu_epi16(y + i, m, h);
    }
}

static const cpu_kernels g_avx512 = {
    .name = "avx512",
    .level = CPU_LEVEL_AVX512,
    .f32 = {NULL, NULL, avx512_vec_dot_f32, avx512_tile_f32},
    .f16 = {NULL, NULL, avx512_vec_dot_f16, avx512_tile_f16},
    .bf16 = {NULL, NULL, avx512_vec_dot_bf16, avx512_tile_bf16},
    .q8_0 = {avx512_act_bytes, avx512_quantize_q8_0, avx512_vec_dot_q8_0, avx512_tile_q8_0},
    .q4_0 = {avx512_act_bytes, avx512_quantize_q4_0, avx512_vec_dot_q4_0, avx512_tile_q4_0},
    .quantize_q8a = avx512_quantize_q8a,
    .dot_f32 = avx512_dot_f32,
    .axpy_f32 = avx512_axpy_f32,
    .axpy_f16 = avx512_axpy_f16,
    .scale_f32 = avx512_scale_f32,
    .rmsnorm_f32 = avx512_rmsnorm_f32,
    .swiglu_f32 = avx512_swiglu_f32,
    .exp_sum_f32 = avx512_exp_sum_f32,
    .pv_f32 = avx512_pv_f32,
    .pv_f16 = avx512_pv_f16,
    .f32_to_f16_row = avx512_f32_to_f16_row,
};

const cpu_kernels *cpu_kernels_avx512(void) { return &g_avx512; }

#else /* not x86-64: this level does not exist in the build */

#include "kernels.h"

const cpu_kernels *cpu_kernels_avx512(void) { return NULL; }

#endif
