/* mamba.c -- the compute scratch of the state-space models, the Mamba (v1) mixer, and the
 * forward pass of the pure state-space models (Mamba, Falcon-Mamba, Mamba2: the mixer of
 * arch/mamba2.c). Per block, x += mixer(rmsnorm(x)) with the Mamba mixer
 *   (x, z) = in_proj(h);  x = silu(conv1d(conv state, x));  (dt, B, C) = x_proj(x)
 *   dt = dt_proj(dt) (+ bias, softplus in the scan);  y = scan(state, x, dt, A, B, C) + D x
 *   out_proj(y * silu(z))
 * Falcon-Mamba RMS-normalises dt, B and C (without weights) before dt_proj.
 *
 * Jamba's Mamba layers RMS-normalise them with weights.
 *
 * The conv and scan run per run of tokens sharing one set of sequences (the equal split puts
 * each sequence's tokens together, in order) over the state in the recurrent memory's cell of
 * the run's first sequence; the other sequences of the set then get a copy of the new state.
 * A run also ends after a token whose state is snapshotted, and the snapshot is copied there. */
#include "../quant.h"
#include "forward.h"

typedef struct ssm_dims {
    size_t E, DI, N, R, H, G, P, CD, XD;
} ssm_dims;

static ssm_dims dims(const llm_model *m) {
    const llm_hparams *hp = &m->hp;
    ssm_dims d = {hp->n_embd, hp->ssm_d_inner, hp->ssm_d_state, hp->ssm_dt_rank,
                  hp->ssm_dt_rank, hp->ssm_n_group, 0, 0, 0};
    if (model_ssm_v2(m)) {
        d.CD = d.DI + 2 * d.G * d.N;
        d.P = d.DI + d.CD + d.H;
    } else {
        d.CD = d.DI;
        d.P = 2 * d.DI;
        d.XD = d.R + 2 * d.N;
    }
    return d;
}

/* Places every buffer in one block (64-byte aligned each); with base NULL only measures. */
static size_t layout(const llm_model *m, size_t n, ssm_scratch *s, uint8_t *base) {
    const ssm_dims d = dims(m);
    size_t off = 0;
#define PLACE(field, elems)                                              \
    do {                                                                 \
        if (base) s->field = (void *)(base + off);                       \
        off += ((size_t)(elems) * sizeof(float) + 63) / 64 * 64;         \
    } while (0)
    PLACE(x, n * d.E);
    PLACE(xn, n * d.E);
    PLACE(proj, n * d.P);
    PLACE(xc, n * d.CD);
    PLACE(dbc, n * d.XD);
    PLACE(dt, model_ssm_v2(m) ? 0 : n * d.DI);
    PLACE(y, n * d.DI);
    PLACE(tmp, n * d.E);
#undef PLACE
    return off;
}

uint64_t ssm_scratch_bytes(const llm_model *m, uint32_t n_ubatch) {
    return layout(m, n_ubatch, NULL, NULL);
}

void ssm_scratch_free(ssm_scratch *s) {
    if (!s) return;
    llm_aligned_free(s->block);
    llm_free(s);
}

int32_t ssm_scratch_create(const llm_model *m, uint32_t n_ubatch, ssm_scratch **out) {
    *out = NULL;
    ssm_scratch *s = llm_calloc(1, sizeof *s);
    if (!s) return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory for compute buffers");
    s->n_ubatch = n_ubatch;
    s->block = llm_aligned_alloc(ssm_scratch_bytes(m, n_ubatch));
    if (!s->block) {
        llm_free(s);
        return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory for compute buffers "
                         "(n_ubatch %u)", n_ubatch);
    }
    layout(m, n_ubatch, s, s->block);
    *out = s;
    return LLM_STATUS_OK;
}

static bool same_seqs(const ubatch *ub, int a, int b) {
    if (ub->n_seq_id[a] != ub->n_seq_id[b]) return false;
    for (int i = 0; i < ub->n_seq_id[a]; i++) {
        bool found = false;
        for (int j = 0; j < ub->n_seq_id[b] && !found; j++) {
            found = ub->seq_id[a][i] == ub->seq_id[b][j];
        }
        if (!found) return false;
    }
    return true;
}

int ssm_next_run(const ubatch *ub, int t0) {
    int t1 = t0 + 1;
    while (t1 < ub->n_tok && !(ub->snap && ub->snap[t1 - 1] >= 0) && same_seqs(ub, t0, t1)) t1++;
    return t1;
}

void ssm_share_state(llm_context *ctx, const ubatch *ub, int t0, uint32_t slot) {
    const recurrent *r = ctx->rec;
    const uint32_t src = (uint32_t)ub->seq_id[t0][0];
    for (int j = 1; j < ub->n_seq_id[t0]; j++) {
        uint32_t dst = (uint32_t)ub->seq_id[t0][j];
        memcpy(recurrent_conv(r, slot, dst), recurrent_conv(r, slot, src),
               sizeof(float) * r->conv_elems);
        memcpy(recurrent_ssm(r, slot, dst), recurrent_ssm(r, slot, src),
               sizeof(float) * r->ssm_elems);
    }
}

void ssm_snapshot(llm_context *ctx, const ubatch *ub, int t, uint32_t slot, bool conv) {
    if (!ub->snap || ub->snap[t] < 0) return;
    const recurrent *r = ctx->rec;
    const uint32_t src = (uint32_t)ub->seq_id[t][0], dst = (uint32_t)ub->snap[t];
    if (conv) {
        memcpy(recurrent_conv(r, slot, dst), recurrent_conv(r, slot, src),
               sizeof(float) * r->conv_elems);
    } else {
        memcpy(recurrent_ssm(r, slot, dst), recurrent_ssm(r, slot, src),
               sizeof(float) * r->ssm_elems);
    }
}

void mamba_mixer(llm_context *ctx, const ubatch *ub, const llm_layer *l, const float *in,
                 float *out) {
    const llm_model *m = ctx->model;
    const llm_hparams *hp = &m->hp;
    llm_backend *be = ctx->backend;
    ssm_scratch *s = ctx->ssm;
    const recurrent *rec = ctx->rec;
    const int n = ub->n_tok;
    const ssm_dims d = dims(m);
    const int64_t E = (int64_t)d.E, DI = (int64_t)d.DI, N = (int64_t)d.N, R = (int64_t)d.R;
    const int64_t P = (int64_t)d.P, XD = (int64_t)d.XD;
    const float eps = hp->norm_eps;
    const uint32_t slot = l->kv_slot;

    be->matmul(be, l->ssm_in, in, E, n, s->proj, P);   /* [x | z] */
    for (int t0 = 0, t1; t0 < n; t0 = t1) {
        t1 = ssm_next_run(ub, t0);
        ssm_conv_args ca = {
            .n_tok = t1 - t0, .n_ch = (int)DI, .d_conv = (int)hp->ssm_d_conv,
            .x = s->proj + t0 * P, .ldx = P, .w = l->ssm_conv1d, .b = l->ssm_conv1d_b,
            .state = recurrent_conv(rec, slot, (uint32_t)ub->seq_id[t0][0]),
            .out = s->xc + t0 * DI, .ldo = DI,
        };
        be->ssm_conv(be, &ca);
        ssm_snapshot(ctx, ub, t1 - 1, slot, true);
    }
    be->matmul(be, l->ssm_x, s->xc, DI, n, s->dbc, XD);    /* [dt | B | C] */
    if (hp->ssm_dt_b_c_rms || l->ssm_dt_norm) {
        be->rmsnorm(be, s->dbc, XD, n, (int)R, l->ssm_dt_norm, eps, s->dbc, XD);
        be->rmsnorm(be, s->dbc + R, XD, n, (int)N, l->ssm_b_norm, eps, s->dbc + R, XD);
        be->rmsnorm(be, s->dbc + R + N, XD, n, (int)N, l->ssm_c_norm, eps, s->dbc + R + N, XD);
    }
    be->matmul(be, l->ssm_dt, s->dbc, XD, n, s->dt, DI);
    for (int t0 = 0, t1; t0 < n; t0 = t1) {
        t1 = ssm_next_run(ub, t0);
        ssm_scan_args sa = {
            .n_tok = t1 - t0, .n_head = (int)DI, .head_dim = 1, .d_state = (int)N,
            .n_group = 1,
            .x = s->xc + t0 * DI, .ldx = DI, .dt = s->dt + t0 * DI, .lddt = DI,
            .dt_bias = l->ssm_dt_b, .A = l->ssm_a, .a_per_state = true,
            .B = s->dbc + t0 * XD + R, .C = s->dbc + t0 * XD + R + N, .ldbc = XD,
            .D = l->ssm_d, .state = recurrent_ssm(rec, slot, (uint32_t)ub->seq_id[t0][0]),
            .y = s->proj + t0 * P, .ldy = P,   /* over x, which the conv has consumed */
        };
        be->ssm_scan(be, &sa);
        ssm_snapshot(ctx, ub, t1 - 1, slot, false);
        if (ub->n_seq_id[t0] > 1) ssm_share_state(ctx, ub, t0, slot);
    }
    be->swiglu(be, s->proj + DI, s->proj, P, n, (int)DI);   /* z = silu(z) * y */
    be->matmul(be, l->ssm_out, s->proj + DI, P, n, out, E);
}

int32_t mamba_forward(llm_context *ctx, const ubatch *ub, float *logits) {
    const llm_model *m = ctx->model;
    const llm_hparams *hp = &m->hp;
    llm_backend *be = ctx->backend;
    ssm_scratch *s = ctx->ssm;
    const int n = ub->n_tok;
    const int64_t E = hp->n_embd;

    be->get_rows(be, m->tok_embd, ub->token, n, s->x, E);
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        const llm_layer *l = &m->layers[il];
        be->rmsnorm(be, s->x, E, n, (int)E, l->attn_norm, hp->norm_eps, s->xn, E);
        if (model_ssm_v2(m)) {
            mamba2_mixer(ctx, ub, l, s->xn, s->tmp);
        } else {
            mamba_mixer(ctx, ub, l, s->xn, s->tmp);
        }
        be->add(be, s->x, E, s->tmp, E, n, (int)E);
    }
    forward_output(ctx, ub, s->x, s->xn, logits);
    return LLM_STATUS_OK;
}
