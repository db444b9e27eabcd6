/* batch.c -- the caller's batch: checked against llm_decode's contract before anything
 * changes, then split into micro-batches (in order, or with equal tokens per sequence for
 * memories that need it), and the output rows put back into batch order. */
#include "batch.h"

/* Every rule of llm_decode's contract, checked before anything changes. */
int32_t batch_validate(llm_context *ctx, const llm_batch *b) {
    const llm_context_params *p = &ctx->params;
    if (b->n_tokens <= 0) return llm_error(LLM_STATUS_INVALID_ARGUMENT, "the batch is empty");
    if ((uint32_t)b->n_tokens > p->n_batch) {
        return llm_error(LLM_STATUS_INVALID_ARGUMENT, "the batch has %d tokens, more than "
                         "n_batch %u", b->n_tokens, p->n_batch);
    }
    if (!b->token || !b->pos || !b->n_seq_id || !b->seq_id) {
        return llm_error(LLM_STATUS_INVALID_ARGUMENT, "the batch lacks token, pos, n_seq_id or "
                         "seq_id arrays");
    }
    const int32_t n_vocab = (int32_t)ctx->model->hp.n_vocab;
    for (uint32_t s = 0; s < p->n_seq_max; s++) ctx->seq_next[s] = -2;   /* not looked up */
    for (int32_t i = 0; i < b->n_tokens; i++) {
        if (b->token[i] < 0 || b->token[i] >= n_vocab) {
            return llm_error(LLM_STATUS_INVALID_ARGUMENT, "token %d of the batch has id %d, "
                             "outside the vocabulary [0, %d)", i, b->token[i], n_vocab);
        }
        if (b->pos[i] < 0 || b->pos[i] == INT32_MAX) {
            return llm_error(LLM_STATUS_INVALID_ARGUMENT, "token %d has invalid position %d", i,
                             b->pos[i]);
        }
        if (b->n_seq_id[i] < 1 || (uint32_t)b->n_seq_id[i] > p->n_seq_max || !b->seq_id[i]) {
            return llm_error(LLM_STATUS_INVALID_ARGUMENT, "token %d has %d sequence ids (must be "
                             "1..%u)", i, b->n_seq_id[i], p->n_seq_max);
        }
        for (int32_t j = 0; j < b->n_seq_id[i]; j++) {
            llm_seq_id s = b->seq_id[i][j];
            if (s < 0 || (uint32_t)s >= p->n_seq_max) {
                return llm_error(LLM_STATUS_INVALID_ARGUMENT, "token %d has sequence id %d, "
                                 "outside [0, %u)", i, s, p->n_seq_max);
            }
            for (int32_t k = 0; k < j; k++) {
                if (b->seq_id[i][k] == s) {
                    return llm_error(LLM_STATUS_INVALID_ARGUMENT, "token %d lists sequence %d "
                                     "twice", i, s);
                }
            }
            if (ctx->seq_next[s] == -2) {
                llm_pos last = ctx->memory->ops->seq_pos_max(ctx->memory, s);
                ctx->seq_next[s] = last >= 0 ? last + 1 : -1;   /* -1: empty, any start */
            }
            if (ctx->seq_next[s] >= 0 && b->pos[i] != ctx->seq_next[s]) {
                return llm_error(LLM_STATUS_INVALID_ARGUMENT, "token %d of sequence %d has "
                                 "position %d, expected %d (positions must continue the "
                                 "sequence)", i, s, b->pos[i], ctx->seq_next[s]);
            }
        }
        for (int32_t j = 0; j < b->n_seq_id[i]; j++) ctx->seq_next[b->seq_id[i][j]] = b->pos[i] + 1;
    }
    return LLM_STATUS_OK;
}

/* In order: consecutive runs of n_ubatch tokens. */
int batch_split_in_order(llm_context *ctx, const llm_batch *b) {
    int n_ubs = 0;
    for (int32_t i0 = 0; i0 < b->n_tokens; i0 += (int32_t)ctx->params.n_ubatch) {
        ubatch *ub = &ctx->ubs[n_ubs++];
        ub->n_tok = LLM_MIN(b->n_tokens - i0, (int32_t)ctx->params.n_ubatch);
        ub->token = b->token + i0;
        ub->pos = b->pos + i0;
        ub->n_seq_id = b->n_seq_id + i0;
        ub->seq_id = b->seq_id + i0;
        ub->logits = ctx->flags + i0;
        ub->cells = ctx->cells + i0;
        ub->snap = NULL;
    }
    return n_ubs;
}

/* The equal split. Tokens with the same set of sequence ids form a stream (in batch order).
 * Each micro-batch takes streams whose sets are pairwise disjoint, in the order of their
 * first remaining token, and the same number k of tokens from each, stream after stream.
 * A stream's tokens are taken only once every earlier token of an overlapping stream is
 * placed, so every sequence sees its tokens in batch order. Returns the micro-batch count;
 * sp->order maps micro-batch order to batch order. */
int batch_split_equal(llm_context *ctx, const llm_batch *b) {
    split_scratch *sp = &ctx->split;
    const int32_t n = b->n_tokens, n_ub = (int32_t)ctx->params.n_ubatch;
    const uint32_t words = (ctx->params.n_seq_max + 63) / 64;
    int32_t n_st = 0;
    for (int32_t i = 0; i < n; i++) {
        uint64_t *m = sp->mask + (size_t)n_st * words;   /* candidate slot */
        memset(m, 0, words * sizeof(uint64_t));
        for (int32_t j = 0; j < b->n_seq_id[i]; j++) {
            uint32_t q = (uint32_t)b->seq_id[i][j];
            m[q / 64] |= 1ull << (q % 64);
        }
        int32_t s = 0;
        while (s < n_st && memcmp(sp->mask + (size_t)s * words, m, words * 8) != 0) s++;
        if (s == n_st) {
            sp->head[n_st] = i;
            n_st++;
        } else {
            sp->next[sp->tmp[s]] = i;
        }
        sp->stream[i] = s;
        sp->tmp[s] = i;
        sp->next[i] = -1;
        sp->taken[i] = 0;
    }
    int n_ubs = 0;
    int32_t q = 0, first = 0;   /* every token before `first` is placed */
    uint64_t used[4];           /* n_seq_max <= 256 */
    while (q < n) {
        int32_t n_ch = 0, k = n_ub;
        memset(used, 0, sizeof used);
        while (sp->taken[first]) first++;
        for (int32_t i = first; i < n && n_ch < n_ub; i++) {
            if (sp->taken[i] || sp->head[sp->stream[i]] != i) continue;
            const int32_t s = sp->stream[i];
            const uint64_t *ms = sp->mask + (size_t)s * words;
            bool clash = false;
            for (uint32_t w = 0; w < words; w++) clash = clash || (ms[w] & used[w]);
            if (clash) continue;
            /* tokens of s available now: up to the first unplaced token of an overlapping
             * stream; none if such a token comes before s's head */
            int32_t avail = 0;
            for (int32_t j = first; j < n && avail < n_ub; j++) {
                if (sp->taken[j]) continue;
                if (sp->stream[j] == s) {
                    avail++;
                    continue;
                }
                const uint64_t *mj = sp->mask + (size_t)sp->stream[j] * words;
                bool overlap = false;
                for (uint32_t w = 0; w < words; w++) overlap = overlap || (ms[w] & mj[w]);
                if (overlap) break;
            }
            if (avail == 0) continue;
            for (uint32_t w = 0; w < words; w++) used[w] |= ms[w];
            sp->chosen[n_ch++] = s;
            k = LLM_MIN(k, avail);
        }
        k = LLM_MIN(k, n_ub / n_ch);
        ubatch *ub = &ctx->ubs[n_ubs++];
        ub->n_tok = n_ch * k;
        ub->token = sp->token + q;
        ub->pos = sp->pos + q;
        ub->n_seq_id = sp->n_seq_id + q;
        ub->seq_id = sp->seq_id + q;
        ub->logits = sp->flags + q;
        ub->cells = ctx->cells + q;
        ub->snap = ctx->snap ? ctx->snap + q : NULL;
        for (int32_t c = 0; c < n_ch; c++) {
            int32_t s = sp->chosen[c], i = sp->head[s];
            for (int32_t t = 0; t < k; t++, i = sp->next[i]) {
                sp->order[q] = i;
                sp->token[q] = b->token[i];
                sp->pos[q] = b->pos[i];
                sp->n_seq_id[q] = b->n_seq_id[i];
                sp->seq_id[q] = b->seq_id[i];
                sp->flags[q] = ctx->flags[i];
                sp->taken[i] = 1;
                q++;
            }
            sp->head[s] = i;
        }
    }
    return n_ubs;
}

/* After an equal split the logits rows are in micro-batch order: put them in batch order
 * (row r goes to tmp[r]), following each cycle of the permutation with one spare row. */
void batch_reorder_outputs(llm_context *ctx, int32_t n_tokens) {
    split_scratch *sp = &ctx->split;
    const size_t n_vocab = ctx->model->hp.n_vocab;
    int32_t r = 0;
    bool moved = false;
    for (int32_t q = 0; q < n_tokens; q++) {
        if (!sp->flags[q]) continue;
        sp->tmp[r] = ctx->output_row[sp->order[q]];
        sp->taken[r] = 0;
        moved = moved || sp->tmp[r] != r;
        r++;
    }
    if (!moved) return;
    for (int32_t start = 0; start < r; start++) {
        if (sp->taken[start] || sp->tmp[start] == start) continue;
        memcpy(sp->row, ctx->logits + start * n_vocab, n_vocab * sizeof(float));
        for (int32_t j = start;;) {
            int32_t d = sp->tmp[j];
            sp->taken[j] = 1;
            float *dst = ctx->logits + (size_t)d * n_vocab;
            for (size_t v = 0; v < n_vocab; v++) {
                float t = dst[v];
                dst[v] = sp->row[v];
                sp->row[v] = t;
            }
            if (d == start) break;
            j = d;
        }
    }
}
