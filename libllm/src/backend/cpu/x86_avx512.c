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

/* ---- Q4_K, Q5_K, Q6_K weights with block_q8k activations ----
 * One 64-value chunk per register (Q4_K / Q5_K: the low and high nibbles of 32 bytes, that
 * is sub-blocks 2 c and 2 c + 1; Q6_K: four groups of 16), in the activations' own order, so
 * block_q8k is used as it is. VPMADDUBSW of the unsigned weights with the activations (Q6_K's
 * -32 as minus VPMADDUBSW(32, a)), VPMADDWD with the 16-bit scales of each lane's group: the
 * integer sums of the AVX2 level, twice as wide. One conversion to float per super-block. */

enum { W_Q4_K, W_Q5_K, W_Q6_K };

/* [sc0..7, m0..7] of a Q4_K / Q5_K super-block as bytes (quant.h's kq_scale_min on 32-bit
 * words u0, u1, u2 of the 12 packed bytes): sc0..3 = u0 & 63, sc4..7 = (u2 & 15) |
 * (u0 >> 6) << 4, m0..3 = u1 & 63, m4..7 = (u2 >> 4) | (u1 >> 6) << 4, per byte. Reads 16
 * bytes from `packed`: qh / qs follow the scales in both blocks. */
INLINE __m128i kq_scale_min_bytes(const uint8_t *packed) {
    __m128i v = _mm_loadu_si128((const __m128i *)packed);
    __m128i lo = _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 1, 2, 0));             /* u0 u2 u1 u2 */
    lo = _mm_srlv_epi32(lo, _mm_setr_epi32(0, 0, 0, 4));
    lo = _mm_and_si128(lo, _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
    __m128i hi = _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 1, 0, 0));             /* u0 u0 u1 u1 */
    hi = _mm_and_si128(_mm_srli_epi32(hi, 2), _mm_setr_epi32(0, 0x30303030, 0, 0x30303030));
    return _mm_or_si128(lo, hi);
}

/* [sc0..7, m0..7] of a Q4_K / Q5_K super-block, or Q6_K's 16 scales, as 16-bit lanes */
INLINE __m512i kq_scales16(int kind, const uint8_t *blk) {
    __m256i s;
    if (kind == W_Q6_K) {
        s = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)((const block_q6_k *)blk)->scales));
    } else {
        s = _mm256_cvtepu8_epi16(kq_scale_min_bytes(((const block_q4_k *)blk)->scales));  /* same offset in Q5_K */
    }
    return _mm512_castsi256_si512(s);
}

/* the scale of each 16-bit product lane of chunk c: Q4_K / Q5_K lanes 0..15 sc[2 c], 16..31
 * sc[2 c + 1]; Q6_K lanes 8 g .. 8 g + 7 scale 4 c + g */
INLINE __m512i kq_lane_scales(int kind, __m512i sc, int c) {
    __m512i idx;
    if (kind == W_Q6_K) {
        idx = _mm512_add_epi16(_mm512_set1_epi16((short)(4 * c)),
                               _mm512_srli_epi16(_mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16,
                                                                  15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), 3));
    } else {
        idx = _mm512_inserti64x4(_mm512_set1_epi16((short)(2 * c)), _mm256_set1_epi16((short)(2 * c + 1)), 1);
    }
    return _mm512_permutexvar_epi16(idx, sc);
}

/* two 32-byte halves as one register */
INLINE __m512i join256(__m256i lo, __m256i hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

/* the 64 unsigned weights of chunk c (values 64 c .. 64 c + 63) of a super-block */
INLINE __m512i kq_chunk(int kind, const uint8_t *blk, int c) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    if (kind == W_Q6_K) {
        const block_q6_k *q = (const block_q6_k *)blk;
        int h = c / 2, k0 = 2 * (c % 2);     /* values 128 h + 32 k, k = k0, k0 + 1 */
        __m512i lo = _mm512_loadu_si512(q->ql + 64 * h);
        lo = _mm512_and_si512(_mm512_srli_epi16(lo, 4 * (k0 >> 1)), m4);
        __m256i qh = _mm256_loadu_si256((const __m256i *)(q->qh + 32 * h));
        __m512i hi = join256(_mm256_srli_epi16(qh, 2 * k0), _mm256_srli_epi16(qh, 2 * k0 + 2));
        hi = _mm512_and_si512(hi, _mm512_set1_epi8(3));
        return _mm512_or_si512(lo, _mm512_slli_epi16(hi, 4));
    }
    const uint8_t *qs = kind == W_Q4_K ? ((const block_q4_k *)blk)->qs : ((const block_q5_k *)blk)->qs;
    __m256i p = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
    __m512i v = _mm512_and_si512(join256(p, _mm256_srli_epi16(p, 4)), m4);
    if (kind == W_Q5_K) {
        __m256i qh = _mm256_loadu_si256((const __m256i *)((const block_q5_k *)blk)->qh);
        __m512i h = join256(_mm256_srli_epi16(qh, 2 * c), _mm256_srli_epi16(qh, 2 * c + 1));
        h = _mm512_and_si512(h, _mm512_set1_epi8(1));
        v = _mm512_or_si512(v, _mm512_slli_epi16(h, 4));
    }
    return v;
}

INLINE void tile_kquant(int kind, int R, int T, int64_t n, const uint8_t *w, size_t ws,
                        const uint8_t *a, size_t as, float *y, int64_t ldy) {
    const size_t bb = kind == W_Q4_K ? sizeof(block_q4_k)
                    : kind == W_Q5_K ? sizeof(block_q5_k) : sizeof(block_q6_k);
    __m512 acc[MM_TILE_ROWS][MM_TILE_TOKS];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    }
    for (int64_t b = 0; b < n / QK_K; b++) {
        const block_q8k *ab[MM_TILE_TOKS];
        const uint8_t *wr[MM_TILE_ROWS];
        __m512i sc[MM_TILE_ROWS], isum[MM_TILE_ROWS][MM_TILE_TOKS];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) ab[t] = (const block_q8k *)(a + t * as) + b;
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            wr[r] = w + r * ws + b * bb;
            sc[r] = kq_scales16(kind, wr[r]);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) isum[r][t] = _mm512_setzero_si512();
        }
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m512i x[MM_TILE_TOKS], x32[MM_TILE_TOKS];
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                x[t] = _mm512_loadu_si512(ab[t]->qs + 64 * c);
                if (kind == W_Q6_K) x32[t] = _mm512_maddubs_epi16(_mm512_set1_epi8(32), x[t]);
            }
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                __m512i q = kq_chunk(kind, wr[r], c);
                __m512i s = kq_lane_scales(kind, sc[r], c);
#pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                    __m512i p = _mm512_maddubs_epi16(q, x[t]);
                    if (kind == W_Q6_K) p = _mm512_sub_epi16(p, x32[t]);
                    isum[r][t] = _mm512_add_epi32(isum[r][t], _mm512_madd_epi16(p, s));
                }
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            float d, dmin = 0.0f;
            __m128i mins = _mm_setzero_si128();
            if (kind == W_Q6_K) {
                d = _cvtsh_ss(((const block_q6_k *)wr[r])->d);
            } else {
                const block_q4_k *q = (const block_q4_k *)wr[r];   /* same offsets in Q5_K */
                d = _cvtsh_ss(q->d);
                dmin = _cvtsh_ss(q->dmin);
                mins = _mm256_extracti128_si256(_mm512_castsi512_si256(sc[r]), 1);
            }
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[r][t]), _mm512_set1_ps(d * ab[t]->d), acc[r][t]);
                if (kind != W_Q6_K) {
                    __m128i m = _mm_madd_epi16(mins, _mm_loadu_si128((const __m128i *)ab[t]->sums));
                    acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_zextsi128_si512(m)),
                                                _mm512_set1_ps(-dmin * ab[t]->d), acc[r][t]);
                }
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
    }
}

/* 2 x nt tiles for a prompt, 1 x 1 streams for decode */
INLINE void tile_any_k(int kind, int64_t n, const void *w, size_t ws, int nr, const void *a,
                       size_t as, int nt, float *y, int64_t ldy) {
    const uint8_t *wb = w, *ab = a;
    int r = 0;
    if (nt > 1) {
        for (; r + 2 <= nr; r += 2) {
            int t = 0;
            for (; t + 2 <= nt; t += 2) {
                tile_kquant(kind, 2, 2, n, wb + r * ws, ws, ab + t * as, as, y + t * ldy + r, ldy);
            }
            if (t < nt) tile_kquant(kind, 2, 1, n, wb + r * ws, ws, ab + t * as, as, y + t * ldy + r, ldy);
        }
    }
    for (; r < nr; r++) {
        for (int t = 0; t < nt; t++) {
            tile_kquant(kind, 1, 1, n, wb + r * ws, ws, ab + t * as, as, y + t * ldy + r, ldy);
        }
    }
}

static void avx512_tile_q4_k(int64_t n, const void *w, size_t ws, int nr, const void *a,
                             size_t as, int nt, float *y, int64_t ldy) {
    tile_any_k(W_Q4_K, n, w, ws, nr, a, as, nt, y, ldy);
}
static void avx512_tile_q5_k(int64_t n, const void *w, size_t ws, int nr, const void *a,
                             size_t as, int nt, float *y, int64_t ldy) {
    tile_any_k(W_Q5_K, n, w, ws, nr, a, as, nt, y, ldy);
}
static void avx512_tile_q6_k(int64_t n, const void *w, size_t ws, int nr, const void *a,
                             size_t as, int nt, float *y, int64_t ldy) {
    tile_any_k(W_Q6_K, n, w, ws, nr, a, as, nt, y, ldy);
}
static float avx512_vec_dot_q4_k(int64_t n, const void *w, const void *a) {
    float y;
    tile_kquant(W_Q4_K, 1, 1, n, w, 0, a, 0, &y, 0);
    return y;
}
static float avx512_vec_dot_q5_k(int64_t n, const void *w, const void *a) {
    float y;
    tile_kquant(W_Q5_K, 1, 1, n, w, 0, a, 0, &y, 0);
    return y;
}
static float avx512_vec_dot_q6_k(int64_t n, const void *w, const void *a) {
    float y;
    tile_kquant(W_Q6_K, 1, 1, n, w, 0, a, 0, &y, 0);
    return y;
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

/* 256 values per block_q8k: the same bytes as cpu_quantize_q8k (one scale for the 256, half
 * to even rounding, saturating narrowing never reached since |x * id| <= 127) */
static void avx512_quantize_q8k(const float *x, void *out, int64_t n) {
    block_q8k *y = out;
    const __m512 sign = _mm512_set1_ps(-0.0f);
    for (int64_t b = 0; b < n / QK_K; b++) {
        const float *xb = x + b * QK_K;
        __m512 m = _mm512_setzero_ps();
        for (int k = 0; k < QK_K / 16; k++) m = _mm512_max_ps(m, _mm512_andnot_ps(sign, _mm512_loadu_ps(xb + 16 * k)));
        float d = _mm512_reduce_max_ps(m) / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = d;
        __m512 vid = _mm512_set1_ps(id);
        for (int c = 0; c < 8; c++) {
            __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + 32 * c), vid));
            __m512i i1 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + 32 * c + 16), vid));
            y[b].sums[c] = (int16_t)_mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
            _mm_storeu_si128((__m128i *)(y[b].qs + 32 * c), _mm512_cvtsepi32_epi8(i0));
            _mm_storeu_si128((__m128i *)(y[b].qs + 32 * c + 16), _mm512_cvtsepi32_epi8(i1));
        }
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
    .q4_k = {q8k_row_bytes, avx512_quantize_q8k, avx512_vec_dot_q4_k, avx512_tile_q4_k},
    .q5_k = {q8k_row_bytes, avx512_quantize_q8k, avx512_vec_dot_q5_k, avx512_tile_q5_k},
    .q6_k = {q8k_row_bytes, avx512_quantize_q8k, avx512_vec_dot_q6_k, avx512_tile_q6_k},
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
