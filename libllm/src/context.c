/* context.c -- context creation and the decode loop: validate the batch, split it into
 * micro-batches, plan them all against the memory, then place and compute them one by one. */
#include "context.h"

#include <string.h>
#include <unistd.h>

#include "batch.h"
#include "quant.h"

LLM_API void llm_context_default_params(llm_context_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->size = sizeof *p;
    p->n_ctx = 0;
    p->n_batch = 512;
    p->n_ubatch = 512;
    p->n_seq_max = 1;
    p->n_threads = 0;
    p->type_k = LLM_TYPE_F16;
    p->type_v = LLM_TYPE_F16;
}

static int default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)LLM_MIN(n, 512) : 1;
}

int32_t context_resolve_params(const llm_model *m, const llm_context_params *in,
                               llm_context_params *p) {
    llm_context_default_params(p);
    if (in) {
        if (in->size < sizeof(uint32_t) || in->size > sizeof *p) {
            return llm_error(LLM_STATUS_INVALID_ARGUMENT, "llm_context_params.size is %u, "
                             "expected %zu (use llm_context_default_params)", in->size, sizeof *p);
        }
        memcpy(p, in, in->size);
        p->size = sizeof *p;
    }
    if (p->n_ctx == 0) p->n_ctx = m->hp.n_ctx_train;
    if (p->n_batch == 0) p->n_batch = 512;
    if (p->n_ubatch == 0) p->n_ubatch = p->n_batch;
    p->n_ubatch = LLM_MIN(p->n_ubatch, p->n_batch);
    if (p->n_threads <= 0) p->n_threads = default_threads();
    if (p->n_ctx > (1u << 24) || p->n_batch > (1u << 20)) {
        return llm_error(LLM_STATUS_INVALID_ARGUMENT, "n_ctx %u or n_batch %u is too large",
                         p->n_ctx, p->n_batch);
    }
    if (p->n_seq_max < 1 || p->n_seq_max > 256) {
        return llm_error(LLM_STATUS_INVALID_ARGUMENT, "n_seq_max %u is outside [1, 256]",
                         p->n_seq_max);
    }
    if (p->n_threads > 512) {
        return llm_error(LLM_STATUS_INVALID_ARGUMENT, "n_threads %d is too large", p->n_threads);
    }
    return LLM_STATUS_OK;
}

/* The largest head and the longest activation row the backend's scratch must hold. */
static int max_head_dim(const llm_hparams *hp) {
    return (int)LLM_MAX(hp->head_dim_k, hp->head_dim_v);
}
static int64_t max_row(const llm_hparams *hp) {
    int64_t ff = LLM_MAX(hp->n_ff, hp->n_ff_shexp);
    int64_t attn = LLM_MAX(LLM_MAX((int64_t)hp->n_embd, ff), (int64_t)hp->n_head * hp->head_dim_v);
    return LLM_MAX(attn, (int64_t)hp->ssm_d_inner);
}

static int32_t create_backend(const llm_model *m, const llm_context_params *p, int n_threads,
                              llm_backend **out) {
    return cpu_backend_create(n_threads, (int)p->n_ctx, max_head_dim(&m->hp), (int)p->n_ubatch,
                              max_row(&m->hp), out);
}

uint32_t context_n_swa_cells(const llm_model *m, const llm_context_params *p) {
    if (m->hp.n_swa == 0) return 0;
    return kv_swa_n_cells(p->n_ctx, m->hp.n_swa, p->n_seq_max, p->n_ubatch);
}

void context_recurrent_params(const llm_model *m, const llm_context_params *p,
                              recurrent_params *rp) {
    const llm_hparams *hp = &m->hp;
    uint64_t conv_ch = hp->ssm_d_inner;
    if (model_ssm_v2(m)) conv_ch += 2ull * hp->ssm_n_group * hp->ssm_d_state;
    rp->n_seq_max = p->n_seq_max;
    rp->n_layer = hp->n_layer_ssm;
    rp->conv_elems = (uint64_t)(hp->ssm_d_conv - 1) * conv_ch;
    rp->ssm_elems = (uint64_t)hp->ssm_d_inner * hp->ssm_d_state;
    rp->snap_every = p->snapshot_interval;
    rp->n_snap = p->snapshot_interval == 0 ? 0
               : p->n_snapshots ? p->n_snapshots : 8 * p->n_seq_max;
}

/* Bytes of the equal split's scratch (split_scratch). */
static uint64_t split_bytes(const llm_model *m, const llm_context_params *p) {
    uint64_t n = p->n_batch, words = (p->n_seq_max + 63) / 64;
    return n * (sizeof(int32_t) * 7 + sizeof(llm_token) + sizeof(llm_pos) + sizeof(llm_seq_id *) +
                sizeof(int8_t) + sizeof(uint8_t) + words * sizeof(uint64_t)) +
           (uint64_t)m->hp.n_vocab * sizeof(float);
}

uint64_t context_compute_bytes(const llm_model *m, const llm_context_params *p,
                               uint32_t logits_rows) {
    const bool rec = model_has_recurrent(m), attn = !model_is_recurrent(m);
    uint64_t n_batch = p->n_batch;
    uint64_t bookkeeping = context_n_ubatches(p, rec) * sizeof(ubatch) +
                           n_batch * (sizeof(int32_t) * 2 + sizeof(int8_t)) +
                           p->n_seq_max * sizeof(llm_pos);
    uint64_t logits = (uint64_t)logits_rows * m->hp.n_vocab * sizeof(float);
    uint64_t total = cpu_backend_scratch_bytes(p->n_threads, max_head_dim(&m->hp),
                                               (int)p->n_ubatch, max_row(&m->hp)) +
                     bookkeeping + logits;
    if (rec) {
        recurrent_params rp;
        context_recurrent_params(m, p, &rp);
        total += ssm_scratch_bytes(m, p->n_ubatch) + split_bytes(m, p) +
                 recurrent_bookkeeping_bytes(&rp);
        if (rp.n_snap) total += n_batch * sizeof(int32_t);   /* ctx->snap */
        if (attn) total += hybrid_bookkeeping_bytes(p->n_seq_max);
    }
    if (attn) {
        uint32_t n_swa_cells = context_n_swa_cells(m, p);
        uint64_t cells = (uint64_t)p->n_ctx * (sizeof(llm_pos) + sizeof(int32_t) +
                                               (p->n_seq_max + 63) / 64 * sizeof(uint64_t));
        if (n_swa_cells) {
            cells += kv_swa_bookkeeping_bytes(p->n_ctx, n_swa_cells, p->n_seq_max, p->n_ubatch);
        }
        total += llama_scratch_bytes(m, p->n_ubatch, p->n_ctx, n_swa_cells) + cells;
    }
    return total;
}

static int32_t create_split(llm_context *ctx) {
    const uint64_t n = ctx->params.n_batch, words = (ctx->params.n_seq_max + 63) / 64;
    split_scratch *sp = &ctx->split;
    sp->order = llm_malloc(sizeof(int32_t) * n);
    sp->token = llm_malloc(sizeof(llm_token) * n);
    sp->pos = llm_malloc(sizeof(llm_pos) * n);
    sp->n_seq_id = llm_malloc(sizeof(int32_t) * n);
    sp->seq_id = llm_malloc(sizeof(llm_seq_id *) * n);
    sp->flags = llm_malloc(sizeof(int8_t) * n);
    sp->stream = llm_malloc(sizeof(int32_t) * n);
    sp->next = llm_malloc(sizeof(int32_t) * n);
    sp->head = llm_malloc(sizeof(int32_t) * n);
    sp->tmp = llm_malloc(sizeof(int32_t) * n);
    sp->chosen = llm_malloc(sizeof(int32_t) * n);
    sp->taken = llm_malloc(sizeof(uint8_t) * n);
    sp->mask = llm_malloc(sizeof(uint64_t) * n * words);
    sp->row = llm_malloc(sizeof(float) * ctx->model->hp.n_vocab);
    if (!sp->order || !sp->token || !sp->pos || !sp->n_seq_id || !sp->seq_id || !sp->flags ||
        !sp->stream || !sp->next || !sp->head || !sp->tmp || !sp->chosen || !sp->taken ||
        !sp->mask || !sp->row) {
        return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory creating the context");
    }
    return LLM_STATUS_OK;
}

static void free_split(split_scratch *sp) {
    void *all[] = {sp->order, sp->token, sp->pos, sp->n_seq_id, sp->seq_id, sp->flags,
                   sp->stream, sp->next, sp->head, sp->tmp, sp->chosen, sp->taken, sp->mask,
                   sp->row};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) llm_free(all[i]);
}

/* The memory and forward scratch of a state-space model; with kp (a hybrid model), the KV
 * cache of its attention layers too. */
static int32_t create_recurrent(llm_context *ctx, const kv_cache_params *kp) {
    recurrent_params rp;
    context_recurrent_params(ctx->model, &ctx->params, &rp);
    int32_t st;
    if (kp) {
        hybrid *h;
        if ((st = hybrid_create(kp, &rp, &h)) != LLM_STATUS_OK) return st;
        ctx->memory = &h->base;
        ctx->kv = h->kv;
        ctx->rec = h->rec;
    } else {
        if ((st = recurrent_create(&rp, &ctx->rec)) != LLM_STATUS_OK) return st;
        ctx->memory = &ctx->rec->base;
    }
    if (rp.n_snap) {
        ctx->snap = llm_malloc(sizeof(int32_t) * ctx->params.n_batch);
        if (!ctx->snap) return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory creating the "
                                         "context");
    }
    return ssm_scratch_create(ctx->model, ctx->params.n_ubatch, &ctx->ssm);
}

static int32_t create(llm_context *ctx) {
    const llm_hparams *hp = &ctx->model->hp;
    const llm_context_params *p = &ctx->params;
    kv_cache_params kp = {p->n_ctx, hp->n_layer, p->n_seq_max, hp->n_head_kv, hp->head_dim_k,
                          hp->head_dim_v, (uint32_t)p->type_k, (uint32_t)p->type_v};
    uint32_t n_swa_cells = context_n_swa_cells(ctx->model, p);
    int32_t st;
    if (model_has_recurrent(ctx->model)) {
        kp.n_layer = hp->n_layer - hp->n_layer_ssm;
        st = create_recurrent(ctx, model_is_hybrid(ctx->model) ? &kp : NULL);
        if (st != LLM_STATUS_OK) return st;
    } else if (n_swa_cells) {
        /* full-attention layers in a full cache, sliding-window layers in a window pool */
        kv_cache_params ks = kp;
        kp.n_layer = hp->n_layer - hp->n_layer_swa;
        ks.n_layer = hp->n_layer_swa;
        ks.n_cells = n_swa_cells;
        st = kv_swa_create(&kp, &ks, hp->n_swa, p->n_ubatch, &ctx->swa);
        if (st != LLM_STATUS_OK) return st;
        ctx->kv = ctx->swa->full;
        ctx->memory = &ctx->swa->base;
    } else {
        st = kv_cache_create(&kp, &ctx->kv);
        if (st != LLM_STATUS_OK) return st;
        ctx->memory = &ctx->kv->base;
    }
    st = create_backend(ctx->model, p, p->n_threads, &ctx->backend);
    if (st != LLM_STATUS_OK) return st;
    if (!model_is_recurrent(ctx->model)) {
        st = llama_scratch_create(ctx->model, p->n_ubatch, p->n_ctx, n_swa_cells, &ctx->scratch);
        if (st != LLM_STATUS_OK) return st;
    }
    const bool equal = ctx->memory->ops->equal_split;
    if (equal && (st = create_split(ctx)) != LLM_STATUS_OK) return st;
    ctx->ubs = llm_calloc(context_n_ubatches(p, equal), sizeof *ctx->ubs);
    ctx->cells = llm_malloc(sizeof(int32_t) * p->n_batch);
    ctx->seq_next = llm_malloc(sizeof(llm_pos) * p->n_seq_max);
    ctx->output_row = llm_malloc(sizeof(int32_t) * p->n_batch);
    ctx->flags = llm_malloc(p->n_batch);
    ctx->logits_rows = LLM_MIN(p->n_seq_max, p->n_batch);
    ctx->logits = llm_malloc(sizeof(float) * ctx->logits_rows * hp->n_vocab);
    if (!ctx->ubs || !ctx->cells || !ctx->seq_next || !ctx->output_row || !ctx->flags ||
        !ctx->logits) {
        return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory creating the context");
    }
    return LLM_STATUS_OK;
}

LLM_API void llm_context_free(llm_context *ctx) {
    if (!ctx) return;
    if (ctx->memory) ctx->memory->ops->free(ctx->memory);
    if (ctx->backend) ctx->backend->free(ctx->backend);
    llama_scratch_free(ctx->scratch);
    ssm_scratch_free(ctx->ssm);
    free_split(&ctx->split);
    llm_free(ctx->ubs);
    llm_free(ctx->cells);
    llm_free(ctx->snap);
    llm_free(ctx->seq_next);
    llm_free(ctx->output_row);
    llm_free(ctx->flags);
    llm_free(ctx->logits);
    llm_free(ctx);
}

LLM_API int32_t llm_context_create(llm_model *model, const llm_context_params *params,
                                   llm_context **out) {
    llm_error_clear();
    if (!out) return llm_error(LLM_STATUS_INVALID_ARGUMENT, "out must not be NULL");
    *out = NULL;
    if (!model) return llm_error(LLM_STATUS_INVALID_ARGUMENT, "model must not be NULL");
    if (model->vocab_only) {
        return llm_error(LLM_STATUS_INVALID_ARGUMENT, "the model was loaded vocab_only");
    }
    llm_context_params p;
    int32_t st = context_resolve_params(model, params, &p);
    if (st != LLM_STATUS_OK) return st;
    llm_alloc_counter counter = {0};
    llm_alloc_counter *prev = llm_alloc_counter_push(&counter);
    llm_context *ctx = llm_calloc(1, sizeof *ctx);
    if (!ctx) {
        llm_alloc_counter_pop(prev);
        return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory creating the context");
    }
    ctx->model = model;
    ctx->params = p;
    st = create(ctx);
    llm_alloc_counter_pop(prev);
    if (st != LLM_STATUS_OK) {
        llm_context_free(ctx);
        return st;
    }
    ctx->alloc_total = counter;
    *out = ctx;
    return LLM_STATUS_OK;
}

LLM_API const llm_model *llm_context_model(const llm_context *ctx) {
    return ctx ? ctx->model : NULL;
}
LLM_API uint32_t llm_context_n_ctx(const llm_context *ctx) { return ctx ? ctx->params.n_ctx : 0; }
LLM_API uint32_t llm_context_n_batch(const llm_context *ctx) {
    return ctx ? ctx->params.n_batch : 0;
}
LLM_API uint32_t llm_context_n_ubatch(const llm_context *ctx) {
    return ctx ? ctx->params.n_ubatch : 0;
}
LLM_API uint32_t llm_context_n_seq_max(const llm_context *ctx) {
    return ctx ? ctx->params.n_seq_max : 0;
}

LLM_API int32_t llm_context_set_n_threads(llm_context *ctx, int32_t n_threads) {
    llm_error_clear();
    if (!ctx) return llm_error(LLM_STATUS_INVALID_ARGUMENT, "ctx must not be NULL");
    if (n_threads <= 0) n_threads = default_threads();
    if (n_threads > 512) {
        return llm_error(LLM_STATUS_INVALID_ARGUMENT, "n_threads %d is too large", n_threads);
    }
    if (n_threads == ctx->params.n_threads) return LLM_STATUS_OK;
    llm_alloc_counter *prev = llm_alloc_counter_push(&ctx->alloc_total);
    llm_backend *be;
    int32_t st = create_backend(ctx->model, &ctx->params, n_threads, &be);
    llm_alloc_counter_pop(prev);
    if (st != LLM_STATUS_OK) return st;
    ctx->backend->free(ctx->backend);
    ctx->backend = be;
    ctx->params.n_threads = n_threads;
    return LLM_STATUS_OK;
}

LLM_API int32_t llm_context_get_stats(const llm_context *ctx, llm_context_stats *s) {
    llm_error_clear();
    if (!ctx || !s) return llm_error(LLM_STATUS_INVALID_ARGUMENT, "NULL argument");
    if (s->size < sizeof *s) {
        return llm_error(LLM_STATUS_INVALID_ARGUMENT, "llm_context_stats.size is too small");
    }
    s->n_alloc = ctx->alloc_total.n_alloc + ctx->alloc_decode.n_alloc;
    s->n_alloc_bytes = ctx->alloc_total.n_bytes + ctx->alloc_decode.n_bytes;
    s->n_alloc_decode = ctx->alloc_decode.n_alloc;
    s->n_decode = ctx->n_decode;
    s->n_tokens_decoded = ctx->n_tokens_decoded;
    s->n_cells_used = ctx->memory->ops->n_cells_used(ctx->memory);
    s->n_cells_total = ctx->memory->ops->n_cells_total(ctx->memory);
    return LLM_STATUS_OK;
}

/* ---- decoding ---- */



/* Makes room for n logits rows. Grows at most up to n_batch rows, so after the largest batch
 * has been seen decode allocates nothing. */
int32_t context_reserve_outputs(llm_context *ctx, int32_t n) {
    if ((uint32_t)n <= ctx->logits_rows) return LLM_STATUS_OK;
    float *grown = llm_realloc(ctx->logits, sizeof(float) * (size_t)n * ctx->model->hp.n_vocab);
    if (!grown) return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory for %d logits rows", n);
    ctx->logits = grown;
    ctx->logits_rows = (uint32_t)n;
    return LLM_STATUS_OK;
}




static bool wants_logits(const llm_batch *b, int32_t i) {
    return b->logits ? b->logits[i] != 0 : i == b->n_tokens - 1;
}

static int32_t forward(llm_context *ctx, const ubatch *ub, float *out) {
    switch (ctx->model->arch) {
    case ARCH_GEMMA3: return gemma3_forward(ctx, ub, out);
    case ARCH_MAMBA:
    case ARCH_MAMBA2: return mamba_forward(ctx, ub, out);
    case ARCH_JAMBA:
    case ARCH_GRANITE_HYBRID: return hybrid_forward(ctx, ub, out);
    default: return llama_forward(ctx, ub, out);
    }
}

static int32_t decode(llm_context *ctx, const llm_batch *b) {
    int32_t st = batch_validate(ctx, b);
    if (st != LLM_STATUS_OK) return st;

    /* output flags for every token (no logits array means: the last token only) */
    int32_t n_outputs = 0;
    for (int32_t i = 0; i < b->n_tokens; i++) {
        ctx->flags[i] = (int8_t)wants_logits(b, i);
        n_outputs += ctx->flags[i];
    }
    if ((st = context_reserve_outputs(ctx, n_outputs)) != LLM_STATUS_OK) return st;

    const bool equal = ctx->memory->ops->equal_split;
    int n_ubs = equal ? batch_split_equal(ctx, b) : batch_split_in_order(ctx, b);
    if ((st = ctx->memory->ops->plan(ctx->memory, ctx->ubs, n_ubs)) != LLM_STATUS_OK) return st;

    ctx->n_outputs = 0;
    ctx->n_batch_last = 0;
    int32_t row = 0;
    for (int i = 0; i < n_ubs; i++) {
        ubatch *ub = &ctx->ubs[i];
        const llm_context_params *p = &ctx->params;
        if (p->abort_callback && !p->abort_callback(0.0f, p->abort_user_data)) {
            return llm_error(LLM_STATUS_ABORTED, "decode aborted by the callback after %d of %d "
                             "micro-batches", i, n_ubs);
        }
        if ((st = ctx->memory->ops->apply(ctx->memory, ub)) != LLM_STATUS_OK) return st;
        float *out = ctx->logits + (size_t)row * ctx->model->hp.n_vocab;
        if ((st = forward(ctx, ub, out)) != LLM_STATUS_OK) {
            ctx->memory->ops->rollback(ctx->memory, ub);
            return st;
        }
        for (int t = 0; t < ub->n_tok; t++) row += ub->logits[t] != 0;
    }
    int32_t r = 0;
    for (int32_t i = 0; i < b->n_tokens; i++) ctx->output_row[i] = ctx->flags[i] ? r++ : -1;
    if (equal) batch_reorder_outputs(ctx, b->n_tokens);
    ctx->n_outputs = n_outputs;
    ctx->n_batch_last = b->n_tokens;
    ctx->n_decode++;
    ctx->n_tokens_decoded += (uint64_t)b->n_tokens;
    return LLM_STATUS_OK;
}

LLM_API int32_t llm_decode(llm_context *ctx, const llm_batch *batch) {
    llm_error_clear();
    if (!ctx || !batch) return llm_error(LLM_STATUS_INVALID_ARGUMENT, "NULL argument");
    llm_alloc_counter *prev = llm_alloc_counter_push(&ctx->alloc_decode);
    int32_t st = decode(ctx, batch);
    llm_alloc_counter_pop(prev);
    return st;
}

LLM_API int32_t llm_n_outputs(const llm_context *ctx) { return ctx ? ctx->n_outputs : 0; }

LLM_API float *llm_get_logits(llm_context *ctx) {
    return ctx && ctx->n_outputs > 0 ? ctx->logits : NULL;
}

LLM_API float *llm_get_logits_ith(llm_context *ctx, int32_t i) {
    llm_error_clear();
    if (!ctx) {
        llm_error(LLM_STATUS_INVALID_ARGUMENT, "ctx must not be NULL");
        return NULL;
    }
    int32_t n = ctx->n_batch_last;
    if (i < 0) i += n;
    if (i < 0 || i >= n) {
        llm_error(LLM_STATUS_INVALID_ARGUMENT, "batch index out of range (last batch had %d "
                  "tokens)", n);
        return NULL;
    }
    if (ctx->output_row[i] < 0) {
        llm_error(LLM_STATUS_INVALID_ARGUMENT, "logits of batch token %d were not requested", i);
        return NULL;
    }
    return ctx->logits + (size_t)ctx->output_row[i] * ctx->model->hp.n_vocab;
}

/* ---- memory operations ---- */

LLM_API void llm_memory_clear(llm_context *ctx) {
    if (ctx) ctx->memory->ops->clear(ctx->memory);
}

LLM_API int32_t llm_memory_seq_rm(llm_context *ctx, llm_seq_id seq, llm_pos p0, llm_pos p1) {
    llm_error_clear();
    if (!ctx) return llm_error(LLM_STATUS_INVALID_ARGUMENT, "ctx must not be NULL");
    return ctx->memory->ops->seq_rm(ctx->memory, seq, p0, p1);
}

LLM_API int32_t llm_memory_seq_cp(llm_context *ctx, llm_seq_id src, llm_seq_id dst, llm_pos p0,
                                  llm_pos p1) {
    llm_error_clear();
    if (!ctx) return llm_error(LLM_STATUS_INVALID_ARGUMENT, "ctx must not be NULL");
    return ctx->memory->ops->seq_cp(ctx->memory, src, dst, p0, p1);
}

LLM_API int32_t llm_memory_seq_keep(llm_context *ctx, llm_seq_id seq) {
    llm_error_clear();
    if (!ctx) return llm_error(LLM_STATUS_INVALID_ARGUMENT, "ctx must not be NULL");
    return ctx->memory->ops->seq_keep(ctx->memory, seq);
}

LLM_API int32_t llm_memory_seq_add(llm_context *ctx, llm_seq_id seq, llm_pos p0, llm_pos p1,
                                   llm_pos delta) {
    llm_error_clear();
    if (!ctx) return llm_error(LLM_STATUS_INVALID_ARGUMENT, "ctx must not be NULL");
    return ctx->memory->ops->seq_add(ctx->memory, seq, p0, p1, delta);
}

LLM_API int32_t llm_memory_seq_div(llm_context *ctx, llm_seq_id seq, llm_pos p0, llm_pos p1,
                                   int32_t d) {
    llm_error_clear();
    if (!ctx) return llm_error(LLM_STATUS_INVALID_ARGUMENT, "ctx must not be NULL");
    return ctx->memory->ops->seq_div(ctx->memory, seq, p0, p1, d);
}

LLM_API llm_pos llm_memory_seq_pos_min(const llm_context *ctx, llm_seq_id seq) {
    return ctx ? ctx->memory->ops->seq_pos_min(ctx->memory, seq) : -1;
}

LLM_API llm_pos llm_memory_seq_pos_max(const llm_context *ctx, llm_seq_id seq) {
    return ctx ? ctx->memory->ops->seq_pos_max(ctx->memory, seq) : -1;
}
