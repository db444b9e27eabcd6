/* kv_swa.c -- the sliding-window memory: a full KV cache and a pruned window pool, as one.
 *
 * Pruning. A token at position p of sequence s sees, in a sliding-window layer, the cells of
 * s at positions in (p - window, p]. Positions of a sequence only grow between operations, so
 * a cell of s at a position <= next(s) - window (next(s) = the position s's next token takes,
 * its largest position + 1) is seen by no token again. Such cells are dropped lazily: only
 * when a micro-batch does not find enough free cells. Until then they stay, so a caller can
 * still rewind a sequence (seq_rm of its tail) into them. After a prune every sequence holds
 * at most window - 1 cells, so window * n_seq_max + n_ubatch cells always hold a micro-batch
 * (positions made equal by seq_div aside). The survivors are then moved to the front of the
 * pool, in order, so the pool has no holes (see make_room).
 *
 * Planning is exact: the dry run repeats apply's prune-and-place on a metadata copy of the
 * pool (no K/V rows), so "memory full" is reported exactly when apply would fail.
 *
 * Sequence operations run first on metadata copies of both caches; they are then applied to
 * the real caches only if both succeed and every sequence still has, in the window pool, all
 * the cells its next token must see (the full cache tells which positions those are). An
 * operation that would need pruned cells back (rewinding or copying a range the pool no
 * longer holds) fails with LLM_STATUS_CANNOT_REWIND and changes nothing. */
#include "kv_swa.h"

#include "../util.h"

static kv_swa *as_swa(llm_memory *m) { return (kv_swa *)m; }
static const kv_swa *as_swa_c(const llm_memory *m) { return (const kv_swa *)m; }

static const memory_ops *kv_ops(const kv_cache *kv) { return kv->base.ops; }

uint32_t kv_swa_n_cells(uint32_t n_ctx, uint32_t window, uint32_t n_seq_max, uint32_t n_ubatch) {
    uint64_t n = (uint64_t)window * n_seq_max + n_ubatch;
    return (uint32_t)LLM_MIN(n, (uint64_t)n_ctx);
}

static uint64_t cell_meta_bytes(uint32_t n_cells, uint32_t n_seq_max) {
    return (uint64_t)n_cells * (sizeof(llm_pos) + sizeof(int32_t) +
                                (n_seq_max + 63) / 64 * sizeof(uint64_t));
}

uint64_t kv_swa_bookkeeping_bytes(uint32_t n_ctx, uint32_t n_swa_cells, uint32_t n_seq_max,
                                  uint32_t n_ubatch) {
    return cell_meta_bytes(n_swa_cells, n_seq_max) * 2 +   /* the pool and its shadow */
           cell_meta_bytes(n_ctx, n_seq_max) +             /* the full cache's shadow */
           (uint64_t)n_ubatch * sizeof(int32_t) +
           (uint64_t)n_seq_max * (sizeof(llm_pos) + 2 * sizeof(uint32_t));
}

/* ---- the window rule ---- */

/* Drops, from pool kv, the cells no future token can see, if fewer than n cells are free,
 * then moves the rest to the front in their order: the pool has no holes, so a saved state
 * restores to the same layout (bit-identical attention sums). A prune frees at least
 * n_ubatch cells, so the move happens at most once per n_ubatch tokens. */
static void make_room(kv_swa *s, kv_cache *kv, uint32_t n) {
    if (kv->n_cells - kv->n_used >= n) return;
    kv_cache_seq_pos_max_all(kv, s->pos_max);
    for (uint32_t q = 0; q < kv->n_seq_max; q++) s->pos_max[q] += 1;   /* next positions */
    kv_cache_prune_window(kv, s->pos_max, s->window);
    kv_cache_compact(kv);
}

/* True when, for every sequence, pool `swa` holds every cell of the window its next token
 * sees, as the full cache `full` lists them. */
static bool window_complete(kv_swa *s, const kv_cache *full, const kv_cache *swa) {
    kv_cache_seq_pos_max_all(full, s->pos_max);
    /* the next token at pos_max + 1 sees (pos_max + 1 - window, pos_max]: window - 1 cells */
    kv_cache_count_window(full, s->pos_max, s->window - 1, s->count_full);
    kv_cache_count_window(swa, s->pos_max, s->window - 1, s->count_swa);
    for (uint32_t q = 0; q < full->n_seq_max; q++) {
        if (s->count_swa[q] < s->count_full[q]) return false;
    }
    return true;
}

/* ---- sequence operations: checked on shadows, then applied to both ---- */

typedef enum op_kind { OP_RM, OP_CP, OP_KEEP, OP_ADD, OP_DIV } op_kind;

typedef struct seq_op {
    op_kind kind;
    llm_seq_id seq, dst;
    llm_pos p0, p1, delta;
    int d;
} seq_op;

static int32_t run_on(kv_cache *kv, const seq_op *op) {
    const memory_ops *o = kv_ops(kv);
    llm_memory *m = &kv->base;
    switch (op->kind) {
    case OP_RM: return o->seq_rm(m, op->seq, op->p0, op->p1);
    case OP_CP: return o->seq_cp(m, op->seq, op->dst, op->p0, op->p1);
    case OP_KEEP: return o->seq_keep(m, op->seq);
    case OP_ADD: return o->seq_add(m, op->seq, op->p0, op->p1, op->delta);
    case OP_DIV: return o->seq_div(m, op->seq, op->p0, op->p1, op->d);
    }
    return llm_error(LLM_STATUS_INTERNAL, "unknown sequence operation");
}

static int32_t run(llm_memory *m, const seq_op *op) {
    kv_swa *s = as_swa(m);
    kv_cache_copy_cells(s->shadow_full, s->full);
    kv_cache_copy_cells(s->shadow_swa, s->swa);
    int32_t st = run_on(s->shadow_full, op);
    if (st == LLM_STATUS_OK) st = run_on(s->shadow_swa, op);
    if (st != LLM_STATUS_OK) return st;
    if (!window_complete(s, s->shadow_full, s->shadow_swa)) {
        return llm_error(LLM_STATUS_CANNOT_REWIND, "the sliding-window cache no longer holds "
                         "the positions this operation would bring back into a sequence's "
                         "window of %u; clear the sequence and decode it again", s->window);
    }
    /* the same operation on the same cells: it succeeds as it did on the shadows */
    st = run_on(s->full, op);
    if (st == LLM_STATUS_OK) st = run_on(s->swa, op);
    return st;
}

static int32_t swa_seq_rm(llm_memory *m, llm_seq_id seq, llm_pos p0, llm_pos p1) {
    seq_op op = {.kind = OP_RM, .seq = seq, .p0 = p0, .p1 = p1};
    return run(m, &op);
}

static int32_t swa_seq_cp(llm_memory *m, llm_seq_id src, llm_seq_id dst, llm_pos p0,
                          llm_pos p1) {
    seq_op op = {.kind = OP_CP, .seq = src, .dst = dst, .p0 = p0, .p1 = p1};
    return run(m, &op);
}

static int32_t swa_seq_keep(llm_memory *m, llm_seq_id seq) {
    seq_op op = {.kind = OP_KEEP, .seq = seq};
    return run(m, &op);
}

static int32_t swa_seq_add(llm_memory *m, llm_seq_id seq, llm_pos p0, llm_pos p1,
                           llm_pos delta) {
    seq_op op = {.kind = OP_ADD, .seq = seq, .p0 = p0, .p1 = p1, .delta = delta};
    return run(m, &op);
}

static int32_t swa_seq_div(llm_memory *m, llm_seq_id seq, llm_pos p0, llm_pos p1, int d) {
    seq_op op = {.kind = OP_DIV, .seq = seq, .p0 = p0, .p1 = p1, .d = d};
    return run(m, &op);
}

static void swa_clear(llm_memory *m) {
    kv_swa *s = as_swa(m);
    kv_ops(s->full)->clear(&s->full->base);
    kv_ops(s->swa)->clear(&s->swa->base);
}

/* positions: the full cache holds them all */
static llm_pos swa_seq_pos_min(const llm_memory *m, llm_seq_id seq) {
    const kv_cache *f = as_swa_c(m)->full;
    return kv_ops(f)->seq_pos_min(&f->base, seq);
}

static llm_pos swa_seq_pos_max(const llm_memory *m, llm_seq_id seq) {
    const kv_cache *f = as_swa_c(m)->full;
    return kv_ops(f)->seq_pos_max(&f->base, seq);
}

/* ---- decoding ---- */

static ubatch in_pool(const kv_swa *s, const ubatch *ub) {
    ubatch u = *ub;
    u.cells = s->swa_cells;
    return u;
}

static int32_t swa_plan(llm_memory *m, const ubatch *ubs, int n_ubs) {
    kv_swa *s = as_swa(m);
    int32_t st = kv_ops(s->full)->plan(&s->full->base, ubs, n_ubs);
    if (st != LLM_STATUS_OK) return st;
    kv_cache *sh = s->shadow_swa;
    kv_cache_copy_cells(sh, s->swa);
    for (int i = 0; i < n_ubs; i++) {
        uint32_t n = (uint32_t)ubs[i].n_tok;
        make_room(s, sh, n);
        if (sh->n_cells - sh->n_used < n) {
            return llm_error(LLM_STATUS_MEMORY_FULL, "the sliding-window cache is full: "
                             "micro-batch %d needs %u cells, %u of %u are free", i, n,
                             sh->n_cells - sh->n_used, sh->n_cells);
        }
        ubatch u = in_pool(s, &ubs[i]);
        if ((st = kv_ops(sh)->apply(&sh->base, &u)) != LLM_STATUS_OK) return st;
    }
    return LLM_STATUS_OK;
}

static int32_t swa_apply(llm_memory *m, ubatch *ub) {
    kv_swa *s = as_swa(m);
    int32_t st = kv_ops(s->full)->apply(&s->full->base, ub);
    if (st != LLM_STATUS_OK) return st;
    make_room(s, s->swa, (uint32_t)ub->n_tok);
    ubatch u = in_pool(s, ub);
    if ((st = kv_ops(s->swa)->apply(&s->swa->base, &u)) != LLM_STATUS_OK) {
        kv_ops(s->full)->rollback(&s->full->base, ub);
    }
    return st;
}

/* Pruned cells stay pruned: they were invisible to the rolled-back tokens' positions, so
 * they are invisible to whatever comes next at those positions too. */
static void swa_rollback(llm_memory *m, const ubatch *ub) {
    kv_swa *s = as_swa(m);
    kv_ops(s->full)->rollback(&s->full->base, ub);
    ubatch u = in_pool(s, ub);
    kv_ops(s->swa)->rollback(&s->swa->base, &u);
}

/* ---- state: the full cache's section, then the pool's ---- */

static void swa_state_write(const llm_memory *m, state_writer *w, llm_seq_id seq) {
    const kv_swa *s = as_swa_c(m);
    kv_ops(s->full)->state_write(&s->full->base, w, seq);
    kv_ops(s->swa)->state_write(&s->swa->base, w, seq);
}

static int32_t swa_state_read(llm_memory *m, state_reader *r, llm_seq_id seq, bool apply) {
    kv_swa *s = as_swa(m);
    int32_t st = kv_ops(s->full)->state_read(&s->full->base, r, seq, apply);
    if (st == LLM_STATUS_OK) st = kv_ops(s->swa)->state_read(&s->swa->base, r, seq, apply);
    return st;
}

static uint32_t swa_n_cells_used(const llm_memory *m) {
    const kv_cache *f = as_swa_c(m)->full;
    return kv_ops(f)->n_cells_used(&f->base);
}

static uint32_t swa_n_cells_total(const llm_memory *m) {
    const kv_cache *f = as_swa_c(m)->full;
    return kv_ops(f)->n_cells_total(&f->base);
}

static void swa_free(llm_memory *m) {
    kv_swa *s = as_swa(m);
    if (!s) return;
    kv_cache *caches[4] = {s->full, s->swa, s->shadow_full, s->shadow_swa};
    for (int i = 0; i < 4; i++) {
        if (caches[i]) kv_ops(caches[i])->free(&caches[i]->base);
    }
    llm_free(s->swa_cells);
    llm_free(s->pos_max);
    llm_free(s->count_full);
    llm_free(s->count_swa);
    llm_free(s);
}

static const memory_ops swa_ops = {
    .free = swa_free,
    .clear = swa_clear,
    .seq_rm = swa_seq_rm,
    .seq_cp = swa_seq_cp,
    .seq_keep = swa_seq_keep,
    .seq_add = swa_seq_add,
    .seq_div = swa_seq_div,
    .seq_pos_min = swa_seq_pos_min,
    .seq_pos_max = swa_seq_pos_max,
    .plan = swa_plan,
    .apply = swa_apply,
    .rollback = swa_rollback,
    .state_write = swa_state_write,
    .state_read = swa_state_read,
    .n_cells_used = swa_n_cells_used,
    .n_cells_total = swa_n_cells_total,
};

int32_t kv_swa_create(const kv_cache_params *full, const kv_cache_params *swa, uint32_t window,
                      uint32_t n_ubatch, kv_swa **out) {
    *out = NULL;
    if (window == 0) return llm_error(LLM_STATUS_INTERNAL, "sliding window of 0");
    kv_swa *s = llm_calloc(1, sizeof *s);
    if (!s) return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory creating the KV cache");
    s->base.ops = &swa_ops;
    s->window = window;
    s->n_ubatch = n_ubatch;
    kv_cache_params sf = *full, ss = *swa;
    sf.n_layer = 0;
    ss.n_layer = 0;
    int32_t st;
    if ((st = kv_cache_create(full, &s->full)) || (st = kv_cache_create(swa, &s->swa)) ||
        (st = kv_cache_create(&sf, &s->shadow_full)) ||
        (st = kv_cache_create(&ss, &s->shadow_swa))) {
        swa_free(&s->base);
        return st;
    }
    s->swa_cells = llm_malloc(sizeof(int32_t) * LLM_MAX(n_ubatch, 1));
    s->pos_max = llm_malloc(sizeof(llm_pos) * full->n_seq_max);
    s->count_full = llm_malloc(sizeof(uint32_t) * full->n_seq_max);
    s->count_swa = llm_malloc(sizeof(uint32_t) * full->n_seq_max);
    if (!s->swa_cells || !s->pos_max || !s->count_full || !s->count_swa) {
        swa_free(&s->base);
        return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory creating the KV cache");
    }
    *out = s;
    return LLM_STATUS_OK;
}
