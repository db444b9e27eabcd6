/* batch.h -- checking a caller's batch and splitting it into micro-batches. */
#ifndef LLM_BATCH_H
#define LLM_BATCH_H

#include "context.h"

/* Every rule of llm_decode's contract (sizes, ids, sequence ids, positions continuing each
 * sequence), checked before anything changes. Returns an llm_status. */
int32_t batch_validate(llm_context *ctx, const llm_batch *b);

/* Fills ctx->ubs with the micro-batches of b and returns their count: consecutive runs of
 * n_ubatch tokens, or (equal) the same number of tokens from every sequence served, each
 * sequence's tokens in order (tokens go through ctx->split's reordered copies). */
int batch_split_in_order(llm_context *ctx, const llm_batch *b);
int batch_split_equal(llm_context *ctx, const llm_batch *b);

/* After an equal split, puts the logits rows back into batch order. */
void batch_reorder_outputs(llm_context *ctx, int32_t n_tokens);

#endif
