/* model.h -- a loaded model: the GGUF mapping, hyperparameters, bound weights, vocabulary. */
#ifndef LLM_MODEL_H
#define LLM_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "gguf.h"
#include "libllm.h"
#include "vocab.h"

typedef enum llm_arch {
    ARCH_LLAMA,   /* Llama 2/3, TinyLlama, SmolLM, Mistral (no SWA): interleaved RoPE */
    ARCH_QWEN2,   /* Qwen2: llama + q/k/v biases, NEOX RoPE */
    ARCH_GEMMA3,  /* Gemma 3 (text): sliding-window layers, q/k norms, post-norms, GeGLU */
    ARCH_MAMBA,   /* Mamba (v1) and Falcon-Mamba: selective state-space layers only */
    ARCH_MAMBA2,  /* Mamba2: SSD layers (per-head scalar A, groups of B/C, gated group norm) */
    ARCH_JAMBA,   /* Jamba: Mamba and attention (no RoPE) layers; dense and top-k MoE FFNs */
    ARCH_GRANITE_HYBRID, /* Granite 4 hybrids: Mamba2 and attention layers, MoE + shared
                            expert, Granite's embedding / residual / attention / logit scales */
} llm_arch;

typedef struct llm_hparams {
    uint32_t n_vocab;        /* rows of the embedding matrix */
    uint32_t n_ctx_train;
    uint32_t n_embd;
    uint32_t n_layer;
    uint32_t n_head;
    uint32_t n_head_kv;
    uint32_t n_ff;
    uint32_t head_dim_k;     /* attention.key_length or n_embd / n_head */
    uint32_t head_dim_v;     /* attention.value_length or n_embd / n_head */
    uint32_t n_rot;          /* rope.dimension_count or head_dim_k */
    float norm_eps;
    float rope_freq_base;
    float rope_freq_scale;   /* 1 / linear scaling factor */
    bool rope_neox;
    /* sliding-window attention (gemma3); n_swa 0: every layer attends to everything */
    uint32_t n_swa;          /* attention.sliding_window: a token sees the last n_swa positions */
    uint32_t n_layer_swa;    /* layers with a sliding window (listed in llm_model.layer_swa) */
    float rope_freq_base_swa;    /* rope base of the sliding-window layers */
    float rope_freq_scale_swa;
    float attn_scale;        /* scale of q.k; 0: 1 / sqrt(head_dim_k) */
    float attn_softcap;      /* 0: none; else scores become c * tanh(scores / c) */
    float final_softcap;     /* 0: none; same on the output logits */
    /* state-space layers (mamba, mamba2); 0 elsewhere */
    uint32_t ssm_d_conv;     /* ssm.conv_kernel: taps of the causal conv1d */
    uint32_t ssm_d_inner;    /* ssm.inner_size: channels of the SSM */
    uint32_t ssm_d_state;    /* ssm.state_size: N, state values per channel */
    uint32_t ssm_dt_rank;    /* ssm.time_step_rank: mamba: rank of dt; mamba2: heads */
    uint32_t ssm_n_group;    /* ssm.group_count (mamba2): groups sharing B and C */
    bool ssm_dt_b_c_rms;     /* ssm.dt_b_c_rms (falcon-mamba): RMS-normalise dt, B, C */
    uint32_t n_layer_ssm;    /* layers with recurrent state (llm_layer.recurrent); the others
                                attend over the KV cache */
    /* mixture of experts (jamba): n_expert 0 when no layer routes */
    uint32_t n_expert;       /* expert_count */
    uint32_t n_expert_used;  /* expert_used_count: experts per token (top-k) */
    bool expert_weights_norm;/* the chosen experts' weights sum to 1 (granite) or are the
                                plain softmax probabilities over all experts (jamba) */
    uint32_t n_ff_shexp;     /* expert_shared_feed_forward_length: the shared expert (granite) */
    /* granite's multipliers (1 elsewhere) */
    float embd_scale;        /* embedding_scale: on the token embeddings */
    float residual_scale;    /* residual_scale: on each block's output before the residual add */
    float logit_scale;       /* logit_scale: logits are divided by it */
} llm_hparams;

/* One transformer block. Matrices stay in the file (mapped); 1-D tensors are f32 copies. */
typedef struct llm_layer {
    float *attn_norm;              /* [n_embd] */
    const gguf_tensor *wq;         /* [n_embd] -> [n_head * head_dim_k] */
    const gguf_tensor *wk;         /* [n_embd] -> [n_head_kv * head_dim_k] */
    const gguf_tensor *wv;         /* [n_embd] -> [n_head_kv * head_dim_v] */
    const gguf_tensor *wo;         /* [n_head * head_dim_v] -> [n_embd] */
    float *bq, *bk, *bv;           /* optional biases (qwen2) */
    float *ffn_norm;               /* [n_embd] */
    const gguf_tensor *ffn_gate;   /* [n_embd] -> [n_ff] */
    const gguf_tensor *ffn_up;     /* [n_embd] -> [n_ff] */
    const gguf_tensor *ffn_down;   /* [n_ff] -> [n_embd] */
    /* gemma3 */
    float *attn_q_norm;            /* [head_dim_k] per-head RMSNorm of q */
    float *attn_k_norm;            /* [head_dim_k] per-head RMSNorm of k */
    float *attn_post_norm;         /* [n_embd] on the attention output */
    float *ffn_post_norm;          /* [n_embd] on the feed-forward output */
    /* state-space layers (DI = ssm_d_inner, N = ssm_d_state, R = ssm_dt_rank, H = heads,
     * G = groups, K = ssm_d_conv, CD = conv channels: DI (mamba) or DI + 2 G N (mamba2)) */
    const gguf_tensor *ssm_in;     /* [n_embd] -> mamba [2 DI] (x, z); mamba2 [2 DI + 2 G N + H] */
    float *ssm_conv1d;             /* [CD][K] */
    float *ssm_conv1d_b;           /* [CD] */
    const gguf_tensor *ssm_x;      /* mamba: [DI] -> [R + 2 N] (dt, B, C) */
    const gguf_tensor *ssm_dt;     /* mamba: [R] -> [DI] */
    float *ssm_dt_b;               /* mamba [DI], mamba2 [H] */
    float *ssm_a;                  /* mamba [DI][N], mamba2 [H]: -exp(A_log) */
    float *ssm_d;                  /* mamba [DI], mamba2 [H] */
    float *ssm_norm;               /* mamba2 [DI]: weights of the gated group RMSNorm */
    const gguf_tensor *ssm_out;    /* [DI] -> [n_embd] */
    float *ssm_dt_norm;            /* jamba [R]: RMSNorm weights of dt before ssm_dt */
    float *ssm_b_norm;             /* jamba [N]: of B */
    float *ssm_c_norm;             /* jamba [N]: of C */
    /* mixture of experts: a router and n_expert SwiGLU experts, each expert a view of one
     * slice of the stacked [n_expert][rows][cols] tensors (ffn_*_exps) */
    const gguf_tensor *ffn_gate_inp;   /* [n_embd] -> [n_expert] router logits; NULL: dense */
    gguf_tensor *experts;          /* [3][n_expert]: gate, up, down views, owned */
    const gguf_tensor *ffn_gate_shexp, *ffn_up_shexp;  /* [n_embd] -> [n_ff_shexp] */
    const gguf_tensor *ffn_down_shexp;                 /* [n_ff_shexp] -> [n_embd] */
    bool swa;                      /* sliding-window layer */
    bool recurrent;                /* state-space layer (its state in the recurrent memory) */
    uint32_t kv_slot;              /* this layer's index in its memory: the KV cache, the
                                      window pool, or the recurrent state */
} llm_layer;

struct llm_model {
    gguf_file *file;
    llm_arch arch;
    char arch_name[32];
    llm_hparams hp;
    llm_vocab *vocab;
    bool vocab_only;
    const gguf_tensor *tok_embd;   /* [n_vocab][n_embd] */
    float *output_norm;            /* [n_embd] */
    const gguf_tensor *output;     /* [n_embd] -> [n_vocab]; tok_embd when tied */
    float *rope_freqs;             /* optional [n_rot / 2] frequency divisors */
    llm_layer *layers;             /* [n_layer] */
    uint64_t n_params;
    uint64_t n_bytes;
    uint64_t n_bytes_copies;       /* f32 copies libllm made of 1-D tensors */
    uint64_t fingerprint;          /* identifies the model in saved states */
};

/* True for architectures whose layers keep recurrent state instead of a KV cache. */
static inline bool model_is_recurrent(const llm_model *m) {
    return m->arch == ARCH_MAMBA || m->arch == ARCH_MAMBA2;
}

/* True for architectures mixing recurrent and attention layers (a hybrid memory). */
static inline bool model_is_hybrid(const llm_model *m) {
    return m->arch == ARCH_JAMBA || m->arch == ARCH_GRANITE_HYBRID;
}

/* True when the state-space layers are Mamba2 (SSD) layers, false for Mamba (v1) ones. */
static inline bool model_ssm_v2(const llm_model *m) {
    return m->arch == ARCH_MAMBA2 || m->arch == ARCH_GRANITE_HYBRID;
}

/* True when some layer keeps recurrent state (recurrent or hybrid). */
static inline bool model_has_recurrent(const llm_model *m) {
    return model_is_recurrent(m) || model_is_hybrid(m);
}

#endif
