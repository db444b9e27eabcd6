/* recurrent.c -- the recurrent-state memory and its memory_ops.
 *
 * Cell s holds sequence s; cells n_seq_max + k are the snapshots (recurrent.h). An empty
 * sequence cell (pos_max -1) always holds zero states, so the first token of a sequence starts
 * from zeros without the forward pass asking. A token that belongs
 * to several sequences is computed once, from its first sequence's cell, and the new state is
 * copied into the others' cells by the forward pass: this needs those sequences to hold the
 * same state, which plan checks as far as it can (equal positions). */
#include "recurrent.h"

#include <string.h>

#include "../util.h"

static recurrent *as_rec(llm_memory *m) { return (recurrent *)m; }
static const recurrent *as_rec_c(const llm_memory *m) { return (const recurrent *)m; }

static bool seq_valid(const recurrent *r, llm_seq_id seq) {
    return seq >= 0 && (uint32_t)seq < r->n_seq_max;
}

static int32_t bad_seq(const recurrent *r, llm_seq_id seq) {
    return llm_error(LLM_STATUS_INVALID_ARGUMENT, "sequence id %d is outside [0, %u)", seq,
                     r->n_seq_max);
}

static void cell_zero(recurrent *r, uint32_t c) {
    for (uint32_t l = 0; l < r->n_layer; l++) {
        memset(recurrent_conv(r, l, c), 0, sizeof(float) * r->conv_elems);
        memset(recurrent_ssm(r, l, c), 0, sizeof(float) * r->ssm_elems);
    }
}

static void snap_drop(recurrent *r, uint32_t seq, llm_pos keep);

/* Empties sequence cell c (with its snapshots). */
static void cell_clear(recurrent *r, uint32_t c) {
    snap_drop(r, c, -1);
    if (r->pos_max[c] < 0) return;
    r->pos_min[c] = r->pos_max[c] = -1;
    cell_zero(r, c);
}

static void cell_copy(recurrent *r, uint32_t dst, uint32_t src) {
    for (uint32_t l = 0; l < r->n_layer; l++) {
        memcpy(recurrent_conv(r, l, dst), recurrent_conv(r, l, src),
               sizeof(float) * r->conv_elems);
        memcpy(recurrent_ssm(r, l, dst), recurrent_ssm(r, l, src), sizeof(float) * r->ssm_elems);
    }
    r->pos_min[dst] = r->pos_min[src];
    r->pos_max[dst] = r->pos_max[src];
}

/* ---- snapshots ---- */

static uint64_t *snap_mask(const recurrent *r, uint32_t k) {
    return r->snap_seqs + (uint64_t)k * r->seq_words;
}

static bool snap_has(const recurrent *r, uint32_t k, uint32_t seq) {
    return (snap_mask(r, k)[seq / 64] >> (seq % 64)) & 1;
}

static void snap_free_if_empty(recurrent *r, uint32_t k) {
    const uint64_t *mask = snap_mask(r, k);
    for (uint32_t w = 0; w < r->seq_words; w++) {
        if (mask[w]) return;
    }
    r->pos_min[r->n_seq_max + k] = r->pos_max[r->n_seq_max + k] = -1;
}

/* Forgets the snapshots of seq past position keep (keep -1: all of them). */
static void snap_drop(recurrent *r, uint32_t seq, llm_pos keep) {
    for (uint32_t k = 0; k < r->n_snap; k++) {
        if (!snap_has(r, k, seq) || r->pos_max[r->n_seq_max + k] <= keep) continue;
        snap_mask(r, k)[seq / 64] &= ~(1ull << (seq % 64));
        snap_free_if_empty(r, k);
    }
}

/* The newest snapshot of seq that has seen no position >= p0; -1 if none. */
static int32_t snap_find(const recurrent *r, uint32_t seq, llm_pos p0) {
    int32_t best = -1;
    for (uint32_t k = 0; k < r->n_snap; k++) {
        llm_pos pos = r->pos_max[r->n_seq_max + k];
        if (!snap_has(r, k, seq) || pos >= p0) continue;
        if (best < 0 || pos > r->pos_max[r->n_seq_max + (uint32_t)best]) best = (int32_t)k;
    }
    return best;
}

/* A snapshot cell for the state of seqs after position pos: a free one, else the oldest. */
static uint32_t snap_take(recurrent *r, llm_seq_id *const seqs, int n_seqs, llm_pos pos) {
    uint32_t k = 0;
    for (uint32_t i = 0; i < r->n_snap; i++) {
        if (r->pos_max[r->n_seq_max + i] < 0) {
            k = i;
            break;
        }
        if (r->snap_stamp[i] < r->snap_stamp[k]) k = i;
    }
    uint64_t *mask = snap_mask(r, k);
    memset(mask, 0, sizeof(uint64_t) * r->seq_words);
    for (int j = 0; j < n_seqs; j++) mask[seqs[j] / 64] |= 1ull << (seqs[j] % 64);
    const uint32_t c = r->n_seq_max + k, src = (uint32_t)seqs[0];
    r->pos_min[c] = r->pos_max[src] >= 0 ? r->pos_min[src] : pos;
    r->pos_max[c] = pos;
    r->snap_stamp[k] = ++r->stamp;
    return c;
}

bool recurrent_is_tail(const recurrent *r, llm_seq_id seq, llm_pos p1) {
    return p1 < 0 || (seq >= 0 && (uint32_t)seq < r->n_seq_max && p1 > r->pos_max[seq]);
}

llm_pos recurrent_cut_point(const recurrent *r, llm_seq_id seq, llm_pos p0) {
    if (seq < 0 || (uint32_t)seq >= r->n_seq_max) return -1;
    const uint32_t c = (uint32_t)seq;
    if (p0 < 0) p0 = 0;
    if (r->pos_max[c] < 0 || p0 > r->pos_max[c]) return p0;   /* nothing to cut */
    if (p0 <= r->pos_min[c]) return 0;                          /* the whole sequence */
    int32_t k = snap_find(r, c, p0);
    return k < 0 ? -1 : r->pos_max[r->n_seq_max + (uint32_t)k] + 1;
}

/* Rolls seq back to its newest snapshot that has seen no position >= p0 (which exists). */
static void rewind_to_snapshot(recurrent *r, uint32_t seq, llm_pos p0) {
    const uint32_t k = (uint32_t)snap_find(r, seq, p0);
    cell_copy(r, seq, r->n_seq_max + k);
    snap_drop(r, seq, r->pos_max[seq]);
}

static int32_t cannot_rewind(llm_seq_id seq, llm_pos p0, llm_pos p1, const recurrent *r,
                             uint32_t c) {
    return llm_error(LLM_STATUS_CANNOT_REWIND, "sequence %d holds a recurrent state of "
                     "positions [%d, %d]; the range [%d, %d) covers only part of it, and a "
                     "recurrent state cannot be cut back%s: remove the whole sequence and decode "
                     "it again", seq, r->pos_min[c], r->pos_max[c], p0, p1,
                     r->snap_every ? " (no snapshot before that position)"
                                   : " (snapshots are off: see snapshot_interval)");
}

typedef enum overlap { OV_NONE, OV_WHOLE, OV_PART } overlap;

/* How [p0, p1) (negative: open) meets the positions of cell c. */
static overlap cell_overlap(const recurrent *r, uint32_t c, llm_pos p0, llm_pos p1) {
    if (p0 < 0) p0 = 0;
    if (p1 < 0) p1 = INT32_MAX;
    llm_pos lo = r->pos_min[c], hi = r->pos_max[c];
    if (hi < 0 || p0 >= p1 || p1 <= lo || p0 > hi) return OV_NONE;
    return p0 <= lo && p1 > hi ? OV_WHOLE : OV_PART;
}

/* ---- memory_ops ---- */

static void rec_clear(llm_memory *m) {
    recurrent *r = as_rec(m);
    for (uint32_t c = 0; c < r->n_seq_max; c++) cell_clear(r, c);
    for (uint32_t k = 0; k < r->n_snap; k++) {   /* none is left, but be exact */
        memset(snap_mask(r, k), 0, sizeof(uint64_t) * r->seq_words);
        snap_free_if_empty(r, k);
    }
}

static int32_t rec_seq_rm(llm_memory *m, llm_seq_id seq, llm_pos p0, llm_pos p1) {
    recurrent *r = as_rec(m);
    if (seq >= 0 && !seq_valid(r, seq)) return bad_seq(r, seq);
    uint32_t c0 = seq < 0 ? 0 : (uint32_t)seq, c1 = seq < 0 ? r->n_seq_max : c0 + 1;
    for (uint32_t c = c0; c < c1; c++) {   /* all or nothing */
        if (cell_overlap(r, c, p0, p1) == OV_PART &&
            (!recurrent_is_tail(r, (llm_seq_id)c, p1) ||
             recurrent_cut_point(r, (llm_seq_id)c, p0) < 0)) {
            return cannot_rewind((llm_seq_id)c, p0, p1, r, c);
        }
    }
    for (uint32_t c = c0; c < c1; c++) {
        overlap ov = cell_overlap(r, c, p0, p1);
        if (ov == OV_WHOLE) cell_clear(r, c);
        if (ov == OV_PART) rewind_to_snapshot(r, c, p0);
    }
    return LLM_STATUS_OK;
}

/* dst takes src's state when [p0, p1) covers all of src (and all of dst's old positions);
 * a range that misses src only removes that range from dst. */
static int32_t rec_seq_cp(llm_memory *m, llm_seq_id src, llm_seq_id dst, llm_pos p0, llm_pos p1) {
    recurrent *r = as_rec(m);
    if (!seq_valid(r, src)) return bad_seq(r, src);
    if (!seq_valid(r, dst)) return bad_seq(r, dst);
    if (src == dst) return LLM_STATUS_OK;
    overlap os = cell_overlap(r, (uint32_t)src, p0, p1);
    if (os == OV_PART) return cannot_rewind(src, p0, p1, r, (uint32_t)src);
    if (os == OV_NONE) return rec_seq_rm(m, dst, p0, p1);
    if (r->pos_max[dst] >= 0 && cell_overlap(r, (uint32_t)dst, p0, p1) != OV_WHOLE) {
        return cannot_rewind(dst, p0, p1, r, (uint32_t)dst);
    }
    snap_drop(r, (uint32_t)dst, -1);
    cell_copy(r, (uint32_t)dst, (uint32_t)src);
    for (uint32_t k = 0; k < r->n_snap; k++) {   /* dst shares src's past, snapshots too */
        if (snap_has(r, k, (uint32_t)src)) snap_mask(r, k)[dst / 64] |= 1ull << (dst % 64);
    }
    return LLM_STATUS_OK;
}

static int32_t rec_seq_keep(llm_memory *m, llm_seq_id seq) {
    recurrent *r = as_rec(m);
    if (!seq_valid(r, seq)) return bad_seq(r, seq);
    for (uint32_t c = 0; c < r->n_seq_max; c++) {
        if (c != (uint32_t)seq) cell_clear(r, c);
    }
    return LLM_STATUS_OK;
}

/* Positions are labels of a state: moving the range that holds the last position moves the
 * state (and its first position when the range holds it too). A state moved below 0 is
 * dropped. */
static int32_t move_positions(llm_memory *m, llm_seq_id seq, llm_pos p0, llm_pos p1,
                              llm_pos delta, int div) {
    recurrent *r = as_rec(m);
    if (!seq_valid(r, seq)) return bad_seq(r, seq);
    uint32_t c = (uint32_t)seq;
    if (r->pos_max[c] < 0) return LLM_STATUS_OK;
    if (p0 < 0) p0 = 0;
    if (p1 < 0) p1 = INT32_MAX;
    snap_drop(r, c, -1);   /* their positions would no longer match the sequence's */
    llm_pos *ends[2] = {&r->pos_min[c], &r->pos_max[c]};
    for (int i = 0; i < 2; i++) {
        llm_pos p = *ends[i];
        if (p < p0 || p >= p1) continue;
        int64_t moved = div != 1 ? p / div : (int64_t)p + delta;
        if (moved >= INT32_MAX) moved = INT32_MAX - 1;
        *ends[i] = (llm_pos)(moved < 0 ? -1 : moved);
    }
    if (r->pos_max[c] < 0) {
        r->pos_max[c] = 0;   /* make cell_clear see a used cell */
        cell_clear(r, c);
    } else if (r->pos_min[c] < 0 || r->pos_min[c] > r->pos_max[c]) {
        r->pos_min[c] = LLM_MAX(0, LLM_MIN(r->pos_min[c], r->pos_max[c]));
    }
    return LLM_STATUS_OK;
}

static int32_t rec_seq_add(llm_memory *m, llm_seq_id seq, llm_pos p0, llm_pos p1, llm_pos delta) {
    return move_positions(m, seq, p0, p1, delta, 1);
}

static int32_t rec_seq_div(llm_memory *m, llm_seq_id seq, llm_pos p0, llm_pos p1, int d) {
    if (d <= 0) return llm_error(LLM_STATUS_INVALID_ARGUMENT, "divisor %d must be positive", d);
    return move_positions(m, seq, p0, p1, 0, d);
}

static llm_pos rec_seq_pos_min(const llm_memory *m, llm_seq_id seq) {
    const recurrent *r = as_rec_c(m);
    return seq_valid(r, seq) ? r->pos_min[seq] : -1;
}

static llm_pos rec_seq_pos_max(const llm_memory *m, llm_seq_id seq) {
    const recurrent *r = as_rec_c(m);
    return seq_valid(r, seq) ? r->pos_max[seq] : -1;
}

/* Every sequence has its cell, so a batch always fits. A token shared by several sequences
 * is computed once: they must stand at the same position (hold the same state). */
static int32_t rec_plan(llm_memory *m, const ubatch *ubs, int n_ubs) {
    recurrent *r = as_rec(m);
    memcpy(r->plan_pos, r->pos_max, sizeof(llm_pos) * r->n_seq_max);
    for (int u = 0; u < n_ubs; u++) {
        const ubatch *ub = &ubs[u];
        for (int i = 0; i < ub->n_tok; i++) {
            const llm_seq_id *s = ub->seq_id[i];
            for (int j = 1; j < ub->n_seq_id[i]; j++) {
                if (r->plan_pos[s[j]] != r->plan_pos[s[0]]) {
                    return llm_error(LLM_STATUS_INVALID_ARGUMENT, "a token at position %d is "
                                     "shared by sequences %d and %d, whose recurrent states "
                                     "differ (last positions %d and %d)", ub->pos[i], s[0],
                                     s[j], r->plan_pos[s[0]], r->plan_pos[s[j]]);
                }
            }
            for (int j = 0; j < ub->n_seq_id[i]; j++) r->plan_pos[s[j]] = ub->pos[i];
        }
    }
    return LLM_STATUS_OK;
}

static int32_t rec_apply(llm_memory *m, ubatch *ub) {
    recurrent *r = as_rec(m);
    for (int i = 0; i < ub->n_tok; i++) {
        if (ub->snap) {
            bool due = r->snap_every && (ub->pos[i] + 1) % (llm_pos)r->snap_every == 0;
            ub->snap[i] = due ? (int32_t)snap_take(r, ub->seq_id[i], ub->n_seq_id[i],
                                                   ub->pos[i]) : -1;
        }
        for (int j = 0; j < ub->n_seq_id[i]; j++) {
            uint32_t c = (uint32_t)ub->seq_id[i][j];
            if (r->pos_max[c] < 0) r->pos_min[c] = ub->pos[i];
            r->pos_max[c] = ub->pos[i];
        }
    }
    return LLM_STATUS_OK;
}

/* The forward pass updates states in place, so a failed micro-batch leaves its sequences'
 * states half-written: those sequences are dropped with their snapshots (they must be decoded
 * again). */
static void rec_rollback(llm_memory *m, const ubatch *ub) {
    recurrent *r = as_rec(m);
    for (int i = 0; i < ub->n_tok; i++) {
        for (int j = 0; j < ub->n_seq_id[i]; j++) cell_clear(r, (uint32_t)ub->seq_id[i][j]);
    }
}

/* ---- state ----
 * u32 n_layer; u64 conv_elems, ssm_elems; u32 n_saved;
 * n_saved x { i32 seq (-1 in a one-sequence state); i32 pos_min; i32 pos_max };
 * per layer: n_saved conv states, then n_saved SSM states (f32). */

static bool saved(const recurrent *r, uint32_t c, llm_seq_id seq) {
    return r->pos_max[c] >= 0 && (seq < 0 || (uint32_t)seq == c);
}

static void rec_state_write(const llm_memory *m, state_writer *w, llm_seq_id seq) {
    const recurrent *r = as_rec_c(m);
    uint32_t n_saved = 0;
    for (uint32_t c = 0; c < r->n_seq_max; c++) n_saved += saved(r, c, seq);
    sw_u32(w, r->n_layer);
    sw_u64(w, r->conv_elems);
    sw_u64(w, r->ssm_elems);
    sw_u32(w, n_saved);
    for (uint32_t c = 0; c < r->n_seq_max; c++) {
        if (!saved(r, c, seq)) continue;
        sw_i32(w, seq < 0 ? (int32_t)c : -1);
        sw_i32(w, r->pos_min[c]);
        sw_i32(w, r->pos_max[c]);
    }
    for (uint32_t l = 0; l < r->n_layer; l++) {
        for (uint32_t c = 0; c < r->n_seq_max; c++) {
            if (saved(r, c, seq)) sw_write(w, recurrent_conv(r, l, c), sizeof(float) * r->conv_elems);
        }
        for (uint32_t c = 0; c < r->n_seq_max; c++) {
            if (saved(r, c, seq)) sw_write(w, recurrent_ssm(r, l, c), sizeof(float) * r->ssm_elems);
        }
    }
}

static int32_t rec_state_read(llm_memory *m, state_reader *rd, llm_seq_id seq, bool apply) {
    recurrent *r = as_rec(m);
    uint32_t n_layer = sr_u32(rd);
    uint64_t conv_elems = sr_u64(rd), ssm_elems = sr_u64(rd);
    uint32_t n_saved = sr_u32(rd);
    if (rd->failed) return llm_error(LLM_STATUS_BAD_FORMAT, "the recurrent state is truncated");
    if (n_layer != r->n_layer || conv_elems != r->conv_elems || ssm_elems != r->ssm_elems) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "the recurrent state does not match this model's "
                         "layout (%u layers, %llu + %llu values per cell)", n_layer,
                         (unsigned long long)conv_elems, (unsigned long long)ssm_elems);
    }
    uint32_t room = seq < 0 ? r->n_seq_max : 1;
    if (n_saved > room) {
        return llm_error(seq < 0 ? LLM_STATUS_INVALID_ARGUMENT : LLM_STATUS_BAD_FORMAT,
                         "the state holds %u recurrent cells, this context has room for %u",
                         n_saved, room);
    }
    const uint8_t *recs = sr_take(rd, (size_t)n_saved * 12);
    if (!recs) return llm_error(LLM_STATUS_BAD_FORMAT, "the recurrent state is truncated (cells)");
    /* seq ids unique: a bitset in plan_pos's room is not needed, n_saved <= n_seq_max */
    for (uint32_t i = 0; i < n_saved; i++) {
        int32_t s, lo, hi;
        memcpy(&s, recs + 12 * i, 4);
        memcpy(&lo, recs + 12 * i + 4, 4);
        memcpy(&hi, recs + 12 * i + 8, 4);
        if (seq < 0 ? (s < 0 || (uint32_t)s >= r->n_seq_max) : s != -1) {
            return llm_error(seq < 0 && s >= 0 ? LLM_STATUS_INVALID_ARGUMENT
                                               : LLM_STATUS_BAD_FORMAT,
                             "the recurrent state holds sequence %d, outside [0, %u)", s,
                             r->n_seq_max);
        }
        if (lo < 0 || hi < lo || hi == INT32_MAX) {
            return llm_error(LLM_STATUS_BAD_FORMAT, "the recurrent state has an invalid cell");
        }
        for (uint32_t j = 0; j < i && seq < 0; j++) {
            int32_t sj;
            memcpy(&sj, recs + 12 * j, 4);
            if (sj == s) {
                return llm_error(LLM_STATUS_BAD_FORMAT, "the recurrent state lists sequence %d "
                                 "twice", s);
            }
        }
    }
    size_t cell_bytes = sizeof(float) * (size_t)(conv_elems + ssm_elems);
    const uint8_t *rows = sr_take(rd, (size_t)n_layer * n_saved * cell_bytes);
    if (!rows) return llm_error(LLM_STATUS_BAD_FORMAT, "the recurrent state is truncated (states)");
    if (!apply) return LLM_STATUS_OK;

    if (seq < 0) {
        rec_clear(m);
    } else {
        cell_clear(r, (uint32_t)seq);
    }
    for (uint32_t i = 0; i < n_saved; i++) {
        int32_t s;
        memcpy(&s, recs + 12 * i, 4);
        uint32_t c = seq < 0 ? (uint32_t)s : (uint32_t)seq;
        memcpy(&r->pos_min[c], recs + 12 * i + 4, 4);
        memcpy(&r->pos_max[c], recs + 12 * i + 8, 4);
        for (uint32_t l = 0; l < n_layer; l++) {
            const uint8_t *conv = rows + (size_t)l * n_saved * cell_bytes;
            const uint8_t *ssm = conv + (size_t)n_saved * sizeof(float) * conv_elems;
            memcpy(recurrent_conv(r, l, c), conv + i * sizeof(float) * conv_elems,
                   sizeof(float) * conv_elems);
            memcpy(recurrent_ssm(r, l, c), ssm + i * sizeof(float) * ssm_elems,
                   sizeof(float) * ssm_elems);
        }
    }
    return LLM_STATUS_OK;
}

static uint32_t rec_n_cells_used(const llm_memory *m) {
    const recurrent *r = as_rec_c(m);
    uint32_t n = 0;
    for (uint32_t c = 0; c < r->n_seq_max; c++) n += r->pos_max[c] >= 0;
    return n;
}

static uint32_t rec_n_cells_total(const llm_memory *m) { return as_rec_c(m)->n_seq_max; }

static void rec_free(llm_memory *m) {
    recurrent *r = as_rec(m);
    if (!r) return;
    for (uint32_t l = 0; r->conv && l < r->n_layer; l++) llm_aligned_free(r->conv[l]);
    for (uint32_t l = 0; r->ssm && l < r->n_layer; l++) llm_aligned_free(r->ssm[l]);
    llm_free(r->conv);
    llm_free(r->ssm);
    llm_free(r->pos_min);
    llm_free(r->pos_max);
    llm_free(r->plan_pos);
    llm_free(r->snap_seqs);
    llm_free(r->snap_stamp);
    llm_free(r);
}

static const memory_ops rec_ops = {
    .free = rec_free,
    .clear = rec_clear,
    .seq_rm = rec_seq_rm,
    .seq_cp = rec_seq_cp,
    .seq_keep = rec_seq_keep,
    .seq_add = rec_seq_add,
    .seq_div = rec_seq_div,
    .seq_pos_min = rec_seq_pos_min,
    .seq_pos_max = rec_seq_pos_max,
    .plan = rec_plan,
    .apply = rec_apply,
    .rollback = rec_rollback,
    .state_write = rec_state_write,
    .state_read = rec_state_read,
    .n_cells_used = rec_n_cells_used,
    .n_cells_total = rec_n_cells_total,
    .equal_split = true,
};

uint64_t recurrent_state_bytes(const recurrent_params *p) {
    return (uint64_t)p->n_layer * ((uint64_t)p->n_seq_max + p->n_snap) *
           (p->conv_elems + p->ssm_elems) * sizeof(float);
}

uint64_t recurrent_bookkeeping_bytes(const recurrent_params *p) {
    uint64_t cells = (uint64_t)p->n_seq_max + p->n_snap, words = (p->n_seq_max + 63) / 64;
    return cells * sizeof(llm_pos) * 2 + (uint64_t)p->n_seq_max * sizeof(llm_pos) +
           2 * (uint64_t)LLM_MAX(p->n_layer, 1) * sizeof(float *) +
           (uint64_t)LLM_MAX(p->n_snap, 1) * (words + 1) * sizeof(uint64_t);
}

int32_t recurrent_create(const recurrent_params *p, recurrent **out) {
    *out = NULL;
    recurrent *r = llm_calloc(1, sizeof *r);
    if (!r) return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory creating the recurrent state");
    r->base.ops = &rec_ops;
    r->n_seq_max = p->n_seq_max;
    r->n_layer = p->n_layer;
    r->conv_elems = p->conv_elems;
    r->ssm_elems = p->ssm_elems;
    r->snap_every = p->n_snap ? p->snap_every : 0;
    r->n_snap = r->snap_every ? p->n_snap : 0;
    r->seq_words = (p->n_seq_max + 63) / 64;
    const uint64_t n_cells = (uint64_t)p->n_seq_max + r->n_snap;
    r->pos_min = llm_malloc(sizeof(llm_pos) * n_cells);
    r->pos_max = llm_malloc(sizeof(llm_pos) * n_cells);
    r->plan_pos = llm_malloc(sizeof(llm_pos) * p->n_seq_max);
    r->snap_seqs = llm_calloc(LLM_MAX(r->n_snap, 1) * (size_t)r->seq_words, sizeof(uint64_t));
    r->snap_stamp = llm_calloc(LLM_MAX(r->n_snap, 1), sizeof(uint64_t));
    r->conv = llm_calloc(LLM_MAX(p->n_layer, 1), sizeof(float *));
    r->ssm = llm_calloc(LLM_MAX(p->n_layer, 1), sizeof(float *));
    bool ok = r->pos_min && r->pos_max && r->plan_pos && r->snap_seqs && r->snap_stamp &&
              r->conv && r->ssm;
    for (uint32_t l = 0; ok && l < p->n_layer; l++) {
        r->conv[l] = llm_aligned_alloc(sizeof(float) * p->conv_elems * n_cells);
        r->ssm[l] = llm_aligned_alloc(sizeof(float) * p->ssm_elems * n_cells);
        ok = r->conv[l] && r->ssm[l];
    }
    if (!ok) {
        rec_free(&r->base);
        return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory allocating the recurrent state "
                         "(%u sequences)", p->n_seq_max);
    }
    for (uint32_t c = 0; c < n_cells; c++) {
        r->pos_min[c] = r->pos_max[c] = -1;
        cell_zero(r, c);
    }
    *out = r;
    return LLM_STATUS_OK;
}
