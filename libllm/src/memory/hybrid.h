/* hybrid.h -- the memory of models that mix attention and state-space layers (Jamba): a KV
 * cache for the attention layers and a recurrent state for the others, behind one
 * memory_ops. Every token goes to both; every sequence operation goes to both and succeeds or
 * fails as one; both always end each sequence at the same position. */
#ifndef LLM_HYBRID_H
#define LLM_HYBRID_H

#include "kv_cache.h"
#include "recurrent.h"

typedef struct hybrid {
    llm_memory base;
    kv_cache *kv;              /* the attention layers */
    recurrent *rec;            /* the state-space layers */
    llm_pos *cut;              /* [n_seq_max] scratch of seq_rm */
} hybrid;

/* Bytes of the bookkeeping a hybrid holds besides its two memories. */
uint64_t hybrid_bookkeeping_bytes(uint32_t n_seq_max);

/* Creates both memories now (kv->n_seq_max must equal rec->n_seq_max). */
int32_t hybrid_create(const kv_cache_params *kv, const recurrent_params *rec, hybrid **out);

#endif
