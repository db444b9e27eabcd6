/* test_ssm.c -- the CPU backend's state-space ops (cpu_ssm.c: conv, scan, gated norm)
 * against their scalar references (cpu_ssm.h) on seeded random data at odd sizes, with 1, 2
 * and 3 threads, once per kernel level this machine runs (each level in a child process,
 * since the level is chosen once per process). Sizes cover the single-thread path (small
 * ops), the threaded one, blocks that do not divide the channels, and the cases that fall
 * back to the reference (long convolutions, d_state above the block).
 *
 * Every output buffer is filled with a guard value first; the ops must change exactly the
 * values they own (rows of the stated width at the stated stride) and write no NaN.
 *
 * Tolerance: |fast - ref| <= 2e-5 * (|ref| + rms(ref)) per value, over two calls in a row
 * (the second starts from the state the first left). The fast path differs from the
 * reference by its SIMD exponential (within ~2 ulp of expf), its softplus (a few ulp of
 * log1pf(expf(x))) and the order of its sums (8 partial sums over d_state), about 1e-6
 * relative per scan step; errors in the state decay with it, so a few steps do not add up
 * to 2e-5. A wrong index, a dropped or doubled term moves a value by about 1/d_state of its
 * size or more, far above the bound. The conv state is a copy and must match exactly.
 *
 * `test_ssm --bench` times the reference and the fast path (1 and 2 threads) at mamba-130m
 * sizes (d_inner 1536, d_state 16, d_conv 4) and mamba2 sizes (24 heads of 64, d_state 128),
 * for a 512-token prompt and for one token. */
#define _POSIX_C_SOURCE 200809L
#include "backend/backend.h"
#include "backend/cpu/cpu_ssm.h"
#include "backend/cpu/kernels.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TEST_RNG_SEED 0x2545F4914F6CDD1Dull
#define LLM_TEST_LEVELS
#include "test_common.h"

#define GUARD 12345.0f
#define TOL 2e-5

/* ---- seeded data ---- */

/* uniform in [lo, hi) */
static float rnd_in(float lo, float hi) {
    return lo + (hi - lo) * (float)((rnd_u64() >> 40) * (1.0 / 16777216.0));
}

static float *rnd_buf(int64_t n, float lo, float hi) {
    float *x = malloc(sizeof(float) * (size_t)LLM_MAX(n, 1));
    for (int64_t i = 0; i < n; i++) x[i] = rnd_in(lo, hi);
    return x;
}

static float *guard_buf(int64_t n) {
    float *x = malloc(sizeof(float) * (size_t)LLM_MAX(n, 1));
    for (int64_t i = 0; i < n; i++) x[i] = GUARD;
    return x;
}

static float *copy_buf(const float *x, int64_t n) {
    float *y = malloc(sizeof(float) * (size_t)LLM_MAX(n, 1));
    memcpy(y, x, sizeof(float) * (size_t)n);
    return y;
}

/* Compares rows of `width` values at stride ld (n_rows rows, plus `tail` guard values after
 * the last row): values in rows against the reference within the tolerance (exact when tol
 * is 0), everything else must still be the guard. Returns the worst error in tolerances. */
static double compare(const char *what, const float *got, const float *ref, int n_rows,
                      int64_t width, int64_t ld, int64_t tail, double tol, bool *ok) {
    double ss = 0.0;
    for (int r = 0; r < n_rows; r++) {
        for (int64_t i = 0; i < width; i++) ss += (double)ref[r * ld + i] * ref[r * ld + i];
    }
    const double rms = sqrt(ss / (double)LLM_MAX((int64_t)n_rows * width, 1));
    double worst = 0.0;
    const int64_t total = (n_rows > 0 ? (int64_t)(n_rows - 1) * ld + width : 0) + tail;
    for (int64_t i = 0; i < total; i++) {
        const int64_t r = i / ld, c = i % ld;
        const bool inside = r < n_rows && c < width;
        if (!inside) {
            if (got[i] != GUARD) {
                *ok = false;
                fprintf(stderr, "  %s: wrote outside its rows at %lld\n", what, (long long)i);
                return INFINITY;
            }
            continue;
        }
        if (isnan(got[i])) {
            *ok = false;
            fprintf(stderr, "  %s: NaN at %lld\n", what, (long long)i);
            return INFINITY;
        }
        const double err = fabs((double)got[i] - ref[i]);
        const double bound = tol * (fabs((double)ref[i]) + rms);
        if (tol == 0.0 ? err != 0.0 : err > bound) *ok = false;
        if (tol > 0.0 && bound > 0.0) worst = fmax(worst, err / bound);
        else if (err != 0.0) worst = INFINITY;
    }
    return worst;
}

static llm_backend *backend(int n_threads) {
    llm_backend *be = NULL;
    CHECK(cpu_backend_create(n_threads, 16, 16, 4, 64, &be) == LLM_STATUS_OK, "create");
    return be;
}

/* ---- conv ---- */

static void test_conv(llm_backend *be, int n_threads, int n_tok, int n_ch, int d_conv,
                      bool bias) {
    const int64_t ldx = n_ch + 3, ldo = n_ch + 5, tail = 7;
    const int64_t n_state = (int64_t)(d_conv - 1) * n_ch;
    float *x = rnd_buf((int64_t)2 * n_tok * ldx, -2.0f, 2.0f);
    float *w = rnd_buf((int64_t)n_ch * d_conv, -0.6f, 0.6f);
    float *b = bias ? rnd_buf(n_ch, -0.5f, 0.5f) : NULL;
    float *st_ref = rnd_buf(n_state + tail, -1.0f, 1.0f);
    for (int64_t i = n_state; i < n_state + tail; i++) st_ref[i] = GUARD;
    float *st = copy_buf(st_ref, n_state + tail);
    const int64_t n_out = (int64_t)(n_tok - 1) * ldo + n_ch + tail;
    bool ok = true;
    double worst = 0.0;
    for (int call = 0; call < 2; call++) {   /* the second call starts from the new state */
        float *out_ref = guard_buf(n_out), *out = guard_buf(n_out);
        ssm_conv_args a = {
            .n_tok = n_tok, .n_ch = n_ch, .d_conv = d_conv, .x = x + (int64_t)call * n_tok * ldx,
            .ldx = ldx, .w = w, .b = b, .state = st_ref, .out = out_ref, .ldo = ldo,
        };
        cpu_ssm_conv_ref(&a);
        a.state = st;
        a.out = out;
        be->ssm_conv(be, &a);
        worst = fmax(worst, compare("conv out", out, out_ref, n_tok, n_ch, ldo, tail, TOL, &ok));
        compare("conv state", st, st_ref, 1, n_state, LLM_MAX(n_state, 1), tail, 0.0, &ok);
        free(out_ref);
        free(out);
    }
    CHECK(ok, "conv n_tok=%d n_ch=%d d_conv=%d bias=%d threads=%d: worst %.2f x tol", n_tok,
          n_ch, d_conv, bias, n_threads, worst);
    free(x);
    free(w);
    free(b);
    free(st_ref);
    free(st);
}

/* ---- scan ---- */

typedef struct scan_shape {
    int n_tok, n_head, head_dim, d_state, n_group;
    bool a_per_state;
} scan_shape;

static void test_scan(llm_backend *be, int n_threads, scan_shape s) {
    const int64_t n_ch = (int64_t)s.n_head * s.head_dim, GN = (int64_t)s.n_group * s.d_state;
    const int64_t ldx = n_ch + 1, lddt = s.n_head + 2, ldbc = 2 * GN + 3, ldy = n_ch + 4;
    const int64_t tail = 5, n_state = n_ch * s.d_state;
    const int T = 2 * s.n_tok;   /* two calls */
    float *x = rnd_buf((int64_t)T * ldx, -1.5f, 1.5f);
    float *dt = rnd_buf((int64_t)T * lddt, -6.0f, 4.0f);
    for (int64_t i = 0; i < (int64_t)T * lddt; i += 7) dt[i] = 25.0f;   /* softplus(x) = x */
    for (int64_t i = 3; i < (int64_t)T * lddt; i += 11) dt[i] = -40.0f; /* tiny d */
    float *dt_bias = rnd_buf(s.n_head, -0.5f, 0.5f);
    const int64_t n_a = s.a_per_state ? (int64_t)s.n_head * s.d_state : s.n_head;
    float *A = rnd_buf(n_a, -1.0f, 2.5f);
    for (int64_t i = 0; i < n_a; i++) A[i] = -expf(A[i]);
    float *bc = rnd_buf((int64_t)T * ldbc, -1.0f, 1.0f);
    float *D = rnd_buf(s.n_head, 0.5f, 1.5f);
    float *st_ref = rnd_buf(n_state + tail, -1.0f, 1.0f);
    for (int64_t i = n_state; i < n_state + tail; i++) st_ref[i] = GUARD;
    float *st = copy_buf(st_ref, n_state + tail);
    const int64_t n_out = (int64_t)(s.n_tok - 1) * ldy + n_ch + tail;
    bool ok = true;
    double worst = 0.0;
    for (int call = 0; call < 2; call++) {
        const int64_t t0 = (int64_t)call * s.n_tok;
        float *y_ref = guard_buf(n_out), *y = guard_buf(n_out);
        ssm_scan_args a = {
            .n_tok = s.n_tok, .n_head = s.n_head, .head_dim = s.head_dim,
            .d_state = s.d_state, .n_group = s.n_group,
            .x = x + t0 * ldx, .ldx = ldx, .dt = dt + t0 * lddt, .lddt = lddt,
            .dt_bias = dt_bias, .A = A, .a_per_state = s.a_per_state,
            .B = bc + t0 * ldbc, .C = bc + t0 * ldbc + GN, .ldbc = ldbc, .D = D,
            .state = st_ref, .y = y_ref, .ldy = ldy,
        };
        cpu_ssm_scan_ref(&a);
        a.state = st;
        a.y = y;
        be->ssm_scan(be, &a);
        worst = fmax(worst, compare("scan y", y, y_ref, s.n_tok, n_ch, ldy, tail, TOL, &ok));
        worst = fmax(worst, compare("scan state", st, st_ref, 1, n_state, n_state, tail, TOL, &ok));
        free(y_ref);
        free(y);
    }
    CHECK(ok, "scan %s n_tok=%d heads=%d x %d d_state=%d groups=%d threads=%d: worst %.2f x tol",
          s.a_per_state ? "mamba" : "mamba2", s.n_tok, s.n_head, s.head_dim, s.d_state,
          s.n_group, n_threads, worst);
    free(x);
    free(dt);
    free(dt_bias);
    free(A);
    free(bc);
    free(D);
    free(st_ref);
    free(st);
}

/* ---- gated norm ---- */

static void test_norm(llm_backend *be, int n_threads, int n_tok, int n, int n_group,
                      bool weights, bool in_place) {
    const int64_t ldy = n + 2, ldz = n + 9, tail = 3;
    const int64_t n_y = (int64_t)(n_tok - 1) * ldy + n + tail;
    float *y = guard_buf(n_y);
    for (int t = 0; t < n_tok; t++) {
        for (int i = 0; i < n; i++) y[t * ldy + i] = rnd_in(-3.0f, 3.0f);
    }
    float *z = rnd_buf((int64_t)n_tok * ldz, -4.0f, 4.0f);
    float *w = weights ? rnd_buf(n, 0.5f, 1.5f) : NULL;
    float *ref = guard_buf(n_y);
    cpu_ssm_gated_norm_ref(y, ldy, z, ldz, n_tok, n, n_group, w, 1e-5f, ref, ldy);
    float *out = in_place ? y : guard_buf(n_y);
    be->ssm_gated_norm(be, y, ldy, z, ldz, n_tok, n, n_group, w, 1e-5f, out, ldy);
    bool ok = true;
    double worst = compare("gated norm", out, ref, n_tok, n, ldy, tail, TOL, &ok);
    CHECK(ok, "gated norm n_tok=%d n=%d groups=%d w=%d in_place=%d threads=%d: worst %.2f x tol",
          n_tok, n, n_group, weights, in_place, n_threads, worst);
    if (!in_place) free(out);
    free(y);
    free(z);
    free(w);
    free(ref);
}

static void test_ops(void) {
    for (int n_threads = 1; n_threads <= 3; n_threads++) {
        llm_backend *be = backend(n_threads);
        if (!be) return;
        /* conv: tiny; fewer tokens than state rows; no state (d_conv 1); threaded prompt and
         * threaded single token; a convolution longer than the fast path takes */
        static const int conv[][3] = {{1, 1, 4}, {3, 5, 4}, {2, 17, 2}, {7, 33, 1},
                                      {1, 50, 4}, {2, 50, 5}, {5, 100, 3}, {9, 1001, 4},
                                      {1, 3001, 4}, {2, 77, 65}};
        for (size_t i = 0; i < sizeof conv / sizeof conv[0]; i++) {
            test_conv(be, n_threads, conv[i][0], conv[i][1], conv[i][2], i % 3 != 1);
        }
        /* scan, mamba (one head per channel, A per state element) and mamba2 (heads of
         * head_dim channels in groups, one A per head) */
        static const scan_shape scans[] = {
            {1, 1, 1, 1, 1, true},     {3, 7, 1, 5, 1, true},     {2, 33, 1, 16, 1, true},
            {5, 300, 1, 17, 1, true},  {4, 1001, 1, 16, 1, true}, {1, 1537, 1, 16, 1, true},
            {3, 61, 1, 70, 1, true},   {2, 20, 1, 1030, 1, true}, {1, 1, 1, 1, 1, false},
            {3, 4, 3, 5, 2, false},    {2, 8, 16, 16, 2, false},  {5, 7, 5, 33, 7, false},
            {3, 6, 64, 128, 1, false}, {1, 24, 64, 128, 1, false}, {2, 9, 7, 1030, 3, false},
        };
        for (size_t i = 0; i < sizeof scans / sizeof scans[0]; i++) {
            test_scan(be, n_threads, scans[i]);
        }
        /* gated norm: groups of one; odd groups; threaded; groups longer than the block */
        static const int norm[][3] = {{1, 1, 1}, {3, 7, 7}, {2, 64, 2}, {5, 1001, 7},
                                      {4, 5120, 8}, {1, 9000, 1}, {2, 3000, 3}};
        for (size_t i = 0; i < sizeof norm / sizeof norm[0]; i++) {
            test_norm(be, n_threads, norm[i][0], norm[i][1], norm[i][2], i % 2 == 0, false);
            test_norm(be, n_threads, norm[i][0], norm[i][1], norm[i][2], i % 2 == 1, true);
        }
        be->free(be);
    }
}

/* ---- timing ---- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef void (*timed_fn)(llm_backend *be, void *arg);

/* The best of 5 runs of `reps` calls, in ms per call. */
static double time_ms(timed_fn fn, llm_backend *be, void *arg, int reps) {
    double best = INFINITY;
    for (int r = 0; r < 5; r++) {
        double t0 = now_s();
        for (int i = 0; i < reps; i++) fn(be, arg);
        best = fmin(best, (now_s() - t0) * 1e3 / reps);
    }
    return best;
}

static void run_conv(llm_backend *be, void *arg) {
    if (be) be->ssm_conv(be, arg);
    else cpu_ssm_conv_ref(arg);
}

static void run_scan(llm_backend *be, void *arg) {
    if (be) be->ssm_scan(be, arg);
    else cpu_ssm_scan_ref(arg);
}

typedef struct norm_arg {
    const float *y, *z, *w;
    float *out;
    int n_tok, n, n_group;
} norm_arg;

static void run_norm(llm_backend *be, void *arg) {
    const norm_arg *a = arg;
    if (be) {
        be->ssm_gated_norm(be, a->y, a->n, a->z, a->n, a->n_tok, a->n, a->n_group, a->w, 1e-5f,
                           a->out, a->n);
    } else {
        cpu_ssm_gated_norm_ref(a->y, a->n, a->z, a->n, a->n_tok, a->n, a->n_group, a->w, 1e-5f,
                               a->out, a->n);
    }
}

static void bench_row(const char *name, timed_fn fn, void *arg, int reps, llm_backend *be1,
                      llm_backend *be2) {
    double ref = time_ms(fn, NULL, arg, reps);
    double t1 = time_ms(fn, be1, arg, reps), t2 = time_ms(fn, be2, arg, reps);
    printf("| %s | %.3f | %.3f | %.3f | %.1fx | %.2fx |\n", name, ref, t1, t2, ref / t1, t1 / t2);
}

static void bench(void) {
    llm_backend *be1 = backend(1), *be2 = backend(2);
    if (!be1 || !be2) return;
    const int DI = 1536, N = 16, K = 4, T = 512;
    float *x = rnd_buf((int64_t)T * DI, -1.5f, 1.5f), *out = rnd_buf((int64_t)T * DI, 0, 1);
    float *w = rnd_buf((int64_t)DI * K, -0.6f, 0.6f), *b = rnd_buf(DI, -0.5f, 0.5f);
    float *cst = rnd_buf((int64_t)(K - 1) * DI, -1.0f, 1.0f);
    float *dt = rnd_buf((int64_t)T * DI, -6.0f, 2.0f), *bias = rnd_buf(DI, -0.5f, 0.5f);
    float *A = rnd_buf((int64_t)DI * N, -1.0f, 2.5f), *D = rnd_buf(DI, 0.5f, 1.5f);
    for (int64_t i = 0; i < (int64_t)DI * N; i++) A[i] = -expf(A[i]);
    float *bc = rnd_buf((int64_t)T * 2 * 128, -1.0f, 1.0f);
    float *st = rnd_buf((int64_t)DI * 128, -1.0f, 1.0f);
    printf("kernels %s; ms per call, best of 5\n\n", cpu_kernels_get()->name);
    printf("| op | scalar reference | fast, 1 thread | fast, 2 threads | fast 1t vs reference "
           "| 2 threads vs 1 |\n|---|--:|--:|--:|--:|--:|\n");
    for (int n_tok = T; n_tok >= 1; n_tok = n_tok == T ? 1 : 0) {
        const int reps = n_tok == 1 ? 2000 : 3;
        char name[96];
        ssm_conv_args ca = {n_tok, DI, K, x, DI, w, b, cst, out, DI};
        snprintf(name, sizeof name, "mamba conv, %d tok x %d ch, d_conv %d", n_tok, DI, K);
        bench_row(name, run_conv, &ca, reps, be1, be2);
        ssm_scan_args sa = {
            .n_tok = n_tok, .n_head = DI, .head_dim = 1, .d_state = N, .n_group = 1, .x = x,
            .ldx = DI, .dt = dt, .lddt = DI, .dt_bias = bias, .A = A, .a_per_state = true,
            .B = bc, .C = bc + N, .ldbc = 2 * N, .D = D, .state = st, .y = out, .ldy = DI,
        };
        snprintf(name, sizeof name, "mamba scan, %d tok x %d ch, d_state %d", n_tok, DI, N);
        bench_row(name, run_scan, &sa, reps, be1, be2);
        ssm_scan_args s2 = {
            .n_tok = n_tok, .n_head = 24, .head_dim = 64, .d_state = 128, .n_group = 1, .x = x,
            .ldx = DI, .dt = dt, .lddt = DI, .dt_bias = bias, .A = A, .a_per_state = false,
            .B = bc, .C = bc + 128, .ldbc = 256, .D = D, .state = st, .y = out, .ldy = DI,
        };
        snprintf(name, sizeof name, "mamba2 scan, %d tok x 24 heads x 64, d_state 128", n_tok);
        bench_row(name, run_scan, &s2, reps, be1, be2);
        norm_arg na = {x, dt, D, out, n_tok, DI, 1};
        snprintf(name, sizeof name, "mamba2 gated norm, %d tok x %d", n_tok, DI);
        bench_row(name, run_norm, &na, reps, be1, be2);
    }
    free(x);
    free(out);
    free(w);
    free(b);
    free(cst);
    free(dt);
    free(bias);
    free(A);
    free(D);
    free(bc);
    free(st);
    be1->free(be1);
    be2->free(be2);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--bench") == 0) {
        bench();
        return 0;
    }
    run_ops_per_level("ssm ops", test_ops);
    printf("test_ssm: %d passed, %d failed\n", g_pass, g_fail);
    return g_fail == 0 ? 0 : 1;
}
