/* Helpers shared by the libllm ONNX Runtime ops: the op table entry, error statuses,
 * attributes, input and output tensors, the process-wide model cache and a pool of contexts.
 *
 * Every helper that can fail returns an OrtStatus * (NULL: success) whose message names the op
 * and the cause; the kernels hand it straight back to the runtime, which turns it into an
 * exception (Python) or a failed Run (C/C++). Nothing here aborts.
 */
#ifndef LLM_ORT_UTIL_H
#define LLM_ORT_UTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "libllm.h"
#include "ort_abi.h"

#define LLM_ORT_DOMAIN "ai.libllm"
#define LLM_ORT_MAX_RANK 8

/* ---------------------------------------------------------------------------------------------
 * Ops and kernels
 * ------------------------------------------------------------------------------------------ */

/* One op: the OrtCustomOp the runtime reads (first member), plus what the generic callbacks in
 * register.c need. Inputs past n_required_inputs (outputs past n_required_outputs) are
 * optional. */
typedef struct llm_ort_op {
    OrtCustomOp base;
    const char *name;
    size_t n_inputs, n_required_inputs;
    const ONNXTensorElementDataType *input_types;
    size_t n_outputs, n_required_outputs;
    const ONNXTensorElementDataType *output_types;
    OrtStatus *(*create)(const OrtApi *api, const OrtKernelInfo *info, void **kernel);
    OrtStatus *(*compute)(void *kernel, OrtKernelContext *ctx);
    void (*destroy)(void *kernel);
} llm_ort_op;

/* Every kernel struct starts with this, so the generic callbacks can dispatch. The op's
 * create() allocates the kernel; register.c fills the head once create() succeeded. */
typedef struct ort_kernel_head {
    const OrtApi *api;
    const struct llm_ort_op *op;
} ort_kernel_head;

extern const llm_ort_op llm_ort_op_tokenize;
extern const llm_ort_op llm_ort_op_detokenize;
extern const llm_ort_op llm_ort_op_generate;
extern const llm_ort_op llm_ort_op_logits;
extern const llm_ort_op llm_ort_op_decode_step;

/* ---------------------------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------------------------ */

/* A status with code ORT_INVALID_ARGUMENT (or `code`) and the formatted message prefixed by
 * "<op>: ". Never NULL unless the runtime itself cannot allocate. */
OrtStatus *ort_fail(const OrtApi *api, OrtErrorCode code, const char *op, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A status for a failed libllm call: "<op>: <what>: <llm_last_error()> (<status name>)".
 * Call it on the thread that made the failing call, before any other libllm call. */
OrtStatus *ort_fail_llm(const OrtApi *api, const char *op, int32_t status, const char *what);

/* Releases a status (NULL is fine). */
void ort_status_free(const OrtApi *api, OrtStatus *status);

/* ---------------------------------------------------------------------------------------------
 * Attributes (read when a kernel is created)
 * ------------------------------------------------------------------------------------------ */

/* An integer attribute in [lo, hi]; `def` when absent. A float attribute of that name is an
 * error (the caller probably meant an integer). */
OrtStatus *ort_attr_int(const OrtApi *api, const OrtKernelInfo *info, const char *op,
                        const char *name, int64_t def, int64_t lo, int64_t hi, int64_t *out);

/* A float attribute (an integer attribute is accepted and converted); `def` when absent. */
OrtStatus *ort_attr_float(const OrtApi *api, const OrtKernelInfo *info, const char *op,
                          const char *name, float def, float *out);

/* A string attribute, malloc'd into *out (free it); a copy of `def` when absent, or an error
 * naming the attribute when absent and def is NULL. */
OrtStatus *ort_attr_string(const OrtApi *api, const OrtKernelInfo *info, const char *op,
                           const char *name, const char *def, char **out);

/* Sampling settings: the same chain as the Python Sampler (penalties, then greedy when
 * temperature <= 0, else top-k, top-p, min-p, temperature and a seeded draw). */
typedef struct ort_sampling {
    float temperature, top_p, min_p;
    float repeat_penalty, frequency_penalty, presence_penalty;
    int32_t top_k, penalty_last_n;
    uint32_t seed;          /* LLM_DEFAULT_SEED: a fresh random seed per sampler */
} ort_sampling;

OrtStatus *ort_attr_sampling(const OrtApi *api, const OrtKernelInfo *info, const char *op,
                             ort_sampling *out);

/* A new sampler for the settings; the status is libllm's. */
int32_t ort_sampler_create(const ort_sampling *s, llm_sampler **out);

/* Context settings shared by the model-running ops. */
typedef struct ort_context_attrs {
    char *model_path;       /* malloc'd */
    int32_t n_gpu_layers;
    uint32_t n_ctx, n_batch, n_ubatch, n_seq_max;
    int32_t n_threads;
} ort_context_attrs;

/* Reads model_path, n_gpu_layers, n_ctx, n_batch, n_ubatch, n_threads and the sequence-count
 * attribute named seq_attr (default seq_default). */
OrtStatus *ort_attr_context(const OrtApi *api, const OrtKernelInfo *info, const char *op,
                            const char *seq_attr, int64_t seq_default, ort_context_attrs *out);

/* ---------------------------------------------------------------------------------------------
 * Tensors (used while a kernel runs)
 * ------------------------------------------------------------------------------------------ */

typedef struct ort_tensor {
    const OrtValue *value;      /* NULL: an optional input the node does not give */
    ONNXTensorElementDataType type;
    size_t rank;
    int64_t dims[LLM_ORT_MAX_RANK];
    size_t count;               /* elements */
    void *data;                 /* NULL for string tensors */
} ort_tensor;

/* Input `index`, which must be a tensor of type `want` with rank in [min_rank, max_rank].
 * A missing input gives t->value == NULL when `optional`, else an error naming the input. */
OrtStatus *ort_input(const OrtApi *api, const OrtKernelContext *ctx, const char *op,
                     size_t index, const char *name, ONNXTensorElementDataType want,
                     size_t min_rank, size_t max_rank, bool optional, ort_tensor *t);

/* The bytes of every string of a string tensor: one malloc'd block holding them back to back
 * (*bytes, NUL-terminated as a whole) and count + 1 offsets (string i is
 * [offsets[i], offsets[i + 1])). Free both. */
OrtStatus *ort_input_strings(const OrtApi *api, const char *op, const ort_tensor *t,
                             char **bytes, size_t **offsets);

/* Output `index` with the given shape; *data NULL when the node does not ask for it. */
OrtStatus *ort_output(const OrtApi *api, OrtKernelContext *ctx, const char *op, size_t index,
                      const int64_t *dims, size_t rank, void **data);

/* A string output of the given shape filled with n NUL-terminated strings (skipped when the
 * node does not ask for it). */
OrtStatus *ort_output_strings(const OrtApi *api, OrtKernelContext *ctx, const char *op,
                              size_t index, const int64_t *dims, size_t rank,
                              const char *const *strings, size_t n);

/* Checks that an optional lengths tensor [batch] fits rows of `width` tokens (each length in
 * [min_len, width]) and writes the lengths (width for every row when t is absent). */
OrtStatus *ort_lengths(const OrtApi *api, const char *op, const char *name, const ort_tensor *t,
                       int64_t batch, int64_t width, int64_t min_len, int32_t *lengths);

/* Checks that every used id (row r, columns below lengths[r]) of an int64 [batch, width]
 * tensor fits a llm_token (the model checks the vocabulary range itself). */
OrtStatus *ort_check_ids(const OrtApi *api, const char *op, const char *name,
                         const int64_t *ids, int64_t batch, int64_t width,
                         const int32_t *lengths);

/* Copies text to a malloc'd NUL-terminated string with invalid UTF-8 replaced by U+FFFD the
 * way Python's decoder does (each maximal invalid subpart becomes one U+FFFD) and NUL bytes
 * dropped (the runtime's string API takes C strings). NULL when out of memory. */
char *ort_utf8_clean(const char *text, size_t n);

/* ---------------------------------------------------------------------------------------------
 * Shared models and context pools
 * ------------------------------------------------------------------------------------------ */

/* The model at path loaded with n_gpu_layers, loaded once per process and shared: each
 * acquire takes a reference, each release drops one, and the last release frees it. With
 * any_layers, a model of that path loaded with any n_gpu_layers will do (the tokenizer ops).
 * Failure: a libllm status, llm_last_error() on this thread says why. Thread-safe. */
int32_t ort_model_acquire(const char *path, int32_t n_gpu_layers, bool any_layers,
                          llm_model **out);
void ort_model_release(llm_model *model);

/* Reads model_path (and n_gpu_layers unless any_layers) and acquires the model. */
OrtStatus *ort_attr_model(const OrtApi *api, const OrtKernelInfo *info, const char *op,
                          bool any_layers, llm_model **out);

/* A context with a batch of n_batch tokens. A context is used by one thread at a time. */
typedef struct ort_slot {
    llm_context *ctx;
    llm_batch *batch;
} ort_slot;

/* Idle contexts of one kernel: Run() takes one (creating it when all are busy, so concurrent
 * runs never wait on each other) and gives it back. */
typedef struct ort_pool {
    pthread_mutex_t lock;
    llm_model *model;
    llm_context_params params;
    ort_slot *idle;
    size_t n_idle, cap;
} ort_pool;

/* Sets up the pool and creates its first context now, so bad settings fail when the session
 * is created. */
OrtStatus *ort_pool_init(ort_pool *pool, const OrtApi *api, const char *op, llm_model *model,
                         const ort_context_attrs *attrs);
OrtStatus *ort_pool_get(ort_pool *pool, const OrtApi *api, const char *op, ort_slot *out);
void ort_pool_put(ort_pool *pool, ort_slot slot);
void ort_pool_free(ort_pool *pool);     /* frees the idle contexts, not the model */

void ort_slot_free(ort_slot *slot);

/* Creates a context and its batch for the settings. */
OrtStatus *ort_slot_create(const OrtApi *api, const char *op, llm_model *model,
                           const llm_context_params *params, ort_slot *out);

void ort_context_params(const ort_context_attrs *attrs, llm_context_params *out);

/* One row of tokens to decode: ids[0..n) at positions pos0.. in sequence seq. */
typedef struct ort_row {
    const int64_t *ids;
    int32_t n;
    llm_seq_id seq;
    llm_pos pos0;
} ort_row;

/* Receives the logits of row `row`'s token at index `j` within the row. */
typedef void (*ort_emit_fn)(void *user, int32_t row, int32_t j, const float *logits);

/* Decodes the rows in order, filling the slot's batch with up to n_batch tokens per
 * llm_decode (rows of different sequences share a batch), and calls emit for every token
 * (all) or for the last token of each row. A failed llm_decode ends it with a status; the
 * chunks decoded before stay in the cache (the caller clears or removes them). */
OrtStatus *ort_decode_rows(const OrtApi *api, const char *op, ort_slot *slot,
                           const ort_row *rows, int32_t n_rows, bool all, ort_emit_fn emit,
                           void *user);

#endif /* LLM_ORT_UTIL_H */
