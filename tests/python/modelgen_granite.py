"""A tiny random Granite 4 hybrid (GraniteMoeHybridForCausalLM: Mamba2 layers and attention
layers, a top-k mixture of experts plus a shared expert, Granite's four multipliers) for
end-to-end tests, written as GGUF the way llama.cpp's convert_hf_to_gguf.py (GraniteHybridModel)
writes it, plus the transformers oracle.

    model = make_granite(seed=7, rope=False)            # float32, eval
    write_gguf_granite(model, path, "q8_0")             # GGUF file with modelgen's SPM vocab
    ref = reference_granite(model, path)                # HF model with the weights AS STORED

Layout facts (llama.cpp's converter and loader, arch "granitehybrid"):
  * keys (prefix "granitehybrid."): block_count, context_length, embedding_length,
    feed_forward_length (intermediate_size: one routed expert), attention.head_count,
    attention.head_count_kv (an ARRAY: num_key_value_heads on attention layers, 0 on Mamba2
    layers), attention.layer_norm_rms_epsilon, rope.freq_base, rope.dimension_count,
    rope.scaling.finetuned (true: the attention uses RoPE, position_embedding_type "rope";
    Granite 4.0-H writes false, "nope"; llama.cpp's loader reads it as the RoPE switch,
    default true; the converter version checked sets it only for Bamba and non-hybrids, here
    it follows position_embedding_type), expert_count, expert_used_count,
    expert_shared_feed_forward_length (shared_intermediate_size), attention.scale
    (attention_multiplier, replacing 1/sqrt(head_dim)), embedding_scale (embedding_multiplier),
    residual_scale (residual_multiplier), logit_scale (logits are DIVIDED by it),
    ssm.conv_kernel, ssm.state_size, ssm.group_count, ssm.inner_size (mamba_expand *
    hidden_size), ssm.time_step_rank (mamba_n_heads: the number of heads).
  * tensors: token_embd, output_norm, output (omitted when tied); per layer attn_norm
    (input_layernorm, both kinds) and ffn_norm (post_attention_layernorm). Attention layers:
    attn_q / attn_k / attn_v / attn_output, the q and k rows reordered per head for
    llama.cpp's interleaved RoPE (modelgen.permute_qk, as for llama). Mamba2 layers as
    modelgen_mamba writes mamba2: ssm_in, ssm_conv1d.weight (squeezed, [channels, d_conv]) /
    .bias, ssm_dt.bias, ssm_a = -exp(A_log) and ssm_d as [heads, 1], ssm_norm as
    [groups, d_inner / groups], ssm_out. MoE: ffn_gate_inp [n_expert, n_embd] (the router),
    ffn_gate_exps / ffn_up_exps [n_expert, n_ff, n_embd] (transformers' fused
    experts.gate_up_proj [E, 2 n_ff, n_embd], gate rows first), ffn_down_exps
    [n_expert, n_embd, n_ff]; the shared expert: shared_mlp.input_linear [2 S, n_embd] split
    into ffn_gate_shexp / ffn_up_shexp [S, n_embd] (gate first), shared_mlp.output_linear ->
    ffn_down_shexp [n_embd, S]. Without experts (num_local_experts 0; num_experts_per_tok must
    then be 0 too, or llama.cpp asserts) the shared MLP is the dense feed-forward ffn_gate /
    ffn_up / ffn_down and there is no router. llama.cpp sizes that dense feed-forward by
    feed_forward_length (intermediate_size), so a dense model needs intermediate_size ==
    shared_intermediate_size (as Granite 4.0-H-Micro has); expert_shared_feed_forward_length
    is written all the same, as the converter does.
  * types: every 2-D matrix and the 3-D expert stacks whose rows are a whole number of 32-value
    blocks take the requested type; ssm_conv1d, ssm_a, ssm_d, the norms and the router
    (ffn_gate_inp, which llama.cpp never quantizes) stay F32.

Default shape: hidden 64, 6 layers (mamba, attention, mamba, mamba, attention, mamba), 4 heads
of 16 with 2 KV heads, Mamba2 with 8 heads of 16 in 2 groups, d_state 16, d_conv 4, expand 2,
4 experts of 64 (2 used) and a shared expert of 96, vocab 512. Every layer has the MoE.

Multipliers are far from 1 and differ between the two variants ("nope": embedding 6,
residual 0.5, attention 1/8, logits / 4; "rope": embedding 12, residual 0.25, attention 1/16,
logits / 8), and the weights are scaled against them so activations stay O(1): the embedding
table by 1/embedding_multiplier, the projections that write the residual (o_proj, out_proj,
the experts' down_proj, shared output_linear) by 1/residual_multiplier, lm_head by
logits_scaling, and q / k so that the attention scores (times attention_multiplier) have a
standard deviation of ~2 (peaked attention that depends on the context). A multiplier the
engine ignored or misapplied therefore moves logits far above the 1e-4 bound (measured on the
"rope" model, 128 tokens, max rel error when the file lacks the key: attention.scale 0.37,
embedding_scale 1.5, residual_scale 1.4, logit_scale 7, rope.scaling.finetuned 0.29; q/k rows
not permuted: 0.33).

Routing is decisive by construction (as modelgen_jamba): the last num_experts residual
dimensions carry a per-token routing code written by the embedding only, and each router row
reads its code dimension with a large gain; `router_margins` measures the gap between the k-th
and (k+1)-th router logit per MoE layer and token.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gguf
import modelgen as mg
import numpy as np
import torch

ARCH = "granitehybrid"

SHAPE: dict[str, Any] = {
    "vocab_size": 512,
    "hidden_size": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 64,
    "shared_intermediate_size": 96,
    "num_hidden_layers": 6,
    "layer_types": ["mamba", "attention", "mamba", "mamba", "attention", "mamba"],
    "num_local_experts": 4,
    "num_experts_per_tok": 2,
    "mamba_n_heads": 8,
    "mamba_n_groups": 2,
    "mamba_d_state": 16,
    "mamba_d_conv": 4,
    "mamba_expand": 2,
    "mamba_chunk_size": 64,
    "rms_norm_eps": 1e-5,
    "max_position_embeddings": 4096,
}

MULTIPLIERS = {
    False: {"embedding_multiplier": 6.0, "residual_multiplier": 0.5,
            "attention_multiplier": 0.125, "logits_scaling": 4.0},
    True: {"embedding_multiplier": 12.0, "residual_multiplier": 0.25,
           "attention_multiplier": 0.0625, "logits_scaling": 8.0},
}
ROPE_THETA = 10000.0

# Routing (see _decisive_routing): the routing code's amplitude in the residual stream (after
# the embedding multiplier), the router's gain on it, and the random part of the router.
ROUTER_CODE = 0.5
ROUTER_GAIN = 10.0
ROUTER_STD = 0.03
EMBED_STD = 0.5      # of the residual stream after the embedding multiplier
MATRIX_STD = 0.06    # input-side projections
OUT_STD = 0.04       # residual-writing projections, before dividing by residual_multiplier
SCORE_STD = 2.0      # of the attention scores q.k * attention_multiplier (peaked attention)


def _config(rope: bool, **shape: Any):
    import transformers

    cfg = dict(SHAPE)
    cfg.update(MULTIPLIERS[rope])
    cfg.update(shape)
    cfg.setdefault("tie_word_embeddings", False)
    cfg["mamba_proj_bias"] = False
    cfg["mamba_conv_bias"] = True
    cfg["position_embedding_type"] = "rope" if rope else None
    cfg["rope_parameters"] = {"rope_type": "default",
                              "rope_theta": float(cfg.pop("rope_theta", ROPE_THETA))}
    config = transformers.GraniteMoeHybridConfig(
        bos_token_id=mg.BOS_ID, eos_token_id=mg.EOS_ID, pad_token_id=mg.UNK_ID, **cfg
    )
    config._attn_implementation = "eager"
    config._experts_implementation = "eager"
    return config


def _model(config):
    import transformers

    model = transformers.GraniteMoeHybridForCausalLM(config)
    model.eval()
    model.gguf_arch = ARCH
    return model


def make_granite(seed: int = 7, rope: bool = False, **shape: Any):
    """A tiny float32 GraniteMoeHybrid model: position_embedding_type "rope" when `rope`, else
    none (Granite 4.0-H). Keyword arguments override the config (num_local_experts=0 for the
    dense variant, layer_types, multipliers, tie_word_embeddings, ...)."""
    torch.manual_seed(seed)
    model = _model(_config(rope, **shape))
    c = model.config
    rng = np.random.default_rng(seed)
    emb_std = EMBED_STD / c.embedding_multiplier
    out_std = OUT_STD / c.residual_multiplier
    # q and k entries of std a give scores of std ~ a^2 sqrt(head_dim) * attention_multiplier
    head_dim = c.hidden_size // c.num_attention_heads
    qk_std = np.sqrt(SCORE_STD / (np.sqrt(head_dim) * c.attention_multiplier) / c.hidden_size)
    with torch.no_grad():
        for name, p in model.named_parameters():
            shp = tuple(p.shape)
            if name.endswith("A_log"):
                v = np.log(rng.uniform(1.0, 16.0, shp)) + 0.1 * rng.standard_normal(shp)
            elif name.endswith("dt_bias"):
                dt = np.exp(rng.uniform(np.log(0.01), np.log(0.3), shp))
                v = dt + np.log(-np.expm1(-dt))  # softplus^-1
            elif name.endswith(".D") or "norm" in name:
                v = 1.0 + 0.1 * rng.standard_normal(shp)
            elif name.endswith("conv1d.weight"):
                v = 0.3 * rng.standard_normal(shp)
            elif name.endswith(".bias"):
                v = 0.1 * rng.standard_normal(shp)
            elif "embed_tokens" in name:
                v = emb_std * rng.standard_normal(shp)
            elif "lm_head" in name:
                v = 0.25 * c.logits_scaling * rng.standard_normal(shp)
            elif name.endswith("router.weight"):
                v = ROUTER_STD * rng.standard_normal(shp)
            elif name.endswith(("q_proj.weight", "k_proj.weight")):
                v = qk_std * rng.standard_normal(shp)
            elif name.endswith(("o_proj.weight", "out_proj.weight", "experts.down_proj",
                                "output_linear.weight")):
                v = out_std * rng.standard_normal(shp)
            else:
                v = MATRIX_STD * rng.standard_normal(shp)
            p.copy_(torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)))
        if c.num_local_experts > 0:
            _decisive_routing(model, rng)
    return model


def _decisive_routing(model, rng: np.random.Generator) -> None:
    """Makes the top-k expert choice robust to any small error in the hidden state (see
    modelgen_jamba._decisive_routing): the embedding writes ROUTER_CODE * a per-token
    permutation of k values in [0.6, 1] and E - k values in [-1, -0.6] into the last E
    residual dimensions (divided by embedding_multiplier in the table), no layer writes them
    (the residual-writing projections are zero there), and router row e reads code dimension e
    with gain ROUTER_GAIN on top of its small random weights."""
    c = model.config
    n_exp, k, d = c.num_local_experts, c.num_experts_per_tok, c.hidden_size
    code = slice(d - n_exp, d)
    levels = np.concatenate([np.linspace(1.0, 0.6, k), np.linspace(-0.6, -1.0, n_exp - k)])
    emb = model.model.embed_tokens.weight
    codes = np.stack([rng.permutation(levels) for _ in range(emb.shape[0])])
    emb[:, code] = torch.from_numpy((ROUTER_CODE / c.embedding_multiplier * codes)
                                    .astype(np.float32))
    for name, p in model.named_parameters():
        if name.endswith(("o_proj.weight", "out_proj.weight", "experts.down_proj",
                          "output_linear.weight")):
            p[..., code, :] = 0.0
        elif name.endswith("router.weight"):
            p[:, code] += torch.from_numpy(np.eye(n_exp, dtype=np.float32) * ROUTER_GAIN)


# ---------------------------------------------------------------------------------------------
# layer kinds and names
# ---------------------------------------------------------------------------------------------


def attention_layers(config) -> list[int]:
    return [i for i, t in enumerate(config.layers_block_type) if t != "linear_attention"]


def mamba_layers(config) -> list[int]:
    return [i for i, t in enumerate(config.layers_block_type) if t == "linear_attention"]


def head_count_kv(config) -> list[int]:
    """The per-layer granitehybrid.attention.head_count_kv array, as the converter writes it."""
    attn = set(attention_layers(config))
    return [config.num_key_value_heads if i in attn else 0
            for i in range(config.num_hidden_layers)]


def uses_rope(config) -> bool:
    return config.position_embedding_type == "rope"


_LAYER_MAP = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mamba.in_proj.weight": "ssm_in.weight",
    "mamba.conv1d.weight": "ssm_conv1d.weight",
    "mamba.conv1d.bias": "ssm_conv1d.bias",
    "mamba.dt_bias": "ssm_dt.bias",
    "mamba.A_log": "ssm_a",
    "mamba.D": "ssm_d",
    "mamba.norm.weight": "ssm_norm.weight",
    "mamba.out_proj.weight": "ssm_out.weight",
    "block_sparse_moe.router.weight": "ffn_gate_inp.weight",
    "block_sparse_moe.experts.down_proj": "ffn_down_exps.weight",
    # fused, two GGUF tensors each (gate rows first):
    #   block_sparse_moe.experts.gate_up_proj -> ffn_gate_exps.weight + ffn_up_exps.weight
    #   shared_mlp.input_linear.weight -> ffn_gate_shexp.weight + ffn_up_shexp.weight
    #     (ffn_gate.weight + ffn_up.weight without experts)
    # shared_mlp.output_linear.weight -> ffn_down_shexp.weight (ffn_down.weight without experts)
}
_GATE_UP = "block_sparse_moe.experts.gate_up_proj"
_SHARED_IN = "shared_mlp.input_linear.weight"
_SHARED_OUT = "shared_mlp.output_linear.weight"


def gguf_names(config, hf_name: str) -> list[str]:
    """The GGUF tensor name(s) an HF parameter becomes (two for the fused ones)."""
    if hf_name == "model.embed_tokens.weight":
        return ["token_embd.weight"]
    if hf_name == "model.norm.weight":
        return ["output_norm.weight"]
    if hf_name == "lm_head.weight":
        return ["output.weight"]
    parts = hf_name.split(".", 3)  # model, layers, N, rest
    if parts[0] == "model" and parts[1] == "layers" and len(parts) == 4:
        p, rest = f"blk.{parts[2]}.", parts[3]
        sh = "_shexp" if config.num_local_experts > 0 else ""
        if rest == _GATE_UP:
            return [p + "ffn_gate_exps.weight", p + "ffn_up_exps.weight"]
        if rest == _SHARED_IN:
            return [p + f"ffn_gate{sh}.weight", p + f"ffn_up{sh}.weight"]
        if rest == _SHARED_OUT:
            return [p + f"ffn_down{sh}.weight"]
        if rest in _LAYER_MAP:
            return [p + _LAYER_MAP[rest]]
    raise KeyError(hf_name)


def _qk_heads(config, hf_name: str) -> int | None:
    if hf_name.endswith("q_proj.weight"):
        return config.num_attention_heads
    if hf_name.endswith("k_proj.weight"):
        return config.num_key_value_heads
    return None


def _to_gguf(config, hf_name: str, arr: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(GGUF name, array as the converter stores it, numpy order) for one HF parameter."""
    names = gguf_names(config, hf_name)
    if hf_name.endswith((_GATE_UP, _SHARED_IN)):
        half = arr.shape[-2] // 2
        return [(names[0], arr[..., :half, :]), (names[1], arr[..., half:, :])]
    n_head = _qk_heads(config, hf_name)
    if n_head is not None:
        arr = mg.permute_qk(arr, n_head)
    elif hf_name.endswith("conv1d.weight"):
        arr = arr.reshape(arr.shape[0], arr.shape[-1])
    elif hf_name.endswith("A_log"):
        arr = (-np.exp(arr.astype(np.float64))).reshape(-1, 1)
    elif hf_name.endswith("mamba.D"):
        arr = arr.reshape(-1, 1)
    elif hf_name.endswith("mamba.norm.weight"):
        arr = arr.reshape(config.mamba_n_groups, -1)
    return [(names[0], arr)]


def _from_gguf(config, hf_name: str, stored: dict[str, np.ndarray],
               shape: tuple[int, ...]) -> np.ndarray:
    """The HF parameter `hf_name` rebuilt (float64) from the stored GGUF tensors."""
    parts = [stored[n].astype(np.float64) for n in gguf_names(config, hf_name)]
    if hf_name.endswith((_GATE_UP, _SHARED_IN)):
        arr = np.concatenate(parts, axis=-2)
    else:
        arr = parts[0]
    n_head = _qk_heads(config, hf_name)
    if n_head is not None:
        arr = mg.unpermute_qk(arr, n_head)
    elif hf_name.endswith("A_log"):
        arr = np.log(-arr)
    return arr.reshape(shape)


def _wtype_for(name: str, arr: np.ndarray, wtype: str) -> str:
    if arr.ndim not in (2, 3):
        return "f32"
    if "ssm_conv1d" in name or name.endswith(("ssm_a", "ssm_d", "ssm_norm.weight")):
        return "f32"
    if "ffn_gate_inp" in name:
        return "f32"
    if wtype in ("q8_0", "q4_0") and arr.shape[-1] % 32:
        return "f32"
    return wtype


# ---------------------------------------------------------------------------------------------
# writer and oracle
# ---------------------------------------------------------------------------------------------


def write_gguf_granite(model, path: str | os.PathLike[str], wtype: str, *,
                       rope_dimension_count: bool = True) -> Path:
    """Writes `model` to `path` as llama.cpp's converter would, matrices in `wtype`."""
    if wtype not in mg._FILE_TYPE:
        raise ValueError(f"unknown wtype {wtype!r}")
    c = model.config
    head_dim = c.hidden_size // c.num_attention_heads
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    w = gguf.GGUFWriter(str(tmp), ARCH)
    w.add_name("tiny-granitehybrid")
    w.add_file_type(int(mg._FILE_TYPE[wtype]))
    w.add_vocab_size(c.vocab_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(head_count_kv(c))
    w.add_layer_norm_rms_eps(float(c.rms_norm_eps))
    w.add_rope_freq_base(float(c.rope_parameters["rope_theta"]))
    if rope_dimension_count:
        w.add_rope_dimension_count(head_dim)
    w.add_rope_scaling_finetuned(uses_rope(c))
    w.add_expert_count(c.num_local_experts)
    w.add_expert_used_count(c.num_experts_per_tok)
    if c.shared_intermediate_size:  # written for dense models too, as the converter does
        w.add_expert_shared_feed_forward_length(c.shared_intermediate_size)
    w.add_attention_scale(float(c.attention_multiplier))
    w.add_embedding_scale(float(c.embedding_multiplier))
    w.add_residual_scale(float(c.residual_multiplier))
    w.add_logit_scale(float(c.logits_scaling))
    w.add_ssm_conv_kernel(c.mamba_d_conv)
    w.add_ssm_state_size(c.mamba_d_state)
    w.add_ssm_group_count(c.mamba_n_groups)
    w.add_ssm_inner_size(c.mamba_expand * c.hidden_size)
    w.add_ssm_time_step_rank(c.mamba_n_heads)
    mg.add_spm_vocab(w, c.vocab_size)

    tied = c.tie_word_embeddings
    for hf_name, p in model.state_dict().items():
        if hf_name == "lm_head.weight" and tied:
            continue
        for name, arr in _to_gguf(c, hf_name, p.detach().to(torch.float32).numpy()):
            arr = np.ascontiguousarray(arr, dtype=np.float32)
            data, raw = mg._store(arr, _wtype_for(name, arr, wtype), arr.ndim >= 2)
            w.add_tensor(name, data, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, path)
    return path


def reference_granite(model, path: str | os.PathLike[str], dtype: torch.dtype = torch.float64):
    """An HF model (default float64) with the weights stored in the GGUF at `path`
    (dequantized; q/k rows put back in HF order; A_log recovered as log(-ssm_a))."""
    cfg = copy.deepcopy(model.config)
    ref = mg.load_stored(_model(cfg), path,
                         lambda name, stored, shape: _from_gguf(cfg, name, stored, shape), dtype)
    ref.gguf_arch = ARCH
    return ref


def hf_logits(model, token_ids: Sequence[int]) -> np.ndarray:
    return mg.hf_logits(model, token_ids)


def router_margins(model, token_ids: Sequence[int]) -> np.ndarray:
    """modelgen.router_margins over Granite's routers."""
    import transformers.models.granitemoehybrid.modeling_granitemoehybrid as mgh

    return mg.router_margins(model, mgh.GraniteMoeHybridTopKRouter, token_ids)
