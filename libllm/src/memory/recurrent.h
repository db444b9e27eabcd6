/* recurrent.h -- the memory of state-space layers (Mamba, Mamba2, Jamba's Mamba layers): one
 * cell per sequence slot (cell s belongs to sequence s), each holding, for every recurrent
 * layer, the convolution state (the last d_conv - 1 inputs of the causal conv1d) and the SSM
 * state. Everything is allocated at creation. A state summarises every position it has seen,
 * so it can be copied (seq_cp) or dropped as a whole, not cut back: seq_rm of part of a
 * sequence returns LLM_STATUS_CANNOT_REWIND...
 *
 * ...unless snapshots are on: every snap_every positions (after the token at position p with
 * (p + 1) % snap_every == 0) the forward pass copies the state of the sequences decoding that
 * token into a snapshot, one of n_snap extra cells allocated with the others. seq_rm(seq, p,
 * -1) then rolls seq back to its newest snapshot that has seen no position >= p; the sequence
 * ends there (seq_pos_max says where) and the caller decodes the rest again. When the pool is
 * full, a new snapshot replaces the oldest one. Micro-batches take an equal number of tokens
 * per sequence; the recurrent cell of a token is its first sequence's. */
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
    uint32_t snap_every;       /* positions between snapshots; 0: no snapshots */
    uint32_t n_snap;           /* snapshot cells, after the n_seq_max sequence cells */
    /* cells [0, n_seq_max + n_snap): */
    llm_pos *pos_min;          /* first position the state has seen; -1: empty */
    llm_pos *pos_max;          /* last position the state has seen; -1: empty */
    float **conv;              /* [n_layer] -> [n_seq_max + n_snap][conv_elems] */
    float **ssm;               /* [n_layer] -> [n_seq_max + n_snap][ssm_elems] */
    llm_pos *plan_pos;         /* [n_seq_max] scratch of plan */
    /* snapshot k (cell n_seq_max + k): */
    uint64_t *snap_seqs;       /* [n_snap][seq_words] the sequences whose past it is */
    uint64_t *snap_stamp;      /* [n_snap] when it was taken (replacement order) */
    uint32_t seq_words;
    uint64_t stamp;
} recurrent;

typedef struct recurrent_params {
    uint32_t n_seq_max, n_layer;
    uint64_t conv_elems, ssm_elems;
    uint32_t snap_every, n_snap;   /* snapshots: see above (0, 0: none) */
} recurrent_params;

/* Bytes of the conv and SSM states of every cell (snapshots included) and layer (what the
 * breakdown reports). */
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

/* The state of sequence seq is cut back to positions < p0 by the next seq_rm(seq, p0, -1):
 * returns the position it will end at + 1 (p0 itself when nothing has to go, 0 when the whole
 * sequence goes), or -1 when it cannot (no snapshot old enough). Changes nothing. */
llm_pos recurrent_cut_point(const recurrent *r, llm_seq_id seq, llm_pos p0);

/* True when [p0, p1) reaches past the end of sequence seq (p1 < 0: open). */
bool recurrent_is_tail(const recurrent *r, llm_seq_id seq, llm_pos p1);

#endif
