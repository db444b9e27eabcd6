/* model.c -- loading a model: architecture, hyperparameters, weight binding with shape checks,
 * and the model / vocabulary queries of the ABI. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "quant.h"
#include "state.h"
#include "util.h"

LLM_API void llm_model_default_params(llm_model_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->size = sizeof *p;
    p->use_mmap = true;
}

/* ---- hyperparameters ---- */

static bool get_arch_u32(const gguf_file *f, const char *arch, const char *key, uint32_t *out) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    return gguf_get_u32(f, full, out);
}

static bool get_arch_f32(const gguf_file *f, const char *arch, const char *key, float *out) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    return gguf_get_f32(f, full, out);
}

static int32_t require_u32(const gguf_file *f, const char *arch, const char *key, uint32_t *out) {
    if (!get_arch_u32(f, arch, key, out) || *out == 0) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "missing or invalid metadata key '%s.%s'", arch,
                         key);
    }
    return LLM_STATUS_OK;
}

/* Gemma 3, as llama.cpp reads it: a sliding window when attention.sliding_window > 0, on
 * every layer but each sliding_window_pattern-th (default 6: layers 5, 11, ... attend to
 * everything), with RoPE base rope.freq_base_swa (default 10000) and no rope scaling there;
 * q.k scaled by 1 / sqrt(head_dim) (the 62-layer 27B: 1 / sqrt(n_embd / n_head)) unless
 * attention.scale says otherwise; optional tanh soft-capping of scores and logits. */
static int32_t load_hparams_gemma3(llm_model *m) {
    const gguf_file *f = m->file;
    const char *a = m->arch_name;
    llm_hparams *hp = &m->hp;
    if (!get_arch_u32(f, a, "attention.sliding_window", &hp->n_swa)) hp->n_swa = 0;
    if (!get_arch_f32(f, a, "rope.freq_base_swa", &hp->rope_freq_base_swa)) {
        hp->rope_freq_base_swa = 10000.0f;
    }
    hp->rope_freq_scale_swa = 1.0f;
    if (!get_arch_f32(f, a, "attention.scale", &hp->attn_scale)) {
        float d = hp->n_layer == 62 ? (float)(hp->n_embd / hp->n_head) : (float)hp->head_dim_k;
        hp->attn_scale = 1.0f / sqrtf(d);
    }
    if (!get_arch_f32(f, a, "attn_logit_softcapping", &hp->attn_softcap)) hp->attn_softcap = 0;
    if (!get_arch_f32(f, a, "final_logit_softcapping", &hp->final_softcap)) {
        hp->final_softcap = 0;
    }
    if (!(hp->rope_freq_base_swa > 0.0f) || !isfinite(hp->rope_freq_base_swa) ||
        !(hp->attn_scale > 0.0f) || !isfinite(hp->attn_scale) || !(hp->attn_softcap >= 0.0f) ||
        !(hp->final_softcap >= 0.0f) || !isfinite(hp->attn_softcap) ||
        !isfinite(hp->final_softcap)) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "invalid gemma3 rope base, attention scale or "
                         "soft-capping values");
    }
    return LLM_STATUS_OK;
}

/* Marks the sliding-window layers (hp.n_swa > 0) and gives every layer its index in its cache.
 * attention.sliding_window_pattern is a period p (layer i slides iff i % p < p - 1) or one
 * flag per layer; absent, the period is 6. */
static int32_t assign_swa_layers(llm_model *m) {
    llm_hparams *hp = &m->hp;
    char key[128];
    snprintf(key, sizeof key, "%s.attention.sliding_window_pattern", m->arch_name);
    uint32_t period = 6, arr_type;
    uint64_t n_arr = 0;
    const gguf_kv *arr = NULL;
    if (gguf_get_arr(m->file, key, &arr_type, &n_arr)) {
        if (n_arr != hp->n_layer) {
            return llm_error(LLM_STATUS_BAD_FORMAT, "'%s' has %llu entries for %u layers", key,
                             (unsigned long long)n_arr, hp->n_layer);
        }
        arr = &m->file->kv[gguf_find_key(m->file, key)];
    } else if (gguf_find_key(m->file, key) >= 0 && !gguf_get_u32(m->file, key, &period)) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "'%s' is neither a count nor an array", key);
    }
    uint32_t n_swa_layers = 0;
    for (uint32_t i = 0; i < hp->n_layer; i++) {
        llm_layer *l = &m->layers[i];
        bool swa = false;
        if (hp->n_swa > 0 && arr) {
            int64_t v = 0;
            if (arr->arr_type == GGUF_TYPE_BOOL) {
                v = arr->data[i] != 0;
            } else if (!gguf_arr_int(arr, i, &v)) {
                return llm_error(LLM_STATUS_BAD_FORMAT, "'%s' holds a non-integer", key);
            }
            swa = v != 0;
        } else if (hp->n_swa > 0 && period > 0) {
            swa = i % period < period - 1;
        }
        l->swa = swa;
        l->kv_slot = swa ? n_swa_layers : i - n_swa_layers;
        n_swa_layers += swa;
    }
    hp->n_layer_swa = n_swa_layers;
    if (n_swa_layers == 0) hp->n_swa = 0;
    return LLM_STATUS_OK;
}

/* The sizes every architecture with attention layers has: width, layers, feed-forward,
 * heads, head sizes (attention.key_length / value_length, else n_embd / n_head), training
 * context and norm epsilon (default_eps when absent), checked. */
static int32_t load_attn_sizes(llm_model *m, float default_eps) {
    const gguf_file *f = m->file;
    const char *a = m->arch_name;
    llm_hparams *hp = &m->hp;
    int32_t st;
    if ((st = require_u32(f, a, "embedding_length", &hp->n_embd)) ||
        (st = require_u32(f, a, "block_count", &hp->n_layer)) ||
        (st = require_u32(f, a, "feed_forward_length", &hp->n_ff)) ||
        (st = require_u32(f, a, "attention.head_count", &hp->n_head))) {
        return st;
    }
    if (hp->n_layer > 4096 || hp->n_head > 4096) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "invalid %s layer/head counts (%u layers, %u "
                         "heads)", a, hp->n_layer, hp->n_head);
    }
    if (!get_arch_u32(f, a, "context_length", &hp->n_ctx_train)) hp->n_ctx_train = 2048;
    if (!get_arch_f32(f, a, "attention.layer_norm_rms_epsilon", &hp->norm_eps)) {
        hp->norm_eps = default_eps;
    }
    if (!(hp->norm_eps > 0.0f)) return llm_error(LLM_STATUS_BAD_FORMAT, "invalid norm epsilon");
    uint32_t hd = hp->n_embd / hp->n_head;
    if (!get_arch_u32(f, a, "attention.key_length", &hp->head_dim_k)) hp->head_dim_k = hd;
    if (!get_arch_u32(f, a, "attention.value_length", &hp->head_dim_v)) hp->head_dim_v = hd;
    if (hp->head_dim_k == 0 || hp->head_dim_v == 0 || hp->head_dim_k > 1024 ||
        hp->head_dim_v > 1024) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "invalid head size (k %u, v %u)", hp->head_dim_k,
                         hp->head_dim_v);
    }
    return LLM_STATUS_OK;
}

static int32_t load_hparams(llm_model *m) {
    const gguf_file *f = m->file;
    const char *a = m->arch_name;
    llm_hparams *hp = &m->hp;
    int32_t st = load_attn_sizes(m, 1e-5f);
    if (st != LLM_STATUS_OK) return st;
    if (!get_arch_u32(f, a, "attention.head_count_kv", &hp->n_head_kv)) hp->n_head_kv = hp->n_head;
    if (hp->n_head_kv == 0 || hp->n_head % hp->n_head_kv != 0) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "invalid kv head count %u for %u heads",
                         hp->n_head_kv, hp->n_head);
    }
    if (!get_arch_u32(f, a, "rope.dimension_count", &hp->n_rot)) hp->n_rot = hp->head_dim_k;
    if (hp->n_rot > hp->head_dim_k || hp->n_rot % 2 != 0) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "invalid rope size %u (heads of %u)", hp->n_rot,
                         hp->head_dim_k);
    }
    if (!get_arch_f32(f, a, "rope.freq_base", &hp->rope_freq_base)) hp->rope_freq_base = 10000.0f;
    /* rope scaling: type "linear" (or a factor without a type) divides positions by the
     * factor; "none" or no key: none */
    hp->rope_freq_scale = 1.0f;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", a);
    gguf_str type = {0};
    bool linear = true;                       /* files without the type key: factor alone */
    if (gguf_get_str(f, key, &type)) {
        linear = type.len == 6 && memcmp(type.ptr, "linear", 6) == 0;
        if (!linear && !(type.len == 4 && memcmp(type.ptr, "none", 4) == 0)) {
            return llm_error(LLM_STATUS_UNSUPPORTED, "rope scaling type '%.*s' is not supported",
                             (int)LLM_MIN(type.len, 32), type.ptr);
        }
    }
    float factor = 0.0f;
    if (linear && get_arch_f32(f, a, "rope.scaling.factor", &factor) && factor > 0.0f) {
        hp->rope_freq_scale = 1.0f / factor;
    }
    if (!(hp->rope_freq_base > 0.0f) || !isfinite(hp->rope_freq_base)) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "invalid rope base");
    }
    hp->rope_neox = m->arch == ARCH_QWEN2 || m->arch == ARCH_GEMMA3;
    hp->rope_freq_base_swa = hp->rope_freq_base;
    hp->rope_freq_scale_swa = hp->rope_freq_scale;
    if (m->arch == ARCH_GEMMA3) return load_hparams_gemma3(m);
    return LLM_STATUS_OK;
}

/* ---- weights ---- */

/* Finds `name` and checks its dims; required tensors must exist. */
static int32_t bind(llm_model *m, const char *name, int64_t ne0, int64_t ne1, bool required,
                    const gguf_tensor **out) {
    const gguf_tensor *t = gguf_get_tensor(m->file, name);
    *out = t;
    if (!t) {
        return required ? llm_error(LLM_STATUS_BAD_FORMAT, "missing tensor '%s'", name)
                        : LLM_STATUS_OK;
    }
    int64_t want_ne1 = ne1 ? ne1 : 1;
    if (t->ne[0] != ne0 || t->ne[1] != want_ne1 || t->ne[2] != 1 || t->ne[3] != 1) {
        return llm_error(LLM_STATUS_BAD_FORMAT,
                         "tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]",
                         name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                         (long long)t->ne[3], (long long)ne0, (long long)want_ne1);
    }
    const type_traits *tt = type_traits_get(t->type);
    if (!tt->dot_f32) {
        return llm_error(LLM_STATUS_UNSUPPORTED, "tensor '%s' has type %s, which libllm does not "
                         "support yet", name, tt->name);
    }
    return LLM_STATUS_OK;
}

static int32_t bind_matrix(llm_model *m, const char *name, int64_t n_in, int64_t n_out,
                           const gguf_tensor **out) {
    return bind(m, name, n_in, n_out, true, out);
}

/* A 1-D tensor, converted to an f32 copy the model owns. */
static int32_t bind_vector(llm_model *m, const char *name, int64_t n, bool required,
                           float **out) {
    const gguf_tensor *t;
    *out = NULL;
    int32_t st = bind(m, name, n, 0, required, &t);
    if (st != LLM_STATUS_OK || !t) return st;
    *out = llm_malloc(sizeof(float) * (size_t)n);
    if (!*out) return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory loading '%s'", name);
    type_traits_get(t->type)->to_f32(t->data, *out, n);
    m->n_bytes_copies += sizeof(float) * (uint64_t)n;
    return LLM_STATUS_OK;
}

/* token_embd, output_norm, output (tied to token_embd when absent) and the layer array. */
static int32_t bind_globals(llm_model *m) {
    llm_hparams *hp = &m->hp;
    const gguf_tensor *embd = gguf_get_tensor(m->file, "token_embd.weight");
    if (!embd) return llm_error(LLM_STATUS_BAD_FORMAT, "missing tensor 'token_embd.weight'");
    if (embd->ne[1] <= 0 || embd->ne[1] > INT32_MAX) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "invalid vocabulary size in token_embd.weight");
    }
    hp->n_vocab = (uint32_t)embd->ne[1];
    int32_t st;
    if ((st = bind_matrix(m, "token_embd.weight", hp->n_embd, hp->n_vocab, &m->tok_embd)) ||
        (st = bind_vector(m, "output_norm.weight", hp->n_embd, true, &m->output_norm)) ||
        (st = bind(m, "output.weight", hp->n_embd, hp->n_vocab, false, &m->output))) {
        return st;
    }
    if (!m->output) m->output = m->tok_embd;   /* tied embeddings */
    m->layers = llm_calloc(hp->n_layer, sizeof *m->layers);
    if (!m->layers) return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory loading layers");
    for (uint32_t i = 0; i < hp->n_layer; i++) m->layers[i].kv_slot = i;
    return LLM_STATUS_OK;
}

/* Reports layer i as loaded; false (with the error set) when the callback aborts. */
static int32_t layer_loaded(const llm_model *m, const llm_model_params *p, uint32_t i) {
    if (p->progress && !p->progress((float)(i + 1) / (float)(m->hp.n_layer + 1),
                                    p->progress_user_data)) {
        return llm_error(LLM_STATUS_ABORTED, "model loading aborted by the progress callback");
    }
    return LLM_STATUS_OK;
}

/* The attention half of a block: its norm, q/k/v/output and (bias) q/k/v biases. */
static int32_t bind_layer_attn(llm_model *m, uint32_t i, bool bias) {
    const llm_hparams *hp = &m->hp;
    llm_layer *l = &m->layers[i];
    int64_t E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim_k;
    int64_t K = (int64_t)hp->n_head_kv * hp->head_dim_k, V = (int64_t)hp->n_head_kv * hp->head_dim_v;
    int64_t O = (int64_t)hp->n_head * hp->head_dim_v;
    char n[8][64];
    const char *parts[8] = {"attn_norm.weight", "attn_q.weight", "attn_k.weight",
                            "attn_v.weight", "attn_output.weight", "attn_q.bias", "attn_k.bias",
                            "attn_v.bias"};
    for (int j = 0; j < 8; j++) snprintf(n[j], sizeof n[j], "blk.%u.%s", i, parts[j]);
    int32_t st;
    if ((st = bind_vector(m, n[0], E, true, &l->attn_norm)) ||
        (st = bind_matrix(m, n[1], E, Q, &l->wq)) ||
        (st = bind_matrix(m, n[2], E, K, &l->wk)) ||
        (st = bind_matrix(m, n[3], E, V, &l->wv)) ||
        (st = bind_matrix(m, n[4], O, E, &l->wo)) ||
        (st = bind_vector(m, n[5], Q, bias, &l->bq)) ||
        (st = bind_vector(m, n[6], K, bias, &l->bk)) ||
        (st = bind_vector(m, n[7], V, bias, &l->bv))) {
        return st;
    }
    return LLM_STATUS_OK;
}

/* The experts of a mixture-of-experts layer: ffn_{gate,up,down}_exps stack n_expert matrices
 * ([n_expert][n_ff][n_embd] for gate and up, [n_expert][n_embd][n_ff] for down); each
 * expert's matrix becomes a view the matmul takes like any other weight. */
static int32_t bind_experts(llm_model *m, uint32_t i) {
    const llm_hparams *hp = &m->hp;
    llm_layer *l = &m->layers[i];
    const int64_t X = hp->n_expert, E = hp->n_embd, F = hp->n_ff;
    l->experts = llm_calloc(3 * (size_t)X, sizeof *l->experts);
    if (!l->experts) return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory loading experts");
    const char *parts[3] = {"ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight"};
    for (int w = 0; w < 3; w++) {
        char name[64];
        snprintf(name, sizeof name, "blk.%u.%s", i, parts[w]);
        const gguf_tensor *t = gguf_get_tensor(m->file, name);
        const int64_t cols = w < 2 ? E : F, rows = w < 2 ? F : E;
        if (!t) return llm_error(LLM_STATUS_BAD_FORMAT, "missing tensor '%s'", name);
        uint64_t row_bytes;
        if (t->ne[0] != cols || t->ne[1] != rows || t->ne[2] != X || t->ne[3] != 1 ||
            !type_row_bytes(t->type, cols, &row_bytes)) {
            return llm_error(LLM_STATUS_BAD_FORMAT, "tensor '%s' has shape [%lld, %lld, %lld, "
                             "%lld], expected [%lld, %lld, %lld]", name, (long long)t->ne[0],
                             (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
                             (long long)cols, (long long)rows, (long long)X);
        }
        if (!type_traits_get(t->type)->dot_f32) {
            return llm_error(LLM_STATUS_UNSUPPORTED, "tensor '%s' has type %s, which libllm does "
                             "not support yet", name, type_traits_get(t->type)->name);
        }
        for (int64_t e = 0; e < X; e++) {
            gguf_tensor *v = &l->experts[w * X + e];
            *v = *t;
            v->n_dims = 2;
            v->ne[2] = 1;
            v->n_bytes = row_bytes * (uint64_t)rows;
            v->offset = t->offset + (uint64_t)e * v->n_bytes;
            v->data = (const uint8_t *)t->data + (uint64_t)e * v->n_bytes;
        }
    }
    return LLM_STATUS_OK;
}

/* The shared expert every row goes through beside its routed ones (granite). */
static int32_t bind_shared_expert(llm_model *m, uint32_t i) {
    const llm_hparams *hp = &m->hp;
    llm_layer *l = &m->layers[i];
    const int64_t E = hp->n_embd, S = hp->n_ff_shexp;
    char n[3][64];
    const char *parts[3] = {"ffn_gate_shexp.weight", "ffn_up_shexp.weight",
                            "ffn_down_shexp.weight"};
    for (int j = 0; j < 3; j++) snprintf(n[j], sizeof n[j], "blk.%u.%s", i, parts[j]);
    int32_t st;
    if ((st = bind_matrix(m, n[0], E, S, &l->ffn_gate_shexp)) ||
        (st = bind_matrix(m, n[1], E, S, &l->ffn_up_shexp)) ||
        (st = bind_matrix(m, n[2], S, E, &l->ffn_down_shexp))) {
        return st;
    }
    return LLM_STATUS_OK;
}

/* The feed-forward half of a block: its norm, then a SwiGLU (ffn_gate/up/down) or, when the
 * layer has a router (ffn_gate_inp) and the model experts, a mixture of SwiGLU experts. */
static int32_t bind_layer_ffn(llm_model *m, uint32_t i) {
    const llm_hparams *hp = &m->hp;
    llm_layer *l = &m->layers[i];
    /* a granite model without experts keeps its shared MLP as the dense one */
    const int64_t E = hp->n_embd, F = hp->n_expert == 0 && hp->n_ff_shexp ? hp->n_ff_shexp
                                                                          : hp->n_ff;
    char n[5][64];
    const char *parts[5] = {"ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight",
                            "ffn_down.weight", "ffn_gate_inp.weight"};
    for (int j = 0; j < 5; j++) snprintf(n[j], sizeof n[j], "blk.%u.%s", i, parts[j]);
    int32_t st;
    if ((st = bind_vector(m, n[0], E, true, &l->ffn_norm)) ||
        (st = bind(m, n[4], E, hp->n_expert, false, &l->ffn_gate_inp))) {
        return st;
    }
    if (l->ffn_gate_inp && hp->n_expert == 0) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "'%s' routes to experts but the model has no "
                         "expert_count", n[4]);
    }
    if (l->ffn_gate_inp) {
        if ((st = bind_experts(m, i)) != LLM_STATUS_OK) return st;
        return hp->n_ff_shexp ? bind_shared_expert(m, i) : LLM_STATUS_OK;
    }
    if ((st = bind_matrix(m, n[1], E, F, &l->ffn_gate)) ||
        (st = bind_matrix(m, n[2], E, F, &l->ffn_up)) ||
        (st = bind_matrix(m, n[3], F, E, &l->ffn_down))) {
        return st;
    }
    return LLM_STATUS_OK;
}

static int32_t bind_weights(llm_model *m, const llm_model_params *p) {
    llm_hparams *hp = &m->hp;
    int32_t st;
    if ((st = bind_globals(m)) ||
        (st = bind_vector(m, "rope_freqs.weight", hp->n_rot / 2, false, &m->rope_freqs))) {
        return st;
    }
    bool bias = m->arch == ARCH_QWEN2, gemma = m->arch == ARCH_GEMMA3;
    for (uint32_t i = 0; i < hp->n_layer; i++) {
        llm_layer *l = &m->layers[i];
        if ((st = bind_layer_attn(m, i, bias)) || (st = bind_layer_ffn(m, i))) return st;
        if (gemma) {
            char g[4][64];
            const char *gp[4] = {"attn_q_norm.weight", "attn_k_norm.weight",
                                 "post_attention_norm.weight", "post_ffw_norm.weight"};
            for (int j = 0; j < 4; j++) snprintf(g[j], sizeof g[j], "blk.%u.%s", i, gp[j]);
            if ((st = bind_vector(m, g[0], hp->head_dim_k, true, &l->attn_q_norm)) ||
                (st = bind_vector(m, g[1], hp->head_dim_k, true, &l->attn_k_norm)) ||
                (st = bind_vector(m, g[2], hp->n_embd, true, &l->attn_post_norm)) ||
                (st = bind_vector(m, g[3], hp->n_embd, true, &l->ffn_post_norm))) {
                return st;
            }
        }
        if ((st = layer_loaded(m, p, i)) != LLM_STATUS_OK) return st;
    }
    return gemma ? assign_swa_layers(m) : LLM_STATUS_OK;
}

/* ---- state-space models (mamba, mamba2) ---- */

/* The state-space sizes (ssm.*) every recurrent architecture has, checked; ssm.time_step_rank
 * is the rank of dt (mamba, jamba) or the number of heads (mamba2). */
static int32_t load_ssm_sizes(llm_model *m) {
    const gguf_file *f = m->file;
    const char *a = m->arch_name;
    llm_hparams *hp = &m->hp;
    int32_t st;
    if ((st = require_u32(f, a, "ssm.conv_kernel", &hp->ssm_d_conv)) ||
        (st = require_u32(f, a, "ssm.inner_size", &hp->ssm_d_inner)) ||
        (st = require_u32(f, a, "ssm.state_size", &hp->ssm_d_state)) ||
        (st = require_u32(f, a, "ssm.time_step_rank", &hp->ssm_dt_rank))) {
        return st;
    }
    char key[128];
    snprintf(key, sizeof key, "%s.ssm.dt_b_c_rms", a);
    bool flag = false;
    hp->ssm_dt_b_c_rms = gguf_get_bool(f, key, &flag) && flag;
    hp->ssm_n_group = 1;
    if (model_ssm_v2(m) && !get_arch_u32(f, a, "ssm.group_count", &hp->ssm_n_group)) {
        hp->ssm_n_group = 1;
    }
    uint32_t H = hp->ssm_dt_rank, G = hp->ssm_n_group;
    bool heads_ok = !model_ssm_v2(m) ||
                    (G > 0 && H % G == 0 && hp->ssm_d_inner % H == 0 && hp->ssm_d_inner % G == 0);
    if (hp->ssm_d_conv < 2 || hp->ssm_d_conv > 64 || hp->ssm_d_inner > (1u << 20) ||
        hp->ssm_d_state > 1024 || hp->ssm_dt_rank > (1u << 20) || hp->n_embd > (1u << 20) ||
        !heads_ok) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "invalid %s sizes (conv %u, inner %u, state %u, "
                         "dt rank / heads %u, groups %u)", a, hp->ssm_d_conv, hp->ssm_d_inner,
                         hp->ssm_d_state, hp->ssm_dt_rank, hp->ssm_n_group);
    }
    return LLM_STATUS_OK;
}

/* Keys as llama.cpp's converter writes them: no attention or feed-forward sizes (head_count
 * and feed_forward_length are 0). */
static int32_t load_hparams_ssm(llm_model *m) {
    const gguf_file *f = m->file;
    const char *a = m->arch_name;
    llm_hparams *hp = &m->hp;
    int32_t st;
    if ((st = require_u32(f, a, "embedding_length", &hp->n_embd)) ||
        (st = require_u32(f, a, "block_count", &hp->n_layer)) ||
        (st = load_ssm_sizes(m)) != LLM_STATUS_OK) {
        return st;
    }
    if (!get_arch_u32(f, a, "context_length", &hp->n_ctx_train)) hp->n_ctx_train = 2048;
    hp->n_ctx_train = LLM_MIN(hp->n_ctx_train, 1u << 20);
    if (!get_arch_f32(f, a, "attention.layer_norm_rms_epsilon", &hp->norm_eps)) {
        hp->norm_eps = 1e-5f;
    }
    if (hp->n_layer > 4096 || !(hp->norm_eps > 0.0f)) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "invalid %s layer count %u or norm epsilon", a,
                         hp->n_layer);
    }
    hp->n_layer_ssm = hp->n_layer;
    hp->rope_freq_base = hp->rope_freq_base_swa = 10000.0f;
    hp->rope_freq_scale = hp->rope_freq_scale_swa = 1.0f;
    return LLM_STATUS_OK;
}

/* A tensor of shape [ne0, ne1] (ne1 0: 1-D), converted to an f32 copy the model owns. */
static int32_t bind_copy(llm_model *m, const char *name, int64_t ne0, int64_t ne1, bool required,
                         float **out) {
    const gguf_tensor *t;
    *out = NULL;
    int32_t st = bind(m, name, ne0, ne1, required, &t);
    if (st != LLM_STATUS_OK || !t) return st;
    int64_t n = ne0 * (ne1 ? ne1 : 1);
    *out = llm_malloc(sizeof(float) * (size_t)n);
    if (!*out) return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory loading '%s'", name);
    type_traits_get(t->type)->to_f32(t->data, *out, n);
    m->n_bytes_copies += sizeof(float) * (uint64_t)n;
    return LLM_STATUS_OK;
}

/* Tensor names and shapes as llama.cpp's converter writes them: ssm_conv1d squeezed to
 * [CD][K]; ssm_a = -exp(A_log); mamba2 stores A and D as [H][1] and the norm as [G][DI / G]. */
static int32_t bind_layer_ssm(llm_model *m, uint32_t i) {
    const llm_hparams *hp = &m->hp;
    llm_layer *l = &m->layers[i];
    const bool v2 = model_ssm_v2(m);
    const int64_t E = hp->n_embd, DI = hp->ssm_d_inner, N = hp->ssm_d_state, K = hp->ssm_d_conv;
    const int64_t R = hp->ssm_dt_rank, G = hp->ssm_n_group, H = hp->ssm_dt_rank;
    const int64_t CD = v2 ? DI + 2 * G * N : DI;
    char n[11][64];
    const char *parts[11] = {"attn_norm.weight", "ssm_in.weight", "ssm_conv1d.weight",
                             "ssm_conv1d.bias", "ssm_x.weight", "ssm_dt.weight", "ssm_dt.bias",
                             "ssm_a", "ssm_d", "ssm_norm.weight", "ssm_out.weight"};
    for (int j = 0; j < 11; j++) snprintf(n[j], sizeof n[j], "blk.%u.%s", i, parts[j]);
    int32_t st;
    if ((st = bind_vector(m, n[0], E, true, &l->attn_norm)) ||
        (st = bind_matrix(m, n[1], E, v2 ? 2 * DI + 2 * G * N + H : 2 * DI, &l->ssm_in)) ||
        (st = bind_copy(m, n[2], K, CD, true, &l->ssm_conv1d)) ||
        (st = bind_copy(m, n[3], CD, 0, true, &l->ssm_conv1d_b)) ||
        (st = bind_copy(m, n[6], v2 ? H : DI, 0, true, &l->ssm_dt_b)) ||
        (st = bind_copy(m, n[7], v2 ? 1 : N, v2 ? H : DI, true, &l->ssm_a)) ||
        (st = bind_copy(m, n[8], v2 ? 1 : DI, v2 ? H : 0, true, &l->ssm_d)) ||
        (st = bind_matrix(m, n[10], DI, E, &l->ssm_out))) {
        return st;
    }
    if (v2) return bind_copy(m, n[9], DI / G, G, true, &l->ssm_norm);
    if ((st = bind_matrix(m, n[4], DI, R + 2 * N, &l->ssm_x)) ||
        (st = bind_matrix(m, n[5], R, DI, &l->ssm_dt))) {
        return st;
    }
    return LLM_STATUS_OK;
}

static int32_t bind_weights_ssm(llm_model *m, const llm_model_params *p) {
    int32_t st = bind_globals(m);
    for (uint32_t i = 0; st == LLM_STATUS_OK && i < m->hp.n_layer; i++) {
        m->layers[i].recurrent = true;
        if ((st = bind_layer_ssm(m, i)) == LLM_STATUS_OK) st = layer_loaded(m, p, i);
    }
    return st;
}

/* ---- hybrids: jamba, granitehybrid ---- */

/* Granite 4 hybrids, as llama.cpp's converter writes them: RoPE unless
 * rope.scaling.finetuned is false (Granite 4.0-H has none; Bamba has it), Granite's multipliers as
 * attention.scale, embedding_scale, residual_scale and logit_scale, a shared expert of
 * expert_shared_feed_forward_length beside the routed ones, whose weights are renormalised
 * over the chosen experts. */
static int32_t load_hparams_granite(llm_model *m) {
    const gguf_file *f = m->file;
    const char *a = m->arch_name;
    llm_hparams *hp = &m->hp;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.finetuned", a);
    bool rope = true;   /* absent: RoPE, as llama.cpp reads it */
    if (!gguf_get_bool(f, key, &rope)) rope = true;
    if (rope) {
        if (!get_arch_u32(f, a, "rope.dimension_count", &hp->n_rot)) hp->n_rot = hp->head_dim_k;
        if (!get_arch_f32(f, a, "rope.freq_base", &hp->rope_freq_base)) {
            hp->rope_freq_base = 10000.0f;
        }
        if (hp->n_rot == 0 || hp->n_rot > hp->head_dim_k || hp->n_rot % 2 != 0 ||
            !(hp->rope_freq_base > 0.0f) || !isfinite(hp->rope_freq_base)) {
            return llm_error(LLM_STATUS_BAD_FORMAT, "invalid rope size %u or base", hp->n_rot);
        }
    }
    if (!get_arch_f32(f, a, "attention.scale", &hp->attn_scale)) hp->attn_scale = 0.0f;
    if (!get_arch_f32(f, a, "embedding_scale", &hp->embd_scale)) hp->embd_scale = 1.0f;
    if (!get_arch_f32(f, a, "residual_scale", &hp->residual_scale)) hp->residual_scale = 1.0f;
    if (!get_arch_f32(f, a, "logit_scale", &hp->logit_scale)) hp->logit_scale = 1.0f;
    if (!get_arch_u32(f, a, "expert_shared_feed_forward_length", &hp->n_ff_shexp)) {
        hp->n_ff_shexp = 0;
    }
    hp->expert_weights_norm = true;
    float v[4] = {hp->attn_scale, hp->embd_scale, hp->residual_scale, hp->logit_scale};
    for (int i = 0; i < 4; i++) {
        if (!isfinite(v[i]) || v[i] < 0.0f || (i > 0 && v[i] == 0.0f)) {
            return llm_error(LLM_STATUS_BAD_FORMAT, "invalid granite scale %g", (double)v[i]);
        }
    }
    if (hp->n_ff_shexp > (1u << 20)) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "invalid shared expert size %u", hp->n_ff_shexp);
    }
    return LLM_STATUS_OK;
}

/* Both hybrids, as llama.cpp's converter writes them: attention.head_count_kv is one count
 * per layer, 0 on the state-space layers (Mamba in jamba, Mamba2 in granitehybrid); jamba's
 * attention has no RoPE; a layer routes its feed-forward through experts when it has
 * ffn_gate_inp (expert_count experts, expert_used_count per token). All attention layers must
 * have the same number of KV heads (one KV cache). */
static int32_t load_hparams_hybrid(llm_model *m) {
    const gguf_file *f = m->file;
    const char *a = m->arch_name;
    llm_hparams *hp = &m->hp;
    int32_t st;
    if ((st = load_attn_sizes(m, 1e-6f)) || (st = load_ssm_sizes(m))) return st;
    hp->n_ctx_train = LLM_MIN(hp->n_ctx_train, 1u << 20);
    hp->n_rot = 0;
    hp->rope_freq_base = hp->rope_freq_base_swa = 10000.0f;
    hp->rope_freq_scale = hp->rope_freq_scale_swa = 1.0f;
    if (!get_arch_u32(f, a, "expert_count", &hp->n_expert)) hp->n_expert = 0;
    if (!get_arch_u32(f, a, "expert_used_count", &hp->n_expert_used)) hp->n_expert_used = 0;
    if (hp->n_expert > 1024 || (hp->n_expert > 0 && (hp->n_expert_used == 0 ||
                                                     hp->n_expert_used > hp->n_expert))) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "invalid expert counts (%u experts, %u used)",
                         hp->n_expert, hp->n_expert_used);
    }
    return m->arch == ARCH_GRANITE_HYBRID ? load_hparams_granite(m) : LLM_STATUS_OK;
}

/* Which layers attend (head_count_kv > 0) and which are Mamba layers; every layer's index in
 * its memory. Needs the layer array. */
static int32_t assign_hybrid_layers(llm_model *m) {
    llm_hparams *hp = &m->hp;
    char key[128];
    snprintf(key, sizeof key, "%s.attention.head_count_kv", m->arch_name);
    uint32_t arr_type, scalar = 0;
    uint64_t n_arr = 0;
    const gguf_kv *arr = NULL;
    if (gguf_get_arr(m->file, key, &arr_type, &n_arr)) {
        if (n_arr != hp->n_layer) {
            return llm_error(LLM_STATUS_BAD_FORMAT, "'%s' has %llu entries for %u layers", key,
                             (unsigned long long)n_arr, hp->n_layer);
        }
        arr = &m->file->kv[gguf_find_key(m->file, key)];
    } else if (!gguf_get_u32(m->file, key, &scalar)) {
        scalar = hp->n_head;
    }
    hp->n_head_kv = 0;
    hp->n_layer_ssm = 0;
    for (uint32_t i = 0; i < hp->n_layer; i++) {
        int64_t kv = scalar;
        if (arr && !gguf_arr_int(arr, i, &kv)) {
            return llm_error(LLM_STATUS_BAD_FORMAT, "'%s' holds a non-integer", key);
        }
        if (kv < 0 || kv > hp->n_head || (kv > 0 && hp->n_head % kv != 0) ||
            (kv > 0 && hp->n_head_kv != 0 && (uint32_t)kv != hp->n_head_kv)) {
            return llm_error(kv > 0 && hp->n_head_kv != 0 && hp->n_head % kv == 0
                                 ? LLM_STATUS_UNSUPPORTED : LLM_STATUS_BAD_FORMAT,
                             "layer %u has %lld KV heads (%u heads; other attention layers %u): "
                             "libllm needs one KV head count for all attention layers", i,
                             (long long)kv, hp->n_head, hp->n_head_kv);
        }
        llm_layer *l = &m->layers[i];
        l->recurrent = kv == 0;
        l->kv_slot = l->recurrent ? hp->n_layer_ssm : i - hp->n_layer_ssm;
        hp->n_layer_ssm += l->recurrent;
        if (kv > 0) hp->n_head_kv = (uint32_t)kv;
    }
    if (hp->n_head_kv == 0) hp->n_head_kv = hp->n_head;   /* no attention layer */
    return LLM_STATUS_OK;
}

static int32_t bind_weights_hybrid(llm_model *m, const llm_model_params *p) {
    const llm_hparams *hp = &m->hp;
    int32_t st;
    if ((st = bind_globals(m)) || (st = assign_hybrid_layers(m))) return st;
    for (uint32_t i = 0; i < hp->n_layer; i++) {
        llm_layer *l = &m->layers[i];
        if (l->recurrent && model_ssm_v2(m)) {
            if ((st = bind_layer_ssm(m, i)) != LLM_STATUS_OK) return st;
        } else if (l->recurrent) {   /* jamba's Mamba layers normalise dt, B and C */
            char n[3][64];
            const char *parts[3] = {"ssm_dt_norm.weight", "ssm_b_norm.weight",
                                    "ssm_c_norm.weight"};
            for (int j = 0; j < 3; j++) snprintf(n[j], sizeof n[j], "blk.%u.%s", i, parts[j]);
            if ((st = bind_layer_ssm(m, i)) ||
                (st = bind_vector(m, n[0], hp->ssm_dt_rank, true, &l->ssm_dt_norm)) ||
                (st = bind_vector(m, n[1], hp->ssm_d_state, true, &l->ssm_b_norm)) ||
                (st = bind_vector(m, n[2], hp->ssm_d_state, true, &l->ssm_c_norm))) {
                return st;
            }
        } else if ((st = bind_layer_attn(m, i, false)) != LLM_STATUS_OK) {
            return st;
        }
        if ((st = bind_layer_ffn(m, i)) || (st = layer_loaded(m, p, i))) return st;
    }
    return LLM_STATUS_OK;
}

static void free_layers(llm_model *m) {
    if (!m->layers) return;
    for (uint32_t i = 0; i < m->hp.n_layer; i++) {
        llm_layer *l = &m->layers[i];
        llm_free(l->attn_norm);
        llm_free(l->bq);
        llm_free(l->bk);
        llm_free(l->bv);
        llm_free(l->ffn_norm);
        llm_free(l->attn_q_norm);
        llm_free(l->attn_k_norm);
        llm_free(l->attn_post_norm);
        llm_free(l->ffn_post_norm);
        llm_free(l->ssm_conv1d);
        llm_free(l->ssm_conv1d_b);
        llm_free(l->ssm_dt_b);
        llm_free(l->ssm_a);
        llm_free(l->ssm_d);
        llm_free(l->ssm_norm);
        llm_free(l->ssm_dt_norm);
        llm_free(l->ssm_b_norm);
        llm_free(l->ssm_c_norm);
        llm_free(l->experts);
    }
    llm_free(m->layers);
}

LLM_API void llm_model_free(llm_model *m) {
    if (!m) return;
    free_layers(m);
    llm_free(m->output_norm);
    llm_free(m->rope_freqs);
    vocab_free(m->vocab);
    gguf_close(m->file);
    llm_free(m);
}

static int32_t load(llm_model *m, const char *path, const llm_model_params *p) {
    int32_t st = gguf_open(path, p->use_mmap, &m->file);
    if (st != LLM_STATUS_OK) return st;
    gguf_str arch;
    if (!gguf_get_str(m->file, "general.architecture", &arch) || arch.len == 0 ||
        arch.len >= sizeof m->arch_name) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "missing or invalid 'general.architecture'");
    }
    memcpy(m->arch_name, arch.ptr, arch.len);
    m->arch_name[arch.len] = '\0';
    if (gguf_find_key(m->file, "tokenizer.ggml.model") >= 0) {
        if ((st = vocab_load(m->file, &m->vocab)) != LLM_STATUS_OK) return st;
    } else if (p->vocab_only) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "the file has no tokenizer (tokenizer.ggml.model)");
    }
    m->vocab_only = p->vocab_only;
    if (p->vocab_only) return LLM_STATUS_OK;
    if (strcmp(m->arch_name, "llama") == 0) {
        m->arch = ARCH_LLAMA;
    } else if (strcmp(m->arch_name, "qwen2") == 0) {
        m->arch = ARCH_QWEN2;
    } else if (strcmp(m->arch_name, "gemma3") == 0) {
        m->arch = ARCH_GEMMA3;
    } else if (strcmp(m->arch_name, "mamba") == 0) {
        m->arch = ARCH_MAMBA;
    } else if (strcmp(m->arch_name, "mamba2") == 0) {
        m->arch = ARCH_MAMBA2;
    } else if (strcmp(m->arch_name, "jamba") == 0) {
        m->arch = ARCH_JAMBA;
    } else if (strcmp(m->arch_name, "granitehybrid") == 0) {
        m->arch = ARCH_GRANITE_HYBRID;
    } else {
        return llm_error(LLM_STATUS_UNSUPPORTED, "architecture '%s' is not supported",
                         m->arch_name);
    }
    m->hp.embd_scale = m->hp.residual_scale = m->hp.logit_scale = 1.0f;
    if (model_is_recurrent(m)) {
        if ((st = load_hparams_ssm(m)) != LLM_STATUS_OK ||
            (st = bind_weights_ssm(m, p)) != LLM_STATUS_OK) {
            return st;
        }
    } else if (model_is_hybrid(m)) {
        if ((st = load_hparams_hybrid(m)) != LLM_STATUS_OK ||
            (st = bind_weights_hybrid(m, p)) != LLM_STATUS_OK) {
            return st;
        }
    } else if ((st = load_hparams(m)) != LLM_STATUS_OK ||
               (st = bind_weights(m, p)) != LLM_STATUS_OK) {
        return st;
    }
    if (m->vocab && vocab_n_tokens(m->vocab) > (int32_t)m->hp.n_vocab) {
        return llm_error(LLM_STATUS_BAD_FORMAT, "the tokenizer has %d tokens but the model only "
                         "%u embedding rows", vocab_n_tokens(m->vocab), m->hp.n_vocab);
    }
    /* the fingerprint covers the architecture, every shape and type, and a sample of every
     * tensor's bytes (its first and last 64), so states of look-alike models do not mix */
    uint64_t h = state_hash(STATE_HASH_SEED, m->arch_name, strlen(m->arch_name));
    h = state_hash(h, &m->hp, sizeof m->hp);
    for (uint64_t i = 0; i < m->file->n_tensors; i++) {
        const gguf_tensor *t = &m->file->tensors[i];
        m->n_params += (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
        m->n_bytes += t->n_bytes;
        size_t sample = (size_t)LLM_MIN(t->n_bytes, 64);
        h = state_hash(h, t->name, strlen(t->name));
        h = state_hash(h, &t->type, sizeof t->type);
        h = state_hash(h, t->ne, sizeof t->ne);
        h = state_hash(h, t->data, sample);
        h = state_hash(h, (const uint8_t *)t->data + t->n_bytes - sample, sample);
    }
    m->fingerprint = h;
    return LLM_STATUS_OK;
}

LLM_API int32_t llm_model_load(const char *path, const llm_model_params *params,
                               llm_model **out) {
    llm_error_clear();
    if (!out) return llm_error(LLM_STATUS_INVALID_ARGUMENT, "out must not be NULL");
    *out = NULL;
    if (!path) return llm_error(LLM_STATUS_INVALID_ARGUMENT, "path must not be NULL");
    llm_model_params p;
    llm_model_default_params(&p);
    if (params) {
        if (params->size < sizeof(uint32_t) || params->size > sizeof p) {
            return llm_error(LLM_STATUS_INVALID_ARGUMENT, "llm_model_params.size is %u, expected "
                             "%zu (use llm_model_default_params)", params->size, sizeof p);
        }
        memcpy(&p, params, params->size);
    }
    if (p.progress && !p.progress(0.0f, p.progress_user_data)) {
        return llm_error(LLM_STATUS_ABORTED, "model loading aborted by the progress callback");
    }
    llm_model *m = llm_calloc(1, sizeof *m);
    if (!m) return llm_error(LLM_STATUS_OUT_OF_MEMORY, "out of memory");
    int32_t st = load(m, path, &p);
    if (st != LLM_STATUS_OK) {
        llm_model_free(m);
        return st;
    }
    if (p.progress && !p.progress(1.0f, p.progress_user_data)) {
        llm_model_free(m);
        return llm_error(LLM_STATUS_ABORTED, "model loading aborted by the progress callback");
    }
    *out = m;
    return LLM_STATUS_OK;
}

/* ---- model queries ---- */

LLM_API int32_t llm_model_n_vocab(const llm_model *m) {
    if (!m) return 0;
    if (m->vocab_only || !m->hp.n_vocab) return m->vocab ? vocab_n_tokens(m->vocab) : 0;
    return (int32_t)m->hp.n_vocab;
}
LLM_API int32_t llm_model_n_embd(const llm_model *m) { return m ? (int32_t)m->hp.n_embd : 0; }
LLM_API int32_t llm_model_n_layer(const llm_model *m) { return m ? (int32_t)m->hp.n_layer : 0; }
LLM_API int32_t llm_model_n_head(const llm_model *m) { return m ? (int32_t)m->hp.n_head : 0; }
LLM_API int32_t llm_model_n_head_kv(const llm_model *m) {
    return m ? (int32_t)m->hp.n_head_kv : 0;
}
LLM_API int32_t llm_model_n_ctx_train(const llm_model *m) {
    return m ? (int32_t)m->hp.n_ctx_train : 0;
}
LLM_API uint64_t llm_model_n_params(const llm_model *m) { return m ? m->n_params : 0; }
LLM_API uint64_t llm_model_size(const llm_model *m) { return m ? m->n_bytes : 0; }
LLM_API const char *llm_model_arch(const llm_model *m) { return m ? m->arch_name : ""; }

LLM_API int32_t llm_model_meta_count(const llm_model *m) {
    return m ? (int32_t)m->file->n_kv : 0;
}

LLM_API const char *llm_model_meta_key(const llm_model *m, int32_t i) {
    if (!m || i < 0 || (uint64_t)i >= m->file->n_kv) return NULL;
    return m->file->kv[i].key;
}

LLM_API int32_t llm_model_meta_str(const llm_model *m, const char *key, char *buf,
                                   int32_t buf_size) {
    llm_error_clear();
    if (!m || !key || buf_size < 0 || (buf_size > 0 && !buf)) {
        llm_error(LLM_STATUS_INVALID_ARGUMENT, "invalid arguments to llm_model_meta_str");
        return LLM_INT32_ERROR;
    }
    int64_t i = gguf_find_key(m->file, key);
    if (i < 0) {
        llm_error(LLM_STATUS_INVALID_ARGUMENT, "no metadata key '%s'", key);
        return LLM_INT32_ERROR;
    }
    int n = gguf_kv_to_text(&m->file->kv[i], buf, (size_t)buf_size);
    if (n < 0) return LLM_INT32_ERROR;
    if (n >= buf_size) return -(n + 1);
    return n;
}

LLM_API int32_t llm_model_tensor_count(const llm_model *m) {
    return m ? (int32_t)m->file->n_tensors : 0;
}

LLM_API int32_t llm_model_tensor_info(const llm_model *m, int32_t i, llm_tensor_info *info) {
    llm_error_clear();
    if (!m || !info || i < 0 || (uint64_t)i >= m->file->n_tensors) {
        return llm_error(LLM_STATUS_INVALID_ARGUMENT, "tensor index %d out of range", i);
    }
    if (info->size < sizeof *info) {
        return llm_error(LLM_STATUS_INVALID_ARGUMENT, "llm_tensor_info.size is too small");
    }
    const gguf_tensor *t = &m->file->tensors[i];
    info->name = t->name;
    info->type = (int32_t)t->type;
    info->n_dims = (int32_t)t->n_dims;
    for (int d = 0; d < 4; d++) info->ne[d] = t->ne[d];
    info->n_bytes = t->n_bytes;
    return LLM_STATUS_OK;
}

LLM_API int32_t llm_model_tensor_to_f32(const llm_model *m, const char *name, float *dst,
                                        size_t n_dst) {
    llm_error_clear();
    if (!m || !name || !dst) return llm_error(LLM_STATUS_INVALID_ARGUMENT, "NULL argument");
    const gguf_tensor *t = gguf_get_tensor(m->file, name);
    if (!t) return llm_error(LLM_STATUS_INVALID_ARGUMENT, "no tensor named '%s'", name);
    const type_traits *tt = type_traits_get(t->type);
    if (!tt->to_f32) {
        return llm_error(LLM_STATUS_UNSUPPORTED, "tensor '%s' has type %s, which libllm cannot "
                         "convert", name, tt->name);
    }
    uint64_t n = (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
    if (n_dst < n) {
        return llm_error(LLM_STATUS_INVALID_ARGUMENT, "tensor '%s' has %llu elements, the "
                         "buffer %zu", name, (unsigned long long)n, n_dst);
    }
    tt->to_f32(t->data, dst, (int64_t)n);
    return LLM_STATUS_OK;
}

/* ---- vocabulary ---- */

static bool have_vocab(const llm_model *m) {
    if (m && m->vocab) return true;
    llm_error(LLM_STATUS_INVALID_ARGUMENT, m ? "the model has no tokenizer" : "model is NULL");
    return false;
}

LLM_API llm_token llm_token_bos(const llm_model *m) {
    return m && m->vocab ? vocab_bos(m->vocab) : -1;
}
LLM_API llm_token llm_token_eos(const llm_model *m) {
    return m && m->vocab ? vocab_eos(m->vocab) : -1;
}
LLM_API bool llm_token_is_eog(const llm_model *m, llm_token t) {
    return m && m->vocab && vocab_is_eog(m->vocab, t);
}
LLM_API bool llm_vocab_add_bos(const llm_model *m) { return m && m->vocab && vocab_add_bos(m->vocab); }

LLM_API int32_t llm_tokenize(const llm_model *m, const char *text, int32_t text_len,
                             llm_token *tokens, int32_t n_tokens_max, bool add_special,
                             bool parse_special) {
    llm_error_clear();
    if (!have_vocab(m)) return LLM_INT32_ERROR;
    return vocab_tokenize(m->vocab, text, text_len, tokens, n_tokens_max, add_special,
                          parse_special);
}

LLM_API int32_t llm_token_to_piece(const llm_model *m, llm_token token, char *buf,
                                   int32_t buf_size, bool special) {
    llm_error_clear();
    if (!have_vocab(m)) return LLM_INT32_ERROR;
    return vocab_token_to_piece(m->vocab, token, buf, buf_size, special);
}

LLM_API int32_t llm_detokenize(const llm_model *m, const llm_token *tokens, int32_t n_tokens,
                               char *buf, int32_t buf_size, bool remove_special,
                               bool unparse_special) {
    llm_error_clear();
    if (!have_vocab(m)) return LLM_INT32_ERROR;
    return vocab_detokenize(m->vocab, tokens, n_tokens, buf, buf_size, remove_special,
                            unparse_special);
}
