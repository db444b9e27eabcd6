/* forward.h -- what the forward passes (the files of arch/) share: the compute scratch of a
 * context (laid out and sized in llama.c), RoPE tables and the re-rotation of shifted keys. */
#ifndef LLM_FORWARD_H
#define LLM_FORWARD_H

#include "../context.h"

struct llama_scratch {
    uint32_t n_ubatch, n_ctx;
    uint8_t *block;  /* every buffer below lives in this one allocation */
    float *x;        /* [n_ubatch][n_embd] residual stream */
    float *xn;       /* [n_ubatch][n_embd] normalised input of a sub-block; final outputs */
    float *q;        /* [n_ubatch][n_head * head_dim_k] */
    float *k;        /* [n_ubatch][n_head_kv * head_dim_k] */
    float *v;        /* [n_ubatch][n_head_kv * head_dim_v] */
    float *att;      /* [n_ubatch][n_head * head_dim_v] */
    float *tmp;      /* [n_ubatch][n_embd] output of wo / ffn_down */
    float *gate;     /* [n_ubatch][n_ff] */
    float *up;       /* [n_ubatch][n_ff] */
    float *cos_sin;  /* [n_ubatch][n_rot / 2][2] */
    uint8_t *mask;   /* [n_ubatch][n_ctx] */
    float *cos_sin_swa;     /* [n_ubatch][n_rot / 2][2] RoPE of the sliding-window layers */
    uint8_t *mask_swa;      /* [n_ubatch][n_swa_cells] mask over the sliding-window pool */
    llm_pos *shift_pos;     /* [n_ubatch] pending position changes of cells being re-rotated */
    int32_t *shift_cells;   /* [n_ubatch] those cells */
};

/* The compute buffers of the state-space forward passes (laid out in mamba.c); P is the
 * in_proj width (mamba 2 DI, mamba2 2 DI + 2 G N + H), CD the conv channels, XD the x_proj
 * width R + 2 N (mamba only). */
struct ssm_scratch {
    uint32_t n_ubatch;
    uint8_t *block;  /* every buffer below lives in this one allocation */
    float *x;        /* [n_ubatch][n_embd] residual stream */
    float *xn;       /* [n_ubatch][n_embd] normalised input; final outputs */
    float *proj;     /* [n_ubatch][P] in_proj output */
    float *xc;       /* [n_ubatch][CD] conv output */
    float *dbc;      /* [n_ubatch][XD] x_proj output: dt (low rank), B, C */
    float *dt;       /* [n_ubatch][DI] dt before bias and softplus (mamba) */
    float *y;        /* [n_ubatch][DI] scan output */
    float *tmp;      /* [n_ubatch][n_embd] out_proj output */
};

/* A run of a micro-batch: consecutive tokens [t0, t1) with the same set of sequences. */
int ssm_next_run(const ubatch *ub, int t0);

/* After a run of token t0's sequences in layer il: copies the new state of its cell into the
 * cells of the run's other sequences. */
void ssm_share_state(llm_context *ctx, const ubatch *ub, int t0, uint32_t il);

/* cos/sin of the n_rot / 2 rotated pairs at n positions: cos_sin[t][i] = {cos, sin} of
 * pos[t] * scale / base^(2i / n_rot) (divided by freqs[i] when freqs is not NULL). */
void rope_table(uint32_t n_rot, float base, float scale, const float *freqs, const llm_pos *pos,
                int n, float *cos_sin);

/* Re-rotates the keys of kv's moved cells with the RoPE of kv's layers; clears the shifts. */
void forward_apply_shift(llm_context *ctx, kv_cache *kv, float base, float scale,
                         const float *freqs);

#endif
