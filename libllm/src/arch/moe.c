/* moe.c -- the mixture-of-experts feed-forward: a router scores every expert per row, the
 * n_expert_used best take the row, and their SwiGLU outputs add up weighted by the router's
 * softmax probabilities (renormalised over the chosen ones where the model says so), plus a
 * shared expert every row goes through when the layer has one. Rows are grouped by expert,
 * so each expert runs one matmul over every row routed to it. */
#include <math.h>
#include <string.h>

#include "forward.h"

/* Softmax of the router logits of one row (in place), then its k best experts: sel and w in
 * decreasing probability, ties to the lower expert id. */
static void route(float *p, int n_expert, int k, bool norm, int32_t *sel, float *w) {
    float mx = p[0];
    for (int e = 1; e < n_expert; e++) mx = p[e] > mx ? p[e] : mx;
    float sum = 0.0f;
    for (int e = 0; e < n_expert; e++) {
        p[e] = expf(p[e] - mx);
        sum += p[e];
    }
    for (int e = 0; e < n_expert; e++) p[e] /= sum;
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int e = 0; e < n_expert; e++) {
            bool taken = false;
            for (int i = 0; i < j && !taken; i++) taken = sel[i] == e;
            if (!taken && (best < 0 || p[e] > p[best])) best = e;
        }
        sel[j] = best;
        w[j] = p[best];
    }
    if (norm) {   /* the softmax over the chosen experts' logits */
        float chosen = 0.0f;
        for (int j = 0; j < k; j++) chosen += w[j];
        for (int j = 0; j < k; j++) w[j] /= chosen;
    }
}

void ffn_moe(llm_context *ctx, const llm_layer *l, int n) {
    const llm_hparams *hp = &ctx->model->hp;
    llm_backend *be = ctx->backend;
    llama_scratch *s = ctx->scratch;
    const int X = (int)hp->n_expert, k = (int)hp->n_expert_used;
    const int64_t E = hp->n_embd;

    be->matmul(be, l->ffn_gate_inp, s->xn, E, n, s->moe_logits, X);
    for (int t = 0; t < n; t++) {
        route(s->moe_logits + (int64_t)t * X, X, k, hp->expert_weights_norm,
              s->moe_sel + (int64_t)t * k, s->moe_w + (int64_t)t * k);
    }
    memset(s->tmp, 0, sizeof(float) * (size_t)(n * E));
    for (int e = 0; e < X; e++) {
        int m = 0;
        for (int t = 0; t < n; t++) {
            for (int j = 0; j < k; j++) {
                if (s->moe_sel[(int64_t)t * k + j] != e) continue;
                s->moe_rows[m] = t;
                s->moe_rows_w[m] = s->moe_w[(int64_t)t * k + j];
                memcpy(s->moe_x + (int64_t)m * E, s->xn + (int64_t)t * E, sizeof(float) * (size_t)E);
                m++;
            }
        }
        if (m == 0) continue;
        const gguf_tensor *gate = &l->experts[e], *up = &l->experts[X + e];
        const gguf_tensor *down = &l->experts[2 * X + e];
        ffn_gated(ctx, gate, up, down, false, s->moe_x, m, s->moe_y);
        for (int i = 0; i < m; i++) {
            float *dst = s->tmp + (int64_t)s->moe_rows[i] * E;
            const float *src = s->moe_y + (int64_t)i * E, w = s->moe_rows_w[i];
            for (int64_t c = 0; c < E; c++) dst[c] += w * src[c];
        }
    }
    if (l->ffn_gate_shexp) {   /* the shared expert takes every row */
        ffn_gated(ctx, l->ffn_gate_shexp, l->ffn_up_shexp, l->ffn_down_shexp, false, s->xn, n, s->moe_y);
        be->add(be, s->tmp, E, s->moe_y, E, n, (int)E);
    }
}
