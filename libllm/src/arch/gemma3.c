/* gemma3.c -- the forward pass of Gemma 3 (text). Per block:
 *   h = x + post_attn_norm(attn(attn_norm(x)));  x = h + post_ffw_norm(ffn(ffn_norm(h)))
 * with per-head RMSNorm of q and k before NEOX RoPE, q.k scaled by hp.attn_scale, and a GeGLU
 * feed-forward (tanh GELU). Embeddings are scaled by sqrt(n_embd); the output is tied to
 * them. Norm weights are used as stored: llama.cpp's converter already added the 1 that HF's
 * Gemma3RMSNorm adds.
 *
 * Sliding-window layers (layer.swa) keep K/V in the window pool (ctx->swa->swa), see a token's
 * last hp.n_swa positions only and use their own RoPE base; the others use the full cache. */
#include <math.h>

#include "../quant.h"
#include "forward.h"

/* Masks of one kind of layer: mask[t][c] for the n_kv active cells of kv. */
static uint32_t fill_masks(const kv_cache *kv, const ubatch *ub, uint32_t window,
                           uint8_t *mask) {
    const uint32_t n_kv = kv_cache_n_active(kv);
    for (int t = 0; t < ub->n_tok; t++) {
        kv_cache_fill_mask(kv, ub->pos[t], ub->seq_id[t], ub->n_seq_id[t], window,
                           mask + (int64_t)t * n_kv, n_kv);
    }
    return n_kv;
}

int32_t gemma3_forward(llm_context *ctx, const ubatch *ub, float *logits) {
    const llm_model *m = ctx->model;
    const llm_hparams *hp = &m->hp;
    llm_backend *be = ctx->backend;
    llama_scratch *s = ctx->scratch;
    kv_cache *kv = ctx->kv;                          /* full-attention layers */
    kv_cache *kw = ctx->swa ? ctx->swa->swa : NULL;  /* sliding-window layers */
    const int32_t *w_cells = ctx->swa ? ctx->swa->swa_cells : NULL;
    const int n = ub->n_tok;
    const int hd = (int)hp->head_dim_k;
    const int64_t E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim_k;
    const int64_t K = (int64_t)hp->n_head_kv * hp->head_dim_k;
    const int64_t V = (int64_t)hp->n_head_kv * hp->head_dim_v;
    const int64_t O = (int64_t)hp->n_head * hp->head_dim_v;
    const float eps = hp->norm_eps;

    /* positions moved since the last forward: re-rotate with each pool's RoPE */
    if (kv->has_shift) {
        forward_apply_shift(ctx, kv, hp->rope_freq_base, hp->rope_freq_scale, m->rope_freqs);
    }
    if (kw && kw->has_shift) {
        forward_apply_shift(ctx, kw, hp->rope_freq_base_swa, hp->rope_freq_scale_swa, NULL);
    }

    be->get_rows(be, m->tok_embd, ub->token, n, s->x, E);
    be->scale(be, s->x, E, n, (int)E, sqrtf((float)E));

    rope_table(hp->n_rot, hp->rope_freq_base, hp->rope_freq_scale, m->rope_freqs, ub->pos, n,
               s->cos_sin);
    const uint32_t n_kv = fill_masks(kv, ub, 0, s->mask);
    uint32_t n_kw = 0;
    if (kw) {
        rope_table(hp->n_rot, hp->rope_freq_base_swa, hp->rope_freq_scale_swa, NULL, ub->pos, n,
                   s->cos_sin_swa);
        n_kw = fill_masks(kw, ub, hp->n_swa, s->mask_swa);
    }

    for (uint32_t il = 0; il < hp->n_layer; il++) {
        const llm_layer *l = &m->layers[il];
        const bool swa = l->swa && kw;
        kv_cache *c = swa ? kw : kv;
        const int32_t *cells = swa ? w_cells : ub->cells;
        const float *cos_sin = swa ? s->cos_sin_swa : s->cos_sin;
        rope_args rq = {n, (int)hp->n_head, hd, (int)hp->n_rot, hp->rope_neox, cos_sin};
        rope_args rk = rq;
        rk.n_head = (int)hp->n_head_kv;

        /* attention */
        be->rmsnorm(be, s->x, E, n, (int)E, l->attn_norm, eps, s->xn, E);
        attn_qkv(ctx, l, n);
        /* per-head norms: the rows of q / k seen as n * heads rows of head_dim values */
        be->rmsnorm(be, s->q, hd, n * (int)hp->n_head, hd, l->attn_q_norm, eps, s->q, hd);
        be->rmsnorm(be, s->k, hd, n * (int)hp->n_head_kv, hd, l->attn_k_norm, eps, s->k, hd);
        be->rope(be, s->q, Q, &rq);
        be->rope(be, s->k, K, &rk);
        be->store_rows(be, s->k, K, (int)K, n, c->type_k, c->k[l->kv_slot], c->k_cell_bytes,
                       cells);
        be->store_rows(be, s->v, V, (int)V, n, c->type_v, c->v[l->kv_slot], c->v_cell_bytes,
                       cells);
        attn_args aa = {
            .n_tok = n, .n_head = (int)hp->n_head, .n_head_kv = (int)hp->n_head_kv,
            .head_dim_k = hd, .head_dim_v = (int)hp->head_dim_v,
            .q = s->q, .ldq = Q,
            .k = c->k[l->kv_slot], .type_k = c->type_k, .k_cell_bytes = c->k_cell_bytes,
            .k_head_bytes = c->k_head_bytes,
            .v = c->v[l->kv_slot], .type_v = c->type_v, .v_cell_bytes = c->v_cell_bytes,
            .v_head_bytes = c->v_head_bytes,
            .n_kv = (int)(swa ? n_kw : n_kv), .mask = swa ? s->mask_swa : s->mask,
            .scale = hp->attn_scale, .softcap = hp->attn_softcap,
            .out = s->att, .ldo = O,
        };
        be->attention(be, &aa);
        be->matmul(be, l->wo, s->att, O, n, s->tmp, E);
        be->rmsnorm(be, s->tmp, E, n, (int)E, l->attn_post_norm, eps, s->tmp, E);
        be->add(be, s->x, E, s->tmp, E, n, (int)E);

        /* feed-forward */
        be->rmsnorm(be, s->x, E, n, (int)E, l->ffn_norm, eps, s->xn, E);
        ffn_gated(ctx, l->ffn_gate, l->ffn_up, l->ffn_down, true, s->xn, n, s->tmp);
        be->rmsnorm(be, s->tmp, E, n, (int)E, l->ffn_post_norm, eps, s->tmp, E);
        be->add(be, s->x, E, s->tmp, E, n, (int)E);
    }

    int n_out = forward_output(ctx, ub, s->x, s->xn, logits);
    if (n_out > 0 && hp->final_softcap > 0.0f) {
        be->softcap(be, logits, hp->n_vocab, n_out, (int)hp->n_vocab, hp->final_softcap);
    }
    return LLM_STATUS_OK;
}
