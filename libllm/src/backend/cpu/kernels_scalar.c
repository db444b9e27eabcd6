/* kernels_scalar.c -- the portable level: plain C versions of every kernel in kernels.h, in
 * the same activation scheme as the SIMD levels. They are the oracles of the SIMD tests and
 * the fallback on CPUs without a SIMD level. */
#include <math.h>

#include "kernels.h"

/* ---- activation quantization ---- */

/* Rounds half to even (the default rounding mode), like the SIMD conversions do, so every
 * level produces the same bytes. */
static void scalar_quantize_q8a(const float *x, void *out, int64_t n) {
    block_q8a *y = out;
    for (int64_t b = 0; b < n / QK8A; b++) {
        const float *xb = x + b * QK8A;
        float amax = 0.0f;
        for (int j = 0; j < QK8A; j++) amax = fmaxf(amax, fabsf(xb[j]));
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = d;
        for (int j = 0; j < QK8A; j++) y[b].qs[j] = (int8_t)nearbyintf(xb[j] * id);
    }
}

/* One scale per 256 values; the same rounding as above, so the SIMD versions match it byte
 * for byte. */
void cpu_quantize_q8k(const float *x, void *out, int64_t n) {
    block_q8k *y = out;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const float *xb = x + b * QK_K;
        float amax = 0.0f;
        for (int j = 0; j < QK_K; j++) amax = fmaxf(amax, fabsf(xb[j]));
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = d;
        for (int i = 0; i < 8; i++) {
            int s = 0;
            for (int j = 32 * i; j < 32 * i + 32; j++) {
                y[b].qs[j] = (int8_t)nearbyintf(xb[j] * id);
                s += y[b].qs[j];
            }
            y[b].sums[i] = (int16_t)s;
        }
    }
}

/* ---- vec_dot per weight type ---- */

static float scalar_dot_f32(int64_t n, const float *x, const float *y) {
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += x[i] * y[i];
    return sum;
}

static float scalar_vec_dot_f32(int64_t n, const void *w, const void *a) {
    return scalar_dot_f32(n, w, a);
}

static float scalar_vec_dot_f16(int64_t n, const void *w, const void *a) {
    const uint16_t *h = w;
    const float *x = a;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += f16_to_f32(h[i]) * x[i];
    return sum;
}

static float scalar_vec_dot_bf16(int64_t n, const void *w, const void *a) {
    const uint16_t *h = w;
    const float *x = a;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += bf16_to_f32(h[i]) * x[i];
    return sum;
}

static float scalar_vec_dot_q8_0(int64_t n, const void *w, const void *a) {
    const block_q8_0 *wb = w;
    const block_q8a *ab = a;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / QK8_0; b++) {
        int32_t s = 0;
        for (int j = 0; j < QK8_0; j++) s += wb[b].qs[j] * ab[b].qs[j];
        sum += (float)s * (f16_to_f32(wb[b].d) * ab[b].d);
    }
    return sum;
}

static float scalar_vec_dot_q4_0(int64_t n, const void *w, const void *a) {
    const block_q4_0 *wb = w;
    const block_q8a *ab = a;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / QK4_0; b++) {
        int32_t s = 0;
        for (int j = 0; j < QK4_0 / 2; j++) {
            s += ((wb[b].qs[j] & 0x0f) - 8) * ab[b].qs[j];
            s += ((wb[b].qs[j] >> 4) - 8) * ab[b].qs[j + QK4_0 / 2];
        }
        sum += (float)s * (f16_to_f32(wb[b].d) * ab[b].d);
    }
    return sum;
}

/* K-quants: per super-block, integer sums weighted by the integer sub-block scales, then
 * d_w * d_a (and dmin_w * d_a for the minimums); kernels.h has the scheme. */
static float scalar_vec_dot_q4_k(int64_t n, const void *w, const void *a) {
    const block_q4_k *wb = w;
    const block_q8k *ab = a;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / QK_K; b++) {
        uint8_t sc[8], m[8];
        kq_scale_min(wb[b].scales, sc, m);
        int32_t isum = 0, msum = 0;
        for (int j = 0; j < 8; j++) {
            const uint8_t *q = wb[b].qs + 32 * (j / 2);
            int shift = 4 * (j % 2), s = 0;
            for (int l = 0; l < 32; l++) s += ((q[l] >> shift) & 15) * ab[b].qs[32 * j + l];
            isum += sc[j] * s;
            msum += m[j] * ab[b].sums[j];
        }
        sum += (float)isum * (f16_to_f32(wb[b].d) * ab[b].d) -
               (float)msum * (f16_to_f32(wb[b].dmin) * ab[b].d);
    }
    return sum;
}

static float scalar_vec_dot_q5_k(int64_t n, const void *w, const void *a) {
    const block_q5_k *wb = w;
    const block_q8k *ab = a;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / QK_K; b++) {
        uint8_t sc[8], m[8];
        kq_scale_min(wb[b].scales, sc, m);
        int32_t isum = 0, msum = 0;
        for (int j = 0; j < 8; j++) {
            const uint8_t *q = wb[b].qs + 32 * (j / 2);
            int shift = 4 * (j % 2), s = 0;
            for (int l = 0; l < 32; l++) {
                int v = ((q[l] >> shift) & 15) | ((wb[b].qh[l] >> j) & 1) << 4;
                s += v * ab[b].qs[32 * j + l];
            }
            isum += sc[j] * s;
            msum += m[j] * ab[b].sums[j];
        }
        sum += (float)isum * (f16_to_f32(wb[b].d) * ab[b].d) -
               (float)msum * (f16_to_f32(wb[b].dmin) * ab[b].d);
    }
    return sum;
}

static float scalar_vec_dot_q6_k(int64_t n, const void *w, const void *a) {
    const block_q6_k *wb = w;
    const block_q8k *ab = a;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / QK_K; b++) {
        int32_t isum = 0;
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int e = 16 * g; e < 16 * g + 16; e++) {
                int h = e / 128, k = (e / 32) % 4, l = e % 32;
                int lo = (wb[b].ql[64 * h + 32 * (k & 1) + l] >> (4 * (k >> 1))) & 15;
                int hi = (wb[b].qh[32 * h + l] >> (2 * k)) & 3;
                s += ((lo | hi << 4) - 32) * ab[b].qs[e];
            }
            isum += wb[b].scales[g] * s;
        }
        sum += (float)isum * (f16_to_f32(wb[b].d) * ab[b].d);
    }
    return sum;
}

/* A tile as nr * nt single dot products; the SIMD levels share rows and tokens in registers. */
static void scalar_tile(vec_dot_fn dot, int64_t n, const void *w, size_t ws, int nr,
                        const void *a, size_t as, int nt, float *y, int64_t ldy) {
    for (int t = 0; t < nt; t++) {
        for (int r = 0; r < nr; r++) {
            y[t * ldy + r] = dot(n, (const uint8_t *)w + r * ws, (const uint8_t *)a + t * as);
        }
    }
}

static void scalar_tile_f32(int64_t n, const void *w, size_t ws, int nr, const void *a,
                            size_t as, int nt, float *y, int64_t ldy) {
    scalar_tile(scalar_vec_dot_f32, n, w, ws, nr, a, as, nt, y, ldy);
}
static void scalar_tile_f16(int64_t n, const void *w, size_t ws, int nr, const void *a,
                            size_t as, int nt, float *y, int64_t ldy) {
    scalar_tile(scalar_vec_dot_f16, n, w, ws, nr, a, as, nt, y, ldy);
}
static void scalar_tile_bf16(int64_t n, const void *w, size_t ws, int nr, const void *a,
                             size_t as, int nt, float *y, int64_t ldy) {
    scalar_tile(scalar_vec_dot_bf16, n, w, ws, nr, a, as, nt, y, ldy);
}
static void scalar_tile_q8_0(int64_t n, const void *w, size_t ws, int nr, const void *a,
                             size_t as, int nt, float *y, int64_t ldy) {
    scalar_tile(scalar_vec_dot_q8_0, n, w, ws, nr, a, as, nt, y, ldy);
}
static void scalar_tile_q4_0(int64_t n, const void *w, size_t ws, int nr, const void *a,
                             size_t as, int nt, float *y, int64_t ldy) {
    scalar_tile(scalar_vec_dot_q4_0, n, w, ws, nr, a, as, nt, y, ldy);
}
static void scalar_tile_q4_k(int64_t n, const void *w, size_t ws, int nr, const void *a,
                             size_t as, int nt, float *y, int64_t ldy) {
    scalar_tile(scalar_vec_dot_q4_k, n, w, ws, nr, a, as, nt, y, ldy);
}
static void scalar_tile_q5_k(int64_t n, const void *w, size_t ws, int nr, const void *a,
                             size_t as, int nt, float *y, int64_t ldy) {
    scalar_tile(scalar_vec_dot_q5_k, n, w, ws, nr, a, as, nt, y, ldy);
}
static void scalar_tile_q6_k(int64_t n, const void *w, size_t ws, int nr, const void *a,
                             size_t as, int nt, float *y, int64_t ldy) {
    scalar_tile(scalar_vec_dot_q6_k, n, w, ws, nr, a, as, nt, y, ldy);
}

/* ---- f32 helpers ---- */

static void scalar_axpy_f32(int64_t n, float alpha, const float *x, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

static void scalar_axpy_f16(int64_t n, float alpha, const uint16_t *x, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] += alpha * f16_to_f32(x[i]);
}

static void scalar_scale_f32(int64_t n, float s, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] *= s;
}

static void scalar_rmsnorm_f32(int64_t n, const float *x, const float *w, float eps, float *y) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = 1.0f / sqrtf((float)(ss / (double)n) + eps);
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * scale * (w ? w[i] : 1.0f);
}

static void scalar_swiglu_f32(int64_t n, float *g, const float *u) {
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void cpu_geglu_f32(int64_t n, float *g, const float *u) {
    const float c = 0.7978845608028654f;   /* sqrt(2 / pi) */
    for (int64_t i = 0; i < n; i++) {
        float x = g[i];
        g[i] = 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x))) * u[i];
    }
}

void cpu_softcap_f32(int64_t n, float cap, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = cap * tanhf(y[i] / cap);
}

static float scalar_exp_sum_f32(int64_t n, const float *x, float m, float *y) {
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        float d = x[i] - m;
        y[i] = d < -87.0f ? 0.0f : expf(d);
        sum += y[i];
    }
    return sum;
}

static void scalar_pv_f32(int nc, const int32_t *idx, int nt, const float *p, int64_t ldp,
                          const uint8_t *v, size_t v_stride, int64_t dv, float *out,
                          int64_t ldo) {
    for (int t = 0; t < nt; t++) {
        for (int j = 0; j < nc; j++) {
            scalar_axpy_f32(dv, p[t * ldp + idx[j]], (const float *)(v + idx[j] * v_stride),
                            out + t * ldo);
        }
    }
}

static void scalar_pv_f16(int nc, const int32_t *idx, int nt, const float *p, int64_t ldp,
                          const uint8_t *v, size_t v_stride, int64_t dv, float *out,
                          int64_t ldo) {
    for (int t = 0; t < nt; t++) {
        for (int j = 0; j < nc; j++) {
            scalar_axpy_f16(dv, p[t * ldp + idx[j]], (const uint16_t *)(v + idx[j] * v_stride),
                            out + t * ldo);
        }
    }
}

static void scalar_f32_to_f16_row(int64_t n, const float *x, uint16_t *y) {
    for (int64_t i = 0; i < n; i++) y[i] = f32_to_f16(x[i]);
}

static const cpu_kernels g_scalar = {
    .name = "scalar",
    .level = CPU_LEVEL_SCALAR,
    .f32 = {NULL, NULL, scalar_vec_dot_f32, scalar_tile_f32},
    .f16 = {NULL, NULL, scalar_vec_dot_f16, scalar_tile_f16},
    .bf16 = {NULL, NULL, scalar_vec_dot_bf16, scalar_tile_bf16},
    .q8_0 = {q8a_row_bytes, scalar_quantize_q8a, scalar_vec_dot_q8_0, scalar_tile_q8_0},
    .q4_0 = {q8a_row_bytes, scalar_quantize_q8a, scalar_vec_dot_q4_0, scalar_tile_q4_0},
    .q4_k = {q8k_row_bytes, cpu_quantize_q8k, scalar_vec_dot_q4_k, scalar_tile_q4_k},
    .q5_k = {q8k_row_bytes, cpu_quantize_q8k, scalar_vec_dot_q5_k, scalar_tile_q5_k},
    .q6_k = {q8k_row_bytes, cpu_quantize_q8k, scalar_vec_dot_q6_k, scalar_tile_q6_k},
    .quantize_q8a = scalar_quantize_q8a,
    .dot_f32 = scalar_dot_f32,
    .axpy_f32 = scalar_axpy_f32,
    .axpy_f16 = scalar_axpy_f16,
    .scale_f32 = scalar_scale_f32,
    .rmsnorm_f32 = scalar_rmsnorm_f32,
    .swiglu_f32 = scalar_swiglu_f32,
    .exp_sum_f32 = scalar_exp_sum_f32,
    .pv_f32 = scalar_pv_f32,
    .pv_f16 = scalar_pv_f16,
    .f32_to_f16_row = scalar_f32_to_f16_row,
};

const cpu_kernels *cpu_kernels_scalar(void) { return &g_scalar; }
