/* context.h -- an inference context: resolved parameters, the memory, the backend, compute
 * scratch and the outputs of the last decode. */
#ifndef LLM_CONTEXT_H
#define LLM_CONTEXT_H

#include "backend/backend.h"
#include "memory/kv_cache.h"
#include "memory/kv_swa.h"
#include "model.h"
#include "util.h"

typedef struct llama_scratch llama_scratch;

struct llm_context {
    llm_model *model;
    llm_context_params params;     /* resolved: no zeros left */
    llm_backend *backend;
    llm_memory *memory;            /* what the decode loop talks to */
    kv_cache *kv;                  /* the full-attention layers' cache (the memory itself when
                                      the model has no sliding window) */
    kv_swa *swa;                   /* the memory, when the model has sliding-window layers:
                                      swa->swa holds those layers' K/V; NULL otherwise */
    llama_scratch *scratch;        /* compute buffers of the forward pass */

    /* batch handling, sized for n_batch */
    ubatch *ubs;                   /* [n_batch / n_ubatch + 1] */
    int32_t *cells;                /* [n_batch] the cell of every token of the batch */
    llm_pos *seq_next;             /* [n_seq_max] validation: next expected position */
    int8_t *flags;                 /* [n_batch] output flag of every token */

    /* outputs of the last decode */
    float *logits;                 /* [logits_rows][n_vocab] */
    uint32_t logits_rows;          /* capacity, grows on demand up to n_batch */
    int32_t n_outputs;
    int32_t *output_row;           /* [n_batch] batch index -> logits row or -1 */
    int32_t n_batch_last;          /* tokens in the last decoded batch */

    /* counters */
    llm_alloc_counter alloc_total; /* everything this context allocated */
    llm_alloc_counter alloc_decode;/* what llm_decode allocated */
    uint64_t n_decode, n_tokens_decoded;
};

/* Fills every zero / default of `in` (NULL: defaults) and checks the ranges. */
int32_t context_resolve_params(const llm_model *m, const llm_context_params *in,
                               llm_context_params *p);

/* Micro-batches one batch can split into. */
static inline uint32_t context_n_ubatches(const llm_context_params *p) {
    return p->n_batch / p->n_ubatch + 1;
}

/* Bytes of everything a context holds besides its K/V rows: compute scratch (forward pass
 * and backend), batch and cell bookkeeping, and logits_rows rows of logits. */
uint64_t context_compute_bytes(const llm_model *m, const llm_context_params *p,
                               uint32_t logits_rows);

/* Makes room for n rows of logits (grows up to n_batch rows, so decode stops allocating once
 * the largest batch has been seen). */
int32_t context_reserve_outputs(llm_context *ctx, int32_t n);

/* Cells of the sliding-window pool a context with these parameters gets, 0 when the model
 * has no sliding-window layers. */
uint32_t context_n_swa_cells(const llm_model *m, const llm_context_params *p);

/* The compute scratch of every forward pass (arch/llama.c, arch/forward.h); n_swa_cells as
 * context_n_swa_cells gives. */
int32_t llama_scratch_create(const llm_model *model, uint32_t n_ubatch, uint32_t n_ctx,
                             uint32_t n_swa_cells, llama_scratch **out);
void llama_scratch_free(llama_scratch *s);
uint64_t llama_scratch_bytes(const llm_model *model, uint32_t n_ubatch, uint32_t n_ctx,
                             uint32_t n_swa_cells);

/* The forward pass of gemma3 (arch/gemma3.c); same contract as llama_forward. */
int32_t gemma3_forward(llm_context *ctx, const ubatch *ub, float *logits);

/* The forward pass of the llama family (arch/llama.c: llama, qwen2). */

/* Runs one placed micro-batch through the model; writes the logits of its flagged tokens to
 * consecutive rows starting at `logits`. */
int32_t llama_forward(llm_context *ctx, const ubatch *ub, float *logits);

#endif
