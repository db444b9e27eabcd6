/* recurrent.h -- the memory of state-space layers (Mamba, Mamba2): one cell per sequence slot
 * (cell s belongs to sequence s), each holding, for every recurrent layer, the convolution
 * state (the last d_conv - 1 inputs of the causal conv1d) and the SSM state. Everything is
 * allocated at creation. A state summarises every position it has seen, so it can be copied
 * (seq_cp) or dropped as a whole, never cut back: seq_rm of part of a sequence returns
 * LLM_STATUS_CANNOT_REWIND. Micro-batches take an equal number of tokens per sequence. */
#ifndef LLM_RECURRENT_H
#define LLM_RECURRENT_H

#include <stdbool.h>
#include <stdint.h>

#include "memory.h"

typedef struct recurrent {
    llm_memory base;
    uint32_t n_seq_max;        /* cells */
    uint32_t n_layer;          /* recurrent layers */
    uint64_t conv_elems;       /* floats of one cell's conv state in one layer */
    uint64_t ssm_elems;        /* floats of one cell's SSM state in one layer */
    llm_pos *pos_min;          /* [n_seq_max] first position the state has seen; -1: empty */
    llm_pos *pos_max;          /* [n_seq_max] last position the state has seen; -1: empty */
    float **conv;              /* [n_layer] -> [n_seq_max][conv_elems] */
    float **ssm;               /* [n_layer] -> [n_seq_max][ssm_elems] */
    llm_pos *plan_pos;         /* [n_seq_max] scratch of plan */
} recurrent;

typedef struct recurrent_params {
    uint32_t n_seq_max, n_layer;
    uint64_t conv_elems, ssm_elems;
} recurrent_params;

/* Bytes of the conv and SSM states of every cell and layer (what the breakdown reports). */
uint64_t recurrent_state_bytes(const recurrent_params *p);

/* Bytes of the bookkeeping besides the states (positions, pointer tables, scratch). */
uint64_t recurrent_bookkeeping_bytes(const recurrent_params *p);

/* Allocates every buffer now; states start at zero. Returns an llm_status. */
int32_t recurrent_create(const recurrent_params *p, recurrent **out);

static inline float *recurrent_conv(const recurrent *r, uint32_t layer, uint32_t cell) {
    return r->conv[layer] + (uint64_t)cell * r->conv_elems;
}
static inline float *recurrent_ssm(const recurrent *r, uint32_t layer, uint32_t cell) {
    return r->ssm[layer] + (uint64_t)cell * r->ssm_elems;
}

#endif
