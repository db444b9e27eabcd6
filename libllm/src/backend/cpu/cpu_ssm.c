/* cpu_ssm.c -- the CPU ops of state-space layers (backend.h): causal conv1d with SiLU, the
 * selective scan (mamba and mamba2 in one loop) and mamba2's gated group RMSNorm. Scalar
 * reference code: these ops cost O(tokens x channels x state) against the matmuls'
 * O(tokens x channels x n_embd), so they are not where the time goes. */
#include <math.h>

#include "../../util.h"
#include "../backend.h"

static float silu(float x) { return x / (1.0f + expf(-x)); }

/* log(1 + e^x), as torch computes it (x itself above 20). */
static float softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

static void cpu_ssm_conv(llm_backend *be, const ssm_conv_args *a) {
    (void)be;
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

static void cpu_ssm_scan(llm_backend *be, const ssm_scan_args *a) {
    (void)be;
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

static void cpu_ssm_gated_norm(llm_backend *be, const float *y, int64_t ldy, const float *z,
                               int64_t ldz, int n_tok, int n, int n_group, const float *w,
                               float eps, float *out, int64_t ldo) {
    (void)be;
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

void cpu_ssm_install(llm_backend *be) {
    be->ssm_conv = cpu_ssm_conv;
    be->ssm_scan = cpu_ssm_scan;
    be->ssm_gated_norm = cpu_ssm_gated_norm;
}
