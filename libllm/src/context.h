/* context.h -- an inference context: resolved parameters, the memory, the backend, compute
 * scratch and the outputs of the last decode. */
#ifndef LLM_CONTEXT_H
#define LLM_CONTEXT_H

#include "backend/backend.h"
#include "memory/kv_cache.h"
#include "model.h"
#include "util.h"

typedef struct llama_scratch llama_scratch;

struct llm_context {
    llm_model *model;
    llm_context_params params;     /* resolved: no zeros left */
    llm_backend *backend;
    llm_memory *memory;            /* what the decode loop talks to */
    kv_cache *kv;                  /* the same object, for the attention layers */
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

/* Makes room for n rows of logits (grows up to n_batch rows, so decode stops allocating once
 * the largest batch has been seen). */
int32_t context_reserve_outputs(llm_context *ctx, int32_t n);

/* The forward pass of the llama family (arch/llama.c: llama, qwen2). */
int32_t llama_scratch_create(const llm_model *model, uint32_t n_ubatch, uint32_t n_ctx,
                             llama_scratch **out);
void llama_scratch_free(llama_scratch *s);

/* Runs one placed micro-batch through the model; writes the logits of its flagged tokens to
 * consecutive rows starting at `logits`. */
int32_t llama_forward(llm_context *ctx, const ubatch *ub, float *logits);

#endif
