/* cpu_backend.c -- the CPU implementation of backend.h over the persistent thread pool and
 * the SIMD kernels of kernels.h (the level is chosen once from CPUID).
 *
 * Matmul: the activation rows are brought into the weight type's activation format once
 * per matmul (quantized to 8-bit blocks for Q8_0 / Q4_0 weights, used as they are for the
 * float types), then the threads split the output rows. Each thread walks its rows in chunks
 * and computes 4 rows x 4 tokens register tiles, so a weight row is read once per 4 tokens of
 * a prompt; a single token (decode) streams the rows one after the other at memory bandwidth.
 *
 * Attention scores blocks of queries against chunks of cells with the same tile kernels and
 * folds each chunk into a running (online) softmax. Element-wise ops run the SIMD row
 * kernels, split over the threads when a prompt makes them large. */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "../../quant.h"
#include "../../util.h"
#include "../backend.h"
#include "kernels.h"
#include "threadpool.h"

#define MM_CHUNK_TILES 8       /* row tiles a thread finishes over all tokens before moving on */
#define ATTN_CHUNK 128         /* KV cells scored at once per block of queries */
#define PAR_MIN_ELEMS 32768    /* element-wise ops smaller than this stay on one thread */
#define ACT_MAX_TOKENS 128     /* activation rows quantized at a time: a longer matmul goes in
                                  passes of this many tokens (scratch of 128 rows, not n_ubatch) */

typedef struct cpu_backend {
    llm_backend base;
    threadpool *pool;
    const cpu_kernels *k;
    float *scratch;            /* per thread: MM_TILE_TOKS x ATTN_CHUNK scores, ATTN_CHUNK
                                  cell indices, max_head_dim values */
    int64_t scratch_per_thread;
    uint8_t *act;              /* quantized activation rows of the current matmul */
    int64_t act_cap;           /* bytes */
} cpu_backend;

static cpu_backend *cpu(llm_backend *be) { return (cpu_backend *)be; }

/* ---- matmul ---- */

#define MM_MAX_OUT 3           /* weights one matmul_n task multiplies with the same input */

/* the MM_TILE_ROWS-row tiles of n_out rows */
static int64_t row_tiles(int64_t n_out) { return (n_out + MM_TILE_ROWS - 1) / MM_TILE_ROWS; }

/* one weight of a matmul task; its row tiles are numbered from tile0 in the task */
typedef struct mm_out {
    const uint8_t *w;
    uint64_t row_bytes;
    int64_t n_out, tile0;
    float *y;                  /* row t of the task's first token at y + t * ldy */
    int64_t ldy;
} mm_out;

typedef struct matmul_task {
    const mm_kernel *mk;
    mm_out out[MM_MAX_OUT];
    int n_w;
    int64_t n_tiles;           /* over all weights */
    int64_t n_in;
    const float *x;            /* f32 input rows, stride ldx */
    int64_t ldx;
    const uint8_t *a;          /* activation rows in the kernel's format, a_stride bytes apart */
    uint8_t *act;              /* where quantize_worker writes them (the backend's scratch) */
    void (*quantize)(const float *x, void *a, int64_t n);   /* mk's, or its quantize_one */
    size_t a_stride;
    int tok0, n_tok;           /* this pass: tokens [tok0, tok0 + n_tok) of the input */
    dot_f32_fn ref_dot;        /* the reference path only */
} matmul_task;

static void quantize_worker(void *p, int ith, int nth) {
    const matmul_task *t = p;
    int64_t t0, t1;
    pool_split(t->n_tok, ith, nth, &t0, &t1);
    for (int64_t i = t0; i < t1; i++) {
        t->quantize(t->x + (t->tok0 + i) * t->ldx, t->act + i * t->a_stride, t->n_in);
    }
}

/* the row tiles of all the task's weights split evenly over the threads; a thread goes over
 * all tokens for MM_CHUNK_TILES tiles at a time */
static void matmul_worker(void *p, int ith, int nth) {
    const matmul_task *t = p;
    int64_t r0, r1;
    pool_split(t->n_tiles, ith, nth, &r0, &r1);
    int max_toks = mm_max_toks(t->mk);
    for (int i = 0; i < t->n_w; i++) {
        const mm_out *o = &t->out[i];
        int64_t lo = LLM_MAX(r0, o->tile0), hi = LLM_MIN(r1, o->tile0 + row_tiles(o->n_out));
        for (int64_t c0 = lo; c0 < hi; c0 += MM_CHUNK_TILES) {
            int64_t c1 = LLM_MIN(c0 + MM_CHUNK_TILES, hi);
            for (int tok = 0; tok < t->n_tok; tok += max_toks) {
                int nt = LLM_MIN(max_toks, t->n_tok - tok);
                const uint8_t *a = t->a + (size_t)tok * t->a_stride;
                float *y = o->y + (t->tok0 + tok) * o->ldy;
                for (int64_t c = c0; c < c1; c++) {
                    int64_t r = (c - o->tile0) * MM_TILE_ROWS;
                    int nr = (int)LLM_MIN(MM_TILE_ROWS, o->n_out - r);
                    t->mk->tile(t->n_in, o->w + r * o->row_bytes, o->row_bytes, nr, a, t->a_stride,
                                nt, y + r, o->ldy);
                }
            }
        }
    }
}

/* The scalar reference (quant.c), for a type without a kernel or a row longer than the
 * activation scratch: never taken by the models libllm loads today. One weight. */
static void matmul_reference_worker(void *p, int ith, int nth) {
    const matmul_task *t = p;
    const mm_out *o = &t->out[0];
    dot_f32_fn dot = t->ref_dot;
    int64_t o0, o1;
    pool_split(o->n_out, ith, nth, &o0, &o1);
    for (int64_t r = o0; r < o1; r++) {
        for (int tok = 0; tok < t->n_tok; tok++) {
            o->y[tok * o->ldy + r] = dot(o->w + r * o->row_bytes, t->x + tok * t->ldx, t->n_in);
        }
    }
}

/* y[i] = w[i] x for n_w <= MM_MAX_OUT weights of one type and row length: the activations
 * are converted once for all, and every pass is one task over all their row tiles */
static void matmul_same_input(cpu_backend *c, int n_w, const gguf_tensor *const *w, const float *x,
                              int64_t ldx, int n_tok, float *const *y, const int64_t *ldy) {
    matmul_task t = {.mk = cpu_kernels_mm(c->k, w[0]->type), .n_w = n_w, .n_in = w[0]->ne[0],
                     .x = x, .ldx = ldx};
    for (int i = 0; i < n_w; i++) {
        mm_out *o = &t.out[i];
        *o = (mm_out){.w = w[i]->data, .n_out = w[i]->ne[1], .tile0 = t.n_tiles, .y = y[i],
                      .ldy = ldy[i]};
        type_row_bytes(w[i]->type, w[i]->ne[0], &o->row_bytes);
        t.n_tiles += row_tiles(o->n_out);
    }
    if (!t.mk || (t.mk->act_bytes && c->act_cap < t.mk->act_bytes(t.n_in))) {
        t.ref_dot = type_traits_get(w[0]->type)->dot_f32;
        t.n_tok = n_tok;
        for (int i = 0; i < n_w; i++) {
            t.out[0] = t.out[i];
            threadpool_run(c->pool, matmul_reference_worker, &t);
        }
        return;
    }
    if (!t.mk->act_bytes) {
        t.a = (const uint8_t *)x;
        t.a_stride = (size_t)ldx * sizeof(float);
        t.n_tok = n_tok;
        threadpool_run(c->pool, matmul_worker, &t);
        return;
    }
    /* quantized activations: as many tokens at a time as the scratch holds */
    t.a_stride = (size_t)t.mk->act_bytes(t.n_in);
    t.quantize = n_tok == 1 && t.mk->quantize_one ? t.mk->quantize_one : t.mk->quantize;
    int per_pass = (int)LLM_MIN(n_tok, c->act_cap / (int64_t)t.a_stride);
    t.a = t.act = c->act;
    for (t.tok0 = 0; t.tok0 < n_tok; t.tok0 += per_pass) {
        t.n_tok = LLM_MIN(per_pass, n_tok - t.tok0);
        if ((int64_t)t.n_tok * t.n_in >= PAR_MIN_ELEMS) {
            threadpool_run(c->pool, quantize_worker, &t);
        } else {
            quantize_worker(&t, 0, 1);
        }
        threadpool_run(c->pool, matmul_worker, &t);
    }
}

static void cpu_matmul(llm_backend *be, const gguf_tensor *w, const float *x, int64_t ldx,
                       int n_tok, float *y, int64_t ldy) {
    matmul_same_input(cpu(be), 1, &w, x, ldx, n_tok, &y, &ldy);
}

/* runs of weights of the same type and row length share one conversion of x */
static void cpu_matmul_n(llm_backend *be, int n_w, const gguf_tensor *const *w, const float *x,
                         int64_t ldx, int n_tok, float *const *y, const int64_t *ldy) {
    for (int i = 0; i < n_w;) {
        int j = i + 1;
        while (j < n_w && j - i < MM_MAX_OUT && w[j]->type == w[i]->type &&
               w[j]->ne[0] == w[i]->ne[0]) {
            j++;
        }
        matmul_same_input(cpu(be), j - i, w + i, x, ldx, n_tok, y + i, ldy + i);
        i = j;
    }
}

static void cpu_get_rows(llm_backend *be, const gguf_tensor *w, const llm_token *ids, int n,
                         float *dst, int64_t ldd) {
    (void)be;
    uint64_t row_bytes;
    type_row_bytes(w->type, w->ne[0], &row_bytes);
    to_f32_fn to_f32 = type_traits_get(w->type)->to_f32;
    for (int i = 0; i < n; i++) {
        to_f32((const uint8_t *)w->data + (uint64_t)ids[i] * row_bytes, dst + i * ldd, w->ne[0]);
    }
}

/* ---- element-wise ops: SIMD rows; split over the threads when a prompt makes them big ---- */

typedef enum ew_op { EW_RMSNORM, EW_ADD, EW_SWIGLU, EW_GEGLU, EW_SCALE, EW_SOFTCAP } ew_op;

typedef struct ew_task {
    const cpu_kernels *k;
    ew_op op;
    int n_tok, n;
    const float *x;            /* rmsnorm input; the addend of add; u of swiglu */
    int64_t ldx;
    float *y;                  /* rmsnorm output; the sum of add; g of swiglu */
    int64_t ldy;
    const float *w;
    float eps;                 /* rmsnorm's epsilon; the factor of scale, the cap of softcap */
} ew_task;

static void ew_worker(void *p, int ith, int nth) {
    const ew_task *t = p;
    int64_t t0, t1;
    pool_split(t->n_tok, ith, nth, &t0, &t1);
    for (int64_t i = t0; i < t1; i++) {
        const float *x = t->x + i * t->ldx;
        float *y = t->y + i * t->ldy;
        switch (t->op) {
        case EW_RMSNORM: t->k->rmsnorm_f32(t->n, x, t->w, t->eps, y); break;
        case EW_ADD: t->k->axpy_f32(t->n, 1.0f, x, y); break;
        case EW_SWIGLU: t->k->swiglu_f32(t->n, y, x); break;
        case EW_GEGLU: cpu_geglu_f32(t->n, y, x); break;
        case EW_SCALE: t->k->scale_f32(t->n, t->eps, y); break;
        case EW_SOFTCAP: cpu_softcap_f32(t->n, t->eps, y); break;
        }
    }
}

static void ew_run(cpu_backend *c, ew_task *t) {
    if (t->n_tok > 1 && (int64_t)t->n_tok * t->n >= PAR_MIN_ELEMS) {
        threadpool_run(c->pool, ew_worker, t);
    } else {
        ew_worker(t, 0, 1);
    }
}

static void cpu_rmsnorm(llm_backend *be, const float *x, int64_t ldx, int n_tok, int n,
                        const float *w, float eps, float *y, int64_t ldy) {
    ew_task t = {cpu(be)->k, EW_RMSNORM, n_tok, n, x, ldx, y, ldy, w, eps};
    ew_run(cpu(be), &t);
}

static void cpu_add_bias(llm_backend *be, float *x, int64_t ldx, int n_tok, int n,
                         const float *b) {
    ew_task t = {cpu(be)->k, EW_ADD, n_tok, n, b, 0, x, ldx, NULL, 0.0f};
    ew_run(cpu(be), &t);
}

static void cpu_add(llm_backend *be, float *x, int64_t ldx, const float *y, int64_t ldy,
                    int n_tok, int n) {
    ew_task t = {cpu(be)->k, EW_ADD, n_tok, n, y, ldy, x, ldx, NULL, 0.0f};
    ew_run(cpu(be), &t);
}

static void cpu_swiglu(llm_backend *be, float *g, const float *u, int64_t ld, int n_tok, int n) {
    ew_task t = {cpu(be)->k, EW_SWIGLU, n_tok, n, u, ld, g, ld, NULL, 0.0f};
    ew_run(cpu(be), &t);
}

static void cpu_geglu(llm_backend *be, float *g, const float *u, int64_t ld, int n_tok, int n) {
    ew_task t = {cpu(be)->k, EW_GEGLU, n_tok, n, u, ld, g, ld, NULL, 0.0f};
    ew_run(cpu(be), &t);
}

static void cpu_scale(llm_backend *be, float *x, int64_t ldx, int n_tok, int n, float s) {
    ew_task t = {cpu(be)->k, EW_SCALE, n_tok, n, x, ldx, x, ldx, NULL, s};
    ew_run(cpu(be), &t);
}

static void cpu_softcap(llm_backend *be, float *x, int64_t ldx, int n_tok, int n, float cap) {
    ew_task t = {cpu(be)->k, EW_SOFTCAP, n_tok, n, x, ldx, x, ldx, NULL, cap};
    ew_run(cpu(be), &t);
}

static void cpu_rope(llm_backend *be, float *x, int64_t ldx, const rope_args *a) {
    (void)be;
    int half = a->n_rot / 2;
    for (int t = 0; t < a->n_tok; t++) {
        const float *cs = a->cos_sin + (int64_t)t * half * 2;
        for (int h = 0; h < a->n_head; h++) {
            float *v = x + t * ldx + (int64_t)h * a->head_dim;
            for (int i = 0; i < half; i++) {
                int i0 = a->neox ? i : 2 * i, i1 = a->neox ? i + half : 2 * i + 1;
                float c = cs[2 * i], s = cs[2 * i + 1];
                float x0 = v[i0], x1 = v[i1];
                v[i0] = x0 * c - x1 * s;
                v[i1] = x0 * s + x1 * c;
            }
        }
    }
}

static void cpu_store_rows(llm_backend *be, const float *src, int64_t lds, int n, int n_tok,
                           uint32_t type, uint8_t *cache, uint64_t cell_bytes,
                           const int32_t *cells) {
    for (int t = 0; t < n_tok; t++) {
        uint8_t *dst = cache + cells[t] * cell_bytes;
        if (type == TYPE_F16) cpu(be)->k->f32_to_f16_row(n, src + t * lds, (uint16_t *)dst);
        else type_traits_get(type)->from_f32(src + t * lds, dst, n);
    }
}

/* ---- attention: threads split (block of 4 queries, head) items. Each item scores its
 * queries against ATTN_CHUNK cells at a time with the matmul tile kernels (K rows play the
 * weight rows), then folds the chunk into a running softmax (max m, sum l, output rows
 * rescaled when m grows), so no buffer grows with the context. ---- */

typedef struct attn_task {
    const attn_args *a;
    cpu_backend *be;
    mm_tile_fn k_tile;         /* q . k for f32 / f16 / bf16 keys */
    dot_f32_fn k_ref;          /* the scalar reference for quantized keys */
    to_f32_fn v_to_f32;
} attn_task;

/* scores[t][j] = q_t . k_(c0 + j) for nt queries and nc cells; tiles nobody sees are skipped
 * (their scores are never read) */
static void attn_scores(const attn_task *task, int t0, int nt, int hk, const float *q, int c0,
                        int nc, float *scores) {
    const attn_args *a = task->a;
    for (int j = 0; j < nc; j += MM_TILE_ROWS) {
        int nr = LLM_MIN(MM_TILE_ROWS, nc - j);
        bool seen = false;
        for (int t = 0; t < nt && !seen; t++) {
            const uint8_t *m = a->mask + (int64_t)(t0 + t) * a->n_kv + c0 + j;
            for (int r = 0; r < nr; r++) seen |= m[r] != 0;
        }
        if (!seen) continue;
        const uint8_t *k = a->k + (uint64_t)(c0 + j) * a->k_cell_bytes + hk * a->k_head_bytes;
        if (task->k_tile) {
            task->k_tile(a->head_dim_k, k, a->k_cell_bytes, nr, q, (size_t)a->ldq * sizeof(float),
                         nt, scores + j, ATTN_CHUNK);
            continue;
        }
        for (int t = 0; t < nt; t++) {
            for (int r = 0; r < nr; r++) {
                scores[t * ATTN_CHUNK + j + r] =
                    task->k_ref(k + r * a->k_cell_bytes, q + t * a->ldq, a->head_dim_k);
            }
        }
    }
}

/* whether one of the nt queries from t0 sees one of cells [c0, c0 + nc) */
static bool attn_chunk_visible(const attn_args *a, int t0, int nt, int c0, int nc) {
    uint8_t any = 0;
    for (int t = 0; t < nt; t++) {
        const uint8_t *m = a->mask + (int64_t)(t0 + t) * a->n_kv + c0;
        for (int j = 0; j < nc; j++) any |= m[j];
    }
    return any != 0;
}

/* A query's scores of nc cells: s[j] * scale (then softcap * tanh(s / softcap) if softcap
 * > 0) where m[j], -inf elsewhere; returns the largest. The maximum runs over W lanes so
 * the compiler can keep them in a vector instead of one dependent chain. */
static float attn_mask_scale(float *s, const uint8_t *m, int nc, float scale, float softcap) {
    enum { W = 8 };
    if (softcap > 0.0f) {
        for (int j = 0; j < nc; j++) {
            s[j] = m[j] ? softcap * tanhf(s[j] * scale / softcap) : -INFINITY;
        }
    } else {
        for (int j = 0; j < nc; j++) s[j] = m[j] ? s[j] * scale : -INFINITY;
    }
    float best[W];
    for (int u = 0; u < W; u++) best[u] = -INFINITY;
    int j = 0;
    for (; j + W <= nc; j += W) {
        for (int u = 0; u < W; u++) best[u] = s[j + u] > best[u] ? s[j + u] : best[u];
    }
    for (; j < nc; j++) best[0] = s[j] > best[0] ? s[j] : best[0];
    float cmax = best[0];
    for (int u = 1; u < W; u++) cmax = best[u] > cmax ? best[u] : cmax;
    return cmax;
}

/* One item of attention: the queries of block item / n_head (MM_TILE_TOKS of them) with
 * head item % n_head, on thread ith's scratch */
static void attend_item(const attn_task *task, int ith, int64_t item) {
    const attn_args *a = task->a;
    const cpu_kernels *kn = task->be->k;
    float *scores = task->be->scratch + ith * task->be->scratch_per_thread;
    int32_t *idx = (int32_t *)(scores + MM_TILE_TOKS * ATTN_CHUNK);
    float *vrow = scores + (MM_TILE_TOKS + 1) * ATTN_CHUNK;
    int group = a->n_head / a->n_head_kv, dv = a->head_dim_v;
    int t0 = (int)(item / a->n_head) * MM_TILE_TOKS, h = (int)(item % a->n_head);
    int nt = LLM_MIN(MM_TILE_TOKS, a->n_tok - t0), hk = h / group;
    const float *q = a->q + t0 * a->ldq + (int64_t)h * a->head_dim_k;
    float mx[MM_TILE_TOKS], sum[MM_TILE_TOKS];
    for (int t = 0; t < nt; t++) {
        mx[t] = -INFINITY;
        sum[t] = 0.0f;
        float *out = a->out + (t0 + t) * a->ldo + (int64_t)h * dv;
        for (int i = 0; i < dv; i++) out[i] = 0.0f;
    }
    for (int c0 = 0; c0 < a->n_kv; c0 += ATTN_CHUNK) {
        int nc = LLM_MIN(ATTN_CHUNK, a->n_kv - c0);
        if (!attn_chunk_visible(a, t0, nt, c0, nc)) continue;
        attn_scores(task, t0, nt, hk, q, c0, nc, scores);
        for (int t = 0; t < nt; t++) {
            float *s = scores + t * ATTN_CHUNK;
            const uint8_t *m = a->mask + (int64_t)(t0 + t) * a->n_kv + c0;
            float cmax = attn_mask_scale(s, m, nc, a->scale, a->softcap);
            if (cmax == -INFINITY) {             /* nothing visible in this chunk */
                for (int j = 0; j < nc; j++) s[j] = 0.0f;
                continue;
            }
            if (cmax > mx[t]) {
                if (mx[t] != -INFINITY) {
                    float r = expf(mx[t] - cmax);
                    kn->scale_f32(dv, r, a->out + (t0 + t) * a->ldo + (int64_t)h * dv);
                    sum[t] *= r;
                }
                mx[t] = cmax;
            }
            sum[t] += kn->exp_sum_f32(nc, s, mx[t], s);   /* s becomes the weights */
        }
        /* the cells some query gives weight: masked cells are never read */
        uint8_t used[ATTN_CHUNK];
        memset(used, 0, (size_t)nc);
        for (int t = 0; t < nt; t++) {
            for (int j = 0; j < nc; j++) used[j] |= scores[t * ATTN_CHUNK + j] != 0.0f;
        }
        int n_idx = 0;
        for (int j = 0; j < nc; j++) {
            if (used[j]) idx[n_idx++] = j;
        }
        const uint8_t *v = a->v + (uint64_t)c0 * a->v_cell_bytes + hk * a->v_head_bytes;
        float *out = a->out + t0 * a->ldo + (int64_t)h * dv;
        if (a->type_v == TYPE_F32 || a->type_v == TYPE_F16) {
            (a->type_v == TYPE_F32 ? kn->pv_f32 : kn->pv_f16)(
                n_idx, idx, nt, scores, ATTN_CHUNK, v, a->v_cell_bytes, dv, out, a->ldo);
            continue;
        }
        for (int k = 0; k < n_idx; k++) {
            task->v_to_f32(v + idx[k] * a->v_cell_bytes, vrow, dv);
            for (int t = 0; t < nt; t++) {
                kn->axpy_f32(dv, scores[t * ATTN_CHUNK + idx[k]], vrow, out + t * a->ldo);
            }
        }
    }
    for (int t = 0; t < nt; t++) {           /* nothing visible: the row stays zero */
        float *out = a->out + (t0 + t) * a->ldo + (int64_t)h * dv;
        if (sum[t] > 0.0f) kn->scale_f32(dv, 1.0f / sum[t], out);
    }
}

/* With a block of queries for every thread, the blocks are dealt round-robin, each with all
 * its heads: under a causal mask a later block sees more cells, so contiguous halves would
 * leave one thread three quarters of the work. Fewer blocks (decode): contiguous runs of
 * heads, so that a thread reads fewer KV heads. */
static void attention_worker(void *p, int ith, int nth) {
    const attn_task *task = p;
    int64_t n_head = task->a->n_head, n_blocks = (task->a->n_tok + MM_TILE_TOKS - 1) / MM_TILE_TOKS;
    if (n_blocks >= nth) {
        for (int64_t b = ith; b < n_blocks; b += nth) {
            for (int64_t h = 0; h < n_head; h++) attend_item(task, ith, b * n_head + h);
        }
        return;
    }
    int64_t i0, i1;
    pool_split(n_blocks * n_head, ith, nth, &i0, &i1);
    for (int64_t item = i0; item < i1; item++) attend_item(task, ith, item);
}

static void cpu_attention(llm_backend *be, const attn_args *a) {
    const mm_kernel *mk = cpu_kernels_mm(cpu(be)->k, a->type_k);
    attn_task task = {a, cpu(be), mk && !mk->act_bytes ? mk->tile : NULL,
                      type_traits_get(a->type_k)->dot_f32, type_traits_get(a->type_v)->to_f32};
    threadpool_run(cpu(be)->pool, attention_worker, &task);
}

struct threadpool *cpu_backend_pool(llm_backend *be) { return cpu(be)->pool; }

static void cpu_free(llm_backend *be) {
    if (!be) return;
    threadpool_free(cpu(be)->pool);
    llm_aligned_free(cpu(be)->scratch);
    llm_aligned_free(cpu(be)->act);
    llm_free(be);
}

/* Per-thread attention scratch (floats) and the activation buffer (bytes): room for max_tok
 * rows of max_row values in the quantized formats (at least one row). */
static void scratch_sizes(const cpu_kernels *k, int max_head_dim, int max_tok, int64_t max_row,
                          int64_t *per_thread, int64_t *act_cap) {
    *per_thread = (int64_t)(MM_TILE_TOKS + 1) * ATTN_CHUNK + max_head_dim;
    *per_thread = (*per_thread + 15) / 16 * 16;   /* 64-byte rows */
    int64_t row = (LLM_MAX(max_row, 1) + 63) / 64 * 64;
    const mm_kernel *quantized[] = {&k->q8_0, &k->q4_0, &k->q4_k, &k->q5_k, &k->q6_k};
    int64_t per_row = 0;
    for (size_t i = 0; i < sizeof quantized / sizeof quantized[0]; i++) {
        if (quantized[i]->act_bytes) per_row = LLM_MAX(per_row, quantized[i]->act_bytes(row));
    }
    *act_cap = per_row * LLM_MAX(LLM_MIN(max_tok, ACT_MAX_TOKENS), 1);
}

uint64_t cpu_backend_scratch_bytes(int n_threads, int max_head_dim, int max_tok,
                                   int64_t max_row) {
    int64_t per_thread, act_cap;
    scratch_sizes(cpu_kernels_get(), max_head_dim, max_tok, max_row, &per_thread, &act_cap);
    return sizeof(float) * (uint64_t)LLM_MAX(n_threads, 1) * (uint64_t)per_thread +
           (uint64_t)act_cap;
}

int32_t cpu_backend_create(int n_threads, int max_kv, int max_head_dim, int max_tok,
                           int64_t max_row, llm_backend **out) {
    (void)max_kv;              /* attention keeps no per-cell buffer */
    *out = NULL;
    if (n_threads < 1) n_threads = 1;
    cpu_backend *be = llm_calloc(1, sizeof *be);
    if (!be) return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory creating CPU backend");
    be->base = (llm_backend){
        .name = "cpu",
        .free = cpu_free,
        .matmul = cpu_matmul,
        .matmul_n = cpu_matmul_n,
        .get_rows = cpu_get_rows,
        .rmsnorm = cpu_rmsnorm,
        .add_bias = cpu_add_bias,
        .add = cpu_add,
        .swiglu = cpu_swiglu,
        .geglu = cpu_geglu,
        .scale = cpu_scale,
        .softcap = cpu_softcap,
        .rope = cpu_rope,
        .store_rows = cpu_store_rows,
        .attention = cpu_attention,
    };
    be->k = cpu_kernels_get();
    int32_t st = threadpool_create(n_threads, &be->pool);
    if (st != LLM_STATUS_OK) {
        llm_free(be);
        return st;
    }
    scratch_sizes(be->k, max_head_dim, max_tok, max_row, &be->scratch_per_thread, &be->act_cap);
    be->scratch = llm_aligned_alloc(sizeof(float) * (size_t)n_threads * be->scratch_per_thread);
    be->act = llm_aligned_alloc((size_t)be->act_cap);
    if (!be->scratch || !be->act) {
        cpu_free(&be->base);
        return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory for CPU backend scratch");
    }
    cpu_ssm_install(&be->base);
    *out = &be->base;
    return LLM_STATUS_OK;
}
