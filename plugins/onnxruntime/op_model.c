/* Generate and Logits: stateless ops that run the model over a batch of rows.
 *
 * Each Run() takes a context from the kernel's pool (or makes one when every pooled context is
 * busy), clears it, decodes up to n_seq_max rows at once as one multi-sequence batch (more rows
 * go in successive groups) and gives the context back, so concurrent runs of one session never
 * share a context and never wait for one another.
 */
#include "ort_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct model_kernel {
    ort_kernel_head head;
    llm_model *model;
    ort_pool pool;
    int32_t group;          /* rows decoded together: min(n_seq_max, n_batch) */
    int32_t n_vocab;
    /* Generate */
    int64_t max_new_tokens, pad_id;
    ort_sampling sampling;
    /* Logits */
    bool last_only;
} model_kernel;

static void model_kernel_destroy(void *p) {
    model_kernel *k = p;
    ort_pool_free(&k->pool);
    ort_model_release(k->model);
    free(k);
}

/* The attributes both ops share: the model and its contexts. */
static OrtStatus *model_kernel_create(const OrtApi *api, const OrtKernelInfo *info,
                                      const char *op, model_kernel **out) {
    *out = NULL;
    model_kernel *k = calloc(1, sizeof *k);
    if (!k) return ort_fail(api, ORT_FAIL, op, "out of memory");
    ort_context_attrs attrs;
    OrtStatus *st = ort_attr_context(api, info, op, "n_seq_max", 8, &attrs);
    if (!st) {
        int32_t rc = ort_model_acquire(attrs.model_path, attrs.n_gpu_layers, false, &k->model);
        if (rc != LLM_STATUS_OK) {
            char what[512];
            snprintf(what, sizeof what, "cannot load the model '%s'", attrs.model_path);
            st = ort_fail_llm(api, op, rc, what);
        }
    }
    if (!st) st = ort_pool_init(&k->pool, api, op, k->model, &attrs);
    free(attrs.model_path);
    if (st) {
        ort_model_release(k->model);
        free(k);
        return st;
    }
    k->group = (int32_t)(attrs.n_seq_max < attrs.n_batch ? attrs.n_seq_max : attrs.n_batch);
    k->n_vocab = llm_model_n_vocab(k->model);
    *out = k;
    return NULL;
}

/* The ids input [batch, width] and the optional lengths, checked. *lens is malloc'd. */
static OrtStatus *read_rows(const OrtApi *api, OrtKernelContext *ctx, const char *op,
                            int64_t min_len, ort_tensor *ids, int32_t **lens) {
    ort_tensor lengths;
    OrtStatus *st;
    *lens = NULL;
    if ((st = ort_input(api, ctx, op, 0, "input_ids", ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, 2, 2,
                        false, ids)) ||
        (st = ort_input(api, ctx, op, 1, "lengths", ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, 0, 8,
                        true, &lengths))) {
        return st;
    }
    const int64_t batch = ids->dims[0], width = ids->dims[1];
    if (width > INT32_MAX) return ort_fail(api, ORT_INVALID_ARGUMENT, op, "rows are too long");
    *lens = malloc((size_t)(batch ? batch : 1) * sizeof **lens);
    if (!*lens) return ort_fail(api, ORT_FAIL, op, "out of memory");
    if (!(st = ort_lengths(api, op, "lengths", &lengths, batch, width, min_len, *lens))) {
        st = ort_check_ids(api, op, "input_ids", ids->data, batch, width, *lens);
    }
    if (st) {
        free(*lens);
        *lens = NULL;
    }
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Generate
 *   input  0 input_ids       int64 [batch, len]
 *   input  1 lengths         int64 [batch]          optional (every row full)
 *   output 0 output_ids      int64 [batch, max_generated]   (padded with pad_id)
 *   output 1 output_lengths  int64 [batch]
 *   attrs: model_path, n_ctx, n_batch, n_ubatch, n_seq_max, n_threads, n_gpu_layers,
 *          max_new_tokens, pad_id, temperature, top_k, top_p, min_p, repeat_penalty,
 *          frequency_penalty, presence_penalty, penalty_last_n, seed
 * Each row goes on as LLM.generate does: sample, stop at an end-of-generation token (not
 * output), after max_new_tokens, or when the row fills n_ctx positions.
 * ------------------------------------------------------------------------------------------ */

static OrtStatus *generate_create(const OrtApi *api, const OrtKernelInfo *info, void **out) {
    static const char op[] = "Generate";
    int64_t max_new, pad_id;
    ort_sampling sampling;
    OrtStatus *st;
    if ((st = ort_attr_int(api, info, op, "max_new_tokens", 32, 0, 1 << 24, &max_new)) ||
        (st = ort_attr_int(api, info, op, "pad_id", 0, INT64_MIN, INT64_MAX, &pad_id)) ||
        (st = ort_attr_sampling(api, info, op, &sampling))) {
        return st;
    }
    model_kernel *k;
    if ((st = model_kernel_create(api, info, op, &k))) return st;
    k->max_new_tokens = max_new;
    k->pad_id = pad_id;
    k->sampling = sampling;
    *out = k;
    return NULL;
}

typedef struct saved_rows {
    float *logits;      /* [rows, n_vocab] */
    int32_t n_vocab;
} saved_rows;

static void save_row(void *user, int32_t row, int32_t j, const float *logits) {
    (void)j;
    saved_rows *s = user;
    memcpy(s->logits + (size_t)row * (size_t)s->n_vocab, logits, (size_t)s->n_vocab * sizeof(float));
}

/* Generates for n rows as sequences 0..n-1 of the slot's context. out holds max_new_tokens
 * ids per row; count[r] gets how many row r produced. */
static OrtStatus *generate_group(model_kernel *k, ort_slot *slot, const int64_t *ids,
                                 int64_t width, const int32_t *lens, int32_t n, int64_t *out,
                                 int64_t *count) {
    const OrtApi *api = k->head.api;
    const char *op = k->head.op->name;
    const int64_t max_new = k->max_new_tokens;
    llm_sampler **samplers = calloc((size_t)n, sizeof *samplers);
    ort_row *rows = calloc((size_t)n, sizeof *rows);
    int32_t *n_past = calloc((size_t)n, sizeof *n_past);
    int32_t *idx = calloc((size_t)n, sizeof *idx);
    bool *active = calloc((size_t)n, sizeof *active);
    saved_rows saved = {malloc((size_t)n * (size_t)k->n_vocab * sizeof(float)), k->n_vocab};
    OrtStatus *st = NULL;
    if (!samplers || !rows || !n_past || !idx || !active || !saved.logits) {
        st = ort_fail(api, ORT_FAIL, op, "out of memory");
    }
    for (int32_t r = 0; r < n && !st; r++) {
        int32_t rc = ort_sampler_create(&k->sampling, &samplers[r]);
        if (rc != LLM_STATUS_OK) {
            st = ort_fail_llm(api, op, rc, "cannot create a sampler");
            break;
        }
        rows[r] = (ort_row){ids + r * width, lens[r], r, 0};
        for (int32_t j = 0; j < lens[r]; j++) llm_sampler_accept(samplers[r], (llm_token)rows[r].ids[j]);
        n_past[r] = lens[r];
        idx[r] = -1;                /* the first token comes from the saved prompt logits */
        active[r] = max_new > 0;
        count[r] = 0;
    }
    if (!st) {
        llm_memory_clear(slot->ctx);
        st = ort_decode_rows(api, op, slot, rows, n, false, save_row, &saved);
    }
    const int32_t n_ctx = (int32_t)llm_context_n_ctx(slot->ctx);
    llm_batch *b = slot->batch;
    while (!st) {
        b->n_tokens = 0;
        for (int32_t r = 0; r < n && !st; r++) {
            if (!active[r]) continue;
            llm_token tok = -1;
            int32_t rc;
            if (idx[r] < 0) {
                rc = llm_sampler_sample_logits(samplers[r], saved.logits + (size_t)r * (size_t)k->n_vocab,
                                               k->n_vocab, &tok);
                if (rc == LLM_STATUS_OK) llm_sampler_accept(samplers[r], tok);
            } else {
                rc = llm_sampler_sample(samplers[r], slot->ctx, idx[r], &tok);
            }
            if (rc != LLM_STATUS_OK) {
                st = ort_fail_llm(api, op, rc, "sampling failed");
                break;
            }
            if (llm_token_is_eog(k->model, tok)) {
                active[r] = false;
                continue;
            }
            out[r * max_new + count[r]++] = tok;
            if (count[r] >= max_new || n_past[r] >= n_ctx) {
                active[r] = false;
                continue;
            }
            const int32_t i = b->n_tokens++;
            b->token[i] = tok;
            b->pos[i] = n_past[r]++;
            b->n_seq_id[i] = 1;
            b->seq_id[i][0] = r;
            b->logits[i] = 1;
            idx[r] = i;
        }
        if (st || b->n_tokens == 0) break;
        int32_t rc = llm_decode(slot->ctx, b);
        if (rc != LLM_STATUS_OK) st = ort_fail_llm(api, op, rc, "llm_decode failed");
    }
    for (int32_t r = 0; samplers && r < n; r++) llm_sampler_free(samplers[r]);
    free(samplers);
    free(rows);
    free(n_past);
    free(idx);
    free(active);
    free(saved.logits);
    return st;
}

static OrtStatus *generate_compute(void *p, OrtKernelContext *ctx) {
    model_kernel *k = p;
    const OrtApi *api = k->head.api;
    const char *op = k->head.op->name;
    ort_tensor ids;
    int32_t *lens = NULL;
    OrtStatus *st = read_rows(api, ctx, op, 1, &ids, &lens);
    if (st) return st;
    const int64_t batch = ids.dims[0], width = ids.dims[1], max_new = k->max_new_tokens;
    int64_t *tokens = malloc((size_t)(batch * max_new + 1) * sizeof *tokens);
    int64_t *count = calloc((size_t)(batch + 1), sizeof *count);
    if (!tokens || !count) st = ort_fail(api, ORT_FAIL, op, "out of memory");
    ort_slot slot = {0};
    if (!st && batch > 0) st = ort_pool_get(&k->pool, api, op, &slot);
    for (int64_t g = 0; g < batch && !st; g += k->group) {
        int32_t n = (int32_t)(batch - g < k->group ? batch - g : k->group);
        st = generate_group(k, &slot, (const int64_t *)ids.data + g * width, width, lens + g, n,
                            tokens + g * max_new, count + g);
    }
    if (slot.ctx) ort_pool_put(&k->pool, slot);
    if (!st) {
        int64_t longest = 0;
        for (int64_t b = 0; b < batch; b++) longest = count[b] > longest ? count[b] : longest;
        int64_t dims[2] = {batch, longest};
        void *out_ids = NULL, *out_lens = NULL;
        st = ort_output(api, ctx, op, 0, dims, 2, &out_ids);
        if (!st) st = ort_output(api, ctx, op, 1, dims, 1, &out_lens);
        for (int64_t b = 0; b < batch && !st; b++) {
            if (out_ids) {
                int64_t *row = (int64_t *)out_ids + b * longest;
                for (int64_t j = 0; j < longest; j++) {
                    row[j] = j < count[b] ? tokens[b * max_new + j] : k->pad_id;
                }
            }
            if (out_lens) ((int64_t *)out_lens)[b] = count[b];
        }
    }
    free(tokens);
    free(count);
    free(lens);
    return st;
}

static const ONNXTensorElementDataType ROWS_IN[] = {ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64,
                                                    ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64};
static const ONNXTensorElementDataType GENERATE_OUT[] = {ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64,
                                                         ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64};

const llm_ort_op llm_ort_op_generate = {
    .name = "Generate",
    .n_inputs = 2, .n_required_inputs = 1, .input_types = ROWS_IN,
    .n_outputs = 2, .n_required_outputs = 1, .output_types = GENERATE_OUT,
    .create = generate_create, .compute = generate_compute, .destroy = model_kernel_destroy,
};

/* ---------------------------------------------------------------------------------------------
 * Logits
 *   input  0 input_ids  int64 [batch, len]
 *   input  1 lengths    int64 [batch]   optional
 *   output 0 logits     float [batch, len, n_vocab] (output "all"; zeros past a row's length)
 *                       or [batch, n_vocab] (output "last": each row's last token)
 *   attrs: model_path, output ("all" | "last"), n_ctx, n_batch, n_ubatch, n_seq_max,
 *          n_threads, n_gpu_layers
 * ------------------------------------------------------------------------------------------ */

static OrtStatus *logits_create(const OrtApi *api, const OrtKernelInfo *info, void **out) {
    static const char op[] = "Logits";
    char *which = NULL;
    OrtStatus *st = ort_attr_string(api, info, op, "output", "all", &which);
    if (st) return st;
    bool last = strcmp(which, "last") == 0;
    if (!last && strcmp(which, "all") != 0) {
        st = ort_fail(api, ORT_INVALID_ARGUMENT, op,
                      "attribute output = '%s' is unknown (use 'all' or 'last')", which);
    }
    free(which);
    if (st) return st;
    model_kernel *k;
    if ((st = model_kernel_create(api, info, op, &k))) return st;
    k->last_only = last;
    *out = k;
    return NULL;
}

typedef struct logits_sink {
    float *out;
    int64_t width;      /* positions per row in the output ("all") */
    int32_t n_vocab;
    int64_t row0;       /* batch row of the group's sequence 0 */
    bool last_only;
} logits_sink;

static void store_row(void *user, int32_t row, int32_t j, const float *logits) {
    logits_sink *s = user;
    size_t at = (size_t)(s->row0 + row);
    if (!s->last_only) at = at * (size_t)s->width + (size_t)j;
    memcpy(s->out + at * (size_t)s->n_vocab, logits, (size_t)s->n_vocab * sizeof(float));
}

static OrtStatus *logits_compute(void *p, OrtKernelContext *ctx) {
    model_kernel *k = p;
    const OrtApi *api = k->head.api;
    const char *op = k->head.op->name;
    ort_tensor ids;
    int32_t *lens = NULL;
    OrtStatus *st = read_rows(api, ctx, op, 0, &ids, &lens);
    if (st) return st;
    const int64_t batch = ids.dims[0], width = ids.dims[1];
    int64_t dims[3] = {batch, width, k->n_vocab};
    if (k->last_only) dims[1] = k->n_vocab;
    const size_t rank = k->last_only ? 2 : 3;
    void *out = NULL;
    st = ort_output(api, ctx, op, 0, dims, rank, &out);
    size_t total = 1;
    for (size_t i = 0; i < rank; i++) total *= (size_t)dims[i];
    if (!st && out && total > 0) memset(out, 0, total * sizeof(float));
    ort_row *rows = calloc((size_t)(k->group), sizeof *rows);
    if (!st && !rows) st = ort_fail(api, ORT_FAIL, op, "out of memory");
    ort_slot slot = {0};
    if (!st && out && total > 0) st = ort_pool_get(&k->pool, api, op, &slot);
    for (int64_t g = 0; slot.ctx && g < batch && !st; g += k->group) {
        int32_t n = (int32_t)(batch - g < k->group ? batch - g : k->group);
        for (int32_t r = 0; r < n; r++) {
            rows[r] = (ort_row){(const int64_t *)ids.data + (g + r) * width, lens[g + r], r, 0};
        }
        logits_sink sink = {out, width, k->n_vocab, g, k->last_only};
        llm_memory_clear(slot.ctx);
        st = ort_decode_rows(api, op, &slot, rows, n, !k->last_only, store_row, &sink);
    }
    if (slot.ctx) ort_pool_put(&k->pool, slot);
    free(rows);
    free(lens);
    return st;
}

static const ONNXTensorElementDataType LOGITS_OUT[] = {ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT};

const llm_ort_op llm_ort_op_logits = {
    .name = "Logits",
    .n_inputs = 2, .n_required_inputs = 1, .input_types = ROWS_IN,
    .n_outputs = 1, .n_required_outputs = 1, .output_types = LOGITS_OUT,
    .create = logits_create, .compute = logits_compute, .destroy = model_kernel_destroy,
};
