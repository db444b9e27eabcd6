/* test_kernels.c -- the CPU kernels of every level this machine runs against the scalar level,
 * the scalar level against quant.c's references, and the CPU backend's ops (matmul,
 * attention, element-wise) against references written here from quant.c.
 *
 * All data are seeded random values (never zeros), at odd sizes: multiples of the 32-value
 * block for the quantized types, sizes that are not multiples of 8 or 16 for the f32 paths.
 * Outputs are written between guard values that must stay untouched, and checked for NaN.
 *
 * Tolerances. A SIMD kernel adds the same products as the scalar one in another order. For
 * random signs the rounding error of a sum of n terms grows like sqrt(n) * eps * sum|term|,
 * so the kernel tests allow 8 * sqrt(n) * FLT_EPSILON * sum|w_i * a_i| (+ 1e-30): loose enough
 * for every order, tight enough to catch a dropped or doubled term (which moves the sum by
 * about sum|term| / n, above the bound for every n tested). Integer parts (the q8a bytes,
 * block dot products) must match exactly. The activation-quantization scheme is checked
 * against the f32 reference with its exact error bound: each activation moves by at most half
 * a step, d / 2 = max|x_block| / 254. */
#define _POSIX_C_SOURCE 200809L
#include "backend/backend.h"
#include "backend/cpu/kernels.h"
#include "quant.h"
#include "util.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define LLM_TEST_WEIGHTS
#define LLM_TEST_LEVELS
#include "test_common.h"

static const uint32_t g_types[] = {TYPE_F32, TYPE_F16, TYPE_BF16, TYPE_Q8_0, TYPE_Q4_0,
                                   TYPE_Q4_K, TYPE_Q5_K, TYPE_Q6_K};
#define N_TYPES (sizeof g_types / sizeof g_types[0])

static bool is_quant(uint32_t type) {
    return type == TYPE_Q8_0 || type == TYPE_Q4_0 || is_kquant(type);
}

/* values per activation block: block_q8a for Q8_0 / Q4_0, block_q8k for the K-quants */
static int act_block(uint32_t type) { return is_kquant(type) ? QK_K : QK8A; }

/* the f32 values of activation row t as the scalar level quantized it */
static void act_values(uint32_t type, const uint8_t *act, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++) {
        if (is_kquant(type)) {
            const block_q8k *blk = (const block_q8k *)act + i / QK_K;
            out[i] = blk->qs[i % QK_K] * blk->d;
        } else {
            const block_q8a *blk = (const block_q8a *)act + i / QK8A;
            out[i] = blk->qs[i % QK8A] * blk->d;
        }
    }
}

static double sum_abs_prod(const float *w, const float *x, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += fabs((double)w[i] * x[i]);
    return s;
}

static double order_tol(int64_t n, double sum_abs) {
    return 8.0 * sqrt((double)n) * FLT_EPSILON * sum_abs + 1e-30;
}

/* the bound on |dot(w, x) - dot(w, dequant(quant(x)))|: half a quantization step per value,
 * max|x_block| / 254 for activation blocks of bs values (32 or 256) */
static double q8a_tol(const float *w, const float *x, int64_t n, int bs) {
    double s = 0.0;
    for (int64_t b = 0; b < n / bs; b++) {
        float amax = 0.0f;
        double wsum = 0.0;
        for (int j = 0; j < bs; j++) {
            amax = fmaxf(amax, fabsf(x[b * bs + j]));
            wsum += fabs(w[b * bs + j]);
        }
        s += (amax / 254.0) * wsum * (1.0 + 1e-5);
    }
    return s;
}

/* activation rows as the kernel wants them (its level's own layout) */
static void *make_act(const mm_kernel *mk, const float *x, int64_t n, int64_t nrows,
                      size_t *stride) {
    if (!mk->act_bytes) {
        *stride = sizeof(float) * (size_t)n;
        void *a = malloc(*stride * (size_t)nrows);
        memcpy(a, x, *stride * (size_t)nrows);
        return a;
    }
    *stride = (size_t)mk->act_bytes(n);
    uint8_t *a = malloc(*stride * (size_t)nrows);
    for (int64_t r = 0; r < nrows; r++) mk->quantize(x + r * n, a + r * *stride, n);
    return a;
}

/* ---- kernel tests, one level against the scalar level ---- */

static void test_quantize(const cpu_kernels *k, const cpu_kernels *ref) {
    static const int64_t sizes[] = {32, 96, 4128};
    for (size_t si = 0; si < 3; si++) {
        int64_t n = sizes[si];
        float *x = rnd_floats(n, 3.0f);
        block_q8a *a = malloc(sizeof(block_q8a) * (size_t)(n / QK8A + 1));
        block_q8a *b = malloc(sizeof(block_q8a) * (size_t)(n / QK8A));
        memset(&a[n / QK8A], 0x5a, sizeof(block_q8a));                      /* guard block */
        k->quantize_q8a(x, a, n);
        ref->quantize_q8a(x, b, n);
        CHECK(memcmp(a, b, sizeof(block_q8a) * (size_t)(n / QK8A)) == 0,
              "%s quantize_q8a n=%lld differs from scalar", k->name, (long long)n);
        const uint8_t *g = (const uint8_t *)&a[n / QK8A];
        bool guard = true;
        for (size_t i = 0; i < sizeof(block_q8a); i++) guard &= g[i] == 0x5a;
        CHECK(guard, "%s quantize_q8a n=%lld wrote past its output", k->name, (long long)n);
        /* every value within half a step of its quantized value */
        double worst = 0.0;
        for (int64_t i = 0; i < n; i++) {
            const block_q8a *blk = &b[i / QK8A];
            worst = fmax(worst, fabs(x[i] - blk->qs[i % QK8A] * blk->d) / (blk->d * 0.5 * (1 + 1e-6)));
        }
        CHECK(worst <= 1.0, "%s quantize_q8a n=%lld error %.3f half-steps", k->name,
              (long long)n, worst);
        free(x);
        free(a);
        free(b);
    }
}

/* block_q8k: every level's K-quant activation rows byte for byte as the scalar level's, the
 * sums right, each value within half a step */
static void test_quantize_q8k(const cpu_kernels *k) {
    static const int64_t sizes[] = {256, 768, 4352};
    for (size_t si = 0; si < 3; si++) {
        int64_t n = sizes[si];
        float *x = rnd_floats(n, 3.0f);
        for (int64_t i = 0; i < n; i += 97) x[i] *= 5.0f;      /* outliers set the scales */
        size_t bytes = (size_t)q8k_row_bytes(n);
        uint8_t *a = malloc(bytes + 64), *b = malloc(bytes);
        memset(a + bytes, 0x5a, 64);
        const mm_kernel *ks[] = {&k->q4_k, &k->q5_k, &k->q6_k};
        cpu_quantize_q8k(x, b, n);
        for (int ti = 0; ti < 3; ti++) {
            /* a level's own layout of the same values (AVX-512) is checked through its dot
             * products against the scalar level's, in test_vec_dot_and_tile */
            if (!ks[ti]->tile || ks[ti]->act_bytes(n) != (int64_t)bytes) continue;
            ks[ti]->quantize(x, a, n);
            CHECK(memcmp(a, b, bytes) == 0, "%s quantize_q8k n=%lld differs from scalar", k->name,
                  (long long)n);
            bool guard = true;
            for (int i = 0; i < 64; i++) guard &= a[bytes + i] == 0x5a;
            CHECK(guard, "%s quantize_q8k n=%lld wrote past its output", k->name, (long long)n);
        }
        const block_q8k *blk = (const block_q8k *)b;
        double worst = 0.0;
        bool sums = true;
        for (int64_t i = 0; i < n; i++) {
            const block_q8k *q = &blk[i / QK_K];
            worst = fmax(worst, fabs(x[i] - q->qs[i % QK_K] * q->d) / (q->d * 0.5 * (1 + 1e-6)));
        }
        for (int64_t bi = 0; bi < n / QK_K; bi++) {
            for (int j = 0; j < 8; j++) {
                int s = 0;
                for (int l = 0; l < 32; l++) s += blk[bi].qs[32 * j + l];
                sums &= blk[bi].sums[j] == s;
            }
        }
        CHECK(worst <= 1.0, "quantize_q8k n=%lld error %.3f half-steps", (long long)n, worst);
        CHECK(sums, "quantize_q8k n=%lld sums", (long long)n);
        free(x);
        free(a);
        free(b);
    }
}

static void test_vec_dot_and_tile(const cpu_kernels *k, const cpu_kernels *ref, uint32_t type) {
    /* 6151: past the row length at which the AVX-512 f16 decode reads 4 rows at once */
    static const int64_t float_sizes[] = {1, 7, 33, 257, 1001, 4128, 6151};
    static const int64_t quant_sizes[] = {32, 64, 96, 160, 4128};
    static const int64_t kquant_sizes[] = {256, 512, 768, 1792, 4352};   /* 1, 2, 3, 7, 17 blocks */
    const int64_t *sizes = is_kquant(type) ? kquant_sizes : is_quant(type) ? quant_sizes : float_sizes;
    size_t n_sizes = is_kquant(type) ? 5 : is_quant(type) ? 5 : 7;
    const mm_kernel *mk = cpu_kernels_mm(k, type), *mr = cpu_kernels_mm(ref, type);
    const char *tn = type_traits_get(type)->name;
    if (!mk) {                 /* a level without this type: the backend takes the reference path */
        printf("level %s: no %s kernel, skipped\n", k->name, tn);
        return;
    }
    for (size_t si = 0; si < n_sizes; si++) {
        int64_t n = sizes[si];
        uint64_t rb;
        float *wv;
        uint8_t *w = rnd_rows(type, n, MM_TILE_ROWS, &rb, &wv);
        float *x = rnd_floats(n * MM_TILE_TOKS_MAX, 2.0f);
        size_t as, ras;
        uint8_t *a = make_act(mk, x, n, MM_TILE_TOKS_MAX, &as);      /* this level's layout */
        uint8_t *ra = make_act(mr, x, n, MM_TILE_TOKS_MAX, &ras);    /* the scalar block_q8a */
        /* the activation values the kernels really see */
        float *xa = malloc(sizeof(float) * (size_t)(n * MM_TILE_TOKS_MAX));
        for (int t = 0; t < MM_TILE_TOKS_MAX; t++) {
            if (is_quant(type)) {
                act_values(type, ra + t * ras, n, xa + t * n);
            } else {
                memcpy(xa + t * n, x + t * n, sizeof(float) * (size_t)n);
            }
        }
        /* the one-token conversion, over garbage: what the one-token paths read of it must
         * give exactly what they give on the full conversion */
        if (mk->quantize_one) {
            uint8_t *a1 = malloc(as);
            for (int t = 0; t < MM_TILE_TOKS_MAX; t++) {
                memset(a1, 0x5a, as);
                mk->quantize_one(x + t * n, a1, n);
                bool same = true;
                for (int r = 0; r < MM_TILE_ROWS; r++) {
                    float y1, y0;
                    same &= mk->vec_dot(n, w + r * rb, a1) == mk->vec_dot(n, w + r * rb, a + t * as);
                    mk->tile(n, w + r * rb, rb, 1, a1, as, 1, &y1, 1);
                    mk->tile(n, w + r * rb, rb, 1, a + t * as, as, 1, &y0, 1);
                    same &= y1 == y0;
                }
                CHECK(same, "%s %s n=%lld: one-token conversion differs from the full one", k->name,
                      tn, (long long)n);
            }
            free(a1);
        }
        float expect[MM_TILE_TOKS_MAX][MM_TILE_ROWS];
        double tol[MM_TILE_TOKS_MAX][MM_TILE_ROWS];
        for (int t = 0; t < MM_TILE_TOKS_MAX; t++) {
            for (int r = 0; r < MM_TILE_ROWS; r++) {
                expect[t][r] = mr->vec_dot(n, w + r * rb, ra + t * ras);
                tol[t][r] = order_tol(n, sum_abs_prod(wv + r * n, xa + t * n, n));
                float got = mk->vec_dot(n, w + r * rb, a + t * as);
                CHECK(fabs(got - expect[t][r]) <= tol[t][r] && !isnan(got),
                      "%s vec_dot %s n=%lld: %.9g vs scalar %.9g (tol %.3g)", k->name, tn,
                      (long long)n, got, expect[t][r], tol[t][r]);
            }
        }
        if (k == ref) {
            /* the scalar scheme against quant.c's reference on the original f32 values */
            dot_f32_fn dot = type_traits_get(type)->dot_f32;
            for (int t = 0; t < MM_TILE_TOKS_MAX; t++) {
                for (int r = 0; r < MM_TILE_ROWS; r++) {
                    float want = dot(w + r * rb, x + t * n, n);
                    double tl = order_tol(n, sum_abs_prod(wv + r * n, x + t * n, n)) +
                                (is_quant(type) ? q8a_tol(wv + r * n, x + t * n, n, act_block(type)) : 0.0);
                    CHECK(fabs(expect[t][r] - want) <= tl, "scalar %s n=%lld: %.9g vs "
                          "reference %.9g (tol %.3g)", tn, (long long)n, expect[t][r], want, tl);
                }
            }
        }
        /* every tile shape the kernel takes (up to its max_toks tokens), into rows of stride ldy
         * with guards after each row */
        const int64_t ldy = MM_TILE_ROWS + 3;
        float y[MM_TILE_TOKS_MAX * (MM_TILE_ROWS + 3)];
        for (int nr = 1; nr <= MM_TILE_ROWS; nr++) {
            for (int nt = 1; nt <= mm_max_toks(mk); nt++) {
                for (size_t i = 0; i < sizeof y / sizeof y[0]; i++) y[i] = 12345.0f;
                mk->tile(n, w, rb, nr, a, as, nt, y, ldy);
                bool ok = true, guards = true;
                for (int t = 0; t < MM_TILE_TOKS_MAX; t++) {
                    for (int r = 0; r < ldy; r++) {
                        float v = y[t * ldy + r];
                        if (t < nt && r < nr) {
                            ok &= fabs(v - expect[t][r]) <= tol[t][r] && !isnan(v);
                        } else {
                            guards &= v == 12345.0f;
                        }
                    }
                }
                CHECK(ok, "%s tile %s n=%lld %dx%d differs from scalar", k->name, tn,
                      (long long)n, nr, nt);
                CHECK(guards, "%s tile %s n=%lld %dx%d wrote outside its tile", k->name, tn,
                      (long long)n, nr, nt);
            }
        }
        free(w);
        free(wv);
        free(x);
        free(a);
        free(ra);
        free(xa);
    }
}

/* n values plus 4 guards */
static float *with_guards(const float *src, int64_t n) {
    float *y = malloc(sizeof(float) * (size_t)(n + 4));
    memcpy(y, src, sizeof(float) * (size_t)n);
    for (int i = 0; i < 4; i++) y[n + i] = -777.0f;
    return y;
}

static bool guards_ok(const float *y, int64_t n) {
    for (int i = 0; i < 4; i++) {
        if (y[n + i] != -777.0f) return false;
    }
    return true;
}

/* |a - b| <= rel * |b| + abs for every element, no NaN */
static bool close_rows(const float *a, const float *b, int64_t n, double rel, double abs_tol) {
    for (int64_t i = 0; i < n; i++) {
        if (isnan(a[i]) || fabs(a[i] - b[i]) > rel * fabs(b[i]) + abs_tol) return false;
    }
    return true;
}

static void test_helpers(const cpu_kernels *k, const cpu_kernels *ref) {
    static const int64_t sizes[] = {1, 7, 33, 257, 1001};
    for (size_t si = 0; si < 5; si++) {
        int64_t n = sizes[si];
        float *x = rnd_floats(n, 4.0f), *u = rnd_floats(n, 1.0f), *w = rnd_floats(n, 1.0f);
        uint16_t *h = malloc(sizeof(uint16_t) * (size_t)n);
        for (int64_t i = 0; i < n; i++) h[i] = f32_to_f16(x[i]);

        float d = k->dot_f32(n, x, u), dr = ref->dot_f32(n, x, u);
        CHECK(fabs(d - dr) <= order_tol(n, sum_abs_prod(x, u, n)), "%s dot_f32 n=%lld %.9g vs %.9g",
              k->name, (long long)n, d, dr);

        /* axpy, scale: one rounding per element in both (fma vs mul-add: 1 ulp apart) */
        float *y = with_guards(u, n), *yr = with_guards(u, n);
        k->axpy_f32(n, 0.37f, x, y);
        ref->axpy_f32(n, 0.37f, x, yr);
        CHECK(close_rows(y, yr, n, 2 * FLT_EPSILON, 4 * FLT_EPSILON) && guards_ok(y, n),
              "%s axpy_f32 n=%lld", k->name, (long long)n);
        free(y);
        free(yr);
        y = with_guards(u, n);
        yr = with_guards(u, n);
        k->axpy_f16(n, -1.3f, h, y);
        ref->axpy_f16(n, -1.3f, h, yr);
        CHECK(close_rows(y, yr, n, 2 * FLT_EPSILON, 8 * FLT_EPSILON) && guards_ok(y, n),
              "%s axpy_f16 n=%lld", k->name, (long long)n);
        free(y);
        free(yr);
        y = with_guards(x, n);
        yr = with_guards(x, n);
        k->scale_f32(n, 0.71f, y);
        ref->scale_f32(n, 0.71f, yr);
        CHECK(close_rows(y, yr, n, 0.0, 0.0) && guards_ok(y, n), "%s scale_f32 n=%lld", k->name,
              (long long)n);
        free(y);
        free(yr);

        /* rmsnorm: squares summed in double by every level; the scale then differs by a few
         * ulp at most, each output by one more rounding: 4 eps relative */
        y = with_guards(u, n);
        yr = with_guards(u, n);
        k->rmsnorm_f32(n, x, w, 1e-5f, y);
        ref->rmsnorm_f32(n, x, w, 1e-5f, yr);
        CHECK(close_rows(y, yr, n, 4 * FLT_EPSILON, 1e-30) && guards_ok(y, n),
              "%s rmsnorm_f32 n=%lld", k->name, (long long)n);
        k->rmsnorm_f32(n, x, NULL, 1e-5f, y);
        ref->rmsnorm_f32(n, x, NULL, 1e-5f, yr);
        CHECK(close_rows(y, yr, n, 4 * FLT_EPSILON, 1e-30) && guards_ok(y, n),
              "%s rmsnorm_f32 (no weight) n=%lld", k->name, (long long)n);
        free(y);
        free(yr);

        /* swiglu and exp: the SIMD exp is a polynomial good to ~2 ulp, against libm's expf;
         * a few more roundings in silu: 8 eps relative, plus a tiny absolute floor for
         * silu values near 0 (large negative inputs) */
        float *big = rnd_floats(n, 40.0f);     /* reaches far into both tails */
        y = with_guards(big, n);
        yr = with_guards(big, n);
        k->swiglu_f32(n, y, u);
        ref->swiglu_f32(n, yr, u);
        CHECK(close_rows(y, yr, n, 8 * FLT_EPSILON, 1e-30) && guards_ok(y, n),
              "%s swiglu_f32 n=%lld", k->name, (long long)n);
        free(y);
        free(yr);
        big[0] = -INFINITY;                     /* a masked score */
        y = with_guards(big, n);
        yr = with_guards(big, n);
        float s = k->exp_sum_f32(n, big, 20.0f, y), sr = ref->exp_sum_f32(n, big, 20.0f, yr);
        CHECK(close_rows(y, yr, n, 8 * FLT_EPSILON, 1e-37) && guards_ok(y, n) && y[0] == 0.0f,
              "%s exp_sum_f32 n=%lld", k->name, (long long)n);
        CHECK(fabs(s - sr) <= 8 * FLT_EPSILON * sqrt((double)n) * fabs(sr) + 1e-37,
              "%s exp_sum_f32 sum n=%lld %.9g vs %.9g", k->name, (long long)n, s, sr);
        free(y);
        free(yr);
        free(big);
        free(x);
        free(u);
        free(w);
        free(h);
    }
}

/* pv: out rows += weights x listed V rows; the same products summed in the same cell order,
 * fma against mul-then-add: within order_tol of the sum of |p * v| */
static void test_pv(const cpu_kernels *k, const cpu_kernels *ref) {
    static const int64_t dvs[] = {1, 7, 33, 64, 257};
    const int ncell = 50, ldp = 53;
    for (size_t di = 0; di < 5; di++) {
        int64_t dv = dvs[di], ldo = dv + 3;
        for (int f16 = 0; f16 < 2; f16++) {
            size_t stride = (size_t)(dv + 5) * (f16 ? 2 : 4);
            uint8_t *v = malloc(stride * ncell);
            float *vf = malloc(sizeof(float) * (size_t)(dv * ncell));
            for (int c = 0; c < ncell; c++) {
                for (int64_t i = 0; i < dv; i++) {
                    float x = rnd_f();
                    if (f16) {
                        ((uint16_t *)(v + c * stride))[i] = f32_to_f16(x);
                        x = f16_to_f32(f32_to_f16(x));
                    } else {
                        ((float *)(v + c * stride))[i] = x;
                    }
                    vf[c * dv + i] = x;
                }
            }
            float *p = rnd_floats(MM_TILE_TOKS * ldp, 1.0f);
            int32_t idx[50];
            int nidx = 0;
            for (int c = 0; c < ncell; c++) {
                if (rnd_u64() % 4) idx[nidx++] = c;                  /* a gappy list */
            }
            for (int nt = 1; nt <= MM_TILE_TOKS; nt++) {
                float *o = rnd_floats(ldo * MM_TILE_TOKS + 4, 1.0f);
                float *orf = malloc(sizeof(float) * (size_t)(ldo * MM_TILE_TOKS + 4));
                memcpy(orf, o, sizeof(float) * (size_t)(ldo * MM_TILE_TOKS + 4));
                float *o0 = malloc(sizeof(float) * (size_t)(ldo * MM_TILE_TOKS + 4));
                memcpy(o0, o, sizeof(float) * (size_t)(ldo * MM_TILE_TOKS + 4));
                (f16 ? k->pv_f16 : k->pv_f32)(nidx, idx, nt, p, ldp, v, stride, dv, o, ldo);
                (f16 ? ref->pv_f16 : ref->pv_f32)(nidx, idx, nt, p, ldp, v, stride, dv, orf, ldo);
                bool ok = true;
                for (int t = 0; t < MM_TILE_TOKS; t++) {
                    for (int64_t i = 0; i < ldo; i++) {
                        float got = o[t * ldo + i];
                        if (t >= nt || i >= dv) {
                            ok &= got == o0[t * ldo + i];                /* untouched */
                            continue;
                        }
                        double sa = fabs(o0[t * ldo + i]);
                        for (int j = 0; j < nidx; j++) sa += fabs(p[t * ldp + idx[j]] * vf[idx[j] * dv + i]);
                        ok &= !isnan(got) && fabs(got - orf[t * ldo + i]) <= order_tol(nidx + 1, sa);
                    }
                }
                for (int i = 0; i < 4; i++) ok &= o[ldo * MM_TILE_TOKS + i] == o0[ldo * MM_TILE_TOKS + i];
                CHECK(ok, "%s pv_%s dv=%lld nt=%d", k->name, f16 ? "f16" : "f32", (long long)dv, nt);
                free(o);
                free(orf);
                free(o0);
            }
            free(v);
            free(vf);
            free(p);
        }
    }
    /* f32 -> f16 must match quant.h bit for bit (round to nearest even), subnormals and
     * overflow included */
    static const int64_t sizes[] = {1, 7, 33, 1001};
    for (size_t si = 0; si < 4; si++) {
        int64_t n = sizes[si];
        float *x = rnd_floats(n, 1.0f);
        for (int64_t i = 0; i < n; i++) x[i] = ldexpf(x[i], (int)(rnd_u64() % 44) - 28);
        uint16_t *h = malloc(sizeof(uint16_t) * (size_t)(n + 2));
        h[n] = h[n + 1] = 0xbeef;
        k->f32_to_f16_row(n, x, h);
        bool ok = h[n] == 0xbeef && h[n + 1] == 0xbeef;
        for (int64_t i = 0; i < n; i++) ok &= h[i] == f32_to_f16(x[i]);
        CHECK(ok, "%s f32_to_f16_row n=%lld", k->name, (long long)n);
        free(x);
        free(h);
    }
}

static void test_level(const cpu_kernels *k) {
    const cpu_kernels *ref = cpu_kernels_scalar();
    test_quantize(k, ref);
    test_quantize_q8k(k);
    for (size_t i = 0; i < N_TYPES; i++) test_vec_dot_and_tile(k, ref, g_types[i]);
    test_helpers(k, ref);
    test_pv(k, ref);
}

/* ---- backend ops (at the level cpu_kernels_get picks; run once per level in children) ---- */

/* max_row 4128: the kernels' path; max_row 32: rows longer than the activation scratch take
 * the scalar reference path */
static void test_matmul_op(int n_threads, int64_t max_row) {
    static const int toks[] = {1, 3, 17};
    static const int64_t n_ins[] = {96, 4128}, k_n_ins[] = {768, 3840};
    const int64_t n_out = 37;                 /* not a multiple of the 4-row tile */
    llm_backend *be;
    /* max_tok 8 < 17: the 17-token matmuls run in several passes through the scratch */
    CHECK(cpu_backend_create(n_threads, 64, 64, 8, max_row, &be) == LLM_STATUS_OK, "create");
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        uint32_t type = g_types[ti];
        for (size_t ni = 0; ni < 2; ni++) {
            int64_t n = is_kquant(type) ? k_n_ins[ni] : n_ins[ni];
            uint64_t rb;
            float *wv;
            uint8_t *wd = rnd_rows(type, n, n_out, &rb, &wv);
            gguf_tensor w = {.name = "w", .type = type, .n_dims = 2, .ne = {n, n_out, 1, 1},
                             .n_bytes = rb * n_out, .data = wd};
            const dot_f32_fn dot = type_traits_get(type)->dot_f32;
            for (size_t k = 0; k < 3; k++) {
                int nt = toks[k];
                int64_t ldx = n + 5, ldy = n_out + 3;
                float *x = rnd_floats(ldx * nt, 2.0f);
                float *y = malloc(sizeof(float) * (size_t)(ldy * nt + 8));
                for (int64_t i = 0; i < ldy * nt + 8; i++) y[i] = 31337.0f;
                be->matmul(be, &w, x, ldx, nt, y, ldy);
                bool ok = true, guards = true;
                double worst = 0.0;
                for (int t = 0; t < nt; t++) {
                    for (int64_t o = 0; o < ldy; o++) {
                        float v = y[t * ldy + o];
                        if (o >= n_out) {
                            guards &= v == 31337.0f;
                            continue;
                        }
                        const float *xr = x + t * ldx, *wr = wv + o * n;
                        double want = dot(wd + o * rb, xr, n);
                        double tl = order_tol(n, sum_abs_prod(wr, xr, n)) * 2 +
                                    (is_quant(type) ? q8a_tol(wr, xr, n, act_block(type)) : 0.0);
                        ok &= !isnan(v) && fabs(v - want) <= tl;
                        worst = fmax(worst, fabs(v - want) / tl);
                    }
                }
                for (int i = 0; i < 8; i++) guards &= y[ldy * nt + i] == 31337.0f;
                CHECK(ok, "matmul %s n=%lld n_tok=%d threads=%d max_row=%lld: worst error "
                      "%.2f x tol", type_traits_get(type)->name, (long long)n, nt, n_threads,
                      (long long)max_row, worst);
                CHECK(guards, "matmul %s n=%lld n_tok=%d threads=%d wrote outside its rows",
                      type_traits_get(type)->name, (long long)n, nt, n_threads);
                /* matmul_n of the same input: w, its first 13 rows, an f32 weight (a run of
                 * two sharing one conversion, then one more): exactly what matmul gives */
                {
                    uint64_t rbf;
                    float *wfv;
                    uint8_t *wf = rnd_rows(TYPE_F32, n, 5, &rbf, &wfv);
                    gguf_tensor w13 = w, w5 = {.name = "f", .type = TYPE_F32, .n_dims = 2,
                                               .ne = {n, 5, 1, 1}, .n_bytes = rbf * 5, .data = wf};
                    w13.ne[1] = 13;
                    const gguf_tensor *ws[3] = {&w, &w13, &w5};
                    const int64_t lds[3] = {ldy, 13, 5};
                    float *ys[3], *ones[3];
                    bool same = true;
                    for (int i = 0; i < 3; i++) {
                        ys[i] = malloc(sizeof(float) * (size_t)(lds[i] * nt));
                        ones[i] = malloc(sizeof(float) * (size_t)(lds[i] * nt));
                        for (int64_t j = 0; j < lds[i] * nt; j++) ys[i][j] = ones[i][j] = 0.0f;
                        be->matmul(be, ws[i], x, ldx, nt, ones[i], lds[i]);
                    }
                    be->matmul_n(be, 3, ws, x, ldx, nt, ys, lds);
                    for (int i = 0; i < 3; i++) {
                        same &= memcmp(ys[i], ones[i], sizeof(float) * (size_t)(lds[i] * nt)) == 0;
                        free(ys[i]);
                        free(ones[i]);
                    }
                    CHECK(same, "matmul_n %s n=%lld n_tok=%d threads=%d differs from matmul",
                          type_traits_get(type)->name, (long long)n, nt, n_threads);
                    free(wf);
                    free(wfv);
                }
                free(x);
                free(y);
            }
            free(wd);
            free(wv);
        }
    }
    be->free(be);
}

/* attention against a two-pass softmax written here from quant.c's kernels */
static void test_attention_op(int n_threads, uint32_t type_kv) {
    const int n_tok = 6, n_head = 4, n_head_kv = 2, hd = 40, n_kv = 300;
    const type_traits *tt = type_traits_get(type_kv);
    uint64_t head_bytes;
    type_row_bytes(type_kv, hd, &head_bytes);
    uint64_t cell_bytes = head_bytes * n_head_kv + 16;    /* padded cells */
    uint8_t *kc = malloc(cell_bytes * n_kv), *vc = malloc(cell_bytes * n_kv);
    for (int c = 0; c < n_kv; c++) {
        for (int h = 0; h < n_head_kv; h++) {
            float *r = rnd_floats(hd, 1.0f);
            tt->from_f32(r, kc + c * cell_bytes + h * head_bytes, hd);
            free(r);
            r = rnd_floats(hd, 1.0f);
            tt->from_f32(r, vc + c * cell_bytes + h * head_bytes, hd);
            free(r);
        }
    }
    int64_t ldq = n_head * hd + 3, ldo = n_head * hd + 5;
    float *q = rnd_floats(ldq * n_tok, 3.0f);
    uint8_t *mask = malloc((size_t)n_tok * n_kv);
    for (int t = 0; t < n_tok; t++) {
        for (int c = 0; c < n_kv; c++) mask[t * n_kv + c] = (rnd_u64() % 3) != 0;
    }
    for (int c = 0; c < n_kv; c++) mask[5 * n_kv + c] = 0;          /* a query that sees nothing */
    for (int c = 0; c < n_kv; c++) mask[4 * n_kv + c] = c == 211;   /* one that sees one cell */
    float *out = malloc(sizeof(float) * (size_t)(ldo * n_tok + 4));
    for (int64_t i = 0; i < ldo * n_tok + 4; i++) out[i] = -5.0f;
    attn_args a = {
        .n_tok = n_tok, .n_head = n_head, .n_head_kv = n_head_kv, .head_dim_k = hd,
        .head_dim_v = hd, .q = q, .ldq = ldq, .k = kc, .type_k = type_kv,
        .k_cell_bytes = cell_bytes, .k_head_bytes = head_bytes, .v = vc, .type_v = type_kv,
        .v_cell_bytes = cell_bytes, .v_head_bytes = head_bytes, .n_kv = n_kv, .mask = mask,
        .scale = 1.0f / sqrtf((float)hd), .out = out, .ldo = ldo,
    };
    llm_backend *be;
    CHECK(cpu_backend_create(n_threads, n_kv, hd, 4, 64, &be) == LLM_STATUS_OK, "create");
    be->attention(be, &a);
    be->free(be);
    bool ok = true, guards = true;
    double worst = 0.0;
    float *s = malloc(sizeof(float) * n_kv), *vr = malloc(sizeof(float) * hd);
    double *acc = malloc(sizeof(double) * hd);
    for (int t = 0; t < n_tok; t++) {
        for (int h = 0; h < n_head; h++) {
            int hk = h / (n_head / n_head_kv);
            float mx = -INFINITY;
            for (int c = 0; c < n_kv; c++) {
                if (!mask[t * n_kv + c]) continue;
                s[c] = tt->dot_f32(kc + c * cell_bytes + hk * head_bytes, q + t * ldq + h * hd, hd) * a.scale;
                mx = fmaxf(mx, s[c]);
            }
            double sum = 0.0;
            for (int i = 0; i < hd; i++) acc[i] = 0.0;
            for (int c = 0; c < n_kv; c++) {
                if (!mask[t * n_kv + c]) continue;
                double p = exp((double)s[c] - mx);
                sum += p;
                tt->to_f32(vc + c * cell_bytes + hk * head_bytes, vr, hd);
                for (int i = 0; i < hd; i++) acc[i] += p * vr[i];
            }
            for (int i = 0; i < hd; i++) {
                double want = sum > 0 ? acc[i] / sum : 0.0;
                float got = out[t * ldo + h * hd + i];
                /* outputs are weighted means of values in [-1, 1]: the f32 scores, exp and
                 * sums are good to ~1e-6 absolute; 1e-5 leaves room for summation order */
                ok &= !isnan(got) && fabs(got - want) <= 1e-5;
                worst = fmax(worst, fabs(got - want));
            }
        }
        for (int64_t i = n_head * hd; i < ldo; i++) guards &= out[t * ldo + i] == -5.0f;
    }
    for (int i = 0; i < 4; i++) guards &= out[ldo * n_tok + i] == -5.0f;
    CHECK(ok, "attention %s threads=%d: worst abs error %.3g", tt->name, n_threads, worst);
    CHECK(guards, "attention %s threads=%d wrote outside its rows", tt->name, n_threads);
    free(s);
    free(vr);
    free(acc);
    free(kc);
    free(vc);
    free(q);
    free(mask);
    free(out);
}

/* rmsnorm, add, add_bias, swiglu through the backend (small and thread-split sizes) */
static void test_elementwise_ops(int n_threads) {
    const cpu_kernels *ref = cpu_kernels_scalar();
    llm_backend *be;
    CHECK(cpu_backend_create(n_threads, 16, 16, 4, 64, &be) == LLM_STATUS_OK, "create");
    static const int shapes[][2] = {{1, 33}, {3, 257}, {70, 1001}};   /* last one splits */
    for (int si = 0; si < 3; si++) {
        int nt = shapes[si][0], n = shapes[si][1];
        int64_t ld = n + 7;
        float *x = rnd_floats(ld * nt + 4, 4.0f), *u = rnd_floats(ld * nt, 1.0f);
        float *wn = rnd_floats(n, 1.0f);
        float *y = malloc(sizeof(float) * (size_t)(ld * nt + 4));
        float *yr = malloc(sizeof(float) * (size_t)(ld * nt + 4));
        for (int64_t i = 0; i < ld * nt + 4; i++) y[i] = yr[i] = -777.0f;
        be->rmsnorm(be, x, ld, nt, n, wn, 1e-6f, y, ld);
        for (int t = 0; t < nt; t++) ref->rmsnorm_f32(n, x + t * ld, wn, 1e-6f, yr + t * ld);
        bool ok = true;
        for (int64_t i = 0; i < ld * nt + 4; i++) {
            ok &= fabs(y[i] - yr[i]) <= 4 * FLT_EPSILON * fabs(yr[i]) && !isnan(y[i]);
        }
        CHECK(ok, "rmsnorm op %dx%d threads=%d (guards included)", nt, n, n_threads);
        memcpy(y, x, sizeof(float) * (size_t)(ld * nt + 4));
        memcpy(yr, x, sizeof(float) * (size_t)(ld * nt + 4));
        be->add(be, y, ld, u, ld, nt, n);
        be->add_bias(be, y, ld, nt, n, wn);
        for (int t = 0; t < nt; t++) {
            for (int i = 0; i < n; i++) yr[t * ld + i] = (yr[t * ld + i] + u[t * ld + i]) + wn[i];
        }
        CHECK(memcmp(y, yr, sizeof(float) * (size_t)(ld * nt + 4)) == 0,
              "add / add_bias op %dx%d threads=%d", nt, n, n_threads);
        memcpy(y, x, sizeof(float) * (size_t)(ld * nt + 4));
        memcpy(yr, x, sizeof(float) * (size_t)(ld * nt + 4));
        be->swiglu(be, y, u, ld, nt, n);
        for (int t = 0; t < nt; t++) ref->swiglu_f32(n, yr + t * ld, u + t * ld);
        ok = true;
        for (int64_t i = 0; i < ld * nt + 4; i++) {
            ok &= fabs(y[i] - yr[i]) <= 8 * FLT_EPSILON * fabs(yr[i]) + 1e-30 && !isnan(y[i]);
        }
        CHECK(ok, "swiglu op %dx%d threads=%d", nt, n, n_threads);
        free(x);
        free(u);
        free(wn);
        free(y);
        free(yr);
    }
    be->free(be);
}

static void test_ops(void) {
    for (int th = 1; th <= 3; th++) {
        test_matmul_op(th, 4128);
        test_matmul_op(th, 32);
        test_attention_op(th, TYPE_F16);
        test_attention_op(th, TYPE_F32);
        test_attention_op(th, TYPE_BF16);
        test_elementwise_ops(th);
    }
}

int main(void) {
    static const cpu_level levels[] = {CPU_LEVEL_SCALAR, CPU_LEVEL_AVX2, CPU_LEVEL_AVX512,
                                       CPU_LEVEL_NEON};
    static const char *names[] = {"scalar", "avx2", "avx512", "neon"};
    for (size_t i = 0; i < 4; i++) {
        const cpu_kernels *k = cpu_kernels_get_level(levels[i]);
        if (!k) {
            printf("level %s: not available here, skipped\n", names[i]);
            continue;
        }
        int before = g_fail;
        test_level(k);
        printf("level %s kernels: %s\n", names[i], g_fail == before ? "ok" : "FAILED");
    }
    /* the backend ops once per level: each in a child process, since the level is chosen
     * once per process (LIBLLM_CPU_LEVEL caps it) */
    run_ops_per_level("ops", test_ops);
    printf("test_kernels: %d passed, %d failed\n", g_pass, g_fail);
    return g_fail == 0 ? 0 : 1;
}
