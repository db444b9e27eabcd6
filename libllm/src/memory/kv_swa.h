/* kv_swa.h -- the memory of models with sliding-window attention (Gemma 3): two KV caches
 * behind one memory_ops. Full-attention layers keep every position in `full` (n_ctx cells);
 * sliding-window layers keep theirs in `swa`, a small pool of window * n_seq_max + n_ubatch
 * cells that drops the cells no future token can see. Every token goes to both; every
 * sequence operation goes to both and succeeds or fails as one. */
#ifndef LLM_KV_SWA_H
#define LLM_KV_SWA_H

#include "kv_cache.h"

typedef struct kv_swa {
    llm_memory base;
    kv_cache *full;            /* the full-attention layers: n_ctx cells */
    kv_cache *swa;             /* the sliding-window layers: n_swa_cells cells */
    uint32_t window;           /* a token at p sees positions (p - window, p] in swa layers */
    uint32_t n_ubatch;
    int32_t *swa_cells;        /* [n_ubatch] the pool cell of each token of the placed ubatch */
    /* planning and checking work on metadata-only copies (no K/V rows), so a failing
     * operation changes nothing */
    kv_cache *shadow_full, *shadow_swa;
    llm_pos *pos_max;          /* [n_seq_max] scratch */
    uint32_t *count_full, *count_swa;   /* [n_seq_max] scratch */
} kv_swa;

/* Cells of the sliding-window pool for these context sizes (never more than n_ctx). */
uint32_t kv_swa_n_cells(uint32_t n_ctx, uint32_t window, uint32_t n_seq_max, uint32_t n_ubatch);

/* Bytes of the bookkeeping a kv_swa holds besides its two caches' K/V rows and the full
 * cache's cell arrays (the swa pool's cells, the shadows, the scratch arrays). */
uint64_t kv_swa_bookkeeping_bytes(uint32_t n_ctx, uint32_t n_swa_cells, uint32_t n_seq_max,
                                  uint32_t n_ubatch);

/* full / swa: the two caches' parameters (swa->n_cells from kv_swa_n_cells). */
int32_t kv_swa_create(const kv_cache_params *full, const kv_cache_params *swa, uint32_t window,
                      uint32_t n_ubatch, kv_swa **out);

#endif
