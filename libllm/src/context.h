/* context.h -- an inference context: resolved parameters, the memory, the backend, compute
 * scratch and the outputs of the last decode. */
#ifndef LLM_CONTEXT_H
#define LLM_CONTEXT_H

#include "backend/backend.h"
#include "memory/kv_cache.h"
#include "memory/hybrid.h"
#include "memory/kv_swa.h"
#include "memory/recurrent.h"
#include "model.h"
#include "util.h"

typedef struct llama_scratch llama_scratch;
typedef struct ssm_scratch ssm_scratch;

/* Scratch of the equal split (memories with memory_ops.equal_split): the batch in micro-batch
 * order, and the bookkeeping that builds it. All [n_batch] unless noted. */
typedef struct split_scratch {
    int32_t *order;                /* micro-batch order -> batch index */
    llm_token *token;              /* the batch's arrays, permuted by order */
    llm_pos *pos;
    int32_t *n_seq_id;
    llm_seq_id **seq_id;
    int8_t *flags;
    int32_t *stream;               /* batch index -> its sequence set ("stream") */
    int32_t *next;                 /* batch index -> next token of its stream, -1 */
    int32_t *head;                 /* stream -> its first token not yet placed, -1 */
    int32_t *tmp;                  /* stream -> last token (while grouping) / row map */
    int32_t *chosen;               /* streams of the micro-batch being built */
    uint8_t *taken;                /* batch index -> placed */
    uint64_t *mask;                /* [n_batch][seq_words] stream -> its sequence set */
    float *row;                    /* [n_vocab] one logits row, for the final reordering */
} split_scratch;

struct llm_context {
    llm_model *model;
    llm_context_params params;     /* resolved: no zeros left */
    llm_backend *backend;
    llm_memory *memory;            /* what the decode loop talks to */
    kv_cache *kv;                  /* the full-attention layers' cache (the memory itself when
                                      the model has no sliding window and no recurrent layer) */
    kv_swa *swa;                   /* the memory, when the model has sliding-window layers:
                                      swa->swa holds those layers' K/V; NULL otherwise */
    recurrent *rec;                /* the state of state-space layers (the memory itself in
                                      mamba / mamba2, part of a hybrid in jamba); else NULL */
    llama_scratch *scratch;        /* compute buffers of the attention forward passes */
    ssm_scratch *ssm;              /* compute buffers of the state-space forward passes */
    split_scratch split;           /* allocated when the memory splits equally */

    /* batch handling, sized for n_batch */
    ubatch *ubs;                   /* [context_n_ubatches] */
    int32_t *cells;                /* [n_batch] the cell of every token of the batch */
    int32_t *snap;                 /* [n_batch] the snapshot cell of every token (recurrent
                                      memories with snapshots); NULL otherwise */
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

/* Micro-batches one batch can split into: in order, n_batch / n_ubatch + 1; with the equal
 * split, up to one per token. */
static inline uint32_t context_n_ubatches(const llm_context_params *p, bool equal_split) {
    return equal_split ? p->n_batch : p->n_batch / p->n_ubatch + 1;
}

/* The recurrent memory a context of model m with parameters p gets (recurrent models). */
void context_recurrent_params(const llm_model *m, const llm_context_params *p,
                              recurrent_params *rp);

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

/* The compute scratch of the state-space forward passes (arch/mamba.c). */
int32_t ssm_scratch_create(const llm_model *model, uint32_t n_ubatch, ssm_scratch **out);
void ssm_scratch_free(ssm_scratch *s);
uint64_t ssm_scratch_bytes(const llm_model *model, uint32_t n_ubatch);

/* The forward pass of mamba and mamba2 (arch/mamba.c); same contract as llama_forward, over
 * the recurrent memory ctx->rec. */
int32_t mamba_forward(llm_context *ctx, const ubatch *ub, float *logits);

/* The forward pass of the hybrids, jamba and granitehybrid (arch/hybrid.c): attention layers
 * over ctx->kv, state-space layers over ctx->rec; same contract as llama_forward. */
int32_t hybrid_forward(llm_context *ctx, const ubatch *ub, float *logits);

/* The forward pass of gemma3 (arch/gemma3.c); same contract as llama_forward. */
int32_t gemma3_forward(llm_context *ctx, const ubatch *ub, float *logits);

/* The forward pass of the llama family (arch/llama.c: llama, qwen2). */

/* Runs one placed micro-batch through the model; writes the logits of its flagged tokens to
 * consecutive rows starting at `logits`. */
int32_t llama_forward(llm_context *ctx, const ubatch *ub, float *logits);

#endif
