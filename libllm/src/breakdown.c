/* breakdown.c -- bytes per device of weights, K, V, recurrent state and compute buffers:
 * measured for a live context, or estimated for a model and context parameters before the
 * context exists. Both use the same size functions the allocations use. */
#include "context.h"
#include "quant.h"

static void weights(const llm_model *m, llm_memory_breakdown *b) {
    bool mapped = gguf_is_mapped(m->file);
    b->weights_mapped = mapped ? m->n_bytes : 0;
    b->weights_resident = (mapped ? 0 : m->n_bytes) + m->n_bytes_copies;
}

/* K and V bytes of n_cells cells: the same row sizes the cache allocates. */
static bool kv_bytes(const llm_model *m, const llm_context_params *p, uint64_t *k,
                     uint64_t *v) {
    const llm_hparams *hp = &m->hp;
    uint64_t kh, vh;
    if (!type_row_bytes((uint32_t)p->type_k, hp->head_dim_k, &kh) ||
        !type_row_bytes((uint32_t)p->type_v, hp->head_dim_v, &vh)) {
        llm_error(LLM_STATUS_UNSUPPORTED, "cache types %d/%d do not fit heads of %u/%u values",
                  p->type_k, p->type_v, hp->head_dim_k, hp->head_dim_v);
        return false;
    }
    /* sliding-window layers keep a pool of n_swa_cells cells, the others n_ctx cells */
    uint64_t n_swa_cells = context_n_swa_cells(m, p);
    uint64_t n_layer_swa = n_swa_cells ? hp->n_layer_swa : 0;
    uint64_t cells = ((uint64_t)p->n_ctx * (hp->n_layer - hp->n_layer_ssm - n_layer_swa) +
                      n_swa_cells * n_layer_swa) * hp->n_head_kv;
    *k = cells * kh;
    *v = cells * vh;
    return true;
}

/* Checks the output array (one device: the host); returns 0, -1 (one entry needed), or
 * LLM_INT32_ERROR. */
static int32_t start(llm_memory_breakdown *out, int32_t n_max) {
    if (n_max < 1) return -1;
    if (!out || out->size < sizeof *out) {
        llm_error(LLM_STATUS_INVALID_ARGUMENT, "llm_memory_breakdown is NULL or its size is "
                  "too small");
        return LLM_INT32_ERROR;
    }
    uint32_t size = out->size;
    memset(out, 0, sizeof *out);
    out->size = size;
    out->device = -1;
    return LLM_STATUS_OK;
}

LLM_API int32_t llm_memory_breakdown_get(const llm_context *ctx, llm_memory_breakdown *out,
                                         int32_t n_max) {
    llm_error_clear();
    if (!ctx) {
        llm_error(LLM_STATUS_INVALID_ARGUMENT, "ctx must not be NULL");
        return LLM_INT32_ERROR;
    }
    int32_t st = start(out, n_max);
    if (st != 0) return st;
    weights(ctx->model, out);
    const recurrent *r = ctx->rec;
    if (r) {
        recurrent_params rp = {r->n_seq_max, r->n_layer, r->conv_elems, r->ssm_elems,
                               r->snap_every, r->n_snap};
        out->recurrent = recurrent_state_bytes(&rp);
    }
    const kv_cache *kv = ctx->kv;
    if (kv) {
        out->k = kv->k_cell_bytes * kv->n_cells * kv->n_layer;
        out->v = kv->v_cell_bytes * kv->n_cells * kv->n_layer;
    }
    if (ctx->swa) {
        const kv_cache *w = ctx->swa->swa;
        out->k += w->k_cell_bytes * w->n_cells * w->n_layer;
        out->v += w->v_cell_bytes * w->n_cells * w->n_layer;
    }
    out->compute = context_compute_bytes(ctx->model, &ctx->params, ctx->logits_rows);
    return 1;
}

LLM_API int32_t llm_memory_breakdown_estimate(const llm_model *model,
                                              const llm_context_params *params,
                                              llm_memory_breakdown *out, int32_t n_max) {
    llm_error_clear();
    if (!model || model->vocab_only) {
        llm_error(LLM_STATUS_INVALID_ARGUMENT, "the model is NULL or was loaded vocab_only");
        return LLM_INT32_ERROR;
    }
    llm_context_params p;
    if (context_resolve_params(model, params, &p) != LLM_STATUS_OK) return LLM_INT32_ERROR;
    int32_t st = start(out, n_max);
    if (st != 0) return st;
    weights(model, out);
    if (model_has_recurrent(model)) {
        recurrent_params rp;
        context_recurrent_params(model, &p, &rp);
        out->recurrent = recurrent_state_bytes(&rp);
    }
    if (!model_is_recurrent(model) && !kv_bytes(model, &p, &out->k, &out->v)) {
        return LLM_INT32_ERROR;
    }
    out->compute = context_compute_bytes(model, &p, LLM_MIN(p.n_seq_max, p.n_batch));
    return 1;
}
