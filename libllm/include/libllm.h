/*
 * libllm.h -- the public C ABI of libllm, a small LLM inference engine for GGUF models.
 *
 * Conventions (read once, they hold for every declaration below):
 *  - Every symbol starts with llm_. Handles are opaque; every handle has one *_free function
 *    and every *_free accepts NULL.
 *  - A fallible call returns an int32_t status (enum llm_status): 0 ok, > 0 a recoverable
 *    outcome (the cache is full, the call was aborted), < 0 an error. On any non-zero status
 *    llm_last_error() holds a message. No call aborts the process on bad input.
 *  - Output buffers belong to the caller. Functions that fill a buffer return the number of
 *    elements written, or minus the number needed when the buffer is too small
 *    (LLM_INT32_ERROR on a hard error).
 *  - Parameter structs start with a `size` field (filled by llm_*_default_params); new fields
 *    are only ever appended.
 *  - Thread rules: an llm_model is read-only after loading and may be shared by any number of
 *    contexts on any threads. An llm_context or llm_sampler is used by one thread at a time.
 */
#ifndef LIBLLM_H
#define LIBLLM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#  define LLM_API __declspec(dllexport)
#elif defined(__GNUC__)
#  define LLM_API __attribute__((visibility("default")))
#else
#  define LLM_API
#endif

#define LLM_VERSION_MAJOR 0
#define LLM_VERSION_MINOR 1
#define LLM_VERSION_PATCH 0
/* Bumped whenever a declaration below changes incompatibly; bindings refuse unknown values. */
#define LLM_ABI_VERSION 1

/* Returned by functions that return a count, when the call failed outright. */
#define LLM_INT32_ERROR INT32_MIN

typedef int32_t llm_token;   /* vocabulary id */
typedef int32_t llm_pos;     /* position of a token in its sequence */
typedef int32_t llm_seq_id;  /* sequence id, 0 <= id < n_seq_max */

typedef struct llm_model llm_model;
typedef struct llm_context llm_context;
typedef struct llm_sampler llm_sampler;

typedef enum llm_status {
    LLM_STATUS_OK = 0,
    LLM_STATUS_MEMORY_FULL = 1,       /* no room in the cache for the batch; nothing changed */
    LLM_STATUS_ABORTED = 2,           /* a callback asked to stop; see llm_decode */
    LLM_STATUS_CANNOT_REWIND = 3,     /* recurrent state cannot drop a partial range */
    LLM_STATUS_INVALID_ARGUMENT = -1, /* a bad parameter, token, position, sequence id */
    LLM_STATUS_IO = -2,               /* a file could not be opened, read, mapped or written */
    LLM_STATUS_BAD_FORMAT = -3,       /* a file or buffer is malformed, truncated or foreign */
    LLM_STATUS_UNSUPPORTED = -4,      /* well-formed, but uses something libllm lacks */
    LLM_STATUS_OUT_OF_MEMORY = -5,    /* an allocation failed */
    LLM_STATUS_INTERNAL = -6          /* a bug in libllm */
} llm_status;

typedef enum llm_type {               /* tensor element types; values are GGUF's (ggml_type) */
    LLM_TYPE_F32 = 0,
    LLM_TYPE_F16 = 1,
    LLM_TYPE_Q4_0 = 2,
    LLM_TYPE_Q8_0 = 8,
    LLM_TYPE_BF16 = 30
} llm_type;

/* ---------------------------------------------------------------------------------------------
 * Library
 * ------------------------------------------------------------------------------------------ */

/* "MAJOR.MINOR.PATCH"; static storage. */
LLM_API const char *llm_version(void);

/* LLM_ABI_VERSION of the library actually loaded. */
LLM_API uint32_t llm_abi_version(void);

/* A short English name for a status code ("memory full"); static storage, never NULL. */
LLM_API const char *llm_status_str(int32_t status);

/* The message of the last failed call on this thread ("" if none). Valid until the next
 * libllm call on the same thread. */
LLM_API const char *llm_last_error(void);

typedef enum llm_log_level {
    LLM_LOG_DEBUG = 0,
    LLM_LOG_INFO = 1,
    LLM_LOG_WARN = 2,
    LLM_LOG_ERROR = 3
} llm_log_level;

/* Receives one log line (no trailing newline). May be called from any libllm thread. */
typedef void (*llm_log_fn)(int32_t level, const char *message, void *user_data);

/* Routes library log lines to fn (NULL: the default, lines at WARN and above to stderr).
 * Not thread-safe with respect to concurrent logging; call it before loading models. */
LLM_API void llm_log_set(llm_log_fn fn, void *user_data);

/* Progress of a long operation, in [0, 1]. Return false to abort the operation. */
typedef bool (*llm_progress_fn)(float progress, void *user_data);

/* ---------------------------------------------------------------------------------------------
 * Model
 * ------------------------------------------------------------------------------------------ */

typedef struct llm_model_params {
    uint32_t size;              /* sizeof(llm_model_params) */
    int32_t n_gpu_layers;       /* layers to offload to a GPU (0: CPU only) */
    bool use_mmap;              /* map the file (default) instead of reading it into memory */
    bool vocab_only;            /* load only the tokenizer: no weights, no contexts */
    llm_progress_fn progress;   /* optional; called during loading */
    void *progress_user_data;
} llm_model_params;

LLM_API void llm_model_default_params(llm_model_params *params);

/* Loads a GGUF file. On success *out owns the model (free with llm_model_free); on failure
 * *out is NULL and the status says why (LLM_STATUS_IO, _BAD_FORMAT, _UNSUPPORTED, _ABORTED).
 * params may be NULL for the defaults. The model keeps the file mapped until it is freed. */
LLM_API int32_t llm_model_load(const char *path, const llm_model_params *params,
                               llm_model **out);

/* Frees the model. All contexts created from it must be freed first. */
LLM_API void llm_model_free(llm_model *model);

LLM_API int32_t llm_model_n_vocab(const llm_model *model);
LLM_API int32_t llm_model_n_embd(const llm_model *model);
LLM_API int32_t llm_model_n_layer(const llm_model *model);
LLM_API int32_t llm_model_n_head(const llm_model *model);
LLM_API int32_t llm_model_n_head_kv(const llm_model *model);
LLM_API int32_t llm_model_n_ctx_train(const llm_model *model);
LLM_API uint64_t llm_model_n_params(const llm_model *model);   /* elements of all weights */
LLM_API uint64_t llm_model_size(const llm_model *model);       /* bytes of all weights */

/* general.architecture ("llama", "qwen2", ...); static or model-owned storage. */
LLM_API const char *llm_model_arch(const llm_model *model);

/* Metadata as text: the value of `key` (numbers printed, arrays summarised as "[n items]").
 * Returns the length written without NUL, minus the size needed (NUL included) when buf is
 * too small, or LLM_INT32_ERROR when the key does not exist. */
LLM_API int32_t llm_model_meta_str(const llm_model *model, const char *key, char *buf,
                                   int32_t buf_size);

/* Number of metadata keys, and the i-th key (model-owned, valid while the model lives). */
LLM_API int32_t llm_model_meta_count(const llm_model *model);
LLM_API const char *llm_model_meta_key(const llm_model *model, int32_t i);

/* Weight tensors: count, and the i-th tensor's name, type, and dims (ne[0] innermost). */
LLM_API int32_t llm_model_tensor_count(const llm_model *model);

typedef struct llm_tensor_info {
    uint32_t size;              /* sizeof(llm_tensor_info), set by the caller */
    const char *name;           /* model-owned */
    int32_t type;               /* llm_type (or another GGUF type id) */
    int32_t n_dims;
    int64_t ne[4];              /* dims, innermost first (GGUF order); unused dims are 1 */
    uint64_t n_bytes;
} llm_tensor_info;

LLM_API int32_t llm_model_tensor_info(const llm_model *model, int32_t i, llm_tensor_info *info);

/* Dequantizes the whole tensor named `name` to float32 into dst (capacity n_dst floats).
 * Returns LLM_STATUS_OK, or _INVALID_ARGUMENT if the name is unknown or dst too small. */
LLM_API int32_t llm_model_tensor_to_f32(const llm_model *model, const char *name, float *dst,
                                        size_t n_dst);

/* ---------------------------------------------------------------------------------------------
 * Vocabulary
 * ------------------------------------------------------------------------------------------ */

LLM_API llm_token llm_token_bos(const llm_model *model);   /* -1 if none */
LLM_API llm_token llm_token_eos(const llm_model *model);   /* -1 if none */
LLM_API bool llm_token_is_eog(const llm_model *model, llm_token token); /* end of generation */
LLM_API bool llm_vocab_add_bos(const llm_model *model);    /* tokenizer.ggml.add_bos_token */

/* Tokenizes text_len bytes of UTF-8. add_special: prepend BOS when the model asks for it.
 * parse_special: text like "<s>" becomes the control token rather than plain text.
 * Returns the number of tokens written, or minus the number needed if n_tokens_max is too
 * small, or LLM_INT32_ERROR on error (see llm_last_error). */
LLM_API int32_t llm_tokenize(const llm_model *model, const char *text, int32_t text_len,
                             llm_token *tokens, int32_t n_tokens_max, bool add_special,
                             bool parse_special);

/* The bytes of one token as they appear in text (a byte token gives its byte; "▁" gives a
 * space). special: also render control tokens. Not NUL-terminated. Returns bytes written, or
 * minus the size needed, or LLM_INT32_ERROR for an invalid token. */
LLM_API int32_t llm_token_to_piece(const llm_model *model, llm_token token, char *buf,
                                   int32_t buf_size, bool special);

/* Text of a token sequence, as the tokenizer's reference decoder gives it (the leading space
 * the tokenizer added is removed). remove_special: drop a leading BOS / trailing EOS.
 * unparse_special: render control tokens as text. Not NUL-terminated. Returns bytes written,
 * or minus the size needed, or LLM_INT32_ERROR on an invalid token. */
LLM_API int32_t llm_detokenize(const llm_model *model, const llm_token *tokens, int32_t n_tokens,
                               char *buf, int32_t buf_size, bool remove_special,
                               bool unparse_special);

/* ---------------------------------------------------------------------------------------------
 * Context
 * ------------------------------------------------------------------------------------------ */

typedef struct llm_context_params {
    uint32_t size;              /* sizeof(llm_context_params) */
    uint32_t n_ctx;             /* KV cells (0: the model's training context) */
    uint32_t n_batch;           /* most tokens one llm_decode call accepts */
    uint32_t n_ubatch;          /* most tokens computed at once (micro-batch) */
    uint32_t n_seq_max;         /* distinct sequence ids, 1..256 */
    int32_t n_threads;          /* compute threads (<= 0: the number of cores) */
    uint32_t seed;              /* reserved for stochastic parts of the context */
    int32_t type_k;             /* llm_type of cached keys: F32 or F16 (default F16) */
    int32_t type_v;             /* llm_type of cached values: F32 or F16 (default F16) */
    llm_progress_fn abort_callback; /* optional; polled between micro-batches: false aborts */
    void *abort_user_data;
    /* Recurrent and hybrid models (mamba, mamba2, jamba): snapshots of each sequence's state
     * every snapshot_interval positions (0: off) in a pool of n_snapshots states allocated
     * with the context (0: 8 per sequence), so that llm_memory_seq_rm(seq, p, -1) can roll a
     * sequence back (see there). Ignored by attention-only models. */
    uint32_t snapshot_interval;
    uint32_t n_snapshots;
} llm_context_params;

LLM_API void llm_context_default_params(llm_context_params *params);

/* Creates a context: allocates the KV cache and every compute buffer now, so decoding does
 * not allocate. The model must outlive the context. params may be NULL for the defaults. */
LLM_API int32_t llm_context_create(llm_model *model, const llm_context_params *params,
                                   llm_context **out);

LLM_API void llm_context_free(llm_context *ctx);

LLM_API const llm_model *llm_context_model(const llm_context *ctx);
LLM_API uint32_t llm_context_n_ctx(const llm_context *ctx);
LLM_API uint32_t llm_context_n_batch(const llm_context *ctx);
LLM_API uint32_t llm_context_n_ubatch(const llm_context *ctx);
LLM_API uint32_t llm_context_n_seq_max(const llm_context *ctx);

/* Changes the compute thread count (the pool is rebuilt outside decode). */
LLM_API int32_t llm_context_set_n_threads(llm_context *ctx, int32_t n_threads);

typedef struct llm_context_stats {
    uint32_t size;              /* sizeof(llm_context_stats), set by the caller */
    uint64_t n_alloc;           /* heap allocations made by this context so far */
    uint64_t n_alloc_bytes;     /* bytes those allocations asked for */
    uint64_t n_alloc_decode;    /* allocations made inside llm_decode */
    uint64_t n_decode;          /* successful llm_decode calls */
    uint64_t n_tokens_decoded;  /* tokens computed by those calls */
    uint32_t n_cells_used;      /* KV cells holding at least one sequence */
    uint32_t n_cells_total;     /* KV cells in all */
} llm_context_stats;

LLM_API int32_t llm_context_get_stats(const llm_context *ctx, llm_context_stats *stats);

/* ---------------------------------------------------------------------------------------------
 * Batches and decoding
 * ------------------------------------------------------------------------------------------ */

/* A batch of tokens. Token i has id token[i], position pos[i], belongs to the n_seq_id[i]
 * sequences seq_id[i][0..n_seq_id[i]), and its logits are kept when logits[i] != 0.
 * The caller owns every array; llm_batch_init can allocate them. */
typedef struct llm_batch {
    int32_t n_tokens;
    llm_token *token;
    llm_pos *pos;
    int32_t *n_seq_id;
    llm_seq_id **seq_id;
    int8_t *logits;
} llm_batch;

/* Allocates a batch with room for n_tokens_max tokens, each in up to n_seq_max sequences;
 * n_tokens is set to 0. Returns NULL when out of memory. Free with llm_batch_free. */
LLM_API llm_batch *llm_batch_init(int32_t n_tokens_max, int32_t n_seq_max);
LLM_API void llm_batch_free(llm_batch *batch);

/* Runs the model over a batch. Rules: at most n_batch tokens; ids within the vocabulary;
 * sequence ids within [0, n_seq_max); for each sequence its positions in the batch continue
 * from its last position in the cache (or start anywhere >= 0 when it is empty) and go up by
 * one. A bad batch returns LLM_STATUS_INVALID_ARGUMENT and changes nothing.
 * LLM_STATUS_MEMORY_FULL: the batch does not fit in the free cells; nothing changed.
 * LLM_STATUS_ABORTED: the abort callback stopped it between micro-batches; the micro-batches
 * finished before stay in the cache, the rest left no trace; logits are not available.
 * On success the logits of the flagged tokens are available until the next llm_decode. */
LLM_API int32_t llm_decode(llm_context *ctx, const llm_batch *batch);

/* Rows of logits from the last llm_decode: one per flagged token, in batch order. */
LLM_API int32_t llm_n_outputs(const llm_context *ctx);

/* All output rows (n_outputs x n_vocab floats), context-owned, valid until the next
 * llm_decode or llm_context_free. NULL if there are none. */
LLM_API float *llm_get_logits(llm_context *ctx);

/* Logits of batch token i (negative i counts from the end: -1 is the last token) or NULL
 * when that token's logits were not requested (llm_last_error says so). Same lifetime. */
LLM_API float *llm_get_logits_ith(llm_context *ctx, int32_t i);

/* ---------------------------------------------------------------------------------------------
 * Memory (the KV cache), per sequence. p0 < 0 means "from the start", p1 < 0 "to the end".
 * ------------------------------------------------------------------------------------------ */

/* Drops every cell and sequence. */
LLM_API void llm_memory_clear(llm_context *ctx);

/* Removes positions [p0, p1) of seq (seq < 0: of every sequence). A recurrent state
 * (mamba, mamba2, and the Mamba layers of a hybrid) cannot lose part of its past: removing
 * part of a sequence returns LLM_STATUS_CANNOT_REWIND and changes nothing, except for a tail
 * [p0, -1) when the context keeps snapshots (snapshot_interval): the sequence then rolls back
 * to its newest snapshot that has seen no position >= p0, and may end before p0 - 1 (every
 * layer's memory ends at the same position; llm_memory_seq_pos_max says where): decode the
 * positions after it again. On a hybrid model the KV cache and the recurrent state move
 * together: the call succeeds or fails for both. */
LLM_API int32_t llm_memory_seq_rm(llm_context *ctx, llm_seq_id seq, llm_pos p0, llm_pos p1);

/* Makes dst share src's cells in [p0, p1) (no data is copied). dst's old cells in that
 * range are dropped first. */
LLM_API int32_t llm_memory_seq_cp(llm_context *ctx, llm_seq_id src, llm_seq_id dst, llm_pos p0,
                                  llm_pos p1);

/* Removes every sequence but seq. */
LLM_API int32_t llm_memory_seq_keep(llm_context *ctx, llm_seq_id seq);

/* Adds delta to the positions [p0, p1) of seq (a context shift: e.g. after seq_rm of
 * [n_keep, n_keep + n_discard), seq_add(seq, n_keep + n_discard, -1, -n_discard)). Cached keys
 * are re-rotated before the next decode. Cells seq shares with other sequences are copied
 * first, so the others keep their positions (LLM_STATUS_MEMORY_FULL if no free cells are left
 * for that; nothing changes then). Cells moved below position 0 are dropped. */
LLM_API int32_t llm_memory_seq_add(llm_context *ctx, llm_seq_id seq, llm_pos p0, llm_pos p1,
                                   llm_pos delta);

/* Divides the positions [p0, p1) of seq by d > 0 (self-extend); same rules as seq_add. */
LLM_API int32_t llm_memory_seq_div(llm_context *ctx, llm_seq_id seq, llm_pos p0, llm_pos p1,
                                   int32_t d);

/* Smallest / largest position of seq in the cache, -1 when seq is empty or invalid. */
LLM_API llm_pos llm_memory_seq_pos_min(const llm_context *ctx, llm_seq_id seq);
LLM_API llm_pos llm_memory_seq_pos_max(const llm_context *ctx, llm_seq_id seq);

/* ---------------------------------------------------------------------------------------------
 * Memory breakdown: bytes per device. Weights are either used straight from the mapped file
 * (mapped: the OS pages them in and may drop them) or held in libllm's own buffers
 * (resident: converted copies, or the whole file when use_mmap is false).
 * ------------------------------------------------------------------------------------------ */

typedef struct llm_memory_breakdown {
    uint32_t size;              /* sizeof(llm_memory_breakdown), set by the caller */
    int32_t device;             /* -1: host memory; 0, 1, ...: GPU devices */
    uint64_t weights_mapped;
    uint64_t weights_resident;
    uint64_t k;                 /* cached keys */
    uint64_t v;                 /* cached values */
    uint64_t recurrent;         /* recurrent state (state-space layers), snapshots included */
    uint64_t compute;           /* compute scratch, bookkeeping and the logits buffer */
} llm_memory_breakdown;

/* Fills out[0..n) with one entry per device the context uses (the host first). Returns the
 * number of entries, minus the number needed when n_max is too small, or LLM_INT32_ERROR. */
LLM_API int32_t llm_memory_breakdown_get(const llm_context *ctx, llm_memory_breakdown *out,
                                         int32_t n_max);

/* The breakdown a context created from `model` with `params` (NULL: defaults) would have,
 * before creating it (the logits buffer at its initial n_seq_max rows). Same returns. */
LLM_API int32_t llm_memory_breakdown_estimate(const llm_model *model,
                                              const llm_context_params *params,
                                              llm_memory_breakdown *out, int32_t n_max);

/* ---------------------------------------------------------------------------------------------
 * State save / restore. A state is a versioned, checksummed byte string tied to the model it
 * came from (a fingerprint of its shapes, types and weights). Loading a truncated, corrupted,
 * foreign or other-model state fails with LLM_STATUS_BAD_FORMAT and leaves the context
 * exactly as it was. Restoring and continuing gives the same logits as never having saved.
 * ------------------------------------------------------------------------------------------ */

/* Bytes needed to save the whole context: every cell with its sequences, and the logits of
 * the last decode. */
LLM_API size_t llm_state_size(const llm_context *ctx);

/* Writes the whole context's state into dst (capacity `size`); *written gets the bytes used.
 * LLM_STATUS_INVALID_ARGUMENT when dst is too small (llm_state_size tells the need). */
LLM_API int32_t llm_state_save(const llm_context *ctx, uint8_t *dst, size_t size,
                               size_t *written);

/* Replaces the context's memory and last outputs by a saved state. The state may come from
 * another context of the same model with different sizes, as long as its cells fit (else
 * LLM_STATUS_MEMORY_FULL) and its sequence ids are below n_seq_max. */
LLM_API int32_t llm_state_load(llm_context *ctx, const uint8_t *src, size_t size);

/* Bytes needed to save one sequence: only its cells (no logits). */
LLM_API size_t llm_state_seq_size(const llm_context *ctx, llm_seq_id seq);

LLM_API int32_t llm_state_seq_save(const llm_context *ctx, llm_seq_id seq, uint8_t *dst,
                                   size_t size, size_t *written);

/* Restores a saved sequence into sequence `seq` (any id, not necessarily the one saved): seq's
 * current cells are dropped and the saved ones placed in free cells. MEMORY_FULL when they do
 * not fit; nothing changes on any failure. */
LLM_API int32_t llm_state_seq_load(llm_context *ctx, llm_seq_id seq, const uint8_t *src,
                                   size_t size);

/* The same to and from files (written whole, then renamed into place). */
LLM_API int32_t llm_state_save_file(const llm_context *ctx, const char *path);
LLM_API int32_t llm_state_load_file(llm_context *ctx, const char *path);
LLM_API int32_t llm_state_seq_save_file(const llm_context *ctx, llm_seq_id seq, const char *path);
LLM_API int32_t llm_state_seq_load_file(llm_context *ctx, llm_seq_id seq, const char *path);

/* ---------------------------------------------------------------------------------------------
 * Sampling: a chain of steps applied in the order they were added to a candidate list built
 * from one row of logits. The last step must select a token (greedy or dist); a chain whose
 * steps all filter ends with greedy selection.
 * ------------------------------------------------------------------------------------------ */

LLM_API int32_t llm_sampler_chain_create(llm_sampler **out);
LLM_API void llm_sampler_free(llm_sampler *sampler);

/* Seed value that asks for a fresh random seed (clock-based); any other seed is reproducible. */
#define LLM_DEFAULT_SEED 0xFFFFFFFFu

/* Penalties over the last `last_n` accepted tokens (0: off, -1: the whole history since the
 * last reset), llama.cpp semantics: repeat divides positive logits / multiplies negative ones
 * (1 = off); frequency subtracts freq * count; presence subtracts presence once per seen
 * token. */
LLM_API int32_t llm_sampler_add_penalties(llm_sampler *s, int32_t last_n, float repeat,
                                          float frequency, float presence);
LLM_API int32_t llm_sampler_add_top_k(llm_sampler *s, int32_t k);      /* k <= 0: off */
LLM_API int32_t llm_sampler_add_top_p(llm_sampler *s, float p, int32_t min_keep);
LLM_API int32_t llm_sampler_add_min_p(llm_sampler *s, float p, int32_t min_keep);
LLM_API int32_t llm_sampler_add_temp(llm_sampler *s, float temperature);
LLM_API int32_t llm_sampler_add_greedy(llm_sampler *s);
/* Draws from the softmax of what is left; seed LLM_DEFAULT_SEED draws a random seed. */
LLM_API int32_t llm_sampler_add_dist(llm_sampler *s, uint32_t seed);

/* Picks a token from the logits of batch token idx of the last decode (as llm_get_logits_ith)
 * and accepts it (it enters the penalty history). */
LLM_API int32_t llm_sampler_sample(llm_sampler *s, llm_context *ctx, int32_t idx,
                                   llm_token *out);

/* Same over a caller-provided row of n_vocab logits (not modified). Does not accept. */
LLM_API int32_t llm_sampler_sample_logits(llm_sampler *s, const float *logits, int32_t n_vocab,
                                          llm_token *out);

/* Adds a token to the penalty history (e.g. the prompt). */
LLM_API void llm_sampler_accept(llm_sampler *s, llm_token token);

/* Clears the history and reseeds each dist step with its original seed. */
LLM_API void llm_sampler_reset(llm_sampler *s);

#ifdef __cplusplus
}
#endif

#endif /* LIBLLM_H */
