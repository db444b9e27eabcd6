/* kv_cache.h -- the KV cache: a pool of n_cells cells, each holding one position of K and V
 * for every layer and the set of sequences that use it. Sequences share cells (seq_cp copies
 * no data), and the attention mask is read off the cells. */
#ifndef LLM_KV_CACHE_H
#define LLM_KV_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "memory.h"

typedef struct kv_cache {
    llm_memory base;
    uint32_t n_cells;
    uint32_t n_layer;
    uint32_t n_seq_max;
    uint32_t seq_words;        /* 64-bit words per cell's sequence set */
    llm_pos *pos;              /* [n_cells]: position, -1 when the cell is empty */
    uint64_t *seqs;            /* [n_cells][seq_words]: sequence set bits */
    int32_t *shift;            /* [n_cells]: position change not yet applied to the keys */
    bool has_shift;            /* some shift is pending */
    uint32_t n_used;           /* non-empty cells */
    uint32_t head;             /* where the next slot search starts */
    uint32_t n_head_kv, head_dim_k, head_dim_v;
    uint32_t type_k, type_v;   /* element types of the cached rows */
    uint64_t k_cell_bytes;     /* one cell's keys of one layer: n_head_kv * head_dim_k elements */
    uint64_t v_cell_bytes;
    uint64_t k_head_bytes, v_head_bytes;
    uint8_t **k;               /* [n_layer] -> [n_cells][k_cell_bytes] */
    uint8_t **v;               /* [n_layer] -> [n_cells][v_cell_bytes] */
} kv_cache;

typedef struct kv_cache_params {
    uint32_t n_cells, n_layer, n_seq_max;
    uint32_t n_head_kv, head_dim_k, head_dim_v;
    uint32_t type_k, type_v;
} kv_cache_params;

/* Allocates every buffer now. Returns an llm_status. */
int32_t kv_cache_create(const kv_cache_params *p, kv_cache **out);

/* Clears the pending shifts once the keys have been re-rotated. */
void kv_cache_shift_done(kv_cache *kv);

/* One past the highest non-empty cell: attention looks at cells [0, kv_cache_n_active). */
uint32_t kv_cache_n_active(const kv_cache *kv);

static inline bool kv_cell_has_seq(const kv_cache *kv, uint32_t cell, llm_seq_id seq) {
    return (kv->seqs[(uint64_t)cell * kv->seq_words + (uint32_t)seq / 64] >> ((uint32_t)seq % 64)) & 1;
}

/* mask[c] = 1 where a token at `pos` in every sequence of seq_ids may attend cell c; with
 * window > 0 only cells at positions > pos - window (a sliding window of `window` positions,
 * the token's own included). */
void kv_cache_fill_mask(const kv_cache *kv, llm_pos pos, const llm_seq_id *seq_ids, int n_seq,
                        uint32_t window, uint8_t *mask, uint32_t n_kv);

/* Helpers of the sliding-window memory. */
/* dst takes src's cell bookkeeping (positions, shifts, sequence sets); same sizes. */
void kv_cache_copy_cells(kv_cache *dst, const kv_cache *src);
/* pos_max[s] = largest position of sequence s, -1 when none; pos_max has n_seq_max entries. */
void kv_cache_seq_pos_max_all(const kv_cache *kv, llm_pos *pos_max);
/* Drops sequence s from every cell at a position <= next_pos[s] - window: the cells no token
 * of s at next_pos[s] or later can see. */
void kv_cache_prune_window(kv_cache *kv, const llm_pos *next_pos, uint32_t window);
/* Moves the used cells (rows and bookkeeping) to the front, keeping their order. */
void kv_cache_compact(kv_cache *kv);
/* count[s] = cells of s at positions in (pos_max[s] - window, pos_max[s]]. */
void kv_cache_count_window(const kv_cache *kv, const llm_pos *pos_max, uint32_t window,
                           uint32_t *count);

#endif
