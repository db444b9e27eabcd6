/* mamba2.c -- the Mamba2 (SSD) mixer, used by mamba2 (arch/mamba.c runs its blocks) and the
 * state-space layers of Granite 4 hybrids (arch/hybrid.c):
 *   (z, xBC, dt) = in_proj(h);  xBC = silu(conv1d(conv state, xBC));  (x, B, C) = xBC
 *   y = scan(state, x, dt, A, B, C) + D x  per head (A, D, dt bias: one value per head;
 *   heads share B and C by groups);  out_proj(w * groupnorm(y * silu(z)))
 * Runs of tokens, shared sequences and snapshots as in mamba.c; the scratch is laid out there. */
#include "forward.h"

void mamba2_mixer(llm_context *ctx, const ubatch *ub, const llm_layer *l, const float *in,
                  float *out) {
    const llm_hparams *hp = &ctx->model->hp;
    llm_backend *be = ctx->backend;
    ssm_scratch *s = ctx->ssm;
    const recurrent *rec = ctx->rec;
    const int n = ub->n_tok;
    const int64_t E = hp->n_embd, DI = hp->ssm_d_inner, N = hp->ssm_d_state;
    const int64_t H = hp->ssm_dt_rank, G = hp->ssm_n_group;
    const int64_t CD = DI + 2 * G * N, P = DI + CD + H;
    const uint32_t slot = l->kv_slot;

    be->matmul(be, l->ssm_in, in, E, n, s->proj, P);   /* [z | xBC | dt] */
    for (int t0 = 0, t1; t0 < n; t0 = t1) {
        t1 = ssm_next_run(ub, t0);
        const uint32_t cell = (uint32_t)ub->seq_id[t0][0];
        ssm_conv_args ca = {
            .n_tok = t1 - t0, .n_ch = (int)CD, .d_conv = (int)hp->ssm_d_conv,
            .x = s->proj + t0 * P + DI, .ldx = P, .w = l->ssm_conv1d, .b = l->ssm_conv1d_b,
            .state = recurrent_conv(rec, slot, cell), .out = s->xc + t0 * CD, .ldo = CD,
        };
        be->ssm_conv(be, &ca);
        ssm_scan_args sa = {
            .n_tok = t1 - t0, .n_head = (int)H, .head_dim = (int)(DI / H),
            .d_state = (int)N, .n_group = (int)G,
            .x = s->xc + t0 * CD, .ldx = CD, .dt = s->proj + t0 * P + DI + CD, .lddt = P,
            .dt_bias = l->ssm_dt_b, .A = l->ssm_a, .a_per_state = false,
            .B = s->xc + t0 * CD + DI, .C = s->xc + t0 * CD + DI + G * N, .ldbc = CD,
            .D = l->ssm_d, .state = recurrent_ssm(rec, slot, cell),
            .y = s->y + t0 * DI, .ldy = DI,
        };
        be->ssm_scan(be, &sa);
        ssm_snapshot(ctx, ub, t1 - 1, slot, true);
        ssm_snapshot(ctx, ub, t1 - 1, slot, false);
        if (ub->n_seq_id[t0] > 1) ssm_share_state(ctx, ub, t0, slot);
    }
    be->ssm_gated_norm(be, s->y, DI, s->proj, P, n, (int)DI, (int)G, l->ssm_norm, hp->norm_eps,
                       s->y, DI);
    be->matmul(be, l->ssm_out, s->y, DI, n, out, E);
}
