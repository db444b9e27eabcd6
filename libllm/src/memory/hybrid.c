/* hybrid.c -- the hybrid memory: a KV cache and a recurrent state as one.
 *
 * The recurrent state is the part that can refuse: it cannot drop part of a sequence (unless
 * a snapshot lets it roll back) and it cannot compute one token for sequences whose states
 * differ. So sequence operations ask it first; the KV cache only refuses a position change
 * that needs cells it does not have (copy-on-write in seq_add / seq_div), so those ask the
 * KV cache first. Whatever fails first fails before anything changed. */
#include "hybrid.h"

#include "../util.h"

static hybrid *as_hyb(llm_memory *m) { return (hybrid *)m; }
static const hybrid *as_hyb_c(const llm_memory *m) { return (const hybrid *)m; }

static const memory_ops *kv_ops(const kv_cache *kv) { return kv->base.ops; }
static const memory_ops *rec_ops(const recurrent *r) { return r->base.ops; }

static void hyb_clear(llm_memory *m) {
    hybrid *h = as_hyb(m);
    kv_ops(h->kv)->clear(&h->kv->base);
    rec_ops(h->rec)->clear(&h->rec->base);
}

/* A tail [p0, -1) that the recurrent state rolls back to a snapshot must leave the KV cache
 * at the same end: the cut points are taken before the state moves. */
static int32_t hyb_seq_rm(llm_memory *m, llm_seq_id seq, llm_pos p0, llm_pos p1) {
    hybrid *h = as_hyb(m);
    const recurrent *r = h->rec;
    if (seq >= 0 && (uint32_t)seq >= r->n_seq_max) {   /* the recurrent part reports it */
        return rec_ops(r)->seq_rm(&h->rec->base, seq, p0, p1);
    }
    uint32_t s0 = seq < 0 ? 0 : (uint32_t)seq, s1 = seq < 0 ? r->n_seq_max : s0 + 1;
    for (uint32_t s = s0; s < s1; s++) {   /* -1: not a tail, the KV cache drops [p0, p1) */
        h->cut[s] = recurrent_is_tail(r, (llm_seq_id)s, p1)
                        ? recurrent_cut_point(r, (llm_seq_id)s, p0) : -1;
    }
    int32_t st = rec_ops(r)->seq_rm(&h->rec->base, seq, p0, p1);
    for (uint32_t s = s0; s < s1 && st == LLM_STATUS_OK; s++) {
        st = h->cut[s] < 0 ? kv_ops(h->kv)->seq_rm(&h->kv->base, (llm_seq_id)s, p0, p1)
                           : kv_ops(h->kv)->seq_rm(&h->kv->base, (llm_seq_id)s,
                                                   LLM_MIN(h->cut[s], LLM_MAX(p0, 0)), -1);
    }
    return st;
}

static int32_t hyb_seq_cp(llm_memory *m, llm_seq_id src, llm_seq_id dst, llm_pos p0,
                          llm_pos p1) {
    hybrid *h = as_hyb(m);
    int32_t st = rec_ops(h->rec)->seq_cp(&h->rec->base, src, dst, p0, p1);
    if (st == LLM_STATUS_OK) st = kv_ops(h->kv)->seq_cp(&h->kv->base, src, dst, p0, p1);
    return st;
}

static int32_t hyb_seq_keep(llm_memory *m, llm_seq_id seq) {
    hybrid *h = as_hyb(m);
    int32_t st = rec_ops(h->rec)->seq_keep(&h->rec->base, seq);
    if (st == LLM_STATUS_OK) st = kv_ops(h->kv)->seq_keep(&h->kv->base, seq);
    return st;
}

static int32_t hyb_seq_add(llm_memory *m, llm_seq_id seq, llm_pos p0, llm_pos p1,
                           llm_pos delta) {
    hybrid *h = as_hyb(m);
    int32_t st = kv_ops(h->kv)->seq_add(&h->kv->base, seq, p0, p1, delta);
    if (st == LLM_STATUS_OK) st = rec_ops(h->rec)->seq_add(&h->rec->base, seq, p0, p1, delta);
    return st;
}

static int32_t hyb_seq_div(llm_memory *m, llm_seq_id seq, llm_pos p0, llm_pos p1, int d) {
    hybrid *h = as_hyb(m);
    int32_t st = kv_ops(h->kv)->seq_div(&h->kv->base, seq, p0, p1, d);
    if (st == LLM_STATUS_OK) st = rec_ops(h->rec)->seq_div(&h->rec->base, seq, p0, p1, d);
    return st;
}

static llm_pos hyb_seq_pos_min(const llm_memory *m, llm_seq_id seq) {
    const recurrent *r = as_hyb_c(m)->rec;
    return rec_ops(r)->seq_pos_min(&r->base, seq);
}

static llm_pos hyb_seq_pos_max(const llm_memory *m, llm_seq_id seq) {
    const recurrent *r = as_hyb_c(m)->rec;
    return rec_ops(r)->seq_pos_max(&r->base, seq);
}

static int32_t hyb_plan(llm_memory *m, const ubatch *ubs, int n_ubs) {
    hybrid *h = as_hyb(m);
    int32_t st = rec_ops(h->rec)->plan(&h->rec->base, ubs, n_ubs);
    if (st == LLM_STATUS_OK) st = kv_ops(h->kv)->plan(&h->kv->base, ubs, n_ubs);
    return st;
}

static int32_t hyb_apply(llm_memory *m, ubatch *ub) {
    hybrid *h = as_hyb(m);
    int32_t st = kv_ops(h->kv)->apply(&h->kv->base, ub);
    if (st != LLM_STATUS_OK) return st;
    if ((st = rec_ops(h->rec)->apply(&h->rec->base, ub)) != LLM_STATUS_OK) {
        kv_ops(h->kv)->rollback(&h->kv->base, ub);
    }
    return st;
}

/* The recurrent state drops the micro-batch's sequences (their states are half-written); the
 * KV cache then drops them too, so both still end every sequence at the same position. */
static void hyb_rollback(llm_memory *m, const ubatch *ub) {
    hybrid *h = as_hyb(m);
    kv_ops(h->kv)->rollback(&h->kv->base, ub);
    rec_ops(h->rec)->rollback(&h->rec->base, ub);
    for (int i = 0; i < ub->n_tok; i++) {
        for (int j = 0; j < ub->n_seq_id[i]; j++) {
            kv_ops(h->kv)->seq_rm(&h->kv->base, ub->seq_id[i][j], -1, -1);
        }
    }
}

/* ---- state: the KV cache's section, then the recurrent state's ---- */

static void hyb_state_write(const llm_memory *m, state_writer *w, llm_seq_id seq) {
    const hybrid *h = as_hyb_c(m);
    kv_ops(h->kv)->state_write(&h->kv->base, w, seq);
    rec_ops(h->rec)->state_write(&h->rec->base, w, seq);
}

static int32_t hyb_state_read(llm_memory *m, state_reader *r, llm_seq_id seq, bool apply) {
    hybrid *h = as_hyb(m);
    int32_t st = kv_ops(h->kv)->state_read(&h->kv->base, r, seq, apply);
    if (st == LLM_STATUS_OK) st = rec_ops(h->rec)->state_read(&h->rec->base, r, seq, apply);
    return st;
}

static uint32_t hyb_n_cells_used(const llm_memory *m) {
    const kv_cache *kv = as_hyb_c(m)->kv;
    return kv_ops(kv)->n_cells_used(&kv->base);
}

static uint32_t hyb_n_cells_total(const llm_memory *m) {
    const kv_cache *kv = as_hyb_c(m)->kv;
    return kv_ops(kv)->n_cells_total(&kv->base);
}

static void hyb_free(llm_memory *m) {
    hybrid *h = as_hyb(m);
    if (!h) return;
    if (h->kv) kv_ops(h->kv)->free(&h->kv->base);
    if (h->rec) rec_ops(h->rec)->free(&h->rec->base);
    llm_free(h->cut);
    llm_free(h);
}

static const memory_ops hyb_ops = {
    .free = hyb_free,
    .clear = hyb_clear,
    .seq_rm = hyb_seq_rm,
    .seq_cp = hyb_seq_cp,
    .seq_keep = hyb_seq_keep,
    .seq_add = hyb_seq_add,
    .seq_div = hyb_seq_div,
    .seq_pos_min = hyb_seq_pos_min,
    .seq_pos_max = hyb_seq_pos_max,
    .plan = hyb_plan,
    .apply = hyb_apply,
    .rollback = hyb_rollback,
    .state_write = hyb_state_write,
    .state_read = hyb_state_read,
    .n_cells_used = hyb_n_cells_used,
    .n_cells_total = hyb_n_cells_total,
    .equal_split = true,
};

uint64_t hybrid_bookkeeping_bytes(uint32_t n_seq_max) {
    return (uint64_t)n_seq_max * sizeof(llm_pos);
}

int32_t hybrid_create(const kv_cache_params *kv, const recurrent_params *rec, hybrid **out) {
    *out = NULL;
    if (kv->n_seq_max != rec->n_seq_max) {
        return llm_error(LLM_STATUS_INTERNAL, "hybrid memory with %u and %u sequences",
                         kv->n_seq_max, rec->n_seq_max);
    }
    hybrid *h = llm_calloc(1, sizeof *h);
    if (!h) return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory creating the memory");
    h->base.ops = &hyb_ops;
    int32_t st;
    if ((st = kv_cache_create(kv, &h->kv)) || (st = recurrent_create(rec, &h->rec))) {
        hyb_free(&h->base);
        return st;
    }
    h->cut = llm_malloc(sizeof(llm_pos) * rec->n_seq_max);
    if (!h->cut) {
        hyb_free(&h->base);
        return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory creating the memory");
    }
    *out = h;
    return LLM_STATUS_OK;
}
