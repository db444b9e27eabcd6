/* cpu_ssm.c -- the CPU ops of state-space layers (backend.h): causal conv1d with SiLU, the
 * selective scan (mamba and mamba2 in one loop) and mamba2's gated group RMSNorm.
 *
 * Each op has a scalar reference (the *_ref functions, cpu_ssm.h: the test oracle) and the
 * fast path the backend installs. The fast paths split channels (conv, scan) or (token,
 * group) items (norm) over the backend's thread pool: channels are independent through all
 * tokens, so a thread owns its channels' states for the whole call. Within a thread, channels
 * go in blocks whose state stays in L1 while the block walks the tokens.
 *
 * The exponentials run through the dispatched kernels (kernels.h: exp_sum_f32, rmsnorm_f32),
 * a block at a time. In mamba's scan the hot part is exp(d * A[n]) for every channel and
 * state element of every token: the block gathers these products into one row and takes one
 * exp_sum_f32 call. Everything else (state update, the dot with C, softplus's logarithm, the
 * conv's multiply-adds) is plain C written so that the compiler vectorises it at the baseline
 * ISA (the library is built without -march flags; cpu_dispatch.c picks the kernels).
 *
 * Accuracy against the references: the SIMD exponential is within about 2 ulp of expf, the
 * softplus here within a few ulp of log1pf(expf(x)), and sums run in another order (8 partial
 * sums); test_ssm.c bounds the difference. */
#include "cpu_ssm.h"

#include <math.h>
#include <string.h>

#include "../../util.h"
#include "../backend.h"
#include "kernels.h"
#include "threadpool.h"

#define SSM_BLOCK 1024         /* floats of each per-thread stack buffer (a block's values) */
#define SSM_UNIT 16            /* threads split channels in multiples of this (cache lines) */
#define SSM_PAR_MIN 8192       /* ops touching fewer values than this stay on one thread */
#define SSM_MAX_CONV 64        /* longer convolutions take the reference path */

/* ---- the scalar references ---- */

static float silu(float x) { return x / (1.0f + expf(-x)); }

/* log(1 + e^x), as torch computes it (x itself above 20). */
static float softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

void cpu_ssm_conv_ref(const ssm_conv_args *a) {
    const int K = a->d_conv, C = a->n_ch, n = a->n_tok;
    for (int t = 0; t < n; t++) {
        float *out = a->out + (int64_t)t * a->ldo;
        for (int c = 0; c < C; c++) out[c] = a->b ? a->b[c] : 0.0f;
        for (int k = 0; k < K; k++) {
            int i = t + k;   /* row of u: state rows [0, K - 1), then x */
            const float *u = i < K - 1 ? a->state + (int64_t)i * C : a->x + (int64_t)(i - (K - 1)) * a->ldx;
            for (int c = 0; c < C; c++) out[c] += a->w[(int64_t)c * K + k] * u[c];
        }
        for (int c = 0; c < C; c++) out[c] = silu(out[c]);
    }
    /* the new state: rows n .. n + K - 2 of u, written in ascending order (sources are at or
     * after their destinations) */
    for (int i = 0; i < K - 1; i++) {
        int src = n + i;
        const float *u = src < K - 1 ? a->state + (int64_t)src * C : a->x + (int64_t)(src - (K - 1)) * a->ldx;
        float *dst = a->state + (int64_t)i * C;
        for (int c = 0; c < C; c++) dst[c] = u[c];
    }
}

void cpu_ssm_scan_ref(const ssm_scan_args *a) {
    const int H = a->n_head, P = a->head_dim, N = a->d_state;
    const int heads_per_group = H / a->n_group;
    for (int t = 0; t < a->n_tok; t++) {
        const float *x = a->x + (int64_t)t * a->ldx;
        const float *dt = a->dt + (int64_t)t * a->lddt;
        const float *B = a->B + (int64_t)t * a->ldbc, *Cm = a->C + (int64_t)t * a->ldbc;
        float *y = a->y + (int64_t)t * a->ldy;
        for (int h = 0; h < H; h++) {
            const float d = softplus(dt[h] + a->dt_bias[h]);
            const int g = h / heads_per_group;
            const float *Bg = B + (int64_t)g * N, *Cg = Cm + (int64_t)g * N;
            const float *A = a->a_per_state ? a->A + (int64_t)h * N : NULL;
            const float dA_head = a->a_per_state ? 0.0f : expf(d * a->A[h]);
            for (int p = 0; p < P; p++) {
                const int64_t ch = (int64_t)h * P + p;
                const float xv = x[ch], dx = d * xv;
                float *S = a->state + ch * N;
                float acc = 0.0f;
                for (int i = 0; i < N; i++) {
                    const float dA = A ? expf(d * A[i]) : dA_head;
                    S[i] = dA * S[i] + dx * Bg[i];
                    acc += S[i] * Cg[i];
                }
                y[ch] = acc + a->D[h] * xv;
            }
        }
    }
}

void cpu_ssm_gated_norm_ref(const float *y, int64_t ldy, const float *z, int64_t ldz, int n_tok,
                            int n, int n_group, const float *w, float eps, float *out,
                            int64_t ldo) {
    const int gs = n / n_group;
    for (int t = 0; t < n_tok; t++) {
        const float *yt = y + (int64_t)t * ldy, *zt = z + (int64_t)t * ldz;
        float *o = out + (int64_t)t * ldo;
        for (int g = 0; g < n_group; g++) {
            const int c0 = g * gs;
            double ss = 0.0;
            for (int c = c0; c < c0 + gs; c++) {
                float v = yt[c] * silu(zt[c]);
                o[c] = v;
                ss += (double)v * v;
            }
            const float r = 1.0f / sqrtf((float)(ss / gs) + eps);
            for (int c = c0; c < c0 + gs; c++) o[c] = o[c] * r * (w ? w[c] : 1.0f);
        }
    }
}

/* ---- shared pieces of the fast paths ---- */

/* The slice [*start, *end) of n channels that thread ith of nth takes, in whole units. */
static void split_channels(int64_t n, int ith, int nth, int64_t *start, int64_t *end) {
    pool_split((n + SSM_UNIT - 1) / SSM_UNIT, ith, nth, start, end);
    *start = LLM_MIN(*start * SSM_UNIT, n);
    *end = LLM_MIN(*end * SSM_UNIT, n);
}

/* Runs fn on the backend's threads when the op touches enough values, else on this one. */
static void run(llm_backend *be, pool_task_fn fn, void *task, int64_t work) {
    if (work >= SSM_PAR_MIN) threadpool_run(cpu_backend_pool(be), fn, task);
    else fn(task, 0, 1);
}

/* x[j] = silu(x[j]) for j < n <= SSM_BLOCK; tmp holds n floats. */
static void silu_row(const cpu_kernels *k, int n, float *x, float *tmp) {
    for (int j = 0; j < n; j++) tmp[j] = -x[j];
    k->exp_sum_f32(n, tmp, 0.0f, tmp);
    for (int j = 0; j < n; j++) x[j] = x[j] / (1.0f + tmp[j]);
}

/* log(u) for a positive, normal, finite u: u = m 2^e with m in [sqrt(1/2), sqrt(2)), and
 * log(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.172, by its series to s^9 (the next
 * term is below 2e-9 of the sum); e ln 2 in two parts (the first exact). Integer selects
 * only, so that loops over it vectorise. */
static inline float log_pos(float u) {
    uint32_t bits;
    memcpy(&bits, &u, sizeof bits);
    const uint32_t mant = (bits & 0x007fffffu) | 0x3f800000u;   /* m in [1, 2) */
    const uint32_t big = mant > 0x3fb504f3u;                   /* m > sqrt(2): halve it */
    const uint32_t mbits = mant - (big << 23);
    const float e = (float)((int32_t)(bits >> 23) - 127 + (int32_t)big);
    float m;
    memcpy(&m, &mbits, sizeof m);
    const float s = (m - 1.0f) / (m + 1.0f), s2 = s * s;
    const float series =
        1.0f + s2 * (1.0f / 3.0f + s2 * (1.0f / 5.0f + s2 * (1.0f / 7.0f + s2 * (1.0f / 9.0f))));
    return e * 0.693359375f + (2.0f * s * series + e * -2.12194440e-4f);
}

/* x[j] = softplus(x[j]) for j < n <= SSM_BLOCK; tmp holds n floats. With E = e^x and
 * u = 1 + E rounded, log1p(E) = log(u) + (E - (u - 1)) / u keeps full relative accuracy
 * when E is tiny (exactly E where u rounds to 1). Two loops, so that each vectorises. */
static void softplus_row(const cpu_kernels *k, int n, float *x, float *tmp) {
    k->exp_sum_f32(n, x, 0.0f, tmp);     /* clamped at e^88: lanes above 20 are not used */
    for (int j = 0; j < n; j++) {
        const float E = tmp[j], u = 1.0f + E;
        tmp[j] = log_pos(u) + (E - (u - 1.0f)) / u;
    }
    for (int j = 0; j < n; j++) {
        const float v = x[j], l = tmp[j];
        x[j] = v > 20.0f ? v : l;
    }
}

/* ---- conv: threads split the channels; a block of channels walks every token with its
 * weights transposed to [d_conv][block], so the multiply-adds run along channels ---- */

typedef struct conv_task {
    const ssm_conv_args *a;
    const cpu_kernels *k;
} conv_task;

static void conv_worker(void *p, int ith, int nth) {
    const conv_task *task = p;
    const ssm_conv_args *a = task->a;
    const int K = a->d_conv, C = a->n_ch, n = a->n_tok;
    const int cb = SSM_BLOCK / K / SSM_UNIT * SSM_UNIT;   /* K <= SSM_MAX_CONV: cb >= 16 */
    float wt[SSM_BLOCK], tmp[SSM_BLOCK];
    int64_t c0, c1;
    split_channels(C, ith, nth, &c0, &c1);
    for (int64_t b0 = c0; b0 < c1; b0 += cb) {
        const int nb = (int)LLM_MIN(cb, c1 - b0);
        for (int j = 0; j < nb; j++) {
            for (int k = 0; k < K; k++) wt[k * nb + j] = a->w[(b0 + j) * K + k];
        }
        for (int t = 0; t < n; t++) {
            float *out = a->out + (int64_t)t * a->ldo + b0;
            for (int j = 0; j < nb; j++) out[j] = a->b ? a->b[b0 + j] : 0.0f;
            for (int k = 0; k < K; k++) {
                const int i = t + k;   /* row of u: state rows [0, K - 1), then x */
                const float *u = (i < K - 1 ? a->state + (int64_t)i * C
                                            : a->x + (int64_t)(i - (K - 1)) * a->ldx) + b0;
                const float *wk = wt + k * nb;
                for (int j = 0; j < nb; j++) out[j] += wk[j] * u[j];
            }
            silu_row(task->k, nb, out, tmp);
        }
        /* the block's new state, as the reference writes it */
        for (int i = 0; i < K - 1; i++) {
            const int src = n + i;
            const float *u = (src < K - 1 ? a->state + (int64_t)src * C
                                          : a->x + (int64_t)(src - (K - 1)) * a->ldx) + b0;
            float *dst = a->state + (int64_t)i * C + b0;
            for (int j = 0; j < nb; j++) dst[j] = u[j];
        }
    }
}

static void cpu_ssm_conv(llm_backend *be, const ssm_conv_args *a) {
    if (a->d_conv > SSM_MAX_CONV) {
        cpu_ssm_conv_ref(a);
        return;
    }
    conv_task task = {a, cpu_kernels_get()};
    run(be, conv_worker, &task, (int64_t)a->n_tok * a->n_ch * a->d_conv);
}

/* ---- scan: threads split the channels (h * head_dim + p); a block of channels walks every
 * token: per token, d = softplus(dt + bias) for the block's channels in one row, then
 * exp(d * A) for all the block's state elements (mamba) or channels (mamba2) in one
 * exp_sum_f32 call, then the state update and output per channel ---- */

/* S[i] = dA[i] S[i] + dx B[i]; returns sum_i S[i] C[i] (8 partial sums, then the rest). */
static inline float scan_row(int N, float *S, const float *dA, float dx, const float *B,
                             const float *C) {
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= N; i += 8) {
        for (int l = 0; l < 8; l++) {
            const float s = dA[i + l] * S[i + l] + dx * B[i + l];
            S[i + l] = s;
            acc[l] += s * C[i + l];
        }
    }
    float rest = 0.0f;
    for (; i < N; i++) {
        S[i] = dA[i] * S[i] + dx * B[i];
        rest += S[i] * C[i];
    }
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + rest;
}

/* The same with one dA for every state element (mamba2). */
static inline float scan_row_head(int N, float *S, float dA, float dx, const float *B,
                                  const float *C) {
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= N; i += 8) {
        for (int l = 0; l < 8; l++) {
            const float s = dA * S[i + l] + dx * B[i + l];
            S[i + l] = s;
            acc[l] += s * C[i + l];
        }
    }
    float rest = 0.0f;
    for (; i < N; i++) {
        S[i] = dA * S[i] + dx * B[i];
        rest += S[i] * C[i];
    }
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + rest;
}

typedef struct scan_task {
    const ssm_scan_args *a;
    const cpu_kernels *k;
} scan_task;

static void scan_worker(void *p, int ith, int nth) {
    const scan_task *task = p;
    const ssm_scan_args *a = task->a;
    const cpu_kernels *kn = task->k;
    const int P = a->head_dim, N = a->d_state, hpg = a->n_head / a->n_group;
    /* mamba: the block's d * A products fill dA; mamba2: 64 channels at a time */
    const int cb = a->a_per_state ? SSM_BLOCK / N : 64;   /* mamba: N <= SSM_BLOCK */
    float d[SSM_BLOCK], dA[SSM_BLOCK], tmp[SSM_BLOCK];
    int32_t head[SSM_BLOCK], goff[SSM_BLOCK];   /* a channel's head; its group's B, C offset */
    int64_t c0, c1;
    split_channels((int64_t)a->n_head * P, ith, nth, &c0, &c1);
    for (int64_t b0 = c0; b0 < c1; b0 += cb) {
        const int nb = (int)LLM_MIN(cb, c1 - b0);
        for (int j = 0, h = (int)(b0 / P), q = (int)(b0 % P); j < nb; j++) {
            head[j] = h;
            goff[j] = h / hpg * N;
            if (++q == P) q = 0, h++;
        }
        for (int t = 0; t < a->n_tok; t++) {
            const float *x = a->x + (int64_t)t * a->ldx + b0;
            const float *dt = a->dt + (int64_t)t * a->lddt;
            const float *B = a->B + (int64_t)t * a->ldbc, *Cm = a->C + (int64_t)t * a->ldbc;
            float *y = a->y + (int64_t)t * a->ldy + b0;
            float *S = a->state + b0 * N;
            if (P == 1) {
                for (int j = 0; j < nb; j++) d[j] = dt[b0 + j] + a->dt_bias[b0 + j];
            } else {
                for (int j = 0; j < nb; j++) d[j] = dt[head[j]] + a->dt_bias[head[j]];
            }
            softplus_row(kn, nb, d, tmp);
            if (a->a_per_state) {
                for (int j = 0; j < nb; j++) {
                    const float *A = a->A + (int64_t)head[j] * N;
                    const float dj = d[j];
                    for (int i = 0; i < N; i++) dA[j * N + i] = dj * A[i];
                }
                kn->exp_sum_f32((int64_t)nb * N, dA, 0.0f, dA);
                for (int j = 0; j < nb; j++) {
                    const float dx = d[j] * x[j];
                    const float acc = scan_row(N, S + j * N, dA + j * N, dx, B + goff[j],
                                               Cm + goff[j]);
                    y[j] = acc + a->D[head[j]] * x[j];
                }
            } else {
                for (int j = 0; j < nb; j++) dA[j] = d[j] * a->A[head[j]];
                kn->exp_sum_f32(nb, dA, 0.0f, dA);
                for (int j = 0; j < nb; j++) {
                    const float dx = d[j] * x[j];
                    const float acc = scan_row_head(N, S + (int64_t)j * N, dA[j], dx,
                                                    B + goff[j], Cm + goff[j]);
                    y[j] = acc + a->D[head[j]] * x[j];
                }
            }
        }
    }
}

static void cpu_ssm_scan(llm_backend *be, const ssm_scan_args *a) {
    if (a->a_per_state && a->d_state > SSM_BLOCK) {   /* one channel's dA overflows dA */
        cpu_ssm_scan_ref(a);
        return;
    }
    scan_task task = {a, cpu_kernels_get()};
    run(be, scan_worker, &task, (int64_t)a->n_tok * a->n_head * a->head_dim * a->d_state);
}

/* ---- gated norm: threads split (token, group) items; per item o = y * silu(z) a block at a
 * time, then the RMS normalisation by the rmsnorm kernel in place ---- */

typedef struct norm_task {
    const cpu_kernels *k;
    const float *y, *z, *w;
    int64_t ldy, ldz, ldo;
    int n_tok, n, n_group;
    float eps;
    float *out;
} norm_task;

static void norm_worker(void *p, int ith, int nth) {
    const norm_task *t = p;
    const int gs = t->n / t->n_group;
    float tmp[SSM_BLOCK];
    int64_t i0, i1;
    pool_split((int64_t)t->n_tok * t->n_group, ith, nth, &i0, &i1);
    for (int64_t item = i0; item < i1; item++) {
        const int64_t tok = item / t->n_group, c0 = item % t->n_group * gs;
        const float *y = t->y + tok * t->ldy + c0, *z = t->z + tok * t->ldz + c0;
        float *o = t->out + tok * t->ldo + c0;
        for (int j0 = 0; j0 < gs; j0 += SSM_BLOCK) {
            const int nb = LLM_MIN(SSM_BLOCK, gs - j0);
            for (int j = 0; j < nb; j++) tmp[j] = -z[j0 + j];
            t->k->exp_sum_f32(nb, tmp, 0.0f, tmp);
            for (int j = 0; j < nb; j++) o[j0 + j] = y[j0 + j] * (z[j0 + j] / (1.0f + tmp[j]));
        }
        t->k->rmsnorm_f32(gs, o, t->w ? t->w + c0 : NULL, t->eps, o);
    }
}

static void cpu_ssm_gated_norm(llm_backend *be, const float *y, int64_t ldy, const float *z,
                               int64_t ldz, int n_tok, int n, int n_group, const float *w,
                               float eps, float *out, int64_t ldo) {
    norm_task task = {cpu_kernels_get(), y, z, w, ldy, ldz, ldo, n_tok, n, n_group, eps, out};
    run(be, norm_worker, &task, (int64_t)n_tok * n);
}

void cpu_ssm_install(llm_backend *be) {
    be->ssm_conv = cpu_ssm_conv;
    be->ssm_scan = cpu_ssm_scan;
    be->ssm_gated_norm = cpu_ssm_gated_norm;
}
