/* llama.c -- the forward scratch shared by every architecture, RoPE tables and key
 * re-rotation, the attention / SwiGLU / output blocks other architectures reuse, and the
 * forward pass of the llama family: llama (interleaved RoPE) and qwen2 (NEOX RoPE, q/k/v
 * biases). Pre-norm blocks: x += attn(rmsnorm(x)); x += ffn(rmsnorm(x)), with grouped-query
 * attention over the KV cache and a SwiGLU feed-forward. */
#include <math.h>

#include "../quant.h"
#include "forward.h"

/* Places every buffer in one block (64-byte aligned each) and returns the block's size; with
 * base NULL it only measures. The single source of the scratch size, for the breakdown too. */
static size_t layout(const llm_hparams *hp, size_t n, size_t n_ctx, size_t n_swa_cells,
                     llama_scratch *s, uint8_t *base) {
    size_t off = 0;
#define PLACE(field, bytes)                                              \
    do {                                                                 \
        if (base) s->field = (void *)(base + off);                       \
        off += ((size_t)(bytes) + 63) / 64 * 64;                         \
    } while (0)
    const size_t f = sizeof(float);
    PLACE(x, n * hp->n_embd * f);
    PLACE(xn, n * hp->n_embd * f);
    PLACE(q, n * hp->n_head * hp->head_dim_k * f);
    PLACE(k, n * hp->n_head_kv * hp->head_dim_k * f);
    PLACE(v, n * hp->n_head_kv * hp->head_dim_v * f);
    PLACE(att, n * hp->n_head * hp->head_dim_v * f);
    PLACE(tmp, n * hp->n_embd * f);
    const size_t n_ff = LLM_MAX(hp->n_ff, hp->n_ff_shexp), n_ffn = LLM_MIN(n, FFN_CHUNK_TOKENS);
    PLACE(gate, n_ffn * n_ff * f);
    PLACE(up, n_ffn * n_ff * f);
    PLACE(cos_sin, n * hp->n_rot * f);
    PLACE(mask, n * n_ctx);
    PLACE(cos_sin_swa, n_swa_cells ? n * hp->n_rot * f : 0);
    PLACE(mask_swa, n * n_swa_cells);
    PLACE(shift_pos, n * sizeof(llm_pos));
    PLACE(shift_cells, n * sizeof(int32_t));
    PLACE(moe_logits, n * hp->n_expert * f);
    PLACE(moe_x, hp->n_expert ? n * hp->n_embd * f : 0);
    PLACE(moe_y, hp->n_expert ? n * hp->n_embd * f : 0);
    PLACE(moe_w, n * hp->n_expert_used * f);
    PLACE(moe_sel, n * hp->n_expert_used * sizeof(int32_t));
    PLACE(moe_rows, hp->n_expert ? n * sizeof(int32_t) : 0);
    PLACE(moe_rows_w, hp->n_expert ? n * f : 0);
#undef PLACE
    return off;
}

uint64_t llama_scratch_bytes(const llm_model *m, uint32_t n_ubatch, uint32_t n_ctx,
                             uint32_t n_swa_cells) {
    return layout(&m->hp, n_ubatch, n_ctx, n_swa_cells, NULL, NULL);
}

void llama_scratch_free(llama_scratch *s) {
    if (!s) return;
    llm_aligned_free(s->block);
    llm_free(s);
}

int32_t llama_scratch_create(const llm_model *m, uint32_t n_ubatch, uint32_t n_ctx,
                             uint32_t n_swa_cells, llama_scratch **out) {
    *out = NULL;
    llama_scratch *s = llm_calloc(1, sizeof *s);
    if (!s) return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory for compute buffers");
    s->n_ubatch = n_ubatch;
    s->n_ctx = n_ctx;
    s->block = llm_aligned_alloc(llama_scratch_bytes(m, n_ubatch, n_ctx, n_swa_cells));
    if (!s->block) {
        llm_free(s);
        return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory for compute buffers "
                         "(n_ubatch %u, n_ctx %u)", n_ubatch, n_ctx);
    }
    layout(&m->hp, n_ubatch, n_ctx, n_swa_cells, s, s->block);
    *out = s;
    return LLM_STATUS_OK;
}

/* cos/sin of every rotated pair at n positions; computed the way the reference
 * implementations do it (f32 inverse frequencies, f32 angle). freqs: optional divisors. */
void rope_table(uint32_t n_rot, float base, float scale, const float *freqs, const llm_pos *pos,
                int n, float *cos_sin) {
    int half = (int)n_rot / 2;
    for (int i = 0; i < half; i++) {
        float inv = 1.0f / powf(base, (float)(2 * i) / (float)n_rot);
        inv *= scale;
        if (freqs) inv /= freqs[i];
        for (int t = 0; t < n; t++) {
            float angle = (float)pos[t] * inv;
            cos_sin[((int64_t)t * half + i) * 2] = (float)cos((double)angle);
            cos_sin[((int64_t)t * half + i) * 2 + 1] = (float)sin((double)angle);
        }
    }
}

/* Re-rotates the keys of every cell of kv whose position moved (seq_add / seq_div): RoPE
 * angles add up, so rotating by the position change moves a key to its new position. Cells go
 * in chunks of n_ubatch through the scratch rows. base / scale / freqs: the RoPE of kv's
 * layers. */
void forward_apply_shift(llm_context *ctx, kv_cache *kv, float base, float scale,
                         const float *freqs) {
    const llm_hparams *hp = &ctx->model->hp;
    llm_backend *be = ctx->backend;
    llama_scratch *s = ctx->scratch;
    const int64_t K = (int64_t)hp->n_head_kv * hp->head_dim_k;
    uint32_t c = 0;
    while (c < kv->n_cells) {
        int n = 0;
        for (; c < kv->n_cells && (uint32_t)n < s->n_ubatch; c++) {
            if (kv->pos[c] < 0 || kv->shift[c] == 0) continue;
            s->shift_cells[n] = (int32_t)c;
            s->shift_pos[n] = kv->shift[c];
            n++;
        }
        if (n == 0) break;
        rope_table(hp->n_rot, base, scale, freqs, s->shift_pos, n, s->cos_sin);
        rope_args rk = {n, (int)hp->n_head_kv, (int)hp->head_dim_k, (int)hp->n_rot,
                        hp->rope_neox, s->cos_sin};
        to_f32_fn to_f32 = type_traits_get(kv->type_k)->to_f32;
        for (uint32_t il = 0; il < kv->n_layer; il++) {
            for (int i = 0; i < n; i++) {
                to_f32(kv->k[il] + (uint64_t)s->shift_cells[i] * kv->k_cell_bytes, s->k + i * K, K);
            }
            be->rope(be, s->k, K, &rk);
            be->store_rows(be, s->k, K, (int)K, n, kv->type_k, kv->k[il], kv->k_cell_bytes,
                           s->shift_cells);
        }
    }
    kv_cache_shift_done(kv);
}

void attn_begin(llm_context *ctx, const ubatch *ub, kv_cache *kv, bool rope, attn_pass *ap) {
    const llm_model *m = ctx->model;
    const llm_hparams *hp = &m->hp;
    llama_scratch *s = ctx->scratch;
    const int n = ub->n_tok;
    if (rope) {
        if (kv->has_shift) {   /* positions moved since the last forward */
            forward_apply_shift(ctx, kv, hp->rope_freq_base, hp->rope_freq_scale, m->rope_freqs);
        }
        rope_table(hp->n_rot, hp->rope_freq_base, hp->rope_freq_scale, m->rope_freqs, ub->pos,
                   n, s->cos_sin);
    } else {
        kv_cache_shift_done(kv);   /* without RoPE a key does not depend on its position */
    }
    const uint32_t n_kv = kv_cache_n_active(kv);
    for (int t = 0; t < n; t++) {
        kv_cache_fill_mask(kv, ub->pos[t], ub->seq_id[t], ub->n_seq_id[t], 0,
                           s->mask + (int64_t)t * n_kv, n_kv);
    }
    const int64_t Q = (int64_t)hp->n_head * hp->head_dim_k;
    ap->rope = rope;
    ap->rq = (rope_args){n, (int)hp->n_head, (int)hp->head_dim_k, (int)hp->n_rot, hp->rope_neox,
                         s->cos_sin};
    ap->rk = ap->rq;
    ap->rk.n_head = (int)hp->n_head_kv;
    ap->aa = (attn_args){
        .n_tok = n, .n_head = (int)hp->n_head, .n_head_kv = (int)hp->n_head_kv,
        .head_dim_k = (int)hp->head_dim_k, .head_dim_v = (int)hp->head_dim_v,
        .q = s->q, .ldq = Q,
        .type_k = kv->type_k, .k_cell_bytes = kv->k_cell_bytes, .k_head_bytes = kv->k_head_bytes,
        .type_v = kv->type_v, .v_cell_bytes = kv->v_cell_bytes, .v_head_bytes = kv->v_head_bytes,
        .n_kv = (int)n_kv, .mask = s->mask,
        .scale = hp->attn_scale > 0.0f ? hp->attn_scale : 1.0f / sqrtf((float)hp->head_dim_k),
        .out = s->att, .ldo = (int64_t)hp->n_head * hp->head_dim_v,
    };
}

void attn_qkv(llm_context *ctx, const llm_layer *l, int n) {
    const llm_hparams *hp = &ctx->model->hp;
    llama_scratch *s = ctx->scratch;
    const gguf_tensor *w[3] = {l->wq, l->wk, l->wv};
    float *const y[3] = {s->q, s->k, s->v};
    const int64_t ld[3] = {(int64_t)hp->n_head * hp->head_dim_k,
                           (int64_t)hp->n_head_kv * hp->head_dim_k,
                           (int64_t)hp->n_head_kv * hp->head_dim_v};
    ctx->backend->matmul_n(ctx->backend, 3, w, s->xn, hp->n_embd, n, y, ld);
}

void attn_layer(llm_context *ctx, const ubatch *ub, kv_cache *kv, const llm_layer *l,
                attn_pass *ap) {
    const llm_hparams *hp = &ctx->model->hp;
    llm_backend *be = ctx->backend;
    llama_scratch *s = ctx->scratch;
    const int n = ub->n_tok;
    const int64_t E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim_k;
    const int64_t K = (int64_t)hp->n_head_kv * hp->head_dim_k;
    const int64_t V = (int64_t)hp->n_head_kv * hp->head_dim_v;
    const int64_t O = (int64_t)hp->n_head * hp->head_dim_v;
    attn_qkv(ctx, l, n);
    if (l->bq) be->add_bias(be, s->q, Q, n, (int)Q, l->bq);
    if (l->bk) be->add_bias(be, s->k, K, n, (int)K, l->bk);
    if (l->bv) be->add_bias(be, s->v, V, n, (int)V, l->bv);
    if (ap->rope) {
        be->rope(be, s->q, Q, &ap->rq);
        be->rope(be, s->k, K, &ap->rk);
    }
    uint8_t *k = kv->k[l->kv_slot], *v = kv->v[l->kv_slot];
    be->store_rows(be, s->k, K, (int)K, n, kv->type_k, k, kv->k_cell_bytes, ub->cells);
    be->store_rows(be, s->v, V, (int)V, n, kv->type_v, v, kv->v_cell_bytes, ub->cells);
    ap->aa.k = k;
    ap->aa.v = v;
    be->attention(be, &ap->aa);
    be->matmul(be, l->wo, s->att, O, n, s->tmp, E);
}

void ffn_gated(llm_context *ctx, const gguf_tensor *gate, const gguf_tensor *up,
               const gguf_tensor *down, bool gelu, const float *x, int n, float *out) {
    llm_backend *be = ctx->backend;
    llama_scratch *s = ctx->scratch;
    const int64_t E = gate->ne[0], F = gate->ne[1], O = down->ne[1];
    for (int t0 = 0; t0 < n; t0 += FFN_CHUNK_TOKENS) {
        int m = LLM_MIN(FFN_CHUNK_TOKENS, n - t0);
        const gguf_tensor *gu[2] = {gate, up};
        float *const out_gu[2] = {s->gate, s->up};
        const int64_t ld[2] = {F, F};
        be->matmul_n(be, 2, gu, x + t0 * E, E, m, out_gu, ld);
        (gelu ? be->geglu : be->swiglu)(be, s->gate, s->up, F, m, (int)F);
        be->matmul(be, down, s->gate, F, m, out + t0 * O, O);
    }
}

void ffn_swiglu(llm_context *ctx, const llm_layer *l, int n) {
    llama_scratch *s = ctx->scratch;
    ffn_gated(ctx, l->ffn_gate, l->ffn_up, l->ffn_down, false, s->xn, n, s->tmp);
}

int forward_output(llm_context *ctx, const ubatch *ub, const float *x, float *xn,
                   float *logits) {
    const llm_model *m = ctx->model;
    const int64_t E = m->hp.n_embd;
    llm_backend *be = ctx->backend;
    int n_out = 0;
    for (int t = 0; t < ub->n_tok; t++) {
        if (!ub->logits[t]) continue;
        be->rmsnorm(be, x + t * E, E, 1, (int)E, m->output_norm, m->hp.norm_eps,
                    xn + n_out * E, E);
        n_out++;
    }
    if (n_out > 0) be->matmul(be, m->output, xn, E, n_out, logits, m->hp.n_vocab);
    return n_out;
}

int32_t llama_forward(llm_context *ctx, const ubatch *ub, float *logits) {
    const llm_model *m = ctx->model;
    const llm_hparams *hp = &m->hp;
    llm_backend *be = ctx->backend;
    llama_scratch *s = ctx->scratch;
    const int n = ub->n_tok;
    const int64_t E = hp->n_embd;

    be->get_rows(be, m->tok_embd, ub->token, n, s->x, E);
    attn_pass ap;
    attn_begin(ctx, ub, ctx->kv, true, &ap);
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        const llm_layer *l = &m->layers[il];
        be->rmsnorm(be, s->x, E, n, (int)E, l->attn_norm, hp->norm_eps, s->xn, E);
        attn_layer(ctx, ub, ctx->kv, l, &ap);
        be->add(be, s->x, E, s->tmp, E, n, (int)E);
        be->rmsnorm(be, s->x, E, n, (int)E, l->ffn_norm, hp->norm_eps, s->xn, E);
        ffn_swiglu(ctx, l, n);
        be->add(be, s->x, E, s->tmp, E, n, (int)E);
    }
    forward_output(ctx, ub, s->x, s->xn, logits);
    return LLM_STATUS_OK;
}
