/* forward.h -- what the forward passes (the files of arch/) share: the compute scratch of a
 * context (laid out and sized in llama.c), RoPE tables and the re-rotation of shifted keys,
 * and the blocks several architectures are built of (attention, feed-forwards, the Mamba
 * mixer, the output head). */
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
    /* mixture of experts (n_expert > 0) */
    float *moe_logits;      /* [n_ubatch][n_expert] router logits, then probabilities */
    float *moe_x;           /* [n_ubatch][n_embd] the rows routed to one expert */
    float *moe_y;           /* [n_ubatch][n_embd] that expert's outputs */
    float *moe_w;           /* [n_ubatch][n_expert_used] weights of the chosen experts */
    int32_t *moe_sel;       /* [n_ubatch][n_expert_used] the chosen experts */
    int32_t *moe_rows;      /* [n_ubatch] rows routed to one expert */
    float *moe_rows_w;      /* [n_ubatch] their weights */
};

/* The attention of a micro-batch over one KV cache, layer by layer (arch/llama.c). */
typedef struct attn_pass {
    bool rope;
    rope_args rq, rk;
    attn_args aa;
} attn_pass;

/* Prepares the micro-batch's attention over kv: with rope, re-rotates moved keys and builds
 * the RoPE table; the mask over kv's active cells; the arguments every layer shares. */
void attn_begin(llm_context *ctx, const ubatch *ub, kv_cache *kv, bool rope, attn_pass *ap);

/* The scratch's xn -> q, k, v (n rows) through the layer's wq, wk, wv: one matmul_n. */
void attn_qkv(llm_context *ctx, const llm_layer *l, int n);

/* One layer's attention (llama family: GQA, optional q/k/v biases and RoPE): the scratch's
 * xn -> q, k, v; stores k, v in kv's rows of layer l->kv_slot; attends; wo -> tmp. */
void attn_layer(llm_context *ctx, const ubatch *ub, kv_cache *kv, const llm_layer *l,
                attn_pass *ap);

/* The rows a gated feed-forward takes at a time: its n_ff-wide intermediates (the scratch's
 * gate, up) hold that many rows, not n_ubatch (on a 1.1B model at n_ubatch 512: 5.5 MiB
 * instead of 22), for streaming the three weight matrices once per chunk. */
#define FFN_CHUNK_TOKENS 128

/* out = down(act(gate x) * up x) for n rows of x (row stride = the width of gate's input),
 * act = SiLU or (gelu) GELU, in chunks of FFN_CHUNK_TOKENS rows; out's row stride is down's
 * output width. */
void ffn_gated(llm_context *ctx, const gguf_tensor *gate, const gguf_tensor *up,
               const gguf_tensor *down, bool gelu, const float *x, int n, float *out);

/* SwiGLU feed-forward: the scratch's xn -> tmp, n rows. */
void ffn_swiglu(llm_context *ctx, const llm_layer *l, int n);

/* Mixture of SwiGLU experts (arch/moe.c): the scratch's xn -> tmp, n rows; each row goes
 * through the n_expert_used experts its router rates highest, weighted by their softmax
 * probability (over all experts: Jamba; renormalised over the chosen: hp.expert_weights_norm),
 * plus the layer's shared expert if it has one. */
void ffn_moe(llm_context *ctx, const llm_layer *l, int n);

/* The output head over the flagged rows of x (stride n_embd): final RMSNorm into xn, then
 * the vocabulary projection into consecutive rows of logits. Returns the rows written. */
int forward_output(llm_context *ctx, const ubatch *ub, const float *x, float *xn,
                   float *logits);

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

/* A run of a micro-batch: consecutive tokens [t0, t1) with the same set of sequences, ending
 * early after a token whose state goes into a snapshot (ub->snap). The run's state is the
 * recurrent cell of its first sequence. */
int ssm_next_run(const ubatch *ub, int t0);

/* After a run of token t0's sequences in recurrent layer slot: copies the new state of its
 * cell into the cells of the run's other sequences. */
void ssm_share_state(llm_context *ctx, const ubatch *ub, int t0, uint32_t slot);

/* After the conv (conv true) or the scan of a run ending at token t in recurrent layer slot:
 * copies that part of the state into t's snapshot cell, if t has one. */
void ssm_snapshot(llm_context *ctx, const ubatch *ub, int t, uint32_t slot, bool conv);

/* The Mamba (v1) mixer of layer l (arch/mamba.c), over n rows: in (stride n_embd) -> out
 * (stride n_embd). Jamba's layers normalise dt, B and C with weights (ssm_*_norm). */
void mamba_mixer(llm_context *ctx, const ubatch *ub, const llm_layer *l, const float *in,
                 float *out);

/* The Mamba2 mixer of layer l (arch/mamba2.c); same contract as mamba_mixer. */
void mamba2_mixer(llm_context *ctx, const ubatch *ub, const llm_layer *l, const float *in,
                  float *out);

/* cos/sin of the n_rot / 2 rotated pairs at n positions: cos_sin[t][i] = {cos, sin} of
 * pos[t] * scale / base^(2i / n_rot) (divided by freqs[i] when freqs is not NULL). */
void rope_table(uint32_t n_rot, float base, float scale, const float *freqs, const llm_pos *pos,
                int n, float *cos_sin);

/* Re-rotates the keys of kv's moved cells with the RoPE of kv's layers; clears the shifts. */
void forward_apply_shift(llm_context *ctx, kv_cache *kv, float base, float scale,
                         const float *freqs);

#endif
