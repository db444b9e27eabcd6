"""Tiny random Mamba and Mamba2 models for end-to-end tests, written as GGUF the way
llama.cpp's convert_hf_to_gguf.py (MambaModel, Mamba2Model) writes them, plus the transformers
oracle.

    model = make_mamba("mamba", seed=1)                 # MambaForCausalLM, float32, eval
    write_gguf_mamba(model, path, "q8_0")               # GGUF file with modelgen's SPM vocab
    ref = reference_mamba(model, path, "q8_0")          # HF model with the weights AS STORED

Layout facts (llama.cpp's converter):
  * keys: context_length, embedding_length, block_count, feed_forward_length = 0,
    attention.head_count = 0, ssm.conv_kernel, ssm.inner_size, ssm.state_size,
    ssm.time_step_rank (mamba: the rank of dt; mamba2: the number of heads), ssm.group_count
    (mamba2), attention.layer_norm_rms_epsilon, ssm.dt_b_c_rms (mamba; false but for
    falcon-mamba).
  * tensors: token_embd, output_norm, output (omitted when tied), blk.N.attn_norm,
    ssm_in, ssm_conv1d.weight (squeezed to [channels, d_conv]) / .bias, ssm_x (mamba),
    ssm_dt.weight (mamba) / ssm_dt.bias, ssm_a = -exp(A_log), ssm_d, ssm_norm (mamba2, as
    [groups, d_inner / groups]), ssm_out. Mamba2 stores A and D as [heads, 1].
  * llama.cpp never quantizes ssm_conv1d; here every 2-D matrix whose rows are a whole number
    of 32-value blocks takes the requested type, everything else stays F32.
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
    "mamba": {
        "vocab_size": 512,
        "hidden_size": 64,
        "state_size": 16,
        "num_hidden_layers": 3,
        "conv_kernel": 4,
        "expand": 2,
        "layer_norm_epsilon": 1e-5,
    },
    "mamba2": {
        "vocab_size": 512,
        "hidden_size": 64,
        "state_size": 16,
        "num_hidden_layers": 3,
        "conv_kernel": 4,
        "expand": 2,
        "num_heads": 8,
        "head_dim": 16,
        "n_groups": 2,
        "layer_norm_epsilon": 1e-5,
        "chunk_size": 64,
    },
}


def _config(arch: str, **shape):
    import transformers

    cfg = dict(SHAPE[arch])
    cfg.update(shape)
    cfg.setdefault("tie_word_embeddings", False)
    cfg["residual_in_fp32"] = False  # keep the float64 reference in float64
    cls = transformers.MambaConfig if arch == "mamba" else transformers.Mamba2Config
    return cls(**cfg)


def _model(arch: str, config):
    import transformers

    cls = transformers.MambaForCausalLM if arch == "mamba" else transformers.Mamba2ForCausalLM
    model = cls(config)
    model.eval()
    model.gguf_arch = arch
    return model


def make_mamba(arch: str = "mamba", seed: int = 1, **shape):
    """A tiny float32 Mamba ("mamba") or Mamba2 ("mamba2") model with random weights scaled so
    that activations stay O(1), states keep a memory of tens of tokens and logits spread."""
    torch.manual_seed(seed)
    model = _model(arch, _config(arch, **shape))
    rng = np.random.default_rng(seed)
    c = model.config
    n_state = c.state_size
    with torch.no_grad():
        for name, p in model.named_parameters():
            shp = tuple(p.shape)
            if name.endswith("A_log"):
                base = np.log(np.arange(1, n_state + 1, dtype=np.float64)) if arch == "mamba" \
                    else np.log(rng.uniform(1.0, 16.0, shp))
                v = np.broadcast_to(base, shp) + 0.1 * rng.standard_normal(shp)
            elif name.endswith("dt_proj.bias") or name.endswith("dt_bias"):
                dt = np.exp(rng.uniform(np.log(0.01), np.log(0.3), shp))
                v = dt + np.log(-np.expm1(-dt))  # softplus^-1
            elif name.endswith(".D"):
                v = 1.0 + 0.1 * rng.standard_normal(shp)
            elif "norm" in name:
                v = 1.0 + 0.1 * rng.standard_normal(shp)
            elif name.endswith("conv1d.weight"):
                v = 0.3 * rng.standard_normal(shp)
            elif name.endswith(".bias"):
                v = 0.1 * rng.standard_normal(shp)
            elif "embeddings" in name or "lm_head" in name:
                v = 0.25 * rng.standard_normal(shp)
            elif "dt_proj" in name:
                v = 0.3 * rng.standard_normal(shp)
            else:
                v = 0.08 * rng.standard_normal(shp)
            p.copy_(torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)))
    return model


# ---------------------------------------------------------------------------------------------
# names
# ---------------------------------------------------------------------------------------------

_LAYER_MAP = {
    "norm.weight": "attn_norm.weight",
    "mixer.in_proj.weight": "ssm_in.weight",
    "mixer.conv1d.weight": "ssm_conv1d.weight",
    "mixer.conv1d.bias": "ssm_conv1d.bias",
    "mixer.x_proj.weight": "ssm_x.weight",
    "mixer.dt_proj.weight": "ssm_dt.weight",
    "mixer.dt_proj.bias": "ssm_dt.bias",
    "mixer.dt_bias": "ssm_dt.bias",
    "mixer.A_log": "ssm_a",
    "mixer.D": "ssm_d",
    "mixer.norm.weight": "ssm_norm.weight",
    "mixer.out_proj.weight": "ssm_out.weight",
}


def gguf_name(hf_name: str) -> str:
    if hf_name == "backbone.embeddings.weight":
        return "token_embd.weight"
    if hf_name == "backbone.norm_f.weight":
        return "output_norm.weight"
    if hf_name == "lm_head.weight":
        return "output.weight"
    parts = hf_name.split(".", 3)
    if parts[0] == "backbone" and parts[1] == "layers" and parts[3] in _LAYER_MAP:
        return f"blk.{parts[2]}.{_LAYER_MAP[parts[3]]}"
    raise KeyError(hf_name)


def _to_gguf(arch: str, config, hf_name: str, arr: np.ndarray) -> np.ndarray:
    """The array as the converter stores it (numpy order: outermost first)."""
    if hf_name.endswith("conv1d.weight"):
        arr = arr.reshape(arr.shape[0], arr.shape[-1])
    if hf_name.endswith("A_log"):
        arr = -np.exp(arr)
    if arch == "mamba2":
        if hf_name.endswith("A_log") or hf_name.endswith(".D"):
            arr = arr.reshape(arr.shape[0], 1)
        elif hf_name.endswith("mixer.norm.weight"):
            arr = arr.reshape(config.n_groups, -1)
    return arr


def _from_gguf(arch: str, hf_name: str, arr: np.ndarray, shape) -> np.ndarray:
    if hf_name.endswith("A_log"):
        arr = np.log(-arr)
    return arr.reshape(shape)


def _wtype_for(name: str, arr: np.ndarray, wtype: str) -> str:
    if arr.ndim != 2 or "ssm_conv1d" in name or name.endswith("ssm_a") or name.endswith("ssm_d"):
        return "f32"
    if name.endswith("ssm_norm.weight"):
        return "f32"
    if wtype in ("q8_0", "q4_0") and arr.shape[-1] % 32:
        return "f32"
    return wtype


def write_gguf_mamba(model, path, wtype: str) -> Path:
    arch = model.gguf_arch
    c = model.config
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    w = gguf.GGUFWriter(str(tmp), arch)
    w.add_name(f"tiny-{arch}")
    w.add_file_type(int(mg._FILE_TYPE[wtype]))
    w.add_vocab_size(c.vocab_size)
    w.add_context_length(4096)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(0)
    w.add_head_count(0)
    w.add_block_count(c.num_hidden_layers)
    w.add_ssm_conv_kernel(c.conv_kernel)
    w.add_ssm_inner_size(int(c.expand * c.hidden_size))
    w.add_ssm_state_size(c.state_size)
    if arch == "mamba":
        w.add_ssm_time_step_rank(c.time_step_rank)
        w.add_ssm_dt_b_c_rms(False)
    else:
        w.add_ssm_time_step_rank(c.num_heads)
        w.add_ssm_group_count(c.n_groups)
    w.add_layer_norm_rms_eps(float(c.layer_norm_epsilon))
    mg.add_spm_vocab(w, c.vocab_size)

    tied = c.tie_word_embeddings
    for hf_name, p in model.state_dict().items():
        if hf_name == "lm_head.weight" and tied:
            continue
        arr = _to_gguf(arch, c, hf_name, p.detach().to(torch.float32).numpy())
        name = gguf_name(hf_name)
        data, raw = mg._store(arr, _wtype_for(name, arr, wtype), arr.ndim == 2)
        w.add_tensor(name, data, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, path)
    return path


def reference_mamba(model, path, dtype=torch.float64):
    """An HF model (default float64) with the weights stored in the GGUF at `path`."""
    arch = model.gguf_arch
    ref = mg.load_stored(
        _model(arch, copy.deepcopy(model.config)), path,
        lambda name, stored, shape: _from_gguf(
            arch, name, stored[gguf_name(name)].astype(np.float64), shape
        ).astype(np.float32),
        dtype,
    )
    ref.gguf_arch = arch
    return ref


def hf_logits(model, token_ids) -> np.ndarray:
    return mg.hf_logits(model, token_ids)
