"""Tiny random Llama / Qwen2 models for end-to-end tests, written as GGUF the way
llama.cpp's convert_hf_to_gguf.py would write them, plus the transformers oracle.

    model = make_hf_model("llama", seed=1)            # transformers model, float32, eval
    write_gguf(model, path, "q8_0")                    # GGUF file with a small SPM vocab
    ref = reference_model_for(model, path, "q8_0")     # HF model with the weights AS STORED
    logits = hf_logits(ref, token_ids)                 # np.float64 [n, n_vocab]

Layout facts this file relies on (checked by the self-tests in test_model_llama.py):
  * numpy/torch weights are [out_features, in_features]; GGUF lists dims innermost first, so
    a row of length in_features is one run of quantization blocks (32 values for q8_0/q4_0),
    which is why every in_features here is a multiple of 32.
  * arch "llama" in llama.cpp rotates pairs (2i, 2i+1) of each head (interleaved RoPE) while
    HF rotates (i, i + d/2); the converter therefore reorders the rows of q_proj (per query
    head) and k_proj (per kv head). qwen2 uses NEOX RoPE in llama.cpp, the HF convention, so
    its rows stay as they are.
  * 1-D tensors (norms, biases) stay F32; every 2-D matrix, token_embd included, takes the
    requested type.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
from gguf import GGMLQuantizationType as QT

WTYPES = ("f32", "f16", "bf16", "q8_0", "q4_0")

_QTYPE = {"f32": QT.F32, "f16": QT.F16, "bf16": QT.BF16, "q8_0": QT.Q8_0, "q4_0": QT.Q4_0}
_FILE_TYPE = {  # llama.cpp's LlamaFileType
    "f32": gguf.LlamaFileType.ALL_F32,
    "f16": gguf.LlamaFileType.MOSTLY_F16,
    "bf16": gguf.LlamaFileType.MOSTLY_BF16,
    "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
}

# Default tiny shapes: every in_features (64, 160) is a multiple of the 32-value block.
DEFAULT_SHAPE = {
    "vocab_size": 512,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 160,
    "max_position_embeddings": 512,
}
_ARCH_DEFAULTS = {
    "llama": {"rope_theta": 10000.0, "rms_norm_eps": 1e-5},
    "qwen2": {"rope_theta": 1000000.0, "rms_norm_eps": 1e-6},
}

# Token ids of the vocabulary written by write_gguf.
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
N_SPECIAL = 3
FIRST_TEXT_ID = N_SPECIAL + 256  # after <unk>, <s>, </s> and the 256 byte tokens


# ---------------------------------------------------------------------------------------------
# transformers side
# ---------------------------------------------------------------------------------------------


def _config(arch: str, shape: dict):
    import transformers

    cfg = dict(DEFAULT_SHAPE)
    cfg.update(_ARCH_DEFAULTS[arch])
    cfg.update(shape)
    rope_theta = float(cfg.pop("rope_theta"))
    rope_scaling = cfg.pop("rope_scaling", None)  # e.g. {"type": "linear", "factor": 2.0}
    rope = {"rope_type": "default", "rope_theta": rope_theta}
    if rope_scaling is not None:
        if rope_scaling.get("type") != "linear":
            raise ValueError("only linear rope scaling is generated")
        rope = {
            "rope_type": "linear",
            "factor": float(rope_scaling["factor"]),
            "rope_theta": rope_theta,
        }
    cfg.setdefault("tie_word_embeddings", False)
    cls = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config}[arch]
    config = cls(
        rope_parameters=rope,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        attn_implementation="eager",
        **cfg,
    )
    config._attn_implementation = "eager"
    return config


def _model_from_config(arch: str, config):
    import transformers

    cls = {"llama": transformers.LlamaForCausalLM, "qwen2": transformers.Qwen2ForCausalLM}[arch]
    model = cls(config)
    model.eval()
    return model


def make_hf_model(arch: str, seed: int, **shape):
    """A tiny float32 transformers model of `arch` ("llama" or "qwen2") with well-scaled random
    weights drawn from `seed`. Keyword arguments override the config (tie_word_embeddings,
    num_hidden_layers, rope_scaling={"type": "linear", "factor": 2.0}, ...)."""
    if arch not in _ARCH_DEFAULTS:
        raise ValueError(f"unknown arch {arch!r}")
    torch.manual_seed(seed)
    config = _config(arch, shape)
    model = _model_from_config(arch, config)

    # Re-draw every parameter with a scale that keeps activations O(1) and logits spread out
    # (the stock 0.02 init gives near-uniform logits, where argmax comparisons are noise).
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            shp = tuple(p.shape)
            if name.endswith("norm.weight"):
                v = 1.0 + 0.1 * rng.standard_normal(shp)
            elif name.endswith(".bias"):
                v = 0.2 * rng.standard_normal(shp)
            elif "embed_tokens" in name or "lm_head" in name:
                v = 0.25 * rng.standard_normal(shp)
            else:
                v = 0.08 * rng.standard_normal(shp)
            p.copy_(torch.from_numpy(v.astype(np.float32)))
    if config.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    model.gguf_arch = arch
    return model


def hf_logits(model, token_ids) -> np.ndarray:
    """Logits [n, n_vocab] (float64 numpy) of one sequence with positions 0..n-1."""
    ids = torch.tensor([[int(t) for t in token_ids]], dtype=torch.long)
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=False)
    return out.logits[0].to(torch.float64).numpy()


# ---------------------------------------------------------------------------------------------
# Q/K row order (llama only)
# ---------------------------------------------------------------------------------------------


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF rotate-half row order -> llama.cpp interleaved order, per head.
    Within a head of dim d, HF row j (j < d/2) and j + d/2 form rotation pair j; llama.cpp wants
    them at rows 2j and 2j+1."""
    d = w.shape[0] // n_head
    return w.reshape(n_head, 2, d // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of permute_qk."""
    d = w.shape[0] // n_head
    return w.reshape(n_head, d // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# ---------------------------------------------------------------------------------------------
# HF name <-> GGUF name
# ---------------------------------------------------------------------------------------------

_LAYER_MAP = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "post_attention_layernorm.weight": "ffn_norm.weight",
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
    parts = hf_name.split(".", 3)  # model, layers, N, rest
    if parts[0] == "model" and parts[1] == "layers" and parts[3] in _LAYER_MAP:
        return f"blk.{parts[2]}.{_LAYER_MAP[parts[3]]}"
    raise KeyError(hf_name)


def _hf_tensors(model):
    """(hf_name, float32 numpy) in the checkpoint's order, without the tied lm_head."""
    tied = model.config.tie_word_embeddings
    out = []
    for name, t in model.state_dict().items():
        if name == "lm_head.weight" and tied:
            continue  # a tied checkpoint stores no lm_head: the converter writes no output.weight
        out.append((name, t.detach().to(torch.float32).numpy().copy()))
    return out


def _qk_heads(config, hf_name: str) -> int | None:
    if hf_name.endswith(("q_proj.weight", "q_proj.bias")):
        return config.num_attention_heads
    if hf_name.endswith(("k_proj.weight", "k_proj.bias")):
        return config.num_key_value_heads
    return None


# ---------------------------------------------------------------------------------------------
# tokenizer: a tiny SentencePiece-style ("llama") vocabulary
# ---------------------------------------------------------------------------------------------

_WORDS = (  # noqa: SIM905
    "the of and to in is that it for was on are as with be at by this have from or one "
    "had not but what all were when we there can an your which their said if do will each "
    "about how up out them then she many some so these would other into has more her two "
    "like him see time could no make than first been its who now people my made over did "
    "down only way find use may water long little very after words called just where most "
    "know get through back much go good new write our me man too any day same right look "
    "think also around another came come work three word must because does part even place "
    "well such here take why things help put years different away again off went old "
    "number great tell men say small every found still between name should home big give "
    "air line set own under read last never us left end along while might next sound below "
    "saw something thought both few those always looked show large often together asked "
    "house world going want school important until form food keep children feet land side "
    "without boy once animals life enough took sometimes four head above kind began almost "
    "live page got earth need far hand high year mother light parts country father let "
    "night following picture being study second eyes soon times story boys since white "
    "days ever paper hard near sentence better best across during today others however sure "
    "means knew try told young miles sun ways thing whole hear example heard several change "
    "answer room sea against top turned learn point city play toward five using himself "
    "usually money seen car morning"
).split()


def vocab_pieces(vocab_size: int):
    """(tokens, scores, types) of an SPM vocab with vocab_size entries: <unk> <s> </s>, the 256
    byte tokens <0x00>..<0xFF>, then "▁", letters, digits, punctuation, "▁word" pieces (each
    with all its prefixes, so a pair-merging SPM tokenizer reaches it: "▁t", "▁th", "▁the")
    and letter pairs, then letter triples, quadruples, ... until full (large vocabularies).
    Scores decrease with the id (the SPM merge priority)."""
    T = gguf.TokenType
    tokens = ["<unk>", "<s>", "</s>"]
    types = [int(T.UNKNOWN), int(T.CONTROL), int(T.CONTROL)]
    scores = [0.0, 0.0, 0.0]
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        types.append(int(T.BYTE))
        scores.append(0.0)
    if vocab_size < len(tokens) + 1:
        raise ValueError("vocab_size too small for the byte tokens")
    letters = "abcdefghijklmnopqrstuvwxyz"
    cands = ["\u2581"] + list(letters) + list(letters.upper()) + list("0123456789")
    cands += list(".,;:!?'\"()-")
    cands += ["\u2581" + c for c in letters]
    cands += ["\u2581" + w[:k] for w in _WORDS for k in range(1, len(w) + 1)]
    cands += [a + b for a in letters for b in letters]
    # large vocabularies (benchmark models of a real model's shape) go on past the pairs;
    # smaller ones never reach these
    pieces = itertools.chain(
        cands,
        ("".join(t) for n in itertools.count(3) for t in itertools.product(letters, repeat=n)),
    )
    seen = set(tokens)
    for piece in pieces:
        if len(tokens) == vocab_size:
            break
        if piece in seen:
            continue
        seen.add(piece)
        tokens.append(piece)
        types.append(int(T.NORMAL))
        scores.append(-float(len(tokens)))
    return tokens, scores, types


# ---------------------------------------------------------------------------------------------
# GGUF writer
# ---------------------------------------------------------------------------------------------


def _store(arr: np.ndarray, wtype: str, is_matrix: bool):
    """(data, raw_dtype) as GGUFWriter.add_tensor takes them."""
    if not is_matrix or wtype == "f32":
        return np.ascontiguousarray(arr, dtype=np.float32), None
    if wtype == "f16":
        return arr.astype(np.float16), None
    q = _QTYPE[wtype]
    if arr.shape[-1] % gguf.GGML_QUANT_SIZES[q][0]:
        raise ValueError(f"row length {arr.shape[-1]} is not a multiple of the {wtype} block")
    return gguf.quants.quantize(np.ascontiguousarray(arr, dtype=np.float32), q), q


def add_spm_vocab(w, vocab_size: int) -> None:
    """Writes the tiny SPM vocabulary of vocab_pieces (and its special ids) to GGUFWriter w."""
    tokens, scores, types = vocab_pieces(vocab_size)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(BOS_ID)
    w.add_eos_token_id(EOS_ID)
    w.add_unk_token_id(UNK_ID)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(True)


def store_tensor(arr: np.ndarray, wtype: str):
    """(data, raw_dtype) for GGUFWriter.add_tensor: 2-D matrices in wtype, the rest in F32."""
    return _store(arr, wtype, arr.ndim == 2)


def write_gguf(model, path, wtype: str) -> Path:
    """Writes `model` to `path` as llama.cpp's converter would (with weights in `wtype`)."""
    if wtype not in _QTYPE:
        raise ValueError(f"unknown wtype {wtype!r}")
    arch = model.gguf_arch
    c = model.config
    head_dim = c.hidden_size // c.num_attention_heads
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")

    w = gguf.GGUFWriter(str(tmp), arch)  # writes general.architecture
    w.add_name(f"tiny-{arch}")
    w.add_file_type(int(_FILE_TYPE[wtype]))
    w.add_vocab_size(c.vocab_size)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_layer_norm_rms_eps(float(c.rms_norm_eps))
    rope = c.rope_parameters
    w.add_rope_freq_base(float(rope["rope_theta"]))
    w.add_rope_dimension_count(head_dim)
    if rope.get("rope_type") == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(float(rope["factor"]))

    add_spm_vocab(w, c.vocab_size)

    for hf_name, arr in _hf_tensors(model):
        n_head = _qk_heads(c, hf_name)
        if arch == "llama" and n_head is not None:
            arr = permute_qk(arr, n_head)
        data, raw = _store(arr, wtype, arr.ndim == 2)
        w.add_tensor(gguf_name(hf_name), data, raw_dtype=raw)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, path)
    return path


def read_gguf_f32(path) -> dict[str, np.ndarray]:
    """Every tensor of a GGUF file dequantized to float32, numpy [out, in] order."""
    r = gguf.GGUFReader(str(path))
    out = {}
    for t in r.tensors:
        shape = tuple(int(x) for x in reversed(list(t.shape)))
        arr = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
        out[t.name] = np.asarray(arr, dtype=np.float32).reshape(shape)
    return out


def load_stored(ref, path, convert: Callable[[str, dict, tuple], np.ndarray], dtype=torch.float64):
    """Fills the HF model `ref` (its config like the file's) with the weights stored in the GGUF
    at `path`: parameter `name` of shape `shape` becomes convert(name, stored, shape), stored
    being every tensor of the file dequantized (read_gguf_f32). A tied lm_head is left to the
    embeddings; any other parameter missing or left over is an error. Returns ref in dtype,
    in eval mode."""
    stored = read_gguf_f32(path)
    ref = ref.to(dtype)
    tied = ref.config.tie_word_embeddings
    state = {}
    for name, p in ref.state_dict().items():
        if name == "lm_head.weight" and tied:
            continue
        state[name] = torch.from_numpy(np.asarray(convert(name, stored, tuple(p.shape)))).to(dtype)
    missing, unexpected = ref.load_state_dict(state, strict=False)
    missing = [m for m in missing if not (m == "lm_head.weight" and tied)]
    if missing or unexpected:
        raise AssertionError(f"state mismatch: missing {missing}, unexpected {unexpected}")
    ref.eval()
    return ref


def router_margins(model, router_cls: type, token_ids: Sequence[int]) -> np.ndarray:
    """[n_moe_layers, n_tokens]: per router of class router_cls (its forward returns the
    router logits first) and token of one sequence (positions 0..n-1), the gap between the
    k-th and (k+1)-th largest router logit (k = num_experts_per_tok). The top-k set is stable
    under any error in the router logits smaller than half this gap."""
    k = model.config.num_experts_per_tok
    gaps: list[np.ndarray] = []

    def hook(_mod: torch.nn.Module, _inp: Any, out: Any) -> None:
        logits = out[0].detach().to(torch.float64).numpy()
        top = np.sort(logits, axis=-1)[:, ::-1]
        gaps.append(top[:, k - 1] - top[:, k])

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, router_cls)]
    try:
        hf_logits(model, token_ids)
    finally:
        for h in handles:
            h.remove()
    return np.stack(gaps) if gaps else np.zeros((0, len(token_ids)))


def reference_model_for(model, path, wtype: str, dtype=torch.float64):
    """An HF model (default float64) whose weights are those stored in the GGUF at `path`,
    dequantized (and, for llama, q/k rows put back in HF order): the oracle for that file.
    `wtype` is checked against the file's tensor types."""
    arch = model.gguf_arch
    c = model.config
    stored = read_gguf_f32(path)
    r = gguf.GGUFReader(str(path))
    want = _QTYPE[wtype]
    for t in r.tensors:
        expect = want if len(t.shape) == 2 else QT.F32
        if t.tensor_type != expect:
            raise AssertionError(
                f"{t.name}: stored as {t.tensor_type.name}, expected {expect.name}"
            )

    ref = _model_from_config(arch, _config_like(model))
    state = {}
    for name in ref.state_dict():
        if name == "lm_head.weight" and c.tie_word_embeddings:
            continue
        arr = stored[gguf_name(name)]
        n_head = _qk_heads(c, name)
        if arch == "llama" and n_head is not None:
            arr = unpermute_qk(arr, n_head)
        state[name] = torch.from_numpy(arr.copy())
    missing, unexpected = ref.load_state_dict(state, strict=False)
    missing = [m for m in missing if not (m == "lm_head.weight" and c.tie_word_embeddings)]
    if missing or unexpected:
        raise AssertionError(f"state mismatch: missing {missing}, unexpected {unexpected}")
    if c.tie_word_embeddings:
        assert ref.lm_head.weight.data_ptr() == ref.model.embed_tokens.weight.data_ptr()
    ref = ref.to(dtype)
    ref.eval()
    ref.gguf_arch = arch
    return ref


def _config_like(model):
    import copy

    cfg = copy.deepcopy(model.config)
    cfg._attn_implementation = "eager"
    return cfg


# ---------------------------------------------------------------------------------------------
# An independent numpy forward pass over the GGUF file itself, in llama.cpp's conventions
# (interleaved RoPE for llama, NEOX for qwen2). It checks the file layout against transformers
# without going through reference_model_for, and helps tell a file bug from an engine bug.
# ---------------------------------------------------------------------------------------------


def _meta(reader, key):
    f = reader.fields[key]
    v = f.parts[f.data[0]]
    return v.tobytes().decode() if f.types[0] == gguf.GGUFValueType.STRING else v[0].item()


def gguf_forward_numpy(path, token_ids) -> np.ndarray:
    """Logits [n, n_vocab] (float64) of one sequence at positions 0..n-1, read from the file."""
    r = gguf.GGUFReader(str(path))
    arch = _meta(r, "general.architecture")
    n_layer = _meta(r, f"{arch}.block_count")
    n_head = _meta(r, f"{arch}.attention.head_count")
    n_head_kv = _meta(r, f"{arch}.attention.head_count_kv")
    eps = _meta(r, f"{arch}.attention.layer_norm_rms_epsilon")
    base = _meta(r, f"{arch}.rope.freq_base")
    n_rot = _meta(r, f"{arch}.rope.dimension_count")
    freq_scale = 1.0
    if (
        f"{arch}.rope.scaling.type" in r.fields
        and _meta(r, f"{arch}.rope.scaling.type") == "linear"
    ):
        freq_scale = 1.0 / _meta(r, f"{arch}.rope.scaling.factor")
    W = {k: v.astype(np.float64) for k, v in read_gguf_f32(path).items()}
    out_w = W.get("output.weight", W["token_embd.weight"])

    n = len(token_ids)
    x = W["token_embd.weight"][np.asarray(token_ids)]
    pos = np.arange(n, dtype=np.float64) * freq_scale
    theta = pos[:, None] * base ** (-np.arange(0, n_rot, 2, dtype=np.float64) / n_rot)
    cos, sin = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]  # [n, 1, n_rot/2]

    def rope(t):  # t [n, heads, head_dim]
        t = t.copy()
        if arch == "llama":  # pairs (2i, 2i+1)
            a, b = t[..., 0:n_rot:2].copy(), t[..., 1:n_rot:2].copy()
            t[..., 0:n_rot:2], t[..., 1:n_rot:2] = a * cos - b * sin, a * sin + b * cos
        else:  # NEOX: pairs (i, i + n_rot/2)
            h = n_rot // 2
            a, b = t[..., :h].copy(), t[..., h:n_rot].copy()
            t[..., :h], t[..., h:n_rot] = a * cos - b * sin, a * sin + b * cos
        return t

    def rms(v, w):
        return v / np.sqrt((v * v).mean(-1, keepdims=True) + eps) * w

    mask = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(n_layer):
        p = f"blk.{i}."
        h = rms(x, W[p + "attn_norm.weight"])
        q, k, v = (
            h @ W[p + f"attn_{s}.weight"].T + W.get(p + f"attn_{s}.bias", 0.0) for s in "qkv"
        )
        hd = q.shape[1] // n_head
        q = rope(q.reshape(n, n_head, hd))
        k = rope(k.reshape(n, n_head_kv, hd))
        v = v.reshape(n, n_head_kv, hd)
        g = n_head // n_head_kv
        att = np.empty((n, n_head, hd))
        for hh in range(n_head):
            s = q[:, hh] @ k[:, hh // g].T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            att[:, hh] = (s / s.sum(-1, keepdims=True)) @ v[:, hh // g]
        x = x + att.reshape(n, -1) @ W[p + "attn_output.weight"].T
        h = rms(x, W[p + "ffn_norm.weight"])
        gate = h @ W[p + "ffn_gate.weight"].T
        up = h @ W[p + "ffn_up.weight"].T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ W[p + "ffn_down.weight"].T
    return rms(x, W["output_norm.weight"]) @ out_w.T


# ---------------------------------------------------------------------------------------------
# prompts and comparison metrics shared by the tests
# ---------------------------------------------------------------------------------------------


def random_prompt(n: int, seed: int, vocab_size: int = DEFAULT_SHAPE["vocab_size"]) -> list[int]:
    """BOS followed by n-1 token ids drawn from the non-special part of the vocabulary."""
    rng = np.random.default_rng(seed)
    return [BOS_ID] + [int(t) for t in rng.integers(N_SPECIAL, vocab_size, n - 1)]


def rel_err_rows(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per row: max |got - ref| / max |ref|."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    return np.abs(got - ref).max(axis=-1) / np.abs(ref).max(axis=-1)


def cosine_rows(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    return (got * ref).sum(-1) / (np.linalg.norm(got, axis=-1) * np.linalg.norm(ref, axis=-1))


def decisive_rows(ref: np.ndarray, frac: float = 0.02) -> np.ndarray:
    """Rows whose top-2 gap exceeds `frac` of the row's logit range: there the greedy token
    must not depend on rounding."""
    ref = np.asarray(ref, dtype=np.float64)
    top2 = np.sort(ref, axis=-1)[:, -2:]
    return (top2[:, 1] - top2[:, 0]) > frac * (ref.max(-1) - ref.min(-1))


def decode_mixed(lib, ctx, seqs: Sequence[Sequence[int]], n_vocab: int,
                 pos0: Sequence[int] | None = None) -> list[np.ndarray]:
    """Decodes the token lists `seqs` (sequence s gets seqs[s]) in one batch, interleaved token
    by token; returns each sequence's logits rows [len(seqs[s]), n_vocab]."""
    pos0 = list(pos0) if pos0 is not None else [0] * len(seqs)
    batch = lib.Batch(sum(len(t) for t in seqs), 1)
    where = []
    for i in range(max(len(t) for t in seqs)):
        for s, toks in enumerate(seqs):
            if i < len(toks):
                where.append((s, i))
                batch.add(toks[i], pos0[s] + i, s, True)
    ctx.decode(batch)
    out = [np.zeros((len(t), n_vocab)) for t in seqs]
    for j, (s, i) in enumerate(where):
        out[s][i] = ctx.logits(j)
    return out


def run_mixed(lib, path, seqs: Sequence[Sequence[int]], n_gen: int, *, n_ubatch: int = 512,
              n_threads: int = 2, **ctx_kw: Any) -> tuple[list[list[int]], list[np.ndarray]]:
    """Prompts of every sequence in one batch (decode_mixed), then n_gen greedy tokens per
    sequence, one batch per step, in a context of n_seq_max = len(seqs) (ctx_kw: more Context
    arguments). Returns (tokens per sequence, logits per sequence)."""
    ctx_kw.setdefault("n_ctx", 2048)
    with lib.Model(str(path)) as model, lib.Context(
        model, n_batch=2048, n_ubatch=n_ubatch, n_seq_max=len(seqs), n_threads=n_threads,
        **ctx_kw
    ) as ctx:
        rows = decode_mixed(lib, ctx, seqs, model.n_vocab)
        tokens = [list(t) for t in seqs]
        for _ in range(n_gen):
            nxt = [[int(np.argmax(r[-1]))] for r in rows]
            step = decode_mixed(lib, ctx, nxt, model.n_vocab, [len(t) for t in tokens])
            for s in range(len(seqs)):
                tokens[s] += nxt[s]
                rows[s] = np.concatenate([rows[s], step[s]])
        return tokens, rows
