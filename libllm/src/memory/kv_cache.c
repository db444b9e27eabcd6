/* kv_cache.c -- cell bookkeeping of the KV cache and its memory_ops. */
#include "kv_cache.h"

#include <string.h>

#include "../quant.h"
#include "../util.h"

static kv_cache *as_kv(llm_memory *m) { return (kv_cache *)m; }
static const kv_cache *as_kv_c(const llm_memory *m) { return (const kv_cache *)m; }

static uint64_t *cell_seqs(const kv_cache *kv, uint32_t c) {
    return kv->seqs + (uint64_t)c * kv->seq_words;
}

static bool cell_empty(const kv_cache *kv, uint32_t c) { return kv->pos[c] < 0; }

static void cell_clear(kv_cache *kv, uint32_t c) {
    if (cell_empty(kv, c)) return;
    kv->pos[c] = -1;
    kv->shift[c] = 0;
    memset(cell_seqs(kv, c), 0, kv->seq_words * sizeof(uint64_t));
    kv->n_used--;
    if (c < kv->head) kv->head = c;
}

/* Removes seq from cell c; empties the cell when no sequence is left. */
static void cell_drop_seq(kv_cache *kv, uint32_t c, llm_seq_id seq) {
    uint64_t *s = cell_seqs(kv, c);
    s[seq / 64] &= ~(1ull << (seq % 64));
    for (uint32_t w = 0; w < kv->seq_words; w++) {
        if (s[w]) return;
    }
    cell_clear(kv, c);
}

static void cell_add_seq(kv_cache *kv, uint32_t c, llm_seq_id seq) {
    cell_seqs(kv, c)[seq / 64] |= 1ull << (seq % 64);
}

static void range_defaults(llm_pos *p0, llm_pos *p1) {
    if (*p0 < 0) *p0 = 0;
    if (*p1 < 0) *p1 = INT32_MAX;
}

/* Cell c is in use, at a position in [p0, p1), and holds seq (seq < 0: any sequence). */
static bool cell_in(const kv_cache *kv, uint32_t c, llm_seq_id seq, llm_pos p0, llm_pos p1) {
    return !cell_empty(kv, c) && kv->pos[c] >= p0 && kv->pos[c] < p1 &&
           (seq < 0 || kv_cell_has_seq(kv, c, seq));
}

static bool seq_valid(const kv_cache *kv, llm_seq_id seq) {
    return seq >= 0 && (uint32_t)seq < kv->n_seq_max;
}

static int32_t bad_seq(const kv_cache *kv, llm_seq_id seq) {
    return llm_error(LLM_STATUS_INVALID_ARGUMENT, "sequence id %d is outside [0, %u)", seq,
                     kv->n_seq_max);
}

/* ---- memory_ops ---- */

static void kv_clear(llm_memory *m) {
    kv_cache *kv = as_kv(m);
    for (uint32_t c = 0; c < kv->n_cells; c++) kv->pos[c] = -1;
    memset(kv->seqs, 0, (size_t)kv->n_cells * kv->seq_words * sizeof(uint64_t));
    kv_cache_shift_done(kv);
    kv->n_used = 0;
    kv->head = 0;
}

static int32_t kv_seq_rm(llm_memory *m, llm_seq_id seq, llm_pos p0, llm_pos p1) {
    kv_cache *kv = as_kv(m);
    if (seq >= 0 && !seq_valid(kv, seq)) return bad_seq(kv, seq);
    range_defaults(&p0, &p1);
    for (uint32_t c = 0; c < kv->n_cells; c++) {
        if (!cell_in(kv, c, seq, p0, p1)) continue;
        if (seq < 0) {
            cell_clear(kv, c);
        } else {
            cell_drop_seq(kv, c, seq);
        }
    }
    return LLM_STATUS_OK;
}

static int32_t kv_seq_cp(llm_memory *m, llm_seq_id src, llm_seq_id dst, llm_pos p0, llm_pos p1) {
    kv_cache *kv = as_kv(m);
    if (!seq_valid(kv, src)) return bad_seq(kv, src);
    if (!seq_valid(kv, dst)) return bad_seq(kv, dst);
    if (src == dst) return LLM_STATUS_OK;
    kv_seq_rm(m, dst, p0, p1);
    range_defaults(&p0, &p1);
    for (uint32_t c = 0; c < kv->n_cells; c++) {
        if (cell_in(kv, c, src, p0, p1)) cell_add_seq(kv, c, dst);
    }
    return LLM_STATUS_OK;
}

static int32_t kv_seq_keep(llm_memory *m, llm_seq_id seq) {
    kv_cache *kv = as_kv(m);
    if (!seq_valid(kv, seq)) return bad_seq(kv, seq);
    for (uint32_t c = 0; c < kv->n_cells; c++) {
        if (cell_empty(kv, c)) continue;
        if (!kv_cell_has_seq(kv, c, seq)) {
            cell_clear(kv, c);
        } else {
            uint64_t *s = cell_seqs(kv, c);
            memset(s, 0, kv->seq_words * sizeof(uint64_t));
            cell_add_seq(kv, c, seq);
        }
    }
    return LLM_STATUS_OK;
}

/* True when cell c holds another sequence besides seq. */
static bool cell_shared(const kv_cache *kv, uint32_t c, llm_seq_id seq) {
    const uint64_t *s = cell_seqs(kv, c);
    for (uint32_t w = 0; w < kv->seq_words; w++) {
        uint64_t others = s[w] & ~((uint32_t)seq / 64 == w ? 1ull << (seq % 64) : 0);
        if (others) return true;
    }
    return false;
}

/* Gives seq its own copy of every cell in [p0, p1) it shares with other sequences (copy on
 * write), so that moving seq's positions leaves the others alone. All or nothing. */
static int32_t unshare(kv_cache *kv, llm_seq_id seq, llm_pos p0, llm_pos p1) {
    uint32_t need = 0;
    for (uint32_t c = 0; c < kv->n_cells; c++) {
        need += cell_in(kv, c, seq, p0, p1) && cell_shared(kv, c, seq);
    }
    if (need > kv->n_cells - kv->n_used) {
        return llm_error(LLM_STATUS_MEMORY_FULL, "moving sequence %d needs %u free cells for "
                         "its shared cells, %u are free", seq, need, kv->n_cells - kv->n_used);
    }
    uint32_t dst = 0;
    for (uint32_t c = 0; c < kv->n_cells && need > 0; c++) {
        if (!cell_in(kv, c, seq, p0, p1) || !cell_shared(kv, c, seq)) continue;
        while (!cell_empty(kv, dst)) dst++;
        for (uint32_t l = 0; l < kv->n_layer; l++) {
            memcpy(kv->k[l] + dst * kv->k_cell_bytes, kv->k[l] + c * kv->k_cell_bytes,
                   kv->k_cell_bytes);
            memcpy(kv->v[l] + dst * kv->v_cell_bytes, kv->v[l] + c * kv->v_cell_bytes,
                   kv->v_cell_bytes);
        }
        kv->pos[dst] = kv->pos[c];
        kv->shift[dst] = kv->shift[c];
        cell_add_seq(kv, dst, seq);
        kv->n_used++;
        cell_drop_seq(kv, c, seq);
        need--;
    }
    return LLM_STATUS_OK;
}

/* Moves positions of seq in [p0, p1): new = f(old) with f an add or a division. Cells whose
 * new position is negative are dropped. */
static int32_t move_positions(llm_memory *m, llm_seq_id seq, llm_pos p0, llm_pos p1,
                              llm_pos delta, int div) {
    kv_cache *kv = as_kv(m);
    if (!seq_valid(kv, seq)) return bad_seq(kv, seq);
    range_defaults(&p0, &p1);
    if (p0 >= p1 || (delta == 0 && div == 1)) return LLM_STATUS_OK;
    int32_t st = unshare(kv, seq, p0, p1);
    if (st != LLM_STATUS_OK) return st;
    for (uint32_t c = 0; c < kv->n_cells; c++) {
        if (!cell_in(kv, c, seq, p0, p1)) continue;
        int64_t moved = div != 1 ? kv->pos[c] / div : (int64_t)kv->pos[c] + delta;
        if (moved < 0 || moved >= INT32_MAX) {
            cell_clear(kv, c);
            continue;
        }
        kv->shift[c] += (int32_t)(moved - kv->pos[c]);
        kv->pos[c] = (llm_pos)moved;
        kv->has_shift = kv->has_shift || kv->shift[c] != 0;
    }
    return LLM_STATUS_OK;
}

static int32_t kv_seq_add(llm_memory *m, llm_seq_id seq, llm_pos p0, llm_pos p1, llm_pos delta) {
    return move_positions(m, seq, p0, p1, delta, 1);
}

static int32_t kv_seq_div(llm_memory *m, llm_seq_id seq, llm_pos p0, llm_pos p1, int d) {
    if (d <= 0) return llm_error(LLM_STATUS_INVALID_ARGUMENT, "divisor %d must be positive", d);
    return move_positions(m, seq, p0, p1, 0, d);
}

void kv_cache_shift_done(kv_cache *kv) {
    memset(kv->shift, 0, sizeof(int32_t) * kv->n_cells);
    kv->has_shift = false;
}

/* The smallest (want_max false) or largest position of seq, -1 when it has none. */
static llm_pos seq_pos_bound(const llm_memory *m, llm_seq_id seq, bool want_max) {
    const kv_cache *kv = as_kv_c(m);
    if (!seq_valid(kv, seq)) return -1;
    llm_pos best = -1;
    for (uint32_t c = 0; c < kv->n_cells; c++) {
        if (!cell_in(kv, c, seq, 0, INT32_MAX)) continue;
        if (best < 0 || (want_max ? kv->pos[c] > best : kv->pos[c] < best)) best = kv->pos[c];
    }
    return best;
}

static llm_pos kv_seq_pos_min(const llm_memory *m, llm_seq_id seq) {
    return seq_pos_bound(m, seq, false);
}

static llm_pos kv_seq_pos_max(const llm_memory *m, llm_seq_id seq) {
    return seq_pos_bound(m, seq, true);
}

/* Each token takes one new cell and a decode never frees one, so a batch fits exactly when
 * the free cells number at least its tokens. */
static int32_t kv_plan(llm_memory *m, const ubatch *ubs, int n_ubs) {
    kv_cache *kv = as_kv(m);
    uint64_t need = 0;
    for (int i = 0; i < n_ubs; i++) need += (uint64_t)ubs[i].n_tok;
    uint32_t free_cells = kv->n_cells - kv->n_used;
    if (need > free_cells) {
        return llm_error(LLM_STATUS_MEMORY_FULL, "the KV cache is full: the batch needs %llu "
                         "cells, %u of %u are free", (unsigned long long)need, free_cells,
                         kv->n_cells);
    }
    return LLM_STATUS_OK;
}

/* Takes a contiguous run of free cells when there is one (from head, then from 0), any free
 * cells otherwise. */
static int32_t kv_apply(llm_memory *m, ubatch *ub) {
    kv_cache *kv = as_kv(m);
    uint32_t n = (uint32_t)ub->n_tok;
    if (n > kv->n_cells - kv->n_used) {
        return llm_error(LLM_STATUS_MEMORY_FULL, "the KV cache is full");
    }
    int64_t start = -1;
    for (int pass = 0; pass < 2 && start < 0; pass++) {
        uint32_t run = 0;
        for (uint32_t c = pass == 0 ? kv->head : 0; c < kv->n_cells; c++) {
            run = cell_empty(kv, c) ? run + 1 : 0;
            if (run == n) {
                start = (int64_t)c + 1 - n;
                break;
            }
        }
    }
    uint32_t c = start >= 0 ? (uint32_t)start : 0;
    for (uint32_t i = 0; i < n; i++, c++) {
        while (!cell_empty(kv, c)) c++;
        ub->cells[i] = (int32_t)c;
        kv->pos[c] = ub->pos[i];
        for (int s = 0; s < ub->n_seq_id[i]; s++) cell_add_seq(kv, c, ub->seq_id[i][s]);
        kv->n_used++;
    }
    kv->head = c < kv->n_cells ? c : 0;
    return LLM_STATUS_OK;
}

static void kv_rollback(llm_memory *m, const ubatch *ub) {
    kv_cache *kv = as_kv(m);
    for (int i = 0; i < ub->n_tok; i++) cell_clear(kv, (uint32_t)ub->cells[i]);
}

/* ---- state ----
 * u32 type_k, type_v, n_layer, seq_words (0 for one sequence), n_saved;
 * n_saved x { i32 pos; i32 pending shift; seq_words x u64 }; per layer: n_saved K rows, then n_saved V rows.
 * Cells are written in ascending cell order and restored in that order, which keeps the
 * summation order of attention, hence bit-identical results. */

static bool saved_cell(const kv_cache *kv, uint32_t c, llm_seq_id seq) {
    return cell_in(kv, c, seq, 0, INT32_MAX);
}

static void kv_state_write(const llm_memory *m, state_writer *w, llm_seq_id seq) {
    const kv_cache *kv = as_kv_c(m);
    uint32_t n_saved = 0;
    for (uint32_t c = 0; c < kv->n_cells; c++) n_saved += saved_cell(kv, c, seq);
    uint32_t words = seq < 0 ? kv->seq_words : 0;
    sw_u32(w, kv->type_k);
    sw_u32(w, kv->type_v);
    sw_u32(w, kv->n_layer);
    sw_u32(w, words);
    sw_u32(w, n_saved);
    for (uint32_t c = 0; c < kv->n_cells; c++) {
        if (!saved_cell(kv, c, seq)) continue;
        sw_i32(w, kv->pos[c]);
        sw_i32(w, kv->shift[c]);
        sw_write(w, cell_seqs(kv, c), words * sizeof(uint64_t));
    }
    for (uint32_t l = 0; l < kv->n_layer; l++) {
        for (int kind = 0; kind < 2; kind++) {
            const uint8_t *rows = kind == 0 ? kv->k[l] : kv->v[l];
            uint64_t bytes = kind == 0 ? kv->k_cell_bytes : kv->v_cell_bytes;
            for (uint32_t c = 0; c < kv->n_cells; c++) {
                if (saved_cell(kv, c, seq)) sw_write(w, rows + c * bytes, bytes);
            }
        }
    }
}

/* Cells that would be free once seq's cells are dropped. */
static uint32_t free_without(const kv_cache *kv, llm_seq_id seq) {
    uint32_t n = kv->n_cells - kv->n_used;
    for (uint32_t c = 0; c < kv->n_cells; c++) {
        n += cell_in(kv, c, seq, 0, INT32_MAX) && !cell_shared(kv, c, seq);
    }
    return n;
}

/* Copies saved rows (of type `from`) into the cache (type `to`), converting through f32 when
 * the types differ. tmp holds one row of n floats. */
static void put_row(uint8_t *dst, uint32_t to, const uint8_t *src, uint32_t from, uint64_t bytes,
                    int64_t n, float *tmp) {
    if (from == to) {
        memcpy(dst, src, bytes);
        return;
    }
    type_traits_get(from)->to_f32(src, tmp, n);
    type_traits_get(to)->from_f32(tmp, dst, n);
}

static int32_t kv_state_read(llm_memory *m, state_reader *r, llm_seq_id seq, bool apply) {
    kv_cache *kv = as_kv(m);
    uint32_t type_k = sr_u32(r), type_v = sr_u32(r), n_layer = sr_u32(r);
    uint32_t words = sr_u32(r), n_saved = sr_u32(r);
    if (r->failed) return llm_error(LLM_STATUS_BAD_FORMAT, "the KV state is truncated");
    uint64_t k_bytes, v_bytes;
    const type_traits *tk = type_traits_get(type_k), *tv = type_traits_get(type_v);
    if (!tk || !tk->to_f32 || !tv || !tv->to_f32 ||
        !type_row_bytes(type_k, kv->head_dim_k, &k_bytes) ||
        !type_row_bytes(type_v, kv->head_dim_v, &v_bytes)) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "the KV state has invalid cache types %u/%u",
                         type_k, type_v);
    }
    k_bytes *= kv->n_head_kv;
    v_bytes *= kv->n_head_kv;
    if (n_layer != kv->n_layer || (seq >= 0 && words != 0) || (seq < 0 && words == 0) ||
        words > 4) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "the KV state does not match this model's "
                         "layout (%u layers, %u sequence words)", n_layer, words);
    }
    uint32_t room = seq < 0 ? kv->n_cells : free_without(kv, seq);
    if (n_saved > room) {
        return llm_error(LLM_STATUS_MEMORY_FULL, "the state holds %u cells, only %u fit", n_saved,
                         room);
    }
    /* cell records */
    const uint8_t *cells = sr_take(r, (size_t)n_saved * (8 + words * 8));
    if (!cells) return llm_error(LLM_STATUS_BAD_FORMAT, "the KV state is truncated (cells)");
    for (uint32_t i = 0; i < n_saved; i++) {
        const uint8_t *rec = cells + (size_t)i * (8 + words * 8);
        int32_t pos;
        memcpy(&pos, rec, 4);
        uint64_t any = 0;
        for (uint32_t w = 0; w < words; w++) {
            uint64_t bits;
            memcpy(&bits, rec + 8 + w * 8, 8);
            any |= bits;
            uint32_t lo = w * 64;
            if (lo + 64 > kv->n_seq_max) {
                uint64_t allowed = kv->n_seq_max > lo ? (1ull << (kv->n_seq_max - lo)) - 1 : 0;
                if (bits & ~allowed) {
                    return llm_error(LLM_STATUS_INVALID_ARGUMENT, "the state uses sequence ids "
                                     "beyond this context's n_seq_max %u", kv->n_seq_max);
                }
            }
        }
        if (pos < 0 || pos == INT32_MAX || (words > 0 && any == 0)) {
            return llm_error(LLM_STATUS_BAD_FORMAT, "the KV state has an invalid cell");
        }
    }
    const uint8_t *rows = sr_take(r, (size_t)n_layer * n_saved * (k_bytes + v_bytes));
    if (!rows) return llm_error(LLM_STATUS_BAD_FORMAT, "the KV state is truncated (rows)");
    if (!apply) return LLM_STATUS_OK;

    float *tmp = llm_malloc(sizeof(float) * LLM_MAX(kv->n_head_kv * kv->head_dim_k,
                                                    kv->n_head_kv * kv->head_dim_v));
    if (!tmp) return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory restoring state");
    if (seq < 0) {
        kv_clear(m);
    } else {
        kv_seq_rm(m, seq, -1, -1);
    }
    /* target cells: ascending free cells; remember them in the pos array order */
    uint32_t c = 0;
    for (uint32_t i = 0; i < n_saved; i++, c++) {
        while (!cell_empty(kv, c)) c++;
        const uint8_t *rec = cells + (size_t)i * (8 + words * 8);
        memcpy(&kv->pos[c], rec, 4);
        memcpy(&kv->shift[c], rec + 4, 4);
        kv->has_shift = kv->has_shift || kv->shift[c] != 0;
        if (seq < 0) {
            memcpy(cell_seqs(kv, c), rec + 8, LLM_MIN(words, kv->seq_words) * 8);
        } else {
            cell_add_seq(kv, c, seq);
        }
        kv->n_used++;
        for (uint32_t l = 0; l < n_layer; l++) {
            const uint8_t *ks = rows + (size_t)l * n_saved * (k_bytes + v_bytes);
            const uint8_t *vs = ks + (size_t)n_saved * k_bytes;
            put_row(kv->k[l] + c * kv->k_cell_bytes, kv->type_k, ks + i * k_bytes, type_k,
                    k_bytes, (int64_t)kv->n_head_kv * kv->head_dim_k, tmp);
            put_row(kv->v[l] + c * kv->v_cell_bytes, kv->type_v, vs + i * v_bytes, type_v,
                    v_bytes, (int64_t)kv->n_head_kv * kv->head_dim_v, tmp);
        }
    }
    kv->head = 0;
    llm_free(tmp);
    return LLM_STATUS_OK;
}

static uint32_t kv_n_cells_used(const llm_memory *m) { return as_kv_c(m)->n_used; }
static uint32_t kv_n_cells_total(const llm_memory *m) { return as_kv_c(m)->n_cells; }

static void kv_free(llm_memory *m) {
    kv_cache *kv = as_kv(m);
    if (!kv) return;
    for (uint32_t l = 0; kv->k && l < kv->n_layer; l++) llm_aligned_free(kv->k[l]);
    for (uint32_t l = 0; kv->v && l < kv->n_layer; l++) llm_aligned_free(kv->v[l]);
    llm_free(kv->k);
    llm_free(kv->v);
    llm_free(kv->pos);
    llm_free(kv->shift);
    llm_free(kv->seqs);
    llm_free(kv);
}

static const memory_ops kv_ops = {
    .free = kv_free,
    .clear = kv_clear,
    .seq_rm = kv_seq_rm,
    .seq_cp = kv_seq_cp,
    .seq_keep = kv_seq_keep,
    .seq_add = kv_seq_add,
    .seq_div = kv_seq_div,
    .seq_pos_min = kv_seq_pos_min,
    .seq_pos_max = kv_seq_pos_max,
    .plan = kv_plan,
    .apply = kv_apply,
    .rollback = kv_rollback,
    .state_write = kv_state_write,
    .state_read = kv_state_read,
    .n_cells_used = kv_n_cells_used,
    .n_cells_total = kv_n_cells_total,
};

uint32_t kv_cache_n_active(const kv_cache *kv) {
    uint32_t n = kv->n_cells;
    while (n > 0 && cell_empty(kv, n - 1)) n--;
    return n;
}

void kv_cache_fill_mask(const kv_cache *kv, llm_pos pos, const llm_seq_id *seq_ids, int n_seq,
                        uint32_t window, uint8_t *mask, uint32_t n_kv) {
    for (uint32_t c = 0; c < n_kv; c++) {
        bool ok = !cell_empty(kv, c) && kv->pos[c] <= pos &&
                  (window == 0 || (int64_t)kv->pos[c] > (int64_t)pos - window);
        for (int s = 0; ok && s < n_seq; s++) ok = kv_cell_has_seq(kv, c, seq_ids[s]);
        mask[c] = ok;
    }
}

static int32_t row_bytes(uint32_t type, uint32_t n, uint64_t *out, const char *what) {
    const type_traits *t = type_traits_get(type);
    if (!t || !t->from_f32 || !t->to_f32 || !t->dot_f32 || !type_row_bytes(type, n, out)) {
        return llm_error(LLM_STATUS_UNSUPPORTED, "%s cache type %s is not supported for heads "
                         "of %u values", what, t ? t->name : "(unknown)", n);
    }
    return LLM_STATUS_OK;
}

int32_t kv_cache_create(const kv_cache_params *p, kv_cache **out) {
    *out = NULL;
    int32_t st;
    uint64_t kh, vh;
    if ((st = row_bytes(p->type_k, p->head_dim_k, &kh, "K")) ||
        (st = row_bytes(p->type_v, p->head_dim_v, &vh, "V"))) {
        return st;
    }
    kv_cache *kv = llm_calloc(1, sizeof *kv);
    if (!kv) return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory creating the KV cache");
    kv->base.ops = &kv_ops;
    kv->n_cells = p->n_cells;
    kv->n_layer = p->n_layer;
    kv->n_seq_max = p->n_seq_max;
    kv->seq_words = (p->n_seq_max + 63) / 64;
    kv->n_head_kv = p->n_head_kv;
    kv->head_dim_k = p->head_dim_k;
    kv->head_dim_v = p->head_dim_v;
    kv->type_k = p->type_k;
    kv->type_v = p->type_v;
    kv->k_head_bytes = kh;
    kv->v_head_bytes = vh;
    kv->k_cell_bytes = kh * p->n_head_kv;
    kv->v_cell_bytes = vh * p->n_head_kv;
    kv->pos = llm_malloc(sizeof(llm_pos) * p->n_cells);
    kv->shift = llm_calloc(p->n_cells, sizeof(int32_t));
    kv->seqs = llm_calloc((size_t)p->n_cells * kv->seq_words, sizeof(uint64_t));
    kv->k = llm_calloc(LLM_MAX(p->n_layer, 1), sizeof(uint8_t *));
    kv->v = llm_calloc(LLM_MAX(p->n_layer, 1), sizeof(uint8_t *));
    bool ok = kv->pos && kv->shift && kv->seqs && kv->k && kv->v;
    for (uint32_t l = 0; ok && l < p->n_layer; l++) {
        kv->k[l] = llm_aligned_alloc(kv->k_cell_bytes * p->n_cells);
        kv->v[l] = llm_aligned_alloc(kv->v_cell_bytes * p->n_cells);
        ok = kv->k[l] && kv->v[l];
    }
    if (!ok) {
        kv_free(&kv->base);
        return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory allocating the KV cache "
                         "(%u cells)", p->n_cells);
    }
    kv_clear(&kv->base);
    *out = kv;
    return LLM_STATUS_OK;
}

/* ---- helpers of the sliding-window memory (kv_swa.c) ---- */

void kv_cache_copy_cells(kv_cache *dst, const kv_cache *src) {
    memcpy(dst->pos, src->pos, sizeof(llm_pos) * src->n_cells);
    memcpy(dst->shift, src->shift, sizeof(int32_t) * src->n_cells);
    memcpy(dst->seqs, src->seqs, sizeof(uint64_t) * src->n_cells * src->seq_words);
    dst->has_shift = src->has_shift;
    dst->n_used = src->n_used;
    dst->head = src->head;
}

void kv_cache_seq_pos_max_all(const kv_cache *kv, llm_pos *pos_max) {
    for (uint32_t s = 0; s < kv->n_seq_max; s++) pos_max[s] = -1;
    for (uint32_t c = 0; c < kv->n_cells; c++) {
        if (cell_empty(kv, c)) continue;
        const uint64_t *bits = cell_seqs(kv, c);
        for (uint32_t w = 0; w < kv->seq_words; w++) {
            for (uint64_t b = bits[w]; b; b &= b - 1) {
                uint32_t s = w * 64 + (uint32_t)__builtin_ctzll(b);
                if (kv->pos[c] > pos_max[s]) pos_max[s] = kv->pos[c];
            }
        }
    }
}

void kv_cache_prune_window(kv_cache *kv, const llm_pos *next_pos, uint32_t window) {
    for (uint32_t c = 0; c < kv->n_cells; c++) {
        if (cell_empty(kv, c)) continue;
        uint64_t *bits = cell_seqs(kv, c);
        for (uint32_t w = 0; w < kv->seq_words && !cell_empty(kv, c); w++) {
            for (uint64_t b = bits[w]; b; b &= b - 1) {
                uint32_t s = w * 64 + (uint32_t)__builtin_ctzll(b);
                if ((int64_t)kv->pos[c] <= (int64_t)next_pos[s] - window) {
                    cell_drop_seq(kv, c, (llm_seq_id)s);
                    if (cell_empty(kv, c)) break;
                }
            }
        }
    }
}

void kv_cache_count_window(const kv_cache *kv, const llm_pos *pos_max, uint32_t window,
                           uint32_t *count) {
    for (uint32_t s = 0; s < kv->n_seq_max; s++) count[s] = 0;
    for (uint32_t c = 0; c < kv->n_cells; c++) {
        if (cell_empty(kv, c)) continue;
        const uint64_t *bits = cell_seqs(kv, c);
        for (uint32_t w = 0; w < kv->seq_words; w++) {
            for (uint64_t b = bits[w]; b; b &= b - 1) {
                uint32_t s = w * 64 + (uint32_t)__builtin_ctzll(b);
                int64_t p = kv->pos[c];
                count[s] += p <= pos_max[s] && p > (int64_t)pos_max[s] - window;
            }
        }
    }
}

void kv_cache_compact(kv_cache *kv) {
    uint32_t dst = 0;
    for (uint32_t c = 0; c < kv->n_cells; c++) {
        if (cell_empty(kv, c)) continue;
        if (dst != c) {
            for (uint32_t l = 0; l < kv->n_layer; l++) {
                memcpy(kv->k[l] + dst * kv->k_cell_bytes, kv->k[l] + c * kv->k_cell_bytes,
                       kv->k_cell_bytes);
                memcpy(kv->v[l] + dst * kv->v_cell_bytes, kv->v[l] + c * kv->v_cell_bytes,
                       kv->v_cell_bytes);
            }
            kv->pos[dst] = kv->pos[c];
            kv->shift[dst] = kv->shift[c];
            memcpy(cell_seqs(kv, dst), cell_seqs(kv, c), kv->seq_words * sizeof(uint64_t));
            kv->pos[c] = -1;
            kv->shift[c] = 0;
            memset(cell_seqs(kv, c), 0, kv->seq_words * sizeof(uint64_t));
        }
        dst++;
    }
    kv->head = dst < kv->n_cells ? dst : 0;
}
