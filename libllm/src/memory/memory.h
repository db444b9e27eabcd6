/* memory.h -- the one interface the decode loop talks to, whatever holds the model's past:
 * a KV cache for attention layers, recurrent state (memory/recurrent.c), or a hybrid of both
 * (memory/hybrid.c). */
#ifndef LLM_MEMORY_H
#define LLM_MEMORY_H

#include <stdbool.h>
#include <stdint.h>

#include "../state.h"
#include "libllm.h"

/* One micro-batch: a slice of the caller's batch, plus where its tokens went. */
typedef struct ubatch {
    int n_tok;
    const llm_token *token;        /* [n_tok] */
    const llm_pos *pos;            /* [n_tok] */
    const int32_t *n_seq_id;       /* [n_tok] */
    llm_seq_id *const *seq_id;     /* [n_tok][n_seq_id[i]] */
    const int8_t *logits;          /* [n_tok] output flags */
    int32_t *cells;                /* [n_tok] filled by memory apply: the KV cell of each token */
    int32_t *snap;                 /* [n_tok] or NULL; filled by the recurrent memory's apply:
                                      the snapshot cell that takes the state after the token,
                                      -1 if none (memory/recurrent.h) */
} ubatch;

typedef struct llm_memory llm_memory;

typedef struct memory_ops {
    void (*free)(llm_memory *m);
    void (*clear)(llm_memory *m);
    int32_t (*seq_rm)(llm_memory *m, llm_seq_id seq, llm_pos p0, llm_pos p1);
    int32_t (*seq_cp)(llm_memory *m, llm_seq_id src, llm_seq_id dst, llm_pos p0, llm_pos p1);
    int32_t (*seq_keep)(llm_memory *m, llm_seq_id seq);
    /* Moves positions [p0, p1) of seq by delta / divides them by d. Keys are re-rotated
     * before the next decode. */
    int32_t (*seq_add)(llm_memory *m, llm_seq_id seq, llm_pos p0, llm_pos p1, llm_pos delta);
    int32_t (*seq_div)(llm_memory *m, llm_seq_id seq, llm_pos p0, llm_pos p1, int d);
    llm_pos (*seq_pos_min)(const llm_memory *m, llm_seq_id seq);
    llm_pos (*seq_pos_max)(const llm_memory *m, llm_seq_id seq);
    /* Dry run over every micro-batch of a batch: LLM_STATUS_OK if all of them fit,
     * LLM_STATUS_MEMORY_FULL (with a message) if not. Changes nothing. */
    int32_t (*plan)(llm_memory *m, const ubatch *ubs, int n_ubs);
    /* Places a planned micro-batch (fills ub->cells); rollback undoes exactly that. */
    int32_t (*apply)(llm_memory *m, ubatch *ub);
    void (*rollback)(llm_memory *m, const ubatch *ub);
    /* State: write every cell (seq < 0, with sequence sets) or one sequence's cells. read
     * with apply false only validates (nothing changes); with apply true it replaces the whole
     * memory (seq < 0) or sequence seq, and may only be called after a successful check. */
    void (*state_write)(const llm_memory *m, state_writer *w, llm_seq_id seq);
    int32_t (*state_read)(llm_memory *m, state_reader *r, llm_seq_id seq, bool apply);
    uint32_t (*n_cells_used)(const llm_memory *m);
    uint32_t (*n_cells_total)(const llm_memory *m);
    /* How the decode loop cuts a batch: false, into consecutive runs of n_ubatch tokens;
     * true (recurrent state), into micro-batches holding the same number of tokens of each
     * sequence set they contain, each set's tokens together and in order. */
    bool equal_split;
} memory_ops;

struct llm_memory {
    const memory_ops *ops;
};

#endif
