/* cpu_backend.c -- the CPU implementation of backend.h over the persistent thread pool.
 * The per-type row kernels come from quant.c (the scalar references); faster kernels plug
 * in behind the same calls. */
#include <math.h>
#include <stdbool.h>

#include "../../quant.h"
#include "../../util.h"
#include "../backend.h"
#include "threadpool.h"

typedef struct cpu_backend {
    llm_backend base;
    threadpool *pool;
    int max_kv, max_head_dim;
    float *scratch;            /* per thread: max_kv scores + max_head_dim values */
} cpu_backend;

static cpu_backend *cpu(llm_backend *be) { return (cpu_backend *)be; }

/* ---- matmul: threads split the output rows; every thread sees all tokens ---- */

typedef struct matmul_task {
    const gguf_tensor *w;
    dot_f32_fn dot;
    uint64_t row_bytes;
    const float *x;
    int64_t ldx;
    int n_tok;
    float *y;
    int64_t ldy;
} matmul_task;

static void matmul_worker(void *p, int ith, int nth) {
    const matmul_task *t = p;
    int64_t n_in = t->w->ne[0], o0, o1;
    pool_split(t->w->ne[1], ith, nth, &o0, &o1);
    const uint8_t *base = t->w->data;
    for (int64_t o = o0; o < o1; o++) {
        const void *row = base + o * t->row_bytes;
        for (int tok = 0; tok < t->n_tok; tok++) {
            t->y[tok * t->ldy + o] = t->dot(row, t->x + tok * t->ldx, n_in);
        }
    }
}

static void cpu_matmul(llm_backend *be, const gguf_tensor *w, const float *x, int64_t ldx,
                       int n_tok, float *y, int64_t ldy) {
    matmul_task t = {w, type_traits_get(w->type)->dot_f32, 0, x, ldx, n_tok, y, ldy};
    type_row_bytes(w->type, w->ne[0], &t.row_bytes);
    threadpool_run(cpu(be)->pool, matmul_worker, &t);
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

/* ---- element-wise ops: cheap next to the matmuls, run on the calling thread ---- */

static void cpu_rmsnorm(llm_backend *be, const float *x, int64_t ldx, int n_tok, int n,
                        const float *w, float eps, float *y, int64_t ldy) {
    (void)be;
    for (int t = 0; t < n_tok; t++) {
        const float *xr = x + t * ldx;
        float *yr = y + t * ldy;
        double ss = 0.0;
        for (int i = 0; i < n; i++) ss += (double)xr[i] * xr[i];
        float scale = 1.0f / sqrtf((float)(ss / n) + eps);
        for (int i = 0; i < n; i++) yr[i] = xr[i] * scale * (w ? w[i] : 1.0f);
    }
}

static void cpu_add_bias(llm_backend *be, float *x, int64_t ldx, int n_tok, int n,
                         const float *b) {
    (void)be;
    for (int t = 0; t < n_tok; t++) {
        for (int i = 0; i < n; i++) x[t * ldx + i] += b[i];
    }
}

static void cpu_add(llm_backend *be, float *x, int64_t ldx, const float *y, int64_t ldy,
                    int n_tok, int n) {
    (void)be;
    for (int t = 0; t < n_tok; t++) {
        for (int i = 0; i < n; i++) x[t * ldx + i] += y[t * ldy + i];
    }
}

static void cpu_swiglu(llm_backend *be, float *g, const float *u, int64_t ld, int n_tok, int n) {
    (void)be;
    for (int t = 0; t < n_tok; t++) {
        for (int i = 0; i < n; i++) {
            float a = g[t * ld + i];
            g[t * ld + i] = a / (1.0f + expf(-a)) * u[t * ld + i];
        }
    }
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
    (void)be;
    from_f32_fn from_f32 = type_traits_get(type)->from_f32;
    for (int t = 0; t < n_tok; t++) from_f32(src + t * lds, cache + cells[t] * cell_bytes, n);
}

/* ---- attention: threads split the (token, head) pairs ---- */

typedef struct attn_task {
    const attn_args *a;
    cpu_backend *be;
} attn_task;

static void attention_worker(void *p, int ith, int nth) {
    const attn_task *task = p;
    const attn_args *a = task->a;
    float *scores = task->be->scratch + (int64_t)ith * (task->be->max_kv + task->be->max_head_dim);
    float *vrow = scores + task->be->max_kv;
    dot_f32_fn dot_k = type_traits_get(a->type_k)->dot_f32;
    to_f32_fn v_to_f32 = type_traits_get(a->type_v)->to_f32;
    int group = a->n_head / a->n_head_kv;
    int64_t j0, j1;
    pool_split((int64_t)a->n_tok * a->n_head, ith, nth, &j0, &j1);
    for (int64_t j = j0; j < j1; j++) {
        int t = (int)(j / a->n_head), h = (int)(j % a->n_head), hk = h / group;
        const float *q = a->q + t * a->ldq + (int64_t)h * a->head_dim_k;
        const uint8_t *mask = a->mask + (int64_t)t * a->n_kv;
        float *out = a->out + t * a->ldo + (int64_t)h * a->head_dim_v;
        float max = -INFINITY;
        for (int c = 0; c < a->n_kv; c++) {
            if (!mask[c]) continue;
            const uint8_t *k = a->k + c * a->k_cell_bytes + hk * a->k_head_bytes;
            scores[c] = dot_k(k, q, a->head_dim_k) * a->scale;
            if (scores[c] > max) max = scores[c];
        }
        for (int i = 0; i < a->head_dim_v; i++) out[i] = 0.0f;
        if (max == -INFINITY) continue;          /* nothing visible: a zero row */
        float sum = 0.0f;
        for (int c = 0; c < a->n_kv; c++) {
            if (!mask[c]) continue;
            float w = expf(scores[c] - max);
            sum += w;
            v_to_f32(a->v + c * a->v_cell_bytes + hk * a->v_head_bytes, vrow, a->head_dim_v);
            for (int i = 0; i < a->head_dim_v; i++) out[i] += w * vrow[i];
        }
        float inv = 1.0f / sum;
        for (int i = 0; i < a->head_dim_v; i++) out[i] *= inv;
    }
}

static void cpu_attention(llm_backend *be, const attn_args *a) {
    attn_task task = {a, cpu(be)};
    threadpool_run(cpu(be)->pool, attention_worker, &task);
}

static void cpu_free(llm_backend *be) {
    if (!be) return;
    threadpool_free(cpu(be)->pool);
    llm_aligned_free(cpu(be)->scratch);
    llm_free(be);
}

int32_t cpu_backend_create(int n_threads, int max_kv, int max_head_dim, llm_backend **out) {
    *out = NULL;
    cpu_backend *be = llm_calloc(1, sizeof *be);
    if (!be) return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory creating CPU backend");
    be->base = (llm_backend){
        .name = "cpu",
        .free = cpu_free,
        .matmul = cpu_matmul,
        .get_rows = cpu_get_rows,
        .rmsnorm = cpu_rmsnorm,
        .add_bias = cpu_add_bias,
        .add = cpu_add,
        .swiglu = cpu_swiglu,
        .rope = cpu_rope,
        .store_rows = cpu_store_rows,
        .attention = cpu_attention,
    };
    be->max_kv = max_kv;
    be->max_head_dim = max_head_dim;
    int32_t st = threadpool_create(n_threads, &be->pool);
    if (st != LLM_STATUS_OK) {
        llm_free(be);
        return st;
    }
    be->scratch = llm_aligned_alloc(sizeof(float) * (size_t)n_threads * (max_kv + max_head_dim));
    if (!be->scratch) {
        cpu_free(&be->base);
        return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory for attention scratch");
    }
    *out = &be->base;
    return LLM_STATUS_OK;
}
