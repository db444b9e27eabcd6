/* jamba.c -- the forward pass of Jamba: pre-norm blocks x += mixer(rmsnorm(x));
 * x += ffn(rmsnorm(x)), where the mixer is, layer by layer, a Mamba (v1) mixer over the
 * recurrent state (dt, B and C RMS-normalised with weights) or grouped-query attention without
 * RoPE over the KV cache, and the feed-forward is a SwiGLU or a mixture of SwiGLU experts.
 * Both scratches live in the context: the attention one (llama.c) carries the residual
 * stream, the state-space one (mamba.c) the mixer's inner buffers. */
#include "forward.h"

int32_t jamba_forward(llm_context *ctx, const ubatch *ub, float *logits) {
    const llm_model *m = ctx->model;
    const llm_hparams *hp = &m->hp;
    llm_backend *be = ctx->backend;
    llama_scratch *s = ctx->scratch;
    const int n = ub->n_tok;
    const int64_t E = hp->n_embd;
    const float eps = hp->norm_eps;

    be->get_rows(be, m->tok_embd, ub->token, n, s->x, E);
    attn_pass ap;
    attn_begin(ctx, ub, ctx->kv, false, &ap);
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        const llm_layer *l = &m->layers[il];
        be->rmsnorm(be, s->x, E, n, (int)E, l->attn_norm, eps, s->xn, E);
        if (l->recurrent) {
            mamba_mixer(ctx, ub, l, s->xn, s->tmp);
        } else {
            attn_layer(ctx, ub, ctx->kv, l, &ap);
        }
        be->add(be, s->x, E, s->tmp, E, n, (int)E);
        be->rmsnorm(be, s->x, E, n, (int)E, l->ffn_norm, eps, s->xn, E);
        if (l->ffn_gate_inp) {
            ffn_moe(ctx, l, n);
        } else {
            ffn_swiglu(ctx, l, n);
        }
        be->add(be, s->x, E, s->tmp, E, n, (int)E);
    }
    forward_output(ctx, ub, s->x, s->xn, logits);
    return LLM_STATUS_OK;
}
