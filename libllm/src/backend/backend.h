/* backend.h -- the ops a forward pass is made of, behind one struct of function pointers so
 * CPU (scalar now, SIMD later) and CUDA implementations slot in without touching arch code.
 * Activations are f32 rows; `ld*` are row strides in elements. */
#ifndef LLM_BACKEND_H
#define LLM_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include "../gguf.h"
#include "libllm.h"

typedef struct attn_args {
    int n_tok;                 /* query rows */
    int n_head, n_head_kv;     /* n_head % n_head_kv == 0 (grouped-query attention) */
    int head_dim_k, head_dim_v;
    const float *q;            /* [n_tok][n_head * head_dim_k], stride ldq */
    int64_t ldq;
    const uint8_t *k;          /* cell c, kv head h: k + c * k_cell_bytes + h * k_head_bytes */
    uint32_t type_k;
    uint64_t k_cell_bytes, k_head_bytes;
    const uint8_t *v;          /* same layout for values */
    uint32_t type_v;
    uint64_t v_cell_bytes, v_head_bytes;
    int n_kv;                  /* cells [0, n_kv) are looked at */
    const uint8_t *mask;       /* [n_tok][n_kv]: 1 where query t may attend cell c */
    float scale;               /* usually 1 / sqrt(head_dim_k) */
    float softcap;             /* 0: none; else scaled scores s become cap * tanh(s / cap) */
    float *out;                /* [n_tok][n_head * head_dim_v], stride ldo */
    int64_t ldo;
} attn_args;

typedef struct rope_args {
    int n_tok, n_head, head_dim, n_rot;
    bool neox;                 /* rotate pairs (i, i + n_rot/2) instead of (2i, 2i + 1) */
    const float *cos_sin;      /* [n_tok][n_rot / 2][2] precomputed per position */
} rope_args;

/* Causal conv1d over the tokens of one sequence (state-space layers), with SiLU:
 * out[t][c] = silu(b[c] + sum_k w[c][k] * u[t + k][c]), where u is the d_conv - 1 rows of
 * `state` (oldest first) followed by the n_tok rows of x. state then holds the last
 * d_conv - 1 rows of u. */
typedef struct ssm_conv_args {
    int n_tok, n_ch, d_conv;
    const float *x;            /* [n_tok][n_ch], stride ldx */
    int64_t ldx;
    const float *w;            /* [n_ch][d_conv] */
    const float *b;            /* [n_ch] or NULL */
    float *state;              /* [d_conv - 1][n_ch], updated */
    float *out;                /* [n_tok][n_ch], stride ldo; must not overlap x */
    int64_t ldo;
} ssm_conv_args;

/* Selective scan over the tokens of one sequence. Head h (channels h * head_dim + p) uses
 * group g = h / (n_head / n_group) of B and C; per token, with d = softplus(dt[h] + dt_bias[h]):
 *   S[h][p][n] = exp(d * A) * S[h][p][n] + d * B[g][n] * x[h][p]
 *   y[h][p] = sum_n S[h][p][n] * C[g][n] + D[h] * x[h][p]
 * where A = A[h][n] (a_per_state: mamba, head_dim 1) or A[h] (mamba2). */
typedef struct ssm_scan_args {
    int n_tok, n_head, head_dim, d_state, n_group;
    const float *x;            /* [n_tok][n_head * head_dim], stride ldx */
    int64_t ldx;
    const float *dt;           /* [n_tok][n_head], stride lddt: before bias and softplus */
    int64_t lddt;
    const float *dt_bias;      /* [n_head] */
    const float *A;            /* [n_head][d_state] or [n_head] */
    bool a_per_state;
    const float *B, *C;        /* [n_tok][n_group * d_state], stride ldbc */
    int64_t ldbc;
    const float *D;            /* [n_head] */
    float *state;              /* [n_head][head_dim][d_state], updated */
    float *y;                  /* [n_tok][n_head * head_dim], stride ldy */
    int64_t ldy;
} ssm_scan_args;

typedef struct llm_backend llm_backend;

struct llm_backend {
    const char *name;
    void (*free)(llm_backend *be);
    /* y[t][o] = dot(row o of w, x[t]) for t < n_tok, o < w->ne[1]; w->ne[0] is the row length */
    void (*matmul)(llm_backend *be, const gguf_tensor *w, const float *x, int64_t ldx, int n_tok,
                   float *y, int64_t ldy);
    /* matmul of n_w weights with the same x (q / k / v, gate / up): y[i][t][o] = dot(row o of
     * w[i], x[t]); the backend may convert x once and run them as one task */
    void (*matmul_n)(llm_backend *be, int n_w, const gguf_tensor *const *w, const float *x,
                     int64_t ldx, int n_tok, float *const *y, const int64_t *ldy);
    /* rows of the (possibly quantized) embedding matrix to f32: dst[t] = row ids[t] */
    void (*get_rows)(llm_backend *be, const gguf_tensor *w, const llm_token *ids, int n,
                     float *dst, int64_t ldd);
    /* y[t] = x[t] / rms(x[t]) * w (w may be NULL); in place allowed */
    void (*rmsnorm)(llm_backend *be, const float *x, int64_t ldx, int n_tok, int n,
                    const float *w, float eps, float *y, int64_t ldy);
    /* x[t][i] += b[i] */
    void (*add_bias)(llm_backend *be, float *x, int64_t ldx, int n_tok, int n, const float *b);
    /* x[t][i] += y[t][i] */
    void (*add)(llm_backend *be, float *x, int64_t ldx, const float *y, int64_t ldy, int n_tok,
                int n);
    /* g[t][i] = silu(g[t][i]) * u[t][i] */
    void (*swiglu)(llm_backend *be, float *g, const float *u, int64_t ld, int n_tok, int n);
    /* g[t][i] = gelu_tanh(g[t][i]) * u[t][i] (GELU with the tanh approximation) */
    void (*geglu)(llm_backend *be, float *g, const float *u, int64_t ld, int n_tok, int n);
    /* x[t][i] *= s */
    void (*scale)(llm_backend *be, float *x, int64_t ldx, int n_tok, int n, float s);
    /* x[t][i] = cap * tanh(x[t][i] / cap) */
    void (*softcap)(llm_backend *be, float *x, int64_t ldx, int n_tok, int n, float cap);
    /* rotates x[t][head][0..n_rot) in place; rows of stride ldx */
    void (*rope)(llm_backend *be, float *x, int64_t ldx, const rope_args *args);
    /* writes f32 rows into cache rows of type `type` (quantizing / converting) */
    void (*store_rows)(llm_backend *be, const float *src, int64_t lds, int n, int n_tok,
                       uint32_t type, uint8_t *cache, uint64_t cell_bytes, const int32_t *cells);
    void (*attention)(llm_backend *be, const attn_args *args);
    /* state-space layers (cpu_ssm.c) */
    void (*ssm_conv)(llm_backend *be, const ssm_conv_args *args);
    void (*ssm_scan)(llm_backend *be, const ssm_scan_args *args);
    /* out[t] = w * groupnorm(y[t] * silu(z[t])): RMS normalisation over each of the n_group
     * runs of n / n_group values (mamba2's gated norm); out may alias y */
    void (*ssm_gated_norm)(llm_backend *be, const float *y, int64_t ldy, const float *z,
                           int64_t ldz, int n_tok, int n, int n_group, const float *w, float eps,
                           float *out, int64_t ldo);
};

/* The CPU backend; n_threads compute threads, attention over at most max_kv cells with heads
 * of at most max_head_dim values; matmuls see at most max_tok rows of at most max_row inputs
 * at once (larger ones still work, in several passes). Returns an llm_status. */
int32_t cpu_backend_create(int n_threads, int max_kv, int max_head_dim, int max_tok,
                           int64_t max_row, llm_backend **out);

/* Installs the CPU state-space ops (cpu_ssm.c) into a CPU backend being created. */
void cpu_ssm_install(llm_backend *be);

/* The compute threads of a CPU backend, which its state-space ops (cpu_ssm.c) share. */
struct threadpool *cpu_backend_pool(llm_backend *be);

/* Bytes of scratch a CPU backend created with these arguments holds. */
uint64_t cpu_backend_scratch_bytes(int n_threads, int max_head_dim, int max_tok,
                                   int64_t max_row);

#endif
