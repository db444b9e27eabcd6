/* x86_avx2.c -- the AVX2 level (with FMA and F16C): 8 floats or one 32-value quant block per
 * register. Built with its own target flags (CMakeLists.txt); only called after
 * cpu_dispatch.c has checked the CPU.
 *
 * Quantized dot products use VPMADDUBSW (unsigned bytes times signed bytes, pairs summed to
 * 16 bits) then VPMADDWD with ones (pairs summed to 32 bits):
 *   Q8_0: |w| times a with w's sign moved onto a (each pair sum <= 2 * 128 * 127, no
 *         saturation);
 *   Q4_0: the nibbles 0..15 times a (pair sums <= 2 * 15 * 127), minus 8 * sum(a), which
 *         is computed once per matmul, when the activations are quantized (into this level's
 *         own layout, act_oct below).
 * The integer sums are exact, so the results differ from the scalar level only by float
 * summation order. */
#if defined(__x86_64__)

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels.h"

#define INLINE static inline __attribute__((always_inline))

/* The tile loops over rows and tokens are unrolled by pragma: unrolled late, gcc leaves the
 * accumulator array in memory and stores it on every step. */

INLINE float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ---- f32, f16, bf16 weights with f32 activations ---- */

enum { W_F32, W_F16, W_BF16 };

INLINE __m256 load_w8(int kind, const uint8_t *row, int64_t i) {
    if (kind == W_F32) return _mm256_loadu_ps((const float *)row + i);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)row + i));
    if (kind == W_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

INLINE float load_w1(int kind, const uint8_t *row, int64_t i) {
    if (kind == W_F32) return ((const float *)row)[i];
    uint16_t h = ((const uint16_t *)row)[i];
    return kind == W_F16 ? _cvtsh_ss(h) : bf16_to_f32(h);
}

INLINE void tile_float(int kind, int R, int T, int64_t n, const uint8_t *w, size_t ws,
                       const uint8_t *a, size_t as, float *y, int64_t ldy) {
    __m256 acc[MM_TILE_ROWS][MM_TILE_TOKS];
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    }
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x[MM_TILE_TOKS];
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) x[t] = _mm256_loadu_ps((const float *)(a + t * as) + i);
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m256 wv = load_w8(kind, w + r * ws, i);
            #pragma GCC unroll 4
            for (int t = 0; t < T; t++) acc[r][t] = _mm256_fmadd_ps(wv, x[t], acc[r][t]);
        }
    }
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            float s = hsum256(acc[r][t]);
            for (int64_t j = i; j < n; j++) {
                s += load_w1(kind, w + r * ws, j) * ((const float *)(a + t * as))[j];
            }
            y[t * ldy + r] = s;
        }
    }
}

/* ---- Q8_0 weights with block_q8a activations ---- */

enum { W_Q8_0 };

INLINE void tile_quant(int kind, int R, int T, int64_t n, const uint8_t *w, size_t ws,
                       const uint8_t *a, size_t as, float *y, int64_t ldy) {
    (void)kind;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[MM_TILE_ROWS][MM_TILE_TOKS];
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < n / 32; b++) {
        __m256i x[MM_TILE_TOKS];
        __m256 dx[MM_TILE_TOKS];
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const block_q8a *ab = (const block_q8a *)(a + t * as) + b;
            x[t] = _mm256_loadu_si256((const __m256i *)ab->qs);
            dx[t] = _mm256_set1_ps(ab->d);
        }
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const block_q8_0 *q = (const block_q8_0 *)(w + r * ws) + b;
            __m256i wq = _mm256_loadu_si256((const __m256i *)q->qs);
            __m256 dw = _mm256_set1_ps(_cvtsh_ss(q->d));
            __m256i wabs = _mm256_abs_epi8(wq);
            #pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                __m256i p16 = _mm256_maddubs_epi16(wabs, _mm256_sign_epi8(x[t], wq));
                __m256i s = _mm256_madd_epi16(p16, ones);
                acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, dx[t]),
                                            acc[r][t]);
            }
        }
    }
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) y[t * ldy + r] = hsum256(acc[r][t]);
    }
}

/* ---- Q4_0 weights with activations in groups of 8 blocks ----
 * 8 blocks (256 values) in eight registers, one 32-bit lane per block: register m holds
 * values 4 m .. 4 m + 3 of block b in lane b. For the weights these are the low (m < 4) and
 * high (m >= 4) nibbles of 32-bit word m % 4 of each block's qs, a 4 x 4 transpose per
 * group. The eight VPMADDUBSW pair sums of a token add up in 16 bits (at most
 * 8 * 2 * 15 * 127 < 2^15), one VPMADDWD per group widens them, and the block scales are
 * applied once per group instead of once per block. Each lane starts at -8 * (the sum of the
 * block's activations), which the activations carry (quantized once per matmul into this
 * layout). */

typedef struct act_oct {
    int8_t qs[8][32];      /* register m, lane b: values 4 m .. 4 m + 3 of block b */
    float d[8];            /* lane b: the scale of block b */
    int32_t start[8];      /* -8 * the sum of block b's values */
} act_oct;

_Static_assert(sizeof(act_oct) == 320, "act_oct is five cache lines");

static void avx2_quantize_q8a(const float *x, void *out, int64_t n);

static int64_t avx2_act_bytes_q4_0(int64_t n) {
    return (n / 32 + 7) / 8 * (int64_t)sizeof(act_oct);
}

/* an odd last group has zero blocks after its last one (values and scales) */
static void avx2_quantize_q4_0(const float *x, void *out, int64_t n) {
    act_oct *p = out;
    int64_t nb = n / 32;
    for (int64_t g = 0; g < nb; g += 8, p++) {
        int cnt = nb - g < 8 ? (int)(nb - g) : 8;
        block_q8a blk[8];
        memset(blk, 0, sizeof blk);
        avx2_quantize_q8a(x + g * 32, blk, cnt * 32);
        for (int b = 0; b < 8; b++) {
            int32_t sum = 0;
            for (int j = 0; j < 32; j++) sum += blk[b].qs[j];
            for (int m = 0; m < 8; m++) memcpy(p->qs[m] + 4 * b, blk[b].qs + 4 * m, 4);
            p->d[b] = blk[b].d;
            p->start[b] = -8 * sum;
        }
    }
}

/* the weights of blocks g .. g + cnt - 1 of a Q4_0 row (cnt <= 8; the rest count as zero
 * blocks) in the order above, and their scales (lane b: block b) */
INLINE __m256 q4_0_oct(const block_q4_0 *q, int cnt, __m256i *wq) {
    block_q4_0 tmp[8];
    q = oct_blocks(q, cnt, sizeof *q, tmp);
    __m256i y[4];
    for (int b = 0; b < 4; b++) {
        y[b] = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)q[b + 4].qs),
                                _mm_loadu_si128((const __m128i *)q[b].qs));
    }
    /* word w of block b (128-bit half b / 4) to register w, lane b */
    __m256i t0 = _mm256_unpacklo_epi32(y[0], y[1]), t1 = _mm256_unpackhi_epi32(y[0], y[1]);
    __m256i t2 = _mm256_unpacklo_epi32(y[2], y[3]), t3 = _mm256_unpackhi_epi32(y[2], y[3]);
    __m256i g[4] = {_mm256_unpacklo_epi64(t0, t2), _mm256_unpackhi_epi64(t0, t2),
                    _mm256_unpacklo_epi64(t1, t3), _mm256_unpackhi_epi64(t1, t3)};
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    for (int m = 0; m < 4; m++) {
        wq[m] = _mm256_and_si256(g[m], m4);
        wq[m + 4] = _mm256_and_si256(_mm256_srli_epi16(g[m], 4), m4);
    }
    __m128i h = _mm_setr_epi16((short)q[0].d, (short)q[1].d, (short)q[2].d, (short)q[3].d,
                               (short)q[4].d, (short)q[5].d, (short)q[6].d, (short)q[7].d);
    return _mm256_cvtph_ps(h);
}

/* nr <= 4 rows by T <= 4 tokens, row after row */
INLINE void tile_q4_0_oct(int T, int64_t n, const uint8_t *w, size_t ws, int nr,
                          const uint8_t *a, size_t as, float *y, int64_t ldy) {
    const __m256i ones = _mm256_set1_epi16(1);
    int64_t nb = n / 32;
    for (int r = 0; r < nr; r++) {
        const block_q4_0 *row = (const block_q4_0 *)(w + r * ws);
        __m256 acc[MM_TILE_TOKS];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
        for (int64_t g = 0; g < nb; g += 8) {
            __m256i wq[8];
            __m256 dw = q4_0_oct(row + g, nb - g < 8 ? (int)(nb - g) : 8, wq);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                const act_oct *p = (const act_oct *)(a + t * as) + g / 8;
                __m256i s16 = _mm256_maddubs_epi16(wq[0], _mm256_loadu_si256((const __m256i *)p->qs[0]));
#pragma GCC unroll 8
                for (int m = 1; m < 8; m++) {
                    s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(wq[m], _mm256_loadu_si256((const __m256i *)p->qs[m])));
                }
                __m256i s = _mm256_add_epi32(_mm256_madd_epi16(s16, ones), _mm256_loadu_si256((const __m256i *)p->start));
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, _mm256_loadu_ps(p->d)), acc[t]);
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) y[t * ldy + r] = hsum256(acc[t]);
    }
}

static void avx2_tile_q4_0(int64_t n, const void *w, size_t ws, int nr, const void *a,
                           size_t as, int nt, float *y, int64_t ldy) {
    const uint8_t *wb = w, *ab = a;
    switch (nt) {
    case 4: tile_q4_0_oct(4, n, wb, ws, nr, ab, as, y, ldy); break;
    case 3: tile_q4_0_oct(3, n, wb, ws, nr, ab, as, y, ldy); break;
    case 2: tile_q4_0_oct(2, n, wb, ws, nr, ab, as, y, ldy); break;
    default: tile_q4_0_oct(1, n, wb, ws, nr, ab, as, y, ldy); break;
    }
}

static float avx2_vec_dot_q4_0(int64_t n, const void *w, const void *a) {
    float y;
    tile_q4_0_oct(1, n, w, 0, 1, a, 0, &y, 0);
    return y;
}

/* ---- Q4_K, Q5_K, Q6_K weights with block_q8k activations ----
 * One 32-value chunk per register: VPMADDUBSW of the unsigned weights (Q4_K 0..15, Q5_K
 * 0..31, Q6_K 0..63) with the activations (pair sums <= 2 * 63 * 127, no saturation), Q6_K's
 * -32 as minus VPMADDUBSW(32, a); then VPMADDWD with the 16-bit sub-block scales into 32-bit
 * lanes (<= 2 * 8128 * 128 per chunk, 8 chunks: far from overflow). Per super-block one
 * conversion to float; the minimums of Q4_K / Q5_K are 8 x 8 products with block_q8k's
 * sums. */

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

/* [sc0..7, m0..7] of a Q4_K / Q5_K super-block as 16-bit lanes */
INLINE __m256i kq_scales16(const uint8_t *packed) {
    return _mm256_cvtepu8_epi16(kq_scale_min_bytes(packed));
}

/* 16-bit lane e of v (e < 16) in all 16 lanes */
INLINE __m256i bcast16(__m256i v, int e) {
    __m256i pair = _mm256_permutevar8x32_epi32(v, _mm256_set1_epi32(e / 2));
    return _mm256_shuffle_epi8(pair, _mm256_set1_epi16((short)(e % 2 ? 0x0302 : 0x0100)));
}

/* Q6_K: lanes 0..7 of the result hold 16-bit lane 2 c of v, lanes 8..15 lane 2 c + 1 */
INLINE __m256i bcast16_pair(__m256i v, int c) {
    __m256i pair = _mm256_permutevar8x32_epi32(v, _mm256_set1_epi32(c));
    return _mm256_shuffle_epi8(pair, _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,
                                                      2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3));
}

/* the 32 unsigned weights of chunk c (values 32 c .. 32 c + 31) of a super-block */
INLINE __m256i kq_chunk(int kind, const uint8_t *blk, int c) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    if (kind == W_Q6_K) {
        const block_q6_k *q = (const block_q6_k *)blk;
        int h = c / 4, k = c % 4;
        __m256i lo = _mm256_loadu_si256((const __m256i *)(q->ql + 64 * h + 32 * (k & 1)));
        lo = _mm256_and_si256(_mm256_srli_epi16(lo, 4 * (k >> 1)), m4);
        __m256i hi = _mm256_loadu_si256((const __m256i *)(q->qh + 32 * h));
        hi = _mm256_and_si256(_mm256_srli_epi16(hi, 2 * k), _mm256_set1_epi8(3));
        return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
    }
    const uint8_t *qs = kind == W_Q4_K ? ((const block_q4_k *)blk)->qs : ((const block_q5_k *)blk)->qs;
    __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * (c / 2)));
    v = _mm256_and_si256(_mm256_srli_epi16(v, 4 * (c % 2)), m4);
    if (kind == W_Q5_K) {
        __m256i h = _mm256_loadu_si256((const __m256i *)((const block_q5_k *)blk)->qh);
        h = _mm256_and_si256(_mm256_srli_epi16(h, c), _mm256_set1_epi8(1));
        v = _mm256_or_si256(v, _mm256_slli_epi16(h, 4));
    }
    return v;
}

INLINE void tile_kquant(int kind, int R, int T, int64_t n, const uint8_t *w, size_t ws,
                        const uint8_t *a, size_t as, float *y, int64_t ldy) {
    const size_t bb = kind == W_Q4_K ? sizeof(block_q4_k)
                    : kind == W_Q5_K ? sizeof(block_q5_k) : sizeof(block_q6_k);
    __m256 acc[MM_TILE_ROWS][MM_TILE_TOKS];
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < n / QK_K; b++) {
        const block_q8k *ab[MM_TILE_TOKS];
        const uint8_t *wr[MM_TILE_ROWS];
        __m256i sc[MM_TILE_ROWS], isum[MM_TILE_ROWS][MM_TILE_TOKS];
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) ab[t] = (const block_q8k *)(a + t * as) + b;
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            wr[r] = w + r * ws + b * bb;
            if (kind == W_Q6_K) {
                sc[r] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)((const block_q6_k *)wr[r])->scales));
            } else {
                sc[r] = kq_scales16(((const block_q4_k *)wr[r])->scales);   /* same offset in Q5_K */
            }
            #pragma GCC unroll 4
            for (int t = 0; t < T; t++) isum[r][t] = _mm256_setzero_si256();
        }
        #pragma GCC unroll 8
        for (int c = 0; c < 8; c++) {
            __m256i x[MM_TILE_TOKS], x32[MM_TILE_TOKS];
            #pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                x[t] = _mm256_loadu_si256((const __m256i *)(ab[t]->qs + 32 * c));
                if (kind == W_Q6_K) x32[t] = _mm256_maddubs_epi16(_mm256_set1_epi8(32), x[t]);
            }
            #pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                __m256i q = kq_chunk(kind, wr[r], c);
                __m256i s = kind == W_Q6_K ? bcast16_pair(sc[r], c) : bcast16(sc[r], c);
                #pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                    __m256i p = _mm256_maddubs_epi16(q, x[t]);
                    if (kind == W_Q6_K) p = _mm256_sub_epi16(p, x32[t]);
                    isum[r][t] = _mm256_add_epi32(isum[r][t], _mm256_madd_epi16(p, s));
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
                mins = _mm256_extracti128_si256(sc[r], 1);
            }
            #pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][t]), _mm256_set1_ps(d * ab[t]->d), acc[r][t]);
                if (kind != W_Q6_K) {
                    __m128i m = _mm_madd_epi16(mins, _mm_loadu_si128((const __m128i *)ab[t]->sums));
                    acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_zextsi128_si256(m)),
                                                _mm256_set1_ps(-dmin * ab[t]->d), acc[r][t]);
                }
            }
        }
    }
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) y[t * ldy + r] = hsum256(acc[r][t]);
    }
}

INLINE void tile_any_k(int kind, int64_t n, const void *w, size_t ws, int nr, const void *a,
                       size_t as, int nt, float *y, int64_t ldy) {
    const uint8_t *wb = w, *ab = a;
    int r = 0;
    if (nt > 1) {              /* 2 x 2 tiles, as for Q4_0 */
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

static void avx2_tile_q4_k(int64_t n, const void *w, size_t ws, int nr, const void *a,
                           size_t as, int nt, float *y, int64_t ldy) {
    tile_any_k(W_Q4_K, n, w, ws, nr, a, as, nt, y, ldy);
}
static void avx2_tile_q5_k(int64_t n, const void *w, size_t ws, int nr, const void *a,
                           size_t as, int nt, float *y, int64_t ldy) {
    tile_any_k(W_Q5_K, n, w, ws, nr, a, as, nt, y, ldy);
}
static void avx2_tile_q6_k(int64_t n, const void *w, size_t ws, int nr, const void *a,
                           size_t as, int nt, float *y, int64_t ldy) {
    tile_any_k(W_Q6_K, n, w, ws, nr, a, as, nt, y, ldy);
}
static float avx2_vec_dot_q4_k(int64_t n, const void *w, const void *a) {
    float y;
    tile_kquant(W_Q4_K, 1, 1, n, w, 0, a, 0, &y, 0);
    return y;
}
static float avx2_vec_dot_q5_k(int64_t n, const void *w, const void *a) {
    float y;
    tile_kquant(W_Q5_K, 1, 1, n, w, 0, a, 0, &y, 0);
    return y;
}
static float avx2_vec_dot_q6_k(int64_t n, const void *w, const void *a) {
    float y;
    tile_kquant(W_Q6_K, 1, 1, n, w, 0, a, 0, &y, 0);
    return y;
}

/* ---- per-type entry points: 16 registers hold a 2 x 2 tile (4 x 2 for the float types);
 * larger tiles are covered by several, edges by 1 x 1 ---- */

INLINE void sub_tile(int kind, bool quant, int R, int T, int64_t n, const uint8_t *w,
                     size_t ws, const uint8_t *a, size_t as, float *y, int64_t ldy) {
    if (quant) tile_quant(kind, R, T, n, w, ws, a, as, y, ldy);
    else tile_float(kind, R, T, n, w, ws, a, as, y, ldy);
}

INLINE void tile_any(int kind, bool quant, int64_t n, const void *w, size_t ws, int nr,
                     const void *a, size_t as, int nt, float *y, int64_t ldy) {
    const uint8_t *wb = w, *ab = a;
    int r = 0;
    /* a single token (decode) streams one row at a time: interleaving the streams of
     * several rows measured up to 2x slower on Zen 4 */
    if (nt > 1) {
        const int R = quant ? 2 : 4;
        for (; r + R <= nr; r += R) {
            int t = 0;
            for (; t + 2 <= nt; t += 2) {
                sub_tile(kind, quant, R, 2, n, wb + r * ws, ws, ab + t * as, as, y + t * ldy + r, ldy);
            }
            if (t < nt) sub_tile(kind, quant, R, 1, n, wb + r * ws, ws, ab + t * as, as, y + t * ldy + r, ldy);
        }
    }
    for (; r < nr; r++) {
        for (int t = 0; t < nt; t++) {
            sub_tile(kind, quant, 1, 1, n, wb + r * ws, ws, ab + t * as, as, y + t * ldy + r, ldy);
        }
    }
}

static void avx2_tile_f32(int64_t n, const void *w, size_t ws, int nr, const void *a,
                          size_t as, int nt, float *y, int64_t ldy) {
    tile_any(W_F32, false, n, w, ws, nr, a, as, nt, y, ldy);
}
static void avx2_tile_f16(int64_t n, const void *w, size_t ws, int nr, const void *a,
                          size_t as, int nt, float *y, int64_t ldy) {
    tile_any(W_F16, false, n, w, ws, nr, a, as, nt, y, ldy);
}
static void avx2_tile_bf16(int64_t n, const void *w, size_t ws, int nr, const void *a,
                           size_t as, int nt, float *y, int64_t ldy) {
    tile_any(W_BF16, false, n, w, ws, nr, a, as, nt, y, ldy);
}
static void avx2_tile_q8_0(int64_t n, const void *w, size_t ws, int nr, const void *a,
                           size_t as, int nt, float *y, int64_t ldy) {
    tile_any(W_Q8_0, true, n, w, ws, nr, a, as, nt, y, ldy);
}

static float avx2_vec_dot_f32(int64_t n, const void *w, const void *a) {
    float y;
    tile_float(W_F32, 1, 1, n, w, 0, a, 0, &y, 0);
    return y;
}
static float avx2_vec_dot_f16(int64_t n, const void *w, const void *a) {
    float y;
    tile_float(W_F16, 1, 1, n, w, 0, a, 0, &y, 0);
    return y;
}
static float avx2_vec_dot_bf16(int64_t n, const void *w, const void *a) {
    float y;
    tile_float(W_BF16, 1, 1, n, w, 0, a, 0, &y, 0);
    return y;
}
static float avx2_vec_dot_q8_0(int64_t n, const void *w, const void *a) {
    float y;
    tile_quant(W_Q8_0, 1, 1, n, w, 0, a, 0, &y, 0);
    return y;
}

/* ---- activation quantization ---- */

static void avx2_quantize_q8a(const float *x, void *out, int64_t n) {
    block_q8a *y = out;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < n / QK8A; b++) {
        __m256 v[4];
        __m256 m = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(x + b * QK8A + 8 * k);
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[k]));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float d = _mm_cvtss_f32(m4) / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = d;
        __m256 vid = _mm256_set1_ps(id);
        __m256i i[4];
        /* cvtps rounds half to even, like the scalar level's nearbyintf */
        for (int k = 0; k < 4; k++) i[k] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], vid));
        /* pack to bytes: packs interleave 128-bit lanes, the permute puts them back */
        __m256i p16a = _mm256_packs_epi32(i[0], i[1]), p16b = _mm256_packs_epi32(i[2], i[3]);
        __m256i p8 = _mm256_packs_epi16(p16a, p16b);
        p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)y[b].qs, p8);
    }
}

/* 256 values per block_q8k: the same bytes as cpu_quantize_q8k (one scale for the 256, half
 * to even rounding) */
static void avx2_quantize_q8k(const float *x, void *out, int64_t n) {
    block_q8k *y = out;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < n / QK_K; b++) {
        const float *xb = x + b * QK_K;
        __m256 m = _mm256_setzero_ps();
        for (int k = 0; k < QK_K / 8; k++) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(xb + 8 * k)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float d = _mm_cvtss_f32(m4) / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = d;
        __m256 vid = _mm256_set1_ps(id);
        for (int c = 0; c < 8; c++) {
            __m256i i[4];
            for (int k = 0; k < 4; k++) i[k] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + 32 * c + 8 * k), vid));
            __m256i s = _mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3]));
            __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
            s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(1, 0, 3, 2)));
            s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(2, 3, 0, 1)));
            y[b].sums[c] = (int16_t)_mm_cvtsi128_si32(s4);
            __m256i p16a = _mm256_packs_epi32(i[0], i[1]), p16b = _mm256_packs_epi32(i[2], i[3]);
            __m256i p8 = _mm256_packs_epi16(p16a, p16b);
            p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256((__m256i *)(y[b].qs + 32 * c), p8);
        }
    }
}

/* ---- f32 helpers ---- */

static float avx2_dot_f32(int64_t n, const float *x, const float *y) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
    }
    float s = hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += x[i] * y[i];
    return s;
}

static void avx2_axpy_f32(int64_t n, float alpha, const float *x, float *y) {
    __m256 va = _mm256_set1_ps(alpha);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    }
    for (; i < n; i++) y[i] = fmaf(alpha, x[i], y[i]);
}

static void avx2_axpy_f16(int64_t n, float alpha, const uint16_t *x, float *y) {
    __m256 va = _mm256_set1_ps(alpha);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 xv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i)));
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, xv, _mm256_loadu_ps(y + i)));
    }
    for (; i < n; i++) y[i] = fmaf(alpha, _cvtsh_ss(x[i]), y[i]);
}

static void avx2_scale_f32(int64_t n, float s, float *y) {
    __m256 vs = _mm256_set1_ps(s);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(vs, _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] *= s;
}

static void avx2_rmsnorm_f32(int64_t n, const float *x, const float *w, float eps, float *y) {
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();   /* squares in double */
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
        __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
        s0 = _mm256_fmadd_pd(lo, lo, s0);
        s1 = _mm256_fmadd_pd(hi, hi, s1);
    }
    __m256d s = _mm256_add_pd(s0, s1);
    __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    double ss = _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
    for (; i < n; i++) ss += (double)x[i] * x[i];
    float scale = 1.0f / sqrtf((float)(ss / (double)n) + eps);
    __m256 vs = _mm256_set1_ps(scale);
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), vs);
        if (w) v = _mm256_mul_ps(v, _mm256_loadu_ps(w + i));
        _mm256_storeu_ps(y + i, v);
    }
    for (; i < n; i++) y[i] = x[i] * scale * (w ? w[i] : 1.0f);
}

/* e^x for x in [-87, 88] to about 2 ulp (Cody-Waite reduction by ln 2, degree-6 polynomial);
 * inputs beyond are clamped. 2^k is built in the exponent bits. */
INLINE __m256 exp256(__m256 x) {
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.0f)), _mm256_set1_ps(-87.0f));
    __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* k in [-126, 127]: 2^k = (k + 127) << 23 */
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static void avx2_swiglu_f32(int64_t n, float *g, const float *u) {
    const __m256 one = _mm256_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 a = _mm256_loadu_ps(g + i);
        __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), a));
        __m256 s = _mm256_div_ps(a, _mm256_add_ps(one, e));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static float avx2_exp_sum_f32(int64_t n, const float *x, float m, float *y) {
    const __m256 vm = _mm256_set1_ps(m), lim = _mm256_set1_ps(-87.0f);
    __m256 sum = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), vm);
        __m256 e = _mm256_and_ps(exp256(d), _mm256_cmp_ps(d, lim, _CMP_GE_OQ));
        sum = _mm256_add_ps(sum, e);
        _mm256_storeu_ps(y + i, e);
    }
    float s = hsum256(sum);
    for (; i < n; i++) {
        float d = x[i] - m;
        y[i] = d < -87.0f ? 0.0f : expf(d);
        s += y[i];
    }
    return s;
}

/* 8 output values of nt queries stay in registers while every listed cell is added; the
 * last dv % 8 values take the scalar path */
INLINE void pv_tile(bool f16, int NT, int nc, const int32_t *idx, const float *p, int64_t ldp,
                    const uint8_t *v, size_t v_stride, int64_t dv, float *out, int64_t ldo) {
    int64_t i = 0;
    for (; i + 8 <= dv; i += 8) {
        __m256 acc[MM_TILE_TOKS];
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) acc[t] = _mm256_loadu_ps(out + t * ldo + i);
        for (int j = 0; j < nc; j++) {
            const uint8_t *row = v + idx[j] * v_stride;
            __m256 vv = f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + i)))
                            : _mm256_loadu_ps((const float *)row + i);
#pragma GCC unroll 4
            for (int t = 0; t < NT; t++) {
                acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(p[t * ldp + idx[j]]), vv, acc[t]);
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) _mm256_storeu_ps(out + t * ldo + i, acc[t]);
    }
    for (; i < dv; i++) {
        for (int t = 0; t < NT; t++) {
            float s = out[t * ldo + i];
            for (int j = 0; j < nc; j++) {
                const uint8_t *row = v + idx[j] * v_stride;
                float x = f16 ? _cvtsh_ss(((const uint16_t *)row)[i]) : ((const float *)row)[i];
                s = fmaf(p[t * ldp + idx[j]], x, s);
            }
            out[t * ldo + i] = s;
        }
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

static void avx2_pv_f32(int nc, const int32_t *idx, int nt, const float *p, int64_t ldp,
                        const uint8_t *v, size_t v_stride, int64_t dv, float *out, int64_t ldo) {
    pv_any(false, nc, idx, nt, p, ldp, v, v_stride, dv, out, ldo);
}

static void avx2_pv_f16(int nc, const int32_t *idx, int nt, const float *p, int64_t ldp,
                        const uint8_t *v, size_t v_stride, int64_t dv, float *out, int64_t ldo) {
    pv_any(true, nc, idx, nt, p, ldp, v, v_stride, dv, out, ldo);
}

static void avx2_f32_to_f16_row(int64_t n, const float *x, uint16_t *y) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128((__m128i *)(y + i), h);
    }
    for (; i < n; i++) y[i] = f32_to_f16(x[i]);
}

static const cpu_kernels g_avx2 = {
    .name = "avx2",
    .level = CPU_LEVEL_AVX2,
    .f32 = {NULL, NULL, avx2_vec_dot_f32, avx2_tile_f32},
    .f16 = {NULL, NULL, avx2_vec_dot_f16, avx2_tile_f16},
    .bf16 = {NULL, NULL, avx2_vec_dot_bf16, avx2_tile_bf16},
    .q8_0 = {q8a_row_bytes, avx2_quantize_q8a, avx2_vec_dot_q8_0, avx2_tile_q8_0},
    .q4_0 = {avx2_act_bytes_q4_0, avx2_quantize_q4_0, avx2_vec_dot_q4_0, avx2_tile_q4_0},
    .q4_k = {q8k_row_bytes, avx2_quantize_q8k, avx2_vec_dot_q4_k, avx2_tile_q4_k},
    .q5_k = {q8k_row_bytes, avx2_quantize_q8k, avx2_vec_dot_q5_k, avx2_tile_q5_k},
    .q6_k = {q8k_row_bytes, avx2_quantize_q8k, avx2_vec_dot_q6_k, avx2_tile_q6_k},
    .quantize_q8a = avx2_quantize_q8a,
    .dot_f32 = avx2_dot_f32,
    .axpy_f32 = avx2_axpy_f32,
    .axpy_f16 = avx2_axpy_f16,
    .scale_f32 = avx2_scale_f32,
    .rmsnorm_f32 = avx2_rmsnorm_f32,
    .swiglu_f32 = avx2_swiglu_f32,
    .exp_sum_f32 = avx2_exp_sum_f32,
    .pv_f32 = avx2_pv_f32,
    .pv_f16 = avx2_pv_f16,
    .f32_to_f16_row = avx2_f32_to_f16_row,
};

const cpu_kernels *cpu_kernels_avx2(void) { return &g_avx2; }

#else /* not x86-64: this level does not exist in the build */

#include "kernels.h"

const cpu_kernels *cpu_kernels_avx2(void) { return NULL; }

#endif
