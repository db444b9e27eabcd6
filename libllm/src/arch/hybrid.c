/* hybrid.c -- the forward pass of the hybrid models: jamba and granitehybrid. Pre-norm blocks
 *   x += residual_scale * mixer(rmsnorm(x));  x += residual_scale * ffn(rmsnorm(x))
 * where the mixer is, layer by layer, a state-space mixer over the recurrent state (Mamba in
 * jamba, its dt/B/C normalised with weights; Mamba2 in granitehybrid) or grouped-query
 * attention over the KV cache (RoPE only where the model has it: n_rot > 0), and the
 * feed-forward a SwiGLU or a mixture of experts (plus a shared expert in granitehybrid).
 * Granite's multipliers (embedding_scale on the embeddings, residual_scale, attention.scale
 * on q.k, logits divided by logit_scale) are 1 / the default in jamba. Both scratches live in
 * the context: the attention one (llama.c) carries the residual stream, the state-space one
 * (mamba.c) the mixers' inner buffers. */
#include "forward.h"

int32_t hybrid_forward(llm_context *ctx, const ubatch *ub, float *logits) {
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
        if (!l->recurrent) {
            attn_layer(ctx, ub, ctx->kv, l, &ap);
        } else if (model_ssm_v2(m)) {
            mamba2_mixer(ctx, ub, l, s->xn, s->tmp);
        } else {
            mamba_mixer(ctx, ub, l, s->xn, s->tmp);
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
