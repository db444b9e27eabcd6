"""Tiny random Gemma 3 (text) models for end-to-end tests, written as GGUF the way llama.cpp's
convert_hf_to_gguf.py (Gemma3Model) writes them, plus the transformers oracle.

    model = make_gemma3(seed=1)                          # Gemma3ForCausalLM, float32, eval
    write_gguf_gemma3(model, path, "q8_0")               # GGUF file with modelgen's SPM vocab
    ref = reference_gemma3(model, path, "q8_0")          # HF model with the weights AS STORED

Layout facts (llama.cpp's converter and loader):
  * keys: context_length, embedding_length, block_count, feed_forward_length,
    attention.head_count / head_count_kv / key_length / value_length /
    layer_norm_rms_epsilon, rope.freq_base (global layers), attention.sliding_window; no
    rope.dimension_count (all of the head rotates), no sliding-window pattern key (llama.cpp
    uses period 6: layer i slides iff i % 6 < 5, as HF's default layer_types), no base for the
    local layers (10000 in llama.cpp).
  * every "*norm.weight" is stored with the 1 of Gemma3RMSNorm's (1 + w) added.
  * NEOX RoPE: q/k rows stay in HF order. Tied embeddings: no output.weight.
  * llama.cpp scales q.k by 1/sqrt(head_dim), so the models here set query_pre_attn_scalar to
    head_dim (the published 270M/1B do too).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import gguf
import modelgen as mg
import numpy as np
import torch

SHAPE = {
    "vocab_size": 512,
    "hidden_size": 64,
    "intermediate_size": 160,
    "num_hidden_layers": 6,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "sliding_window": 16,
    "max_position_embeddings": 1024,
    "rms_norm_eps": 1e-6,
}
ROPE_GLOBAL, ROPE_LOCAL = 1_000_000.0, 10_000.0

_LAYER_MAP = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "post_attention_layernorm.weight": "post_attention_norm.weight",
    "pre_feedforward_layernorm.weight": "ffn_norm.weight",
    "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(hf_name: str) -> str:
    if hf_name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf_name == "model.norm.weight":
        return "output_norm.weight"
    if hf_name == "lm_head.weight":
        return "output.weight"
    parts = hf_name.split(".", 3)
    if parts[0] == "model" and parts[1] == "layers" and parts[3] in _LAYER_MAP:
        return f"blk.{parts[2]}.{_LAYER_MAP[parts[3]]}"
    raise KeyError(hf_name)


def _config(**shape):
    import transformers

    cfg = dict(SHAPE)
    cfg.update(shape)
    cfg.setdefault("query_pre_attn_scalar", cfg["head_dim"])
    config = transformers.Gemma3TextConfig(
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": ROPE_GLOBAL},
            "sliding_attention": {"rope_type": "default", "rope_theta": ROPE_LOCAL},
        },
        bos_token_id=mg.BOS_ID,
        eos_token_id=mg.EOS_ID,
        pad_token_id=mg.UNK_ID,
        tie_word_embeddings=True,
        attn_implementation="eager",
        **cfg,
    )
    config._attn_implementation = "eager"
    return config


def _model(config):
    import transformers

    model = transformers.Gemma3ForCausalLM(config)
    model.eval()
    return model


def make_gemma3(seed: int, **shape):
    """A tiny float32 Gemma3ForCausalLM with well-scaled random weights drawn from seed.
    Keyword arguments override the config (final_logit_softcapping=..., sliding_window=...)."""
    torch.manual_seed(seed)
    model = _model(_config(**shape))
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            shp = tuple(p.shape)
            if name.endswith("norm.weight"):  # HF stores w of (1 + w)
                v = 0.1 * rng.standard_normal(shp)
            elif "embed_tokens" in name:
                v = 0.05 * rng.standard_normal(shp)  # times sqrt(hidden) = 8 on the way in
            else:
                v = 0.08 * rng.standard_normal(shp)
            p.copy_(torch.from_numpy(v.astype(np.float32)))
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    return model


def write_gguf_gemma3(model, path, wtype: str) -> Path:
    """Writes model to path as llama.cpp's converter would, with matrices in wtype."""
    c = model.config
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    w = gguf.GGUFWriter(str(tmp), "gemma3")
    w.add_name("tiny-gemma3")
    w.add_file_type(int(mg._FILE_TYPE[wtype]))
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_layer_norm_rms_eps(float(c.rms_norm_eps))
    w.add_key_length(c.head_dim)
    w.add_value_length(c.head_dim)
    w.add_rope_freq_base(float(c.rope_parameters["full_attention"]["rope_theta"]))
    w.add_sliding_window(int(c.sliding_window))
    w.add_head_count_kv(c.num_key_value_heads)
    if c.final_logit_softcapping is not None:
        w.add_final_logit_softcapping(float(c.final_logit_softcapping))
    if c.attn_logit_softcapping is not None:
        w.add_attn_logit_softcapping(float(c.attn_logit_softcapping))
    mg.add_spm_vocab(w, c.vocab_size)
    for name, t in model.state_dict().items():
        if name == "lm_head.weight":
            continue  # tied
        arr = t.detach().to(torch.float32).numpy().copy()
        if name.endswith("norm.weight"):
            arr = arr + np.float32(1.0)
        data, raw = mg.store_tensor(arr, wtype)
        w.add_tensor(gguf_name(name), data, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, path)
    return path


def reference_gemma3(model, path, wtype: str, dtype=torch.float64):
    """A Gemma3ForCausalLM (default float64) whose weights are those stored in path,
    dequantized, with the converter's +1 on the norms taken back off."""
    stored = mg.read_gguf_f32(path)
    r = gguf.GGUFReader(str(path))
    want = mg._QTYPE[wtype]
    for t in r.tensors:
        expect = want if len(t.shape) == 2 else gguf.GGMLQuantizationType.F32
        if t.tensor_type != expect:
            raise AssertionError(f"{t.name}: stored as {t.tensor_type.name}")
    cfg = copy.deepcopy(model.config)
    cfg._attn_implementation = "eager"
    ref = _model(cfg)
    state = {}
    for name in ref.state_dict():
        if name == "lm_head.weight":
            continue
        arr = stored[gguf_name(name)].astype(np.float64)
        if name.endswith("norm.weight"):
            arr = arr - 1.0
        state[name] = torch.from_numpy(arr)
    ref = ref.to(dtype)
    missing, unexpected = ref.load_state_dict(state, strict=False)
    assert missing == ["lm_head.weight"] and not unexpected, (missing, unexpected)
    ref.tie_weights()
    assert ref.lm_head.weight.data_ptr() == ref.model.embed_tokens.weight.data_ptr()
    ref.eval()
    return ref


def hf_logits(model, token_ids) -> np.ndarray:
    """Logits [n, n_vocab] (float64) of one sequence at positions 0..n-1."""
    ids = torch.tensor([[int(t) for t in token_ids]], dtype=torch.long)
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=False)
    return out.logits[0].to(torch.float64).numpy()
