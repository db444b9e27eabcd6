"""A tiny random Jamba model (attention + Mamba layers, dense and top-k MoE feed-forwards) for
end-to-end tests, written as GGUF the way llama.cpp's convert_hf_to_gguf.py (JambaModel) writes
it, plus the transformers oracle.

    model = make_jamba(seed=6)                          # JambaForCausalLM, float32, eval
    write_gguf_jamba(model, path, "q8_0")               # GGUF file with modelgen's SPM vocab
    ref = reference_jamba(model, path)                  # HF model with the weights AS STORED

Layout facts (llama.cpp's converter and loader):
  * keys (prefix "jamba."): block_count, context_length, embedding_length,
    feed_forward_length (intermediate_size), attention.head_count (scalar),
    attention.head_count_kv (an ARRAY of block_count values: num_key_value_heads on attention
    layers, 0 on Mamba layers: llama.cpp tells the layer kinds apart by it), ssm.conv_kernel,
    ssm.inner_size (mamba_expand * hidden_size), ssm.state_size, ssm.time_step_rank,
    attention.layer_norm_rms_epsilon, expert_count, expert_used_count.
  * tensors: token_embd, output_norm (final_layernorm), output (omitted when tied); per layer
    attn_norm (input_layernorm, both kinds) and ffn_norm (pre_ff_layernorm). Attention layers:
    attn_q / attn_k / attn_v / attn_output, rows as in HF (Jamba has no RoPE, so no q/k
    reordering). Mamba layers: ssm_in, ssm_conv1d.weight (squeezed to [channels, d_conv]) /
    .bias, ssm_x, ssm_dt.weight / .bias, ssm_a = -exp(A_log) [d_inner, d_state], ssm_d,
    ssm_dt_norm [dt_rank], ssm_b_norm / ssm_c_norm [d_state], ssm_out. Dense feed-forward:
    ffn_gate / ffn_up / ffn_down. MoE: ffn_gate_inp [n_expert, n_embd] (the router),
    ffn_gate_exps / ffn_up_exps [n_expert, n_ff, n_embd], ffn_down_exps [n_expert, n_embd, n_ff]
    (numpy order; transformers keeps gate and up fused as gate_up_proj [E, 2 * n_ff, n_embd],
    gate first).
  * types: every 2-D matrix and the 3-D expert stacks whose rows are a whole number of 32-value
    blocks take the requested type; ssm_conv1d, ssm_a, ssm_d, the norms and the router
    (ffn_gate_inp, which llama.cpp never quantizes) stay F32.

Layer pattern of the default shape (8 layers, attention period 3 offset 1, expert period 2
offset 1): 0 mamba+dense, 1 attention+MoE, 2 mamba+dense, 3 mamba+MoE, 4 attention+dense,
5 mamba+MoE, 6 mamba+dense, 7 attention+MoE: every combination of mixer and feed-forward.

Routing is decisive by construction (see _decisive_routing): on the test prompts the k-th and
(k+1)-th router logits are >= 3.8 apart (seed 6), while f32 rounding moves router logits by
~3e-6 and 8-bit weights by ~0.1; `router_margins` measures it per MoE layer and token.

Self-checks of this file (seed 6): the float64 reference of the f32 file reproduces the
float32 model to 6e-7 (max|diff| / max|ref|); llama.cpp (llama-cpp-python 0.3.36) loads the
f32 file and matches transformers to 3.4e-7 with an F32 KV cache (2.4e-4 with F16), q8_0 /
q4_0 files to cosine >= 0.9999.
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

ARCH = "jamba"

SHAPE: dict[str, Any] = {
    "vocab_size": 512,
    "hidden_size": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
    "num_hidden_layers": 8,
    "attn_layer_period": 3,
    "attn_layer_offset": 1,
    "expert_layer_period": 2,
    "expert_layer_offset": 1,
    "num_experts": 4,
    "num_experts_per_tok": 2,
    "mamba_d_state": 16,
    "mamba_d_conv": 4,
    "mamba_expand": 2,
    "mamba_dt_rank": 8,
    "rms_norm_eps": 1e-6,
    "max_position_embeddings": 4096,
}

# Routing (see make_jamba): the last num_experts residual dimensions carry a per-token routing
# code written by the embedding only; the router reads it with gain ROUTER_GAIN, plus a small
# random part (ROUTER_STD) over every dimension.
ROUTER_CODE = 0.25
ROUTER_GAIN = 5.0
ROUTER_STD = 0.03
MATRIX_STD = 0.05   # the other projections (8-bit activation error stays ~1% of the logits)


def _config(**shape: Any):
    import transformers

    cfg = dict(SHAPE)
    cfg.update(shape)
    cfg.setdefault("tie_word_embeddings", False)
    cfg["mamba_proj_bias"] = False
    cfg["mamba_conv_bias"] = True
    config = transformers.JambaConfig(
        bos_token_id=mg.BOS_ID, eos_token_id=mg.EOS_ID, pad_token_id=mg.UNK_ID, **cfg
    )
    config._attn_implementation = "eager"
    config._experts_implementation = "eager"
    return config


def _model(config):
    import transformers

    model = transformers.JambaForCausalLM(config)
    model.eval()
    model.gguf_arch = ARCH
    return model


def make_jamba(seed: int = 6, **shape: Any):
    """A tiny float32 Jamba model with random weights scaled so that activations stay O(1),
    Mamba states keep a memory of tens of tokens, routing is decisive and logits spread."""
    torch.manual_seed(seed)
    model = _model(_config(**shape))
    rng = np.random.default_rng(seed)
    n_state = model.config.mamba_d_state
    with torch.no_grad():
        for name, p in model.named_parameters():
            shp = tuple(p.shape)
            if name.endswith("A_log"):
                base = np.log(np.arange(1, n_state + 1, dtype=np.float64))
                v = np.broadcast_to(base, shp) + 0.1 * rng.standard_normal(shp)
            elif name.endswith("dt_proj.bias"):
                dt = np.exp(rng.uniform(np.log(0.01), np.log(0.3), shp))
                v = dt + np.log(-np.expm1(-dt))  # softplus^-1
            elif name.endswith(".D") or "norm" in name:
                v = 1.0 + 0.1 * rng.standard_normal(shp)
            elif name.endswith("conv1d.weight"):
                v = 0.3 * rng.standard_normal(shp)
            elif name.endswith(".bias"):
                v = 0.1 * rng.standard_normal(shp)
            elif "embed_tokens" in name or "lm_head" in name:
                v = 0.25 * rng.standard_normal(shp)
            elif "dt_proj" in name:
                v = 0.3 * rng.standard_normal(shp)
            elif name.endswith("router.weight"):
                v = ROUTER_STD * rng.standard_normal(shp)
            else:
                v = MATRIX_STD * rng.standard_normal(shp)
            p.copy_(torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)))
        _decisive_routing(model, rng)
    return model


def _decisive_routing(model, rng: np.random.Generator) -> None:
    """Makes the top-k expert choice robust to any small error in the hidden state.

    With a purely random router the gap between the k-th and (k+1)-th router logit has a
    density that does not vanish at 0: over a few thousand (token, layer) pairs some gaps are
    ~1e-3 of the logit scale whatever the weight scale (gap and error scale together). F32 is
    safe with that, but 8-bit activations (q8_0 / q4_0 files) move router logits by ~3% and
    flip experts, which changes a row of logits completely (cosine ~0.9): not a defect.

    So the last E = num_experts residual dimensions carry a routing code: the embedding writes
    ROUTER_CODE * a per-token permutation of k values in [0.6, 1] and E - k values in [-1, -0.6],
    no layer writes them (the output rows of o_proj, out_proj, down_proj and the experts'
    down_proj are zero there), and router row e reads code dimension e with gain ROUTER_GAIN
    on top of its small random weights. RMS-normalization scales all of a token's router
    logits by the same positive factor, so the order is kept, and the random part (and the
    per-token normalization) still vary the routing weights continuously."""
    c = model.config
    n_exp, k, d = c.num_experts, c.num_experts_per_tok, c.hidden_size
    code = slice(d - n_exp, d)
    levels = np.concatenate([np.linspace(1.0, 0.6, k), np.linspace(-0.6, -1.0, n_exp - k)])
    emb = model.model.embed_tokens.weight
    codes = np.stack([rng.permutation(levels) for _ in range(emb.shape[0])])
    emb[:, code] = torch.from_numpy((ROUTER_CODE * codes).astype(np.float32))
    writers = ("o_proj.weight", "out_proj.weight", "down_proj.weight", "experts.down_proj")
    for name, p in model.named_parameters():
        if name.endswith(writers):
            p[..., code, :] = 0.0
        elif name.endswith("router.weight"):
            p[:, code] += torch.from_numpy(np.eye(n_exp, dtype=np.float32) * ROUTER_GAIN)


# ---------------------------------------------------------------------------------------------
# layer kinds and names
# ---------------------------------------------------------------------------------------------


def attention_layers(config) -> list[int]:
    return [i for i, t in enumerate(config.layers_block_type) if t == "attention"]


def mamba_layers(config) -> list[int]:
    return [i for i, t in enumerate(config.layers_block_type) if t == "mamba"]


def moe_layers(config) -> list[int]:
    return [i for i, n in enumerate(config.layers_num_experts) if n > 1]


def head_count_kv(config) -> list[int]:
    """The per-layer jamba.attention.head_count_kv array, as the converter computes it."""
    off, per = config.attn_layer_offset, config.attn_layer_period
    return [
        config.num_key_value_heads if i >= off and (i - off) % per == 0 else 0
        for i in range(config.num_hidden_layers)
    ]


_LAYER_MAP = {
    "input_layernorm.weight": "attn_norm.weight",
    "pre_ff_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mamba.in_proj.weight": "ssm_in.weight",
    "mamba.conv1d.weight": "ssm_conv1d.weight",
    "mamba.conv1d.bias": "ssm_conv1d.bias",
    "mamba.x_proj.weight": "ssm_x.weight",
    "mamba.dt_proj.weight": "ssm_dt.weight",
    "mamba.dt_proj.bias": "ssm_dt.bias",
    "mamba.A_log": "ssm_a",
    "mamba.D": "ssm_d",
    "mamba.dt_layernorm.weight": "ssm_dt_norm.weight",
    "mamba.b_layernorm.weight": "ssm_b_norm.weight",
    "mamba.c_layernorm.weight": "ssm_c_norm.weight",
    "mamba.out_proj.weight": "ssm_out.weight",
    "feed_forward.gate_proj.weight": "ffn_gate.weight",
    "feed_forward.up_proj.weight": "ffn_up.weight",
    "feed_forward.down_proj.weight": "ffn_down.weight",
    "feed_forward.router.weight": "ffn_gate_inp.weight",
    "feed_forward.experts.down_proj": "ffn_down_exps.weight",
    # feed_forward.experts.gate_up_proj -> ffn_gate_exps.weight + ffn_up_exps.weight
}
_GATE_UP = "feed_forward.experts.gate_up_proj"


def gguf_names(hf_name: str) -> list[str]:
    """The GGUF tensor name(s) an HF parameter becomes (two for the fused gate_up_proj)."""
    if hf_name == "model.embed_tokens.weight":
        return ["token_embd.weight"]
    if hf_name == "model.final_layernorm.weight":
        return ["output_norm.weight"]
    if hf_name == "lm_head.weight":
        return ["output.weight"]
    parts = hf_name.split(".", 3)  # model, layers, N, rest
    if parts[0] == "model" and parts[1] == "layers" and len(parts) == 4:
        if parts[3] == _GATE_UP:
            return [f"blk.{parts[2]}.ffn_gate_exps.weight", f"blk.{parts[2]}.ffn_up_exps.weight"]
        if parts[3] in _LAYER_MAP:
            return [f"blk.{parts[2]}.{_LAYER_MAP[parts[3]]}"]
    raise KeyError(hf_name)


def _to_gguf(hf_name: str, arr: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(GGUF name, array as the converter stores it, numpy order) for one HF parameter."""
    names = gguf_names(hf_name)
    if hf_name.endswith(_GATE_UP):
        n_ff = arr.shape[1] // 2
        return [(names[0], arr[:, :n_ff]), (names[1], arr[:, n_ff:])]
    if hf_name.endswith("conv1d.weight"):
        arr = arr.reshape(arr.shape[0], arr.shape[-1])
    elif hf_name.endswith("A_log"):
        arr = -np.exp(arr.astype(np.float64))
    return [(names[0], arr)]


def _from_gguf(hf_name: str, stored: dict[str, np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """The HF parameter `hf_name` rebuilt (float64) from the stored GGUF tensors."""
    parts = [stored[n].astype(np.float64) for n in gguf_names(hf_name)]
    arr = np.concatenate(parts, axis=1) if hf_name.endswith(_GATE_UP) else parts[0]
    if hf_name.endswith("A_log"):
        arr = np.log(-arr)
    return arr.reshape(shape)


def _wtype_for(name: str, arr: np.ndarray, wtype: str) -> str:
    if arr.ndim not in (2, 3):
        return "f32"
    if "ssm_conv1d" in name or name.endswith(("ssm_a", "ssm_d")) or "ffn_gate_inp" in name:
        return "f32"
    if wtype in ("q8_0", "q4_0") and arr.shape[-1] % 32:
        return "f32"
    return wtype


# ---------------------------------------------------------------------------------------------
# writer and oracle
# ---------------------------------------------------------------------------------------------


def write_gguf_jamba(model, path: str | os.PathLike[str], wtype: str) -> Path:
    """Writes `model` to `path` as llama.cpp's converter would, matrices in `wtype`."""
    if wtype not in mg._FILE_TYPE:
        raise ValueError(f"unknown wtype {wtype!r}")
    c = model.config
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    w = gguf.GGUFWriter(str(tmp), ARCH)
    w.add_name("tiny-jamba")
    w.add_file_type(int(mg._FILE_TYPE[wtype]))
    w.add_vocab_size(c.vocab_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(head_count_kv(c))
    w.add_ssm_conv_kernel(c.mamba_d_conv)
    w.add_ssm_inner_size(c.mamba_expand * c.hidden_size)
    w.add_ssm_state_size(c.mamba_d_state)
    w.add_ssm_time_step_rank(c.mamba_dt_rank)
    w.add_layer_norm_rms_eps(float(c.rms_norm_eps))
    w.add_expert_count(c.num_experts)
    w.add_expert_used_count(c.num_experts_per_tok)
    mg.add_spm_vocab(w, c.vocab_size)

    tied = c.tie_word_embeddings
    for hf_name, p in model.state_dict().items():
        if hf_name == "lm_head.weight" and tied:
            continue
        for name, arr in _to_gguf(hf_name, p.detach().to(torch.float32).numpy()):
            arr = np.ascontiguousarray(arr, dtype=np.float32)
            data, raw = mg._store(arr, _wtype_for(name, arr, wtype), arr.ndim >= 2)
            w.add_tensor(name, data, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, path)
    return path


def reference_jamba(model, path: str | os.PathLike[str], dtype: torch.dtype = torch.float64):
    """An HF model (default float64) with the weights stored in the GGUF at `path`
    (dequantized; A_log recovered as log(-ssm_a)), the oracle for that file."""
    ref = mg.load_stored(_model(copy.deepcopy(model.config)), path, _from_gguf, dtype)
    ref.gguf_arch = ARCH
    return ref


def hf_logits(model, token_ids: Sequence[int]) -> np.ndarray:
    return mg.hf_logits(model, token_ids)


def router_margins(model, token_ids: Sequence[int]) -> np.ndarray:
    """modelgen.router_margins over Jamba's routers."""
    import transformers.models.jamba.modeling_jamba as mj

    return mg.router_margins(model, mj.JambaTopKRouter, token_ids)
