/* DecodeStep: continuous decoding with state kept in the kernel between Run() calls.
 *
 *   input  0 seq_ids      int64 [n]        the caller's sequence keys (any int64 values)
 *   input  1 tokens       int64 [n, len]   new tokens of each sequence
 *   input  2 lengths      int64 [n]        optional: row i appends tokens[i, :lengths[i]]
 *   input  3 reset        bool  [n]        optional: drop the sequence before appending
 *   output 0 logits       float [n, n_vocab]  logits after each row's last new token
 *                                             (zeros for a row without new tokens)
 *   output 1 next_tokens  int64 [n]        a token sampled from those logits (-1: none)
 *   output 2 n_past       int64 [n]        tokens the sequence holds after this step
 *   attrs: model_path, n_ctx (KV cells shared by all live sequences), max_sequences (8),
 *          n_batch, n_ubatch, n_threads, n_gpu_layers, sampling attributes as Generate
 *
 * The kernel owns one libllm context; each live sequence key is mapped to one of its
 * max_sequences sequence slots and keeps its KV cells there until it is reset. A sequence's
 * sampler sees every token fed to it (for penalties); next_tokens are not added to it until
 * they are fed back. Runs on one kernel are serialised by a mutex (the state is shared);
 * every session has its own kernels, hence its own state. A failed step leaves every
 * sequence as it was before the step (resets asked for in it still apply).
 */
#include "ort_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct seq_state {
    bool used;
    int64_t key;
    int32_t n_past;
    llm_sampler *sampler;
} seq_state;

typedef struct step_kernel {
    ort_kernel_head head;
    pthread_mutex_t lock;
    bool lock_ready;
    llm_model *model;
    ort_slot slot;
    int32_t n_vocab, n_seq;
    ort_sampling sampling;
    seq_state *seqs;
} step_kernel;

static void step_destroy(void *p) {
    step_kernel *k = p;
    for (int32_t s = 0; k->seqs && s < k->n_seq; s++) llm_sampler_free(k->seqs[s].sampler);
    free(k->seqs);
    ort_slot_free(&k->slot);
    ort_model_release(k->model);
    if (k->lock_ready) pthread_mutex_destroy(&k->lock);
    free(k);
}

static OrtStatus *step_create(const OrtApi *api, const OrtKernelInfo *info, void **out) {
    static const char op[] = "DecodeStep";
    step_kernel *k = calloc(1, sizeof *k);
    if (!k) return ort_fail(api, ORT_FAIL, op, "out of memory");
    ort_context_attrs attrs = {0};
    OrtStatus *st = ort_attr_sampling(api, info, op, &k->sampling);
    if (!st) st = ort_attr_context(api, info, op, "max_sequences", 8, &attrs);
    if (!st) {
        int32_t rc = ort_model_acquire(attrs.model_path, attrs.n_gpu_layers, false, &k->model);
        if (rc != LLM_STATUS_OK) {
            char what[512];
            snprintf(what, sizeof what, "cannot load the model '%s'", attrs.model_path);
            st = ort_fail_llm(api, op, rc, what);
        }
    }
    if (!st) {
        llm_context_params params;
        ort_context_params(&attrs, &params);
        st = ort_slot_create(api, op, k->model, &params, &k->slot);
    }
    if (!st) {
        k->n_seq = (int32_t)attrs.n_seq_max;
        k->n_vocab = llm_model_n_vocab(k->model);
        k->seqs = calloc((size_t)k->n_seq, sizeof *k->seqs);
        if (!k->seqs) st = ort_fail(api, ORT_FAIL, op, "out of memory");
    }
    for (int32_t s = 0; !st && s < k->n_seq; s++) {
        int32_t rc = ort_sampler_create(&k->sampling, &k->seqs[s].sampler);
        if (rc != LLM_STATUS_OK) st = ort_fail_llm(api, op, rc, "cannot create a sampler");
    }
    if (!st) {
        if (pthread_mutex_init(&k->lock, NULL) == 0) k->lock_ready = true;
        else st = ort_fail(api, ORT_FAIL, op, "cannot create a mutex");
    }
    free(attrs.model_path);
    if (st) {
        step_destroy(k);
        return st;
    }
    *out = k;
    return NULL;
}

static int32_t find_seq(const step_kernel *k, int64_t key) {
    for (int32_t s = 0; s < k->n_seq; s++) {
        if (k->seqs[s].used && k->seqs[s].key == key) return s;
    }
    return -1;
}

static void drop_seq(step_kernel *k, int32_t s) {
    llm_memory_seq_rm(k->slot.ctx, s, -1, -1);
    llm_sampler_reset(k->seqs[s].sampler);
    k->seqs[s].used = false;
    k->seqs[s].n_past = 0;
}

typedef struct step_sink {
    float *logits;          /* [n, n_vocab] */
    const int32_t *row_of;  /* decoded row -> input row */
    int32_t n_vocab;
} step_sink;

static void step_store(void *user, int32_t row, int32_t j, const float *logits) {
    (void)j;
    step_sink *s = user;
    memcpy(s->logits + (size_t)s->row_of[row] * (size_t)s->n_vocab, logits,
           (size_t)s->n_vocab * sizeof(float));
}

/* The step proper, under the kernel's lock. */
static OrtStatus *step_locked(step_kernel *k, OrtKernelContext *ctx, const int64_t *keys,
                              int64_t n, const int64_t *tokens, int64_t width,
                              const int32_t *lens, const bool *reset, float *logits,
                              int32_t *seq_of, int32_t *row_of, ort_row *rows, bool *fresh) {
    const OrtApi *api = k->head.api;
    const char *op = k->head.op->name;
    OrtStatus *st = NULL;
    for (int64_t i = 0; reset && i < n; i++) {
        int32_t s = reset[i] ? find_seq(k, keys[i]) : -1;
        if (s >= 0) drop_seq(k, s);
    }
    for (int64_t i = 0; i < n; i++) {
        fresh[i] = false;
        seq_of[i] = -1;
    }
    int32_t n_rows = 0;
    for (int64_t i = 0; i < n && !st; i++) {
        int32_t s = find_seq(k, keys[i]);
        if (s < 0 && lens[i] > 0) {
            for (s = 0; s < k->n_seq && k->seqs[s].used; s++) {}
            if (s == k->n_seq) {
                st = ort_fail(api, ORT_FAIL, op,
                              "sequence %lld is new but all max_sequences = %d slots are in use "
                              "(reset a finished sequence first)", (long long)keys[i], k->n_seq);
                break;
            }
            k->seqs[s] = (seq_state){true, keys[i], 0, k->seqs[s].sampler};
            fresh[i] = true;
        }
        seq_of[i] = s;
        if (lens[i] > 0) {
            rows[n_rows] = (ort_row){tokens + i * width, lens[i], s, k->seqs[s].n_past};
            row_of[n_rows++] = (int32_t)i;
        }
    }
    if (!st) {
        step_sink sink = {logits, row_of, k->n_vocab};
        st = ort_decode_rows(api, op, &k->slot, rows, n_rows, false, step_store, &sink);
        if (st) {
            /* Take back whatever the chunks that did succeed added. */
            for (int32_t r = 0; r < n_rows; r++) {
                llm_memory_seq_rm(k->slot.ctx, rows[r].seq, rows[r].pos0, -1);
            }
        }
    }
    if (st) {
        for (int64_t i = 0; i < n; i++) {
            if (fresh[i]) drop_seq(k, seq_of[i]);
        }
        return st;
    }
    for (int32_t r = 0; r < n_rows; r++) {
        seq_state *q = &k->seqs[rows[r].seq];
        for (int32_t j = 0; j < rows[r].n; j++) llm_sampler_accept(q->sampler, (llm_token)rows[r].ids[j]);
        q->n_past += rows[r].n;
    }
    (void)ctx;
    return NULL;
}

static OrtStatus *step_compute(void *p, OrtKernelContext *ctx) {
    step_kernel *k = p;
    const OrtApi *api = k->head.api;
    const char *op = k->head.op->name;
    ort_tensor keys, tokens, lengths, reset;
    OrtStatus *st;
    if ((st = ort_input(api, ctx, op, 0, "seq_ids", ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, 1, 1,
                        false, &keys)) ||
        (st = ort_input(api, ctx, op, 1, "tokens", ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, 2, 2,
                        false, &tokens)) ||
        (st = ort_input(api, ctx, op, 2, "lengths", ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, 0, 8,
                        true, &lengths)) ||
        (st = ort_input(api, ctx, op, 3, "reset", ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL, 0, 8, true,
                        &reset))) {
        return st;
    }
    const int64_t n = keys.dims[0], width = tokens.dims[1];
    if (tokens.dims[0] != n) {
        return ort_fail(api, ORT_INVALID_ARGUMENT, op,
                        "tokens must have one row per sequence id: shape [%lld, len], got "
                        "[%lld, %lld]", (long long)n, (long long)tokens.dims[0], (long long)width);
    }
    if (reset.value && (reset.rank != 1 || reset.dims[0] != n)) {
        return ort_fail(api, ORT_INVALID_ARGUMENT, op,
                        "reset must have shape [%lld] (one flag per sequence id), got %zu-D with "
                        "%zu elements", (long long)n, reset.rank, reset.count);
    }
    if (width > INT32_MAX) return ort_fail(api, ORT_INVALID_ARGUMENT, op, "rows are too long");
    const int64_t *key = keys.data;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < i; j++) {
            if (key[i] == key[j]) {
                return ort_fail(api, ORT_INVALID_ARGUMENT, op,
                                "sequence id %lld appears twice (rows %lld and %lld)",
                                (long long)key[i], (long long)j, (long long)i);
            }
        }
    }
    const size_t nn = (size_t)(n ? n : 1);
    int32_t *lens = malloc(nn * sizeof *lens);
    int32_t *seq_of = malloc(nn * sizeof *seq_of);
    int32_t *row_of = malloc(nn * sizeof *row_of);
    ort_row *rows = malloc(nn * sizeof *rows);
    bool *fresh = malloc(nn * sizeof *fresh);
    float *logits = calloc(nn * (size_t)k->n_vocab, sizeof *logits);
    if (!lens || !seq_of || !row_of || !rows || !fresh || !logits) {
        st = ort_fail(api, ORT_FAIL, op, "out of memory");
    }
    if (!st) st = ort_lengths(api, op, "lengths", &lengths, n, width, 0, lens);
    if (!st) st = ort_check_ids(api, op, "tokens", tokens.data, n, width, lens);
    void *out_logits = NULL, *out_next = NULL, *out_past = NULL;
    if (!st) {
        int64_t dims[2] = {n, k->n_vocab};
        st = ort_output(api, ctx, op, 0, dims, 2, &out_logits);
        if (!st) st = ort_output(api, ctx, op, 1, dims, 1, &out_next);
        if (!st) st = ort_output(api, ctx, op, 2, dims, 1, &out_past);
    }
    if (!st) {
        pthread_mutex_lock(&k->lock);
        st = step_locked(k, ctx, key, n, tokens.data, width, lens, reset.data, logits, seq_of,
                         row_of, rows, fresh);
        for (int64_t i = 0; !st && i < n; i++) {
            const int32_t s = seq_of[i];
            const float *row = logits + (size_t)i * (size_t)k->n_vocab;
            int64_t next = -1;
            if (out_next && lens[i] > 0) {
                llm_token tok = -1;
                int32_t rc = llm_sampler_sample_logits(k->seqs[s].sampler, row, k->n_vocab, &tok);
                if (rc != LLM_STATUS_OK) st = ort_fail_llm(api, op, rc, "sampling failed");
                next = tok;
            }
            if (out_next) ((int64_t *)out_next)[i] = next;
            if (out_past) ((int64_t *)out_past)[i] = s >= 0 ? k->seqs[s].n_past : 0;
        }
        pthread_mutex_unlock(&k->lock);
    }
    if (!st && out_logits && n > 0) {
        memcpy(out_logits, logits, (size_t)n * (size_t)k->n_vocab * sizeof *logits);
    }
    free(lens);
    free(seq_of);
    free(row_of);
    free(rows);
    free(fresh);
    free(logits);
    return st;
}

static const ONNXTensorElementDataType STEP_IN[] = {
    ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64,
    ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL};
static const ONNXTensorElementDataType STEP_OUT[] = {ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT,
                                                     ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64,
                                                     ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64};

const llm_ort_op llm_ort_op_decode_step = {
    .name = "DecodeStep",
    .n_inputs = 4, .n_required_inputs = 2, .input_types = STEP_IN,
    .n_outputs = 3, .n_required_outputs = 1, .output_types = STEP_OUT,
    .create = step_create, .compute = step_compute, .destroy = step_destroy,
};
