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
 * activations are quantized (into this level's own layout, act_oct below). The K-quants have
 * their own layout too (act_kq8, act_kq4: every 32-bit lane inside one scale group), followed
 * by the block_q8k values for the decode. Quantized kernels take up to 8 tokens per call
 * (mm_kernel.max_toks), so what they unpack of a weight row serves 8 tokens. The integer sums
 * are exact, so the results differ from the scalar level only by float summation order. */
#if defined(__x86_64__)

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels.h"

#define INLINE static inline __attribute__((always_inline))

/* The tile loops over rows and tokens are unrolled by pragma: unrolled late, gcc leaves the
 * accumulator array in memory and stores it on every step. */

/* lanes [0, left) of a 16-lane step */
INLINE __mmask16 tail_mask(int64_t left) {
    return left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
}

/* Four registers of 16 lanes into one: lane 4 i + t holds the sum of lanes 4 i .. 4 i + 3
 * (128-bit lane i) of v[t]. */
INLINE __m512i fold4_epi32(__m512i v0, __m512i v1, __m512i v2, __m512i v3) {
    __m512i a = _mm512_add_epi32(_mm512_unpacklo_epi32(v0, v1), _mm512_unpackhi_epi32(v0, v1));
    __m512i b = _mm512_add_epi32(_mm512_unpacklo_epi32(v2, v3), _mm512_unpackhi_epi32(v2, v3));
    return _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b));
}

/* as fold4_epi32, in floats */
INLINE __m512 fold4_ps(__m512 v0, __m512 v1, __m512 v2, __m512 v3) {
    __m512 a = _mm512_add_ps(_mm512_unpacklo_ps(v0, v1), _mm512_unpackhi_ps(v0, v1));
    __m512 b = _mm512_add_ps(_mm512_unpacklo_ps(v2, v3), _mm512_unpackhi_ps(v2, v3));
    return _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(b))),
                         _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(b))));
}

/* y[t * ldy + r] = the sum over i of lane 4 i + t of acc, t < T */
INLINE void store_folded(__m512 acc, int T, float *y, int64_t ldy) {
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(acc), _mm512_extractf32x8_ps(acc, 1));
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    float out[4];
    _mm_storeu_ps(out, q);
    for (int t = 0; t < T; t++) y[t * ldy] = out[t];
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
        if (T == 4) {
            store_folded(fold4_ps(acc[r][0], acc[r][1], acc[r][2], acc[r][3]), 4, y + r, ldy);
            continue;
        }
        #pragma GCC unroll 4
        for (int t = 0; t < T; t++) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
    }
}

enum { W_Q8_0, W_Q4_0 };

static void avx512_quantize_q8a(const float *x, void *out, int64_t n);
static void avx512_quantize_q8k(const float *x, void *out, int64_t n);

/* ---- Q8_0, Q4_0 weights with activations in groups of 8 blocks ----
 * 8 blocks (256 values) in four registers, in the order in which every 32-bit lane stays in
 * one block: register m holds values 8 m .. 8 m + 7 of block b in its 64-bit word b (lanes
 * 2 b, 2 b + 1). For Q4_0 weights these are the low (m = 0, 1) and high (m = 2, 3) nibbles
 * of 64-bit word m % 2 of each block's qs (two permutes a group), for Q8_0 64-bit word m (a
 * transpose). VPDPBUSD then sums the 32 products of a block in two lanes over the four
 * registers, and the block scales are applied once per 8 blocks and token. The weights are
 * the unsigned operand: Q4_0's nibbles as they are (0..15), Q8_0's as w ^ 0x80 = w + 128;
 * each lane starts at -8 (Q4_0) or -128 (Q8_0) times the sum of its 16 activations, which
 * the activations carry (they are quantized once per matmul, into this level's layout). */

typedef struct act_oct {
    int8_t qs[4][64];
    float d[16];           /* lane 2 b + e: the scale of block b */
    int32_t start[16];     /* -8 * the sum of the lane's 16 values */
} act_oct;

_Static_assert(sizeof(act_oct) == 384, "act_oct is six cache lines");

static int64_t avx512_act_bytes_oct(int64_t n) {
    return (n / 32 + 7) / 8 * (int64_t)sizeof(act_oct);
}

/* an odd last group has zero blocks after its last one (values and scales); `offset` is 8
 * for Q4_0, 128 for Q8_0 (whose weights enter as w ^ 0x80 = w + 128) */
INLINE void quantize_oct(int offset, const float *x, void *out, int64_t n) {
    act_oct *p = out;
    int64_t nb = n / 32;
    for (int64_t g = 0; g < nb; g += 8, p++) {
        int cnt = nb - g < 8 ? (int)(nb - g) : 8;
        block_q8a blk[8];
        memset(blk, 0, sizeof blk);
        avx512_quantize_q8a(x + g * 32, blk, cnt * 32);
        for (int b = 0; b < 8; b++) {
            for (int m = 0; m < 4; m++) memcpy(p->qs[m] + 8 * b, blk[b].qs + 8 * m, 8);
            p->d[2 * b] = p->d[2 * b + 1] = blk[b].d;
        }
        __m512i s = _mm512_setzero_si512();
        for (int m = 0; m < 4; m++) s = _mm512_dpbusd_epi32(s, _mm512_set1_epi8((char)offset), _mm512_loadu_si512(p->qs[m]));
        _mm512_storeu_si512(p->start, _mm512_sub_epi32(_mm512_setzero_si512(), s));
    }
}

static void avx512_quantize_q4_0(const float *x, void *out, int64_t n) { quantize_oct(8, x, out, n); }
static void avx512_quantize_q8_0(const float *x, void *out, int64_t n) { quantize_oct(128, x, out, n); }

/* the weights of blocks g .. g + cnt - 1 of a Q4_0 row (cnt <= 8; the rest count as zero
 * blocks) in the order above, and their scales (lane 2 b + e: block b) */
INLINE __m512 q4_0_oct(const block_q4_0 *q, int cnt, __m512i *wq) {
    block_q4_0 tmp[8];
    q = oct_blocks(q, cnt, sizeof *q, tmp);
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512i lo = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)q[0].qs));
    lo = _mm512_inserti32x4(lo, _mm_loadu_si128((const __m128i *)q[1].qs), 1);
    lo = _mm512_inserti32x4(lo, _mm_loadu_si128((const __m128i *)q[2].qs), 2);
    lo = _mm512_inserti32x4(lo, _mm_loadu_si128((const __m128i *)q[3].qs), 3);
    __m512i hi = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)q[4].qs));
    hi = _mm512_inserti32x4(hi, _mm_loadu_si128((const __m128i *)q[5].qs), 1);
    hi = _mm512_inserti32x4(hi, _mm_loadu_si128((const __m128i *)q[6].qs), 2);
    hi = _mm512_inserti32x4(hi, _mm_loadu_si128((const __m128i *)q[7].qs), 3);
    __m512i g0 = _mm512_permutex2var_epi64(lo, _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14), hi);
    __m512i g1 = _mm512_permutex2var_epi64(lo, _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15), hi);
    wq[0] = _mm512_and_si512(g0, m4);
    wq[1] = _mm512_and_si512(g1, m4);
    wq[2] = _mm512_and_si512(_mm512_srli_epi16(g0, 4), m4);
    wq[3] = _mm512_and_si512(_mm512_srli_epi16(g1, 4), m4);
    __m128i h = _mm_setr_epi16((short)q[0].d, (short)q[1].d, (short)q[2].d, (short)q[3].d,
                               (short)q[4].d, (short)q[5].d, (short)q[6].d, (short)q[7].d);
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7),
                                 _mm512_castps256_ps512(_mm256_cvtph_ps(h)));
}

/* the same for Q8_0: 64-bit word m of each block's qs, as w ^ 0x80 */
INLINE __m512 q8_0_oct(const block_q8_0 *q, int cnt, __m512i *wq) {
    block_q8_0 tmp[8];
    q = oct_blocks(q, cnt, sizeof *q, tmp);
    __m512i z[4];
    for (int k = 0; k < 4; k++) {
        z[k] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)q[2 * k].qs)),
                                  _mm256_loadu_si256((const __m256i *)q[2 * k + 1].qs), 1);
    }
    /* 64-bit word 4 b + m of z is word m of block b: transposed so that register m holds word
     * m of every block */
    const __m512i ib = _mm512_setr_epi64(0, 4, 8, 12, 1, 5, 9, 13);
    const __m512i ic = _mm512_setr_epi64(2, 6, 10, 14, 3, 7, 11, 15);
    __m512i b01 = _mm512_permutex2var_epi64(z[0], ib, z[1]), c01 = _mm512_permutex2var_epi64(z[0], ic, z[1]);
    __m512i b23 = _mm512_permutex2var_epi64(z[2], ib, z[3]), c23 = _mm512_permutex2var_epi64(z[2], ic, z[3]);
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    wq[0] = _mm512_xor_si512(_mm512_shuffle_i64x2(b01, b23, _MM_SHUFFLE(1, 0, 1, 0)), flip);
    wq[1] = _mm512_xor_si512(_mm512_shuffle_i64x2(b01, b23, _MM_SHUFFLE(3, 2, 3, 2)), flip);
    wq[2] = _mm512_xor_si512(_mm512_shuffle_i64x2(c01, c23, _MM_SHUFFLE(1, 0, 1, 0)), flip);
    wq[3] = _mm512_xor_si512(_mm512_shuffle_i64x2(c01, c23, _MM_SHUFFLE(3, 2, 3, 2)), flip);
    __m128i h = _mm_setr_epi16((short)q[0].d, (short)q[1].d, (short)q[2].d, (short)q[3].d,
                               (short)q[4].d, (short)q[5].d, (short)q[6].d, (short)q[7].d);
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7),
                                 _mm512_castps256_ps512(_mm256_cvtph_ps(h)));
}

/* nr <= 4 rows by T <= 8 tokens */
INLINE void tile_oct(int kind, int T, int64_t n, const uint8_t *w, size_t ws, int nr,
                          const uint8_t *a, size_t as, float *y, int64_t ldy) {
    int64_t nb = n / 32;
    for (int r = 0; r < nr; r++) {
        const uint8_t *row = w + r * ws;
        __m512 acc[MM_TILE_TOKS_MAX];
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
        for (int64_t g = 0; g < nb; g += 8) {
            __m512i wq[4];
            int cnt = nb - g < 8 ? (int)(nb - g) : 8;
            __m512 dw = kind == W_Q4_0 ? q4_0_oct((const block_q4_0 *)row + g, cnt, wq)
                                       : q8_0_oct((const block_q8_0 *)row + g, cnt, wq);
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) {
                const act_oct *p = (const act_oct *)(a + t * as) + g / 8;
                __m512i s = _mm512_loadu_si512(p->start);
#pragma GCC unroll 4
                for (int m = 0; m < 4; m++) s = _mm512_dpbusd_epi32(s, wq[m], _mm512_loadu_si512(p->qs[m]));
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_loadu_ps(p->d)), acc[t]);
            }
        }
        if (T == 1) {
            y[r] = _mm512_reduce_add_ps(acc[0]);
            continue;
        }
#pragma GCC unroll 2
        for (int t0 = 0; t0 < T; t0 += 4) {
            __m512 v[4];
#pragma GCC unroll 4
            for (int t = 0; t < 4; t++) v[t] = t0 + t < T ? acc[t0 + t] : _mm512_setzero_ps();
            store_folded(fold4_ps(v[0], v[1], v[2], v[3]), T - t0 < 4 ? T - t0 : 4, y + t0 * ldy + r, ldy);
        }
    }
}

INLINE void tile_any_oct(int kind, int64_t n, const void *w, size_t ws, int nr, const void *a,
                         size_t as, int nt, float *y, int64_t ldy) {
    const uint8_t *wb = w, *ab = a;
    switch (nt) {
    case 8: tile_oct(kind, 8, n, wb, ws, nr, ab, as, y, ldy); break;
    case 7: tile_oct(kind, 7, n, wb, ws, nr, ab, as, y, ldy); break;
    case 6: tile_oct(kind, 6, n, wb, ws, nr, ab, as, y, ldy); break;
    case 5: tile_oct(kind, 5, n, wb, ws, nr, ab, as, y, ldy); break;
    case 4: tile_oct(kind, 4, n, wb, ws, nr, ab, as, y, ldy); break;
    case 3: tile_oct(kind, 3, n, wb, ws, nr, ab, as, y, ldy); break;
    case 2: tile_oct(kind, 2, n, wb, ws, nr, ab, as, y, ldy); break;
    default: tile_oct(kind, 1, n, wb, ws, nr, ab, as, y, ldy); break;
    }
}

static void avx512_tile_q4_0(int64_t n, const void *w, size_t ws, int nr, const void *a,
                             size_t as, int nt, float *y, int64_t ldy) {
    tile_any_oct(W_Q4_0, n, w, ws, nr, a, as, nt, y, ldy);
}
static void avx512_tile_q8_0(int64_t n, const void *w, size_t ws, int nr, const void *a,
                             size_t as, int nt, float *y, int64_t ldy) {
    tile_any_oct(W_Q8_0, n, w, ws, nr, a, as, nt, y, ldy);
}
static float avx512_vec_dot_q4_0(int64_t n, const void *w, const void *a) {
    float y;
    tile_oct(W_Q4_0, 1, n, w, 0, 1, a, 0, &y, 0);
    return y;
}
static float avx512_vec_dot_q8_0(int64_t n, const void *w, const void *a) {
    float y;
    tile_oct(W_Q8_0, 1, n, w, 0, 1, a, 0, &y, 0);
    return y;
}

/* ---- Q4_K, Q5_K, Q6_K weights with block_q8k activations ----
 * block_q8k is used as it is. Two orders of a super-block's values:
 *
 * The streaming order (Q6_K decode, vec_dot): one 64-value chunk per register (Q6_K: four
 * groups of 16), as the activations lie. Per chunk two instructions: VPMADDUBSW of the
 * unsigned weights with the activations (16-bit pair sums, at most 2 * 63 * 127: never
 * saturated), then VPDPWSSD with the 16-bit scale of each lane's group into 32-bit sums.
 * Q6_K's -32 is VPMADDUBSW(32, a), subtracted from the pair sums.
 *
 * The reordered one (prompt tiles, Q4_K / Q5_K decode), below. A prompt tile goes over each
 * super-block row by row: the integer sums of a row with 4 tokens are folded into one
 * register, lane 4 i + t for token t, and scaled there by d_w d_a; Q4_K / Q5_K subtract
 * dmin_w d_a sum_j m_j sum(a_j), computed in the same lane order. So a super-block costs one
 * conversion to float per row for 4 tokens. */

enum { W_Q4_K, W_Q5_K, W_Q6_K };

INLINE size_t kq_block_bytes(int kind) {
    return kind == W_Q4_K ? sizeof(block_q4_k) : kind == W_Q5_K ? sizeof(block_q5_k) : sizeof(block_q6_k);
}

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
INLINE __m256i kq_scales16(int kind, const uint8_t *blk) {
    if (kind == W_Q6_K) {
        return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)((const block_q6_k *)blk)->scales));
    }
    return _mm256_cvtepu8_epi16(kq_scale_min_bytes(((const block_q4_k *)blk)->scales));  /* same offset in Q5_K */
}

/* the scale of each 16-bit pair-sum lane of chunk c: Q4_K / Q5_K lanes 0..15 sc[2 c], 16..31
 * sc[2 c + 1]; Q6_K lanes 8 g .. 8 g + 7 scale 4 c + g */
INLINE __m512i kq_lane_scales(int kind, __m256i sc, int c) {
    __m512i idx;
    if (kind == W_Q6_K) {
        idx = _mm512_add_epi16(_mm512_set1_epi16((short)(4 * c)),
                               _mm512_srli_epi16(_mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16,
                                                                  15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), 3));
    } else {
        idx = _mm512_inserti64x4(_mm512_set1_epi16((short)(2 * c)), _mm256_set1_epi16((short)(2 * c + 1)), 1);
    }
    return _mm512_permutexvar_epi16(idx, _mm512_castsi256_si512(sc));
}

/* 32 bytes in both halves of a register */
INLINE __m512i load_bcast256(const uint8_t *p) {
    return _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)p));
}

/* the 64 unsigned weights of chunk c (values 64 c .. 64 c + 63) of a super-block. High bits
 * move to their place by 64-bit rotations: a rotation by 8 k + s keeps bits inside their
 * byte for every bit the following mask keeps. */
INLINE __m512i kq_chunk(int kind, const uint8_t *blk, int c) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    if (kind == W_Q6_K) {
        const block_q6_k *q = (const block_q6_k *)blk;
        int h = c / 2, odd = c % 2;      /* values 128 h + 64 odd + 0..63 */
        __m512i lo = _mm512_loadu_si512(q->ql + 64 * h);
        if (odd) lo = _mm512_srli_epi16(lo, 4);
        /* bits 4 odd, 4 odd + 1 (low half) and 4 odd + 2, 4 odd + 3 (high half) to bits 4, 5 */
        __m512i rot = odd ? _mm512_setr_epi64(0, 0, 0, 0, 62, 62, 62, 62)
                          : _mm512_setr_epi64(4, 4, 4, 4, 2, 2, 2, 2);
        __m512i hi = _mm512_rolv_epi64(load_bcast256(q->qh + 32 * h), rot);
        /* lo & 15 | hi & 0x30 */
        return _mm512_ternarylogic_epi32(_mm512_and_si512(lo, m4), hi, _mm512_set1_epi8(0x30), 0xf8);
    }
    const uint8_t *qs = kind == W_Q4_K ? ((const block_q4_k *)blk)->qs : ((const block_q5_k *)blk)->qs;
    __m512i v = _mm512_srlv_epi64(load_bcast256(qs + 32 * c), _mm512_setr_epi64(0, 0, 0, 0, 4, 4, 4, 4));
    v = _mm512_and_si512(v, m4);
    if (kind == W_Q5_K) {
        /* bit 2 c (low half) and 2 c + 1 (high half) of each qh byte to bit 4 */
        long long r0 = (4 - 2 * c) & 63, r1 = (3 - 2 * c) & 63;
        __m512i rot = _mm512_setr_epi64(r0, r0, r0, r0, r1, r1, r1, r1);
        __m512i hi = _mm512_rolv_epi64(load_bcast256(((const block_q5_k *)blk)->qh), rot);
        v = _mm512_ternarylogic_epi32(v, hi, _mm512_set1_epi8(0x10), 0xf8);
    }
    return v;
}

/* isum[t] += the integer sums of one weight super-block with the activation super-blocks
 * ab[t], t < T, in 16 lanes; x32 (Q6_K) holds VPMADDUBSW(32, a) of chunk c of token t at
 * 4 t + c */
INLINE void kq_isums(int kind, int T, const uint8_t *blk, __m256i sc, const block_q8k *const *ab,
                     const __m512i *x32, __m512i *isum) {
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        __m512i q = kq_chunk(kind, blk, c);
        __m512i s = kq_lane_scales(kind, sc, c);
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            __m512i p = _mm512_maddubs_epi16(q, _mm512_loadu_si512(ab[t]->qs + 64 * c));
            if (kind == W_Q6_K) p = _mm512_sub_epi16(p, x32[4 * t + c]);
            isum[t] = _mm512_dpwssd_epi32(isum[t], p, s);
        }
    }
}

/* register m of a Q6_K super-block in the order of the prompt tiles (below): in lane g
 * values 4 m .. 4 m + 3 of group g, as unsigned values (the -32 left to the activations) */
INLINE __m512i q6k_weights_order(const block_q6_k *q, int m) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    /* group g = 8 h + 2 k + e (value 128 h + 32 k + 16 e + l): low nibbles in 32-bit word
     * 16 h + 8 (k & 1) + 4 e + m of ql, shifted by 4 (k >> 1); high bits 2 k, 2 k + 1 of
     * word 8 h + 4 e + m of qh */
    const __m512i il = _mm512_add_epi32(_mm512_setr_epi32(0, 4, 8, 12, 0, 4, 8, 12, 16, 20, 24, 28, 16, 20, 24, 28),
                                        _mm512_set1_epi32(m));
    const __m512i ih = _mm512_add_epi32(_mm512_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4, 8, 12, 8, 12, 8, 12, 8, 12),
                                        _mm512_set1_epi32(m));
    const __m512i sl = _mm512_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4, 0, 0, 0, 0, 4, 4, 4, 4);
    /* bits 2 k, 2 k + 1 to 4, 5: rotate left by 4 - 2 k */
    const __m512i rh = _mm512_setr_epi32(4, 4, 2, 2, 0, 0, 30, 30, 4, 4, 2, 2, 0, 0, 30, 30);
    __m512i lo = _mm512_permutex2var_epi32(_mm512_loadu_si512(q->ql), il, _mm512_loadu_si512(q->ql + 64));
    lo = _mm512_and_si512(_mm512_srlv_epi32(lo, sl), m4);
    __m512i hi = _mm512_rolv_epi32(_mm512_permutexvar_epi32(ih, _mm512_loadu_si512(q->qh)), rh);
    return _mm512_ternarylogic_epi32(lo, hi, _mm512_set1_epi8(0x30), 0xf8);
}

/* [d, dmin] of a Q4_K / Q5_K super-block, [d, 0] of a Q6_K one, as floats (loaded whole:
 * _cvtsh_ss merges into a register and so waits for whatever last wrote it) */
INLINE __m128 kq_d_dmin(int kind, const uint8_t *blk) {
    uint32_t v;
    if (kind == W_Q6_K) {
        v = ((const block_q6_k *)blk)->d;
    } else {
        memcpy(&v, blk, 4);            /* d, dmin open both blocks */
    }
    return _mm_cvtph_ps(_mm_cvtsi32_si128((int)v));
}

/* one row with one token: the decode stream */
INLINE float kq_dot1(int kind, int64_t n, const uint8_t *w, const block_q8k *a) {
    const size_t bb = kq_block_bytes(kind);
    __m512 acc = _mm512_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        const uint8_t *blk = w + b * bb;
        const block_q8k *ab = a + b;
        __m256i sc = kq_scales16(kind, blk);
        __m512i x32[4], isum = _mm512_setzero_si512();
        if (kind == W_Q6_K) {
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) x32[c] = _mm512_maddubs_epi16(_mm512_set1_epi8(32), _mm512_loadu_si512(ab->qs + 64 * c));
        }
        kq_isums(kind, 1, blk, sc, &ab, x32, &isum);
        __m128 dd = _mm_mul_ps(kq_d_dmin(kind, blk), _mm_set1_ps(ab->d));   /* d da, dmin da */
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_broadcastss_ps(dd), acc);
        if (kind != W_Q6_K) {
            __m128i m = _mm_madd_epi16(_mm256_extracti128_si256(sc, 1), _mm_loadu_si128((const __m128i *)ab->sums));
            accm = _mm_fnmadd_ps(_mm_cvtepi32_ps(m), _mm_shuffle_ps(dd, dd, 0x55), accm);
        }
    }
    __m128 s = _mm_add_ps(accm, _mm_add_ps(_mm512_castps512_ps128(acc), _mm512_extractf32x4_ps(acc, 1)));
    s = _mm_add_ps(s, _mm_add_ps(_mm512_extractf32x4_ps(acc, 2), _mm512_extractf32x4_ps(acc, 3)));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ---- K-quant prompts with this level's own activation layout ----
 * The sums of a weight row with a token go into one register whose 16 32-bit lanes each
 * stay inside one scale group of a unit of the row:
 *   Q4_K, Q5_K: a unit is a pair of super-blocks, lane 8 h + s sub-block s of super-block h
 *               (32 values), in 8 registers: register k holds values 4 k .. 4 k + 3 of
 *               each lane's sub-block. A row with an odd number of super-blocks ends with
 *               a lone one in 4 registers, lane 8 e + s half e of sub-block s: register k
 *               holds its values 16 e + 4 k .. + 3;
 *   Q6_K:       a unit is one super-block, lane g group g (16 values), in 4 registers:
 *               register m holds values 4 m .. 4 m + 3 of each group.
 * So a unit costs 8 (4) VPDPBUSD and one float step per token and row: the integer sums
 * times d_w sc (per lane, from the row) and d_a (per lane, from the token), less dmin_w m
 * times d_a sum(a) (Q4_K, Q5_K); Q6_K's -32 is a start of -32 sum(a) per lane. The
 * activations are put in that order once per matmul (act_kq8, act_kq4); the weights are
 * gathered into it per row and unit, which pays off over the tokens of a tile: two rows
 * share every activation load, and two tokens at a time keep four VPDPBUSD chains in
 * flight. A row's units are followed by the same values as block_q8k, for the decode (one
 * token), which streams each weight row in that order instead (kq_dot1). */

typedef struct act_kq8 {      /* a pair of Q4_K / Q5_K super-blocks */
    int8_t qs[8][64];         /* register k, lane l: values 4 k .. 4 k + 3 of lane l's group */
    float d[16];              /* lane l: the scale of its super-block */
    float dsum[16];           /* lane l: d times the sum of its group's values */
} act_kq8;

typedef struct act_kq4 {      /* a Q6_K super-block, or the lone last one of Q4_K / Q5_K */
    int8_t qs[4][64];
    float d[16];
    union {
        float dsum[16];       /* Q4_K / Q5_K */
        int32_t start[16];    /* Q6_K: -32 times the sum of the group's values */
    };
} act_kq4;

_Static_assert(sizeof(act_kq8) == 640 && sizeof(act_kq4) == 384, "whole cache lines");

INLINE int64_t kq_units_bytes(int kind, int64_t n) {
    int64_t nb = n / QK_K;
    if (kind == W_Q6_K) return nb * (int64_t)sizeof(act_kq4);
    return nb / 2 * (int64_t)sizeof(act_kq8) + nb % 2 * (int64_t)sizeof(act_kq4);
}

static int64_t avx512_act_bytes_kq_pair(int64_t n) { return kq_units_bytes(W_Q4_K, n) + q8k_row_bytes(n); }
static int64_t avx512_act_bytes_kq_one(int64_t n) { return kq_units_bytes(W_Q6_K, n) + q8k_row_bytes(n); }

/* One unit of a row's activations from its block_q8k super-block(s) q: the values of lane l
 * (sub-block, half sub-block or group: per_lane of them) go 4 by 4 into registers k; then the
 * lane sums, by VPDPBUSD with ones over those registers, give Q4_K / Q5_K's d * sum and
 * Q6_K's -32 * sum. */
INLINE void kq_act_unit(int kind, int lone, const block_q8k *q, int8_t (*qs)[64], float *d, void *third) {
    const int per_lane = kind == W_Q6_K || lone ? 16 : 32;
    for (int l = 0; l < 16; l++) {
        const block_q8k *blk;
        int first;             /* index in blk of the lane's first value */
        if (kind == W_Q6_K) {
            blk = q, first = 16 * l;
        } else if (lone) {
            blk = q, first = 32 * (l % 8) + 16 * (l / 8);
        } else {
            blk = &q[l / 8], first = 32 * (l % 8);
        }
        for (int k = 0; k < per_lane / 4; k++) memcpy(&qs[k][4 * l], blk->qs + first + 4 * k, 4);
        d[l] = blk->d;
    }
    __m512i sum = _mm512_setzero_si512();
    for (int k = 0; k < per_lane / 4; k++) sum = _mm512_dpbusd_epi32(sum, _mm512_set1_epi8(1), _mm512_loadu_si512(qs[k]));
    if (kind == W_Q6_K) {
        _mm512_storeu_si512(third, _mm512_mullo_epi32(sum, _mm512_set1_epi32(-32)));
    } else {
        _mm512_storeu_ps(third, _mm512_mul_ps(_mm512_loadu_ps(d), _mm512_cvtepi32_ps(sum)));
    }
}

INLINE void kq_quantize_units(int kind, const float *x, void *out, int64_t n) {
    block_q8k *blocks = (block_q8k *)((uint8_t *)out + kq_units_bytes(kind, n));
    int64_t nb = n / QK_K, b = 0;
    uint8_t *y = out;
    avx512_quantize_q8k(x, blocks, n);
    if (kind != W_Q6_K) {
        for (; b + 2 <= nb; b += 2, y += sizeof(act_kq8)) {
            act_kq8 *u = (act_kq8 *)y;
            kq_act_unit(kind, 0, blocks + b, u->qs, u->d, u->dsum);
        }
    }
    for (; b < nb; b++, y += sizeof(act_kq4)) {
        act_kq4 *u = (act_kq4 *)y;
        kq_act_unit(kind, 1, blocks + b, u->qs, u->d, kind == W_Q6_K ? (void *)u->start : (void *)u->dsum);
    }
}

static void avx512_quantize_kq_pair(const float *x, void *out, int64_t n) { kq_quantize_units(W_Q4_K, x, out, n); }
static void avx512_quantize_kq_one(const float *x, void *out, int64_t n) { kq_quantize_units(W_Q6_K, x, out, n); }

/* one token: only the block_q8k values its decode stream reads (kq_units_dot1) */
static void avx512_quantize_kq_pair_q8k(const float *x, void *out, int64_t n) {
    avx512_quantize_q8k(x, (uint8_t *)out + kq_units_bytes(W_Q4_K, n), n);
}
static void avx512_quantize_kq_one_q8k(const float *x, void *out, int64_t n) {
    avx512_quantize_q8k(x, (uint8_t *)out + kq_units_bytes(W_Q6_K, n), n);
}

/* Q4_K / Q5_K super-blocks b0, b1 of a row in the order above: wq[k], and per lane d_w sc
 * (fsc) and dmin_w m (fmin). lone: b0 alone (b1 == b0), in 4 registers. */
INLINE void kq_pair_weights(int kind, int lone, const uint8_t *b0, const uint8_t *b1, __m512i *wq,
                            __m512 *fsc, __m512 *fmin) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m512i shift = _mm512_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4);
    size_t qs_at = kind == W_Q4_K ? offsetof(block_q4_k, qs) : offsetof(block_q5_k, qs);
    const __m512i a0 = _mm512_loadu_si512(b0 + qs_at), c0 = _mm512_loadu_si512(b0 + qs_at + 64);
    const __m512i a1 = _mm512_loadu_si512(b1 + qs_at), c1 = _mm512_loadu_si512(b1 + qs_at + 64);
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        /* sub-block s = 2 c + e sits in nibble e of 32-bit word 8 c + (value / 4) of qs:
         * lanes 0..7 gather word j of each, lanes 8..15 word j + 4. A pair takes the first
         * eight (register j) and the second (register j + 4) of both; a lone super-block
         * is that register as it is. */
        const __m512i idx = _mm512_add_epi32(_mm512_setr_epi32(0, 0, 8, 8, 16, 16, 24, 24, 4, 4, 12, 12, 20, 20, 28, 28),
                                             _mm512_set1_epi32(j));
        __m512i p0 = _mm512_permutex2var_epi32(a0, idx, c0);
        if (lone) {
            wq[j] = _mm512_and_si512(_mm512_srlv_epi32(p0, shift), m4);
            continue;
        }
        __m512i p1 = _mm512_permutex2var_epi32(a1, idx, c1);
        wq[j] = _mm512_and_si512(_mm512_srlv_epi32(_mm512_shuffle_i64x2(p0, p1, _MM_SHUFFLE(1, 0, 1, 0)), shift), m4);
        wq[j + 4] = _mm512_and_si512(_mm512_srlv_epi32(_mm512_shuffle_i64x2(p0, p1, _MM_SHUFFLE(3, 2, 3, 2)), shift), m4);
    }
    if (kind == W_Q5_K) {
        /* the fifth bit of value v of sub-block s is bit s of qh[v]: the qh word of each
         * lane's values, rotated so that bit s of each byte lands on bit 4 */
        const __m512i rot = _mm512_setr_epi32(4, 3, 2, 1, 0, 31, 30, 29, 4, 3, 2, 1, 0, 31, 30, 29);
        __m512i qh = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)((const block_q5_k *)b0)->qh)),
                                        _mm256_loadu_si256((const __m256i *)((const block_q5_k *)b1)->qh), 1);
        /* pair: word k of b0 (lanes 0..7), of b1 (8..15); lone: words k, k + 4 of b0 */
        const __m512i base = lone ? _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 4, 4, 4, 4)
                                  : _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 8, 8, 8, 8, 8, 8, 8, 8);
        const int nk = lone ? 4 : 8;
#pragma GCC unroll 8
        for (int k = 0; k < nk; k++) {
            __m512i hi = _mm512_rolv_epi32(_mm512_permutexvar_epi32(_mm512_add_epi32(base, _mm512_set1_epi32(k)), qh), rot);
            wq[k] = _mm512_ternarylogic_epi32(wq[k], hi, _mm512_set1_epi8(0x10), 0xf8);   /* wq | hi & 0x10 */
        }
    }
    /* lanes 8 h + s (pair) or 8 e + s (lone, b1 == b0): sub-block s of b0 or b1 */
    __m128i s0 = kq_scale_min_bytes(((const block_q4_k *)b0)->scales);     /* same offsets in Q5_K */
    __m128i s1 = kq_scale_min_bytes(((const block_q4_k *)b1)->scales);
    uint32_t dd[2];
    memcpy(&dd[0], b0, 4);         /* d, dmin */
    memcpy(&dd[1], b1, 4);
    __m128 dm = _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)dd));    /* d0 dmin0 d1 dmin1 */
    __m512 d = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2),
                                     _mm512_castps128_ps512(dm));
    __m512 dmin = _mm512_permutexvar_ps(_mm512_setr_epi32(1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3),
                                        _mm512_castps128_ps512(dm));
    *fsc = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_unpacklo_epi64(s0, s1))), d);
    *fmin = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_unpackhi_epi64(s0, s1))), dmin);
}

/* a Q6_K super-block in the order above: wq[m], and d_w sc_g per lane */
INLINE void kq_one_weights(const uint8_t *blk, __m512i *wq, __m512 *fsc) {
    const block_q6_k *q = (const block_q6_k *)blk;
#pragma GCC unroll 4
    for (int m = 0; m < 4; m++) wq[m] = q6k_weights_order(q, m);
    __m512i sc = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)q->scales));
    *fsc = _mm512_mul_ps(_mm512_cvtepi32_ps(sc), _mm512_broadcastss_ps(kq_d_dmin(W_Q6_K, blk)));
}

/* one unit (super-blocks from blk on) of R (1 or 2) rows ws bytes apart with T tokens whose
 * unit lies at a + t * as: acc[r][t] += the unit's lane sums. K registers: 8 for a pair, 4
 * for a single super-block (Q6_K, or lone). */
INLINE void kq_unit(int kind, int K, int R, int T, const uint8_t *blk, size_t ws, const uint8_t *a,
                    size_t as, __m512 acc[][MM_TILE_TOKS_MAX]) {
    const size_t bb = kq_block_bytes(kind);
    __m512i wq[2][8];
    __m512 fsc[2], fmin[2];
#pragma GCC unroll 2
    for (int r = 0; r < R; r++) {
        const uint8_t *b0 = blk + r * ws;
        if (kind == W_Q6_K) kq_one_weights(b0, wq[r], &fsc[r]);
        else kq_pair_weights(kind, K == 4, b0, K == 4 ? b0 : b0 + bb, wq[r], &fsc[r], &fmin[r]);
    }
#pragma GCC unroll 4
    for (int t0 = 0; t0 < T; t0 += 2) {
        const int U = T - t0 < 2 ? 1 : 2;
        const uint8_t *ap[2];
        __m512i s[2][2];
#pragma GCC unroll 2
        for (int u = 0; u < U; u++) {
            ap[u] = a + (t0 + u) * as;
            __m512i s0 = kind == W_Q6_K ? _mm512_loadu_si512(((const act_kq4 *)ap[u])->start) : _mm512_setzero_si512();
#pragma GCC unroll 2
            for (int r = 0; r < R; r++) s[u][r] = s0;
        }
#pragma GCC unroll 8
        for (int k = 0; k < K; k++) {
#pragma GCC unroll 2
            for (int u = 0; u < U; u++) {
                __m512i x = _mm512_loadu_si512(ap[u] + 64 * k);      /* qs[k] of either layout */
#pragma GCC unroll 2
                for (int r = 0; r < R; r++) s[u][r] = _mm512_dpbusd_epi32(s[u][r], wq[r][k], x);
            }
        }
#pragma GCC unroll 2
        for (int u = 0; u < U; u++) {
            const float *dl = (const float *)(ap[u] + 64 * K);        /* d, then dsum or start */
            __m512 da = _mm512_loadu_ps(dl);
#pragma GCC unroll 2
            for (int r = 0; r < R; r++) {
                __m512 v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[u][r]), _mm512_mul_ps(fsc[r], da), acc[r][t0 + u]);
                if (kind != W_Q6_K) v = _mm512_fnmadd_ps(fmin[r], _mm512_loadu_ps(dl + 16), v);
                acc[r][t0 + u] = v;
            }
        }
    }
}

/* R (1 or 2) weight rows from w by T tokens; acc[r][t] gets each row's lane sums */
INLINE void kq_rows(int kind, int R, int T, int64_t n, const uint8_t *w, size_t ws, const uint8_t *a,
                    size_t as, __m512 acc[][MM_TILE_TOKS_MAX]) {
    const size_t bb = kq_block_bytes(kind);
    int64_t nb = n / QK_K, b = 0;
#pragma GCC unroll 2
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    }
    if (kind != W_Q6_K) {
        for (; b + 2 <= nb; b += 2, a += sizeof(act_kq8)) kq_unit(kind, 8, R, T, w + b * bb, ws, a, as, acc);
    }
    for (; b < nb; b++, a += sizeof(act_kq4)) kq_unit(kind, 4, R, T, w + b * bb, ws, a, as, acc);
}

/* y[t * ldy + r] = the sum of the lanes of acc[r][t] */
INLINE void kq_store(int R, int T, __m512 acc[][MM_TILE_TOKS_MAX], float *y, int64_t ldy) {
#pragma GCC unroll 2
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 2
        for (int t0 = 0; t0 < T; t0 += 4) {
            __m512 v[4];
#pragma GCC unroll 4
            for (int t = 0; t < 4; t++) v[t] = t0 + t < T ? acc[r][t0 + t] : _mm512_setzero_ps();
            store_folded(fold4_ps(v[0], v[1], v[2], v[3]), T - t0 < 4 ? T - t0 : 4, y + t0 * ldy + r, ldy);
        }
    }
}

/* The activation bytes of a tile up to which rows go one at a time: while the tile's units
 * stay in L1 (32 KiB), one row keeps its sums in registers; past that, two rows sharing each
 * activation load halve the reads from L2 (measured at 768 .. 5632 values: one row 11-13%
 * faster up to ~3072 values of Q4_K, two rows faster from 4096 on) */
enum { KQ_ONE_ROW_ACT_BYTES = 32 * 1024 };

/* nr <= 4 rows by 2 <= T <= 8 tokens */
INLINE void tile_kq_units(int kind, int T, int64_t n, const uint8_t *w, size_t ws, int nr,
                          const uint8_t *a, size_t as, float *y, int64_t ldy) {
    __m512 acc[2][MM_TILE_TOKS_MAX];
    int r = 0;
    bool two = T * kq_units_bytes(kind, n) > KQ_ONE_ROW_ACT_BYTES;
    for (; two && r + 2 <= nr; r += 2) {
        kq_rows(kind, 2, T, n, w + r * ws, ws, a, as, acc);
        kq_store(2, T, acc, y + r, ldy);
    }
    for (; r < nr; r++) {
        kq_rows(kind, 1, T, n, w + r * ws, ws, a, as, acc);
        kq_store(1, T, acc, y + r, ldy);
    }
}

/* one row with one token: kq_dot1 over the block_q8k copy of the activations */
INLINE float kq_units_dot1(int kind, int64_t n, const uint8_t *w, const uint8_t *a) {
    return kq_dot1(kind, n, w, (const block_q8k *)(a + kq_units_bytes(kind, n)));
}

INLINE void tile_any_kq(int kind, int64_t n, const void *w, size_t ws, int nr, const void *a,
                        size_t as, int nt, float *y, int64_t ldy) {
    const uint8_t *wb = w, *ab = a;
    switch (nt) {
    case 8: tile_kq_units(kind, 8, n, wb, ws, nr, ab, as, y, ldy); break;
    case 7: tile_kq_units(kind, 7, n, wb, ws, nr, ab, as, y, ldy); break;
    case 6: tile_kq_units(kind, 6, n, wb, ws, nr, ab, as, y, ldy); break;
    case 5: tile_kq_units(kind, 5, n, wb, ws, nr, ab, as, y, ldy); break;
    case 4: tile_kq_units(kind, 4, n, wb, ws, nr, ab, as, y, ldy); break;
    case 3: tile_kq_units(kind, 3, n, wb, ws, nr, ab, as, y, ldy); break;
    case 2: tile_kq_units(kind, 2, n, wb, ws, nr, ab, as, y, ldy); break;
    default:
        /* one row after the other: interleaving the rows' streams measured 1.9x slower on
         * 2048-wide rows */
        for (int r = 0; r < nr; r++) y[r] = kq_units_dot1(kind, n, wb + r * ws, ab);
        break;
    }
}

static void avx512_tile_q4_k(int64_t n, const void *w, size_t ws, int nr, const void *a,
                             size_t as, int nt, float *y, int64_t ldy) {
    tile_any_kq(W_Q4_K, n, w, ws, nr, a, as, nt, y, ldy);
}
static void avx512_tile_q5_k(int64_t n, const void *w, size_t ws, int nr, const void *a,
                             size_t as, int nt, float *y, int64_t ldy) {
    tile_any_kq(W_Q5_K, n, w, ws, nr, a, as, nt, y, ldy);
}
static void avx512_tile_q6_k(int64_t n, const void *w, size_t ws, int nr, const void *a,
                             size_t as, int nt, float *y, int64_t ldy) {
    tile_any_kq(W_Q6_K, n, w, ws, nr, a, as, nt, y, ldy);
}
static float avx512_vec_dot_q4_k(int64_t n, const void *w, const void *a) {
    return kq_units_dot1(W_Q4_K, n, w, a);
}
static float avx512_vec_dot_q5_k(int64_t n, const void *w, const void *a) {
    return kq_units_dot1(W_Q5_K, n, w, a);
}
static float avx512_vec_dot_q6_k(int64_t n, const void *w, const void *a) {
    return kq_units_dot1(W_Q6_K, n, w, a);
}

/* ---- f32, bf16 entry points (f16 has its own below): full 4 x 4 tiles, 1 x 4 for the last
 * rows, 1 x 1 otherwise: a single token (decode) streams one row at a time, since
 * interleaving the streams of several rows measured up to 2x slower on Zen 4 ---- */

INLINE void tile_any(int kind, int64_t n, const void *w, size_t ws, int nr, const void *a,
                     size_t as, int nt, float *y, int64_t ldy) {
    const uint8_t *wb = w, *ab = a;
    if (nr == 4 && nt == 4) {
        tile_float(kind, 4, 4, n, wb, ws, ab, as, y, ldy);
        return;
    }
    for (int r = 0; r < nr; r++) {
        if (nt == 4) {
            tile_float(kind, 1, 4, n, wb + r * ws, ws, ab, as, y + r, ldy);
            continue;
        }
        for (int t = 0; t < nt; t++) {
            tile_float(kind, 1, 1, n, wb + r * ws, ws, ab + t * as, as, y + t * ldy + r, ldy);
        }
    }
}

static void avx512_tile_f32(int64_t n, const void *w, size_t ws, int nr, const void *a,
                            size_t as, int nt, float *y, int64_t ldy) {
    tile_any(W_F32, n, w, ws, nr, a, as, nt, y, ldy);
}

/* ---- f16 weights (own entry point; takes up to MM_TILE_TOKS_MAX tokens per call) ---- */

/* acc[r][t] += weights [i, i + 16) of row r times the same activations of token t, for R rows
 * by T tokens; `full` loads the 16 values unmasked, else the first `m` of them */
INLINE void f16_step(int R, int T, bool full, const uint8_t *w, size_t ws, const uint8_t *a,
                     size_t as, int64_t i, __mmask16 m, __m512 acc[4][8]) {
    __m512 wv[4];
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        const uint16_t *row = (const uint16_t *)(w + r * ws) + i;
        wv[r] = _mm512_cvtph_ps(full ? _mm256_loadu_si256((const __m256i *)row)
                                     : _mm256_maskz_loadu_epi16(m, row));
    }
    #pragma GCC unroll 8
    for (int t = 0; t < T; t++) {
        const float *x = (const float *)(a + t * as) + i;
        __m512 xv = full ? _mm512_loadu_ps(x) : _mm512_maskz_loadu_ps(m, x);
        /* one load per token: left alone, gcc folds it into each row's FMA, R loads */
        if (R > 1) __asm__("" : "+v"(xv));
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
}

/* y[t * ldy + r] for R rows by T tokens (R <= 4, T <= 8, R * T <= 24), accumulated over the whole rows: per
 * 16 elements, R widened weight vectors each serve T FMAs. The loads of the full steps are
 * unmasked (masked loads measured 20% slower on Zen 4); the last partial step is masked. */
INLINE void f16_block(int R, int T, int64_t n, const uint8_t *w, size_t ws, const uint8_t *a,
                      size_t as, float *y, int64_t ldy) {
    __m512 acc[4][8];
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        #pragma GCC unroll 8
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    }
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) f16_step(R, T, true, w, ws, a, as, i, 0xffff, acc);
    if (i < n) f16_step(R, T, false, w, ws, a, as, i, tail_mask(n - i), acc);
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        int t = 0;
        #pragma GCC unroll 2
        for (; t + 4 <= T; t += 4) {
            store_folded(fold4_ps(acc[r][t], acc[r][t + 1], acc[r][t + 2], acc[r][t + 3]), 4,
                         y + t * ldy + r, ldy);
        }
        #pragma GCC unroll 4
        for (; t < T; t++) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
    }
}

/* R rows by up to 4 tokens */
INLINE void f16_rows(int R, int64_t n, const uint8_t *w, size_t ws, const uint8_t *a,
                     size_t as, int nt, float *y, int64_t ldy) {
    switch (nt) {
    case 4: f16_block(R, 4, n, w, ws, a, as, y, ldy); break;
    case 3: f16_block(R, 3, n, w, ws, a, as, y, ldy); break;
    case 2: f16_block(R, 2, n, w, ws, a, as, y, ldy); break;
    default: f16_block(R, 1, n, w, ws, a, as, y, ldy); break;
    }
}

/* one row times one token (decode), streaming the row: unmasked loads, two accumulators, and
 * the weights prefetched non-temporally 256 bytes ahead (past the row's end: the next row, or
 * past the tensor, which a prefetch may touch), which measured up to 1.1x on Zen 4 against
 * the hardware prefetcher alone (farther or T0 prefetches measured slower) */
INLINE float f16_dot1(int64_t n, const uint8_t *w, const float *x) {
    const uint16_t *h = (const uint16_t *)w;
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        _mm_prefetch((const char *)(h + i) + 256, _MM_HINT_NTA);
        s0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i))),
                             _mm512_loadu_ps(x + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i + 16))),
                             _mm512_loadu_ps(x + i + 16), s1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        s0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, h + i)),
                             _mm512_maskz_loadu_ps(m, x + i), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

/* Several tokens: in groups of 4, each a 4 x 4 block at most (measured on Zen 4 against
 * 2 x 8, 4 x 6 + 4 x 2 and a k-blocked 2 x 8 tile: 4 x 4 keeps a group's activation rows in
 * L1 longest, and its loads are not the limit once unmasked and not duplicated).
 * One token (decode): rows shorter than F16_DECODE_IL stream one at a time (the activation
 * row stays in L1; reading 4 rows at once measured up to 15% slower at 2048 and 4096 values,
 * where the rows are 4 KiB-aligned); longer rows go 4 at a time, so that each activation
 * vector, no longer held in L1, is loaded once for 4 rows (1.15x at 5632 values, 1.4x at
 * 11008). */
#define F16_DECODE_IL 6144
static void avx512_tile_f16(int64_t n, const void *w, size_t ws, int nr, const void *a,
                            size_t as, int nt, float *y, int64_t ldy) {
    const uint8_t *wb = w, *ab = a;
    if (nt == 1) {
        int r = 0;
        if (n > F16_DECODE_IL && nr == 4) {
            f16_block(4, 1, n, wb, ws, ab, as, y, ldy);
            r = 4;
        }
        for (; r < nr; r++) y[r] = f16_dot1(n, wb + r * ws, (const float *)a);
        return;
    }
    for (int t = 0; t < nt; t += 4) {
        int tt = nt - t < 4 ? nt - t : 4;
        const uint8_t *at = ab + (size_t)t * as;
        float *yt = y + t * ldy;
        switch (nr) {
        case 4: f16_rows(4, n, wb, ws, at, as, tt, yt, ldy); break;
        case 3: f16_rows(3, n, wb, ws, at, as, tt, yt, ldy); break;
        case 2: f16_rows(2, n, wb, ws, at, as, tt, yt, ldy); break;
        default: f16_rows(1, n, wb, ws, at, as, tt, yt, ldy); break;
        }
    }
}

static void avx512_tile_bf16(int64_t n, const void *w, size_t ws, int nr, const void *a,
                             size_t as, int nt, float *y, int64_t ldy) {
    tile_any(W_BF16, n, w, ws, nr, a, as, nt, y, ldy);
}

static float avx512_vec_dot_f32(int64_t n, const void *w, const void *a) {
    float y;
    tile_float(W_F32, 1, 1, n, w, 0, a, 0, &y, 0);
    return y;
}
static float avx512_vec_dot_f16(int64_t n, const void *w, const void *a) {
    return f16_dot1(n, w, a);
}
static float avx512_vec_dot_bf16(int64_t n, const void *w, const void *a) {
    float y;
    tile_float(W_BF16, 1, 1, n, w, 0, a, 0, &y, 0);
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
        __m512i v[8];
        for (int c = 0; c < 8; c++) {
            __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + 32 * c), vid));
            __m512i i1 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + 32 * c + 16), vid));
            v[c] = _mm512_add_epi32(i0, i1);
            _mm_storeu_si128((__m128i *)(y[b].qs + 32 * c), _mm512_cvtsepi32_epi8(i0));
            _mm_storeu_si128((__m128i *)(y[b].qs + 32 * c + 16), _mm512_cvtsepi32_epi8(i1));
        }
        /* the 8 sums: fold (lane 4 i + c: 128-bit lane i of v[c]), then the 4 lanes i */
        __m512i f0 = fold4_epi32(v[0], v[1], v[2], v[3]), f1 = fold4_epi32(v[4], v[5], v[6], v[7]);
        __m256i h0 = _mm256_add_epi32(_mm512_castsi512_si256(f0), _mm512_extracti64x4_epi64(f0, 1));
        __m256i h1 = _mm256_add_epi32(_mm512_castsi512_si256(f1), _mm512_extracti64x4_epi64(f1, 1));
        __m128i s0 = _mm_add_epi32(_mm256_castsi256_si128(h0), _mm256_extracti128_si256(h0, 1));
        __m128i s1 = _mm_add_epi32(_mm256_castsi256_si128(h1), _mm256_extracti128_si256(h1, 1));
        _mm_storeu_si128((__m128i *)y[b].sums, _mm_packs_epi32(s0, s1));
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
    .f16 = {NULL, NULL, avx512_vec_dot_f16, avx512_tile_f16, 8},
    .bf16 = {NULL, NULL, avx512_vec_dot_bf16, avx512_tile_bf16},
    .q8_0 = {avx512_act_bytes_oct, avx512_quantize_q8_0, avx512_vec_dot_q8_0, avx512_tile_q8_0, 8},
    .q4_0 = {avx512_act_bytes_oct, avx512_quantize_q4_0, avx512_vec_dot_q4_0, avx512_tile_q4_0, 8},
    .q4_k = {avx512_act_bytes_kq_pair, avx512_quantize_kq_pair, avx512_vec_dot_q4_k, avx512_tile_q4_k, 8,
             avx512_quantize_kq_pair_q8k},
    .q5_k = {avx512_act_bytes_kq_pair, avx512_quantize_kq_pair, avx512_vec_dot_q5_k, avx512_tile_q5_k, 8,
             avx512_quantize_kq_pair_q8k},
    .q6_k = {avx512_act_bytes_kq_one, avx512_quantize_kq_one, avx512_vec_dot_q6_k, avx512_tile_q6_k, 8,
             avx512_quantize_kq_one_q8k},
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
