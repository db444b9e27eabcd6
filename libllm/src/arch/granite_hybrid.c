/* granite_hybrid.c -- the forward pass of Granite 4 hybrids (granitehybrid): Mamba2 layers and
 * grouped-query attention layers (RoPE only where the file asks for it), each block
 *   x += residual_scale * mixer(rmsnorm(x));  x += residual_scale * ffn(rmsnorm(x))
 * with the feed-forward a mixture of experts plus a shared expert (or one dense SwiGLU), on
 * embeddings scaled by embedding_scale, q.k scaled by attention.scale and logits divided by
 * logit_scale. */
#include "forward.h"

int32_t granite_hybrid_forward(llm_context *ctx, const ubatch *ub, float *logits) {
    const llm_model *m = ctx->model;
    const llm_hparams *hp = &m->hp;
    llm_backend *be = ctx->backend;
    llama_scratch *s = ctx->scratch;
    const int n = ub->n_tok;
    const int64_t E = hp->n_embd;
    const float eps = hp->norm_eps;

    be->get_rows(be, m->tok_embd, ub->token, n, s->x, E);
    if (hp->embd_scale != 1.0f) be->scale(be, s->x, E, n, (int)E, hp->embd_scale);
    attn_pass ap;
    attn_begin(ctx, ub, ctx->kv, hp->n_rot > 0, &ap);
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        const llm_layer *l = &m->layers[il];
        be->rmsnorm(be, s->x, E, n, (int)E, l->attn_norm, eps, s->xn, E);
        if (l->recurrent) {
            mamba2_mixer(ctx, ub, l, s->xn, s->tmp);
        } else {
            attn_layer(ctx, ub, ctx->kv, l, &ap);
        }
        if (hp->residual_scale != 1.0f) be->scale(be, s->tmp, E, n, (int)E, hp->residual_scale);
        be->add(be, s->x, E, s->tmp, E, n, (int)E);
        be->rmsnorm(be, s->x, E, n, (int)E, l->ffn_norm, eps, s->xn, E);
        if (l->ffn_gate_inp) {
            ffn_moe(ctx, l, n);
        } else {
            ffn_swiglu(ctx, l, n);
        }
        if (hp->residual_scale != 1.0f) be->scale(be, s->tmp, E, n, (int)E, hp->residual_scale);
        be->add(be, s->x, E, s->tmp, E, n, (int)E);
    }
    int n_out = forward_output(ctx, ub, s->x, s->xn, logits);
    if (n_out > 0 && hp->logit_scale != 1.0f) {
        be->scale(be, logits, hp->n_vocab, n_out, (int)hp->n_vocab, 1.0f / hp->logit_scale);
    }
    return LLM_STATUS_OK;
}
