/* The process-wide model cache and the per-kernel context pools. */
#include "ort_util.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * Models: one load per (file, n_gpu_layers), shared by every kernel of every session that
 * names it. The C ABI allows a model to be used by many contexts on many threads.
 * ------------------------------------------------------------------------------------------ */

typedef struct model_entry {
    struct model_entry *next;
    char *path;                 /* canonical path when it resolves, else as given */
    int32_t n_gpu_layers;
    int64_t refs;
    llm_model *model;
} model_entry;

static pthread_mutex_t g_models_lock = PTHREAD_MUTEX_INITIALIZER;
static model_entry *g_models;

static char *canonical_path(const char *path) {
    char *real = realpath(path, NULL);
    return real ? real : strdup(path);
}

int32_t ort_model_acquire(const char *path, int32_t n_gpu_layers, bool any_layers,
                          llm_model **out) {
    *out = NULL;
    char *key = canonical_path(path);
    if (!key) return LLM_STATUS_OUT_OF_MEMORY;
    pthread_mutex_lock(&g_models_lock);
    model_entry *e = g_models;
    while (e && !(strcmp(e->path, key) == 0 && (any_layers || e->n_gpu_layers == n_gpu_layers))) {
        e = e->next;
    }
    int32_t rc = LLM_STATUS_OK;
    if (e) {
        e->refs++;
        free(key);
    } else {
        e = calloc(1, sizeof *e);
        llm_model_params params;
        llm_model_default_params(&params);
        params.n_gpu_layers = any_layers ? 0 : n_gpu_layers;
        rc = e ? llm_model_load(path, &params, &e->model) : LLM_STATUS_OUT_OF_MEMORY;
        if (rc == LLM_STATUS_OK) {
            e->path = key;
            e->n_gpu_layers = params.n_gpu_layers;
            e->refs = 1;
            e->next = g_models;
            g_models = e;
        } else {
            free(e);
            free(key);
            e = NULL;
        }
    }
    pthread_mutex_unlock(&g_models_lock);
    if (e) *out = e->model;
    return rc;
}

void ort_model_release(llm_model *model) {
    if (!model) return;
    pthread_mutex_lock(&g_models_lock);
    model_entry **link = &g_models;
    while (*link && (*link)->model != model) link = &(*link)->next;
    model_entry *e = *link;
    if (e && --e->refs == 0) {
        *link = e->next;
    } else {
        e = NULL;
    }
    pthread_mutex_unlock(&g_models_lock);
    if (e) {
        llm_model_free(e->model);
        free(e->path);
        free(e);
    }
}

OrtStatus *ort_attr_model(const OrtApi *api, const OrtKernelInfo *info, const char *op,
                          bool any_layers, llm_model **out) {
    char *path = NULL;
    int64_t gpu = 0;
    OrtStatus *st = ort_attr_string(api, info, op, "model_path", NULL, &path);
    if (!st && !any_layers) st = ort_attr_int(api, info, op, "n_gpu_layers", 0, -1, INT32_MAX, &gpu);
    if (st) {
        free(path);
        return st;
    }
    int32_t rc = ort_model_acquire(path, gpu < 0 ? INT32_MAX : (int32_t)gpu, any_layers, out);
    if (rc != LLM_STATUS_OK) {
        char what[512];
        snprintf(what, sizeof what, "cannot load the model '%s'", path);
        st = ort_fail_llm(api, op, rc, what);
    }
    free(path);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Contexts
 * ------------------------------------------------------------------------------------------ */

void ort_slot_free(ort_slot *slot) {
    llm_batch_free(slot->batch);
    llm_context_free(slot->ctx);
    slot->batch = NULL;
    slot->ctx = NULL;
}

OrtStatus *ort_slot_create(const OrtApi *api, const char *op, llm_model *model,
                           const llm_context_params *params, ort_slot *out) {
    out->ctx = NULL;
    out->batch = NULL;
    int32_t rc = llm_context_create(model, params, &out->ctx);
    if (rc != LLM_STATUS_OK) return ort_fail_llm(api, op, rc, "cannot create a context");
    out->batch = llm_batch_init((int32_t)llm_context_n_batch(out->ctx), 1);
    if (!out->batch) {
        ort_slot_free(out);
        return ort_fail(api, ORT_FAIL, op, "out of memory");
    }
    return NULL;
}

OrtStatus *ort_pool_init(ort_pool *pool, const OrtApi *api, const char *op, llm_model *model,
                         const ort_context_attrs *attrs) {
    memset(pool, 0, sizeof *pool);
    llm_context_params params;
    ort_context_params(attrs, &params);
    ort_slot first;
    OrtStatus *st = ort_slot_create(api, op, model, &params, &first);
    if (st) return st;
    if (pthread_mutex_init(&pool->lock, NULL) != 0) {
        ort_slot_free(&first);
        return ort_fail(api, ORT_FAIL, op, "cannot create a mutex");
    }
    pool->model = model;    /* set last: ort_pool_free destroys the mutex only when it is set */
    pool->params = params;
    ort_pool_put(pool, first);
    return NULL;
}

OrtStatus *ort_pool_get(ort_pool *pool, const OrtApi *api, const char *op, ort_slot *out) {
    pthread_mutex_lock(&pool->lock);
    bool found = pool->n_idle > 0;
    if (found) *out = pool->idle[--pool->n_idle];
    pthread_mutex_unlock(&pool->lock);
    if (found) return NULL;
    return ort_slot_create(api, op, pool->model, &pool->params, out);
}

void ort_pool_put(ort_pool *pool, ort_slot slot) {
    pthread_mutex_lock(&pool->lock);
    if (pool->n_idle == pool->cap) {
        size_t cap = pool->cap ? 2 * pool->cap : 4;
        ort_slot *idle = realloc(pool->idle, cap * sizeof *idle);
        if (idle) {
            pool->idle = idle;
            pool->cap = cap;
        }
    }
    bool kept = pool->n_idle < pool->cap;
    if (kept) pool->idle[pool->n_idle++] = slot;
    pthread_mutex_unlock(&pool->lock);
    if (!kept) ort_slot_free(&slot);
}

void ort_pool_free(ort_pool *pool) {
    for (size_t i = 0; i < pool->n_idle; i++) ort_slot_free(&pool->idle[i]);
    free(pool->idle);
    if (pool->model) pthread_mutex_destroy(&pool->lock);
    memset(pool, 0, sizeof *pool);
}

/* ---------------------------------------------------------------------------------------------
 * Decoding rows of tokens
 * ------------------------------------------------------------------------------------------ */

OrtStatus *ort_decode_rows(const OrtApi *api, const char *op, ort_slot *slot,
                           const ort_row *rows, int32_t n_rows, bool all, ort_emit_fn emit,
                           void *user) {
    llm_batch *b = slot->batch;
    const int32_t n_batch = (int32_t)llm_context_n_batch(slot->ctx);
    int32_t *where = malloc(2 * (size_t)n_batch * sizeof *where);  /* (row, j) of each token */
    if (!where) return ort_fail(api, ORT_FAIL, op, "out of memory");
    OrtStatus *st = NULL;
    int32_t r = 0, j = 0;
    while (!st) {
        b->n_tokens = 0;
        while (b->n_tokens < n_batch && r < n_rows) {
            if (j >= rows[r].n) {
                r++;
                j = 0;
                continue;
            }
            const int32_t i = b->n_tokens++;
            b->token[i] = (llm_token)rows[r].ids[j];
            b->pos[i] = rows[r].pos0 + j;
            b->n_seq_id[i] = 1;
            b->seq_id[i][0] = rows[r].seq;
            b->logits[i] = (int8_t)(all || j == rows[r].n - 1);
            where[2 * i] = r;
            where[2 * i + 1] = j;
            j++;
        }
        if (b->n_tokens == 0) break;
        int32_t rc = llm_decode(slot->ctx, b);
        if (rc != LLM_STATUS_OK) {
            st = ort_fail_llm(api, op, rc, "llm_decode failed");
            break;
        }
        for (int32_t i = 0; i < b->n_tokens && !st; i++) {
            if (!b->logits[i]) continue;
            const float *row = llm_get_logits_ith(slot->ctx, i);
            if (!row) {
                st = ort_fail_llm(api, op, LLM_STATUS_INTERNAL, "no logits");
                break;
            }
            emit(user, where[2 * i], where[2 * i + 1], row);
        }
    }
    free(where);
    return st;
}
