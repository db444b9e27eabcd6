"""Q4_1 / Q5_0 / Q5_1 and the K-quants (Q4_K, Q5_K, Q6_K) through the public ABI.

  * Dequantization: every tensor of a generated llama file whose matrices use these types is
    read back with Model.tensor (llm_model_tensor_to_f32) and must equal gguf.quants.dequantize
    bit for bit. Q4_1 / Q5_0 / Q5_1 tensors come from gguf.quants.quantize; gguf.quants has no
    K-quant quantizer, so K-quant tensors are quantized by the small quantizer below (valid
    blocks, not llama.cpp's search) and, for the odd corners, filled with random bytes (any
    byte is a valid packed value or scale) with finite f16 super-block scales.
  * End to end: a llama model with hidden 256 / intermediate 512 (rows are multiples of the
    256-value super-block) written with a Q4_K_M-like mix of Q4_K, Q5_K and Q6_K, against
    transformers (float64) on the dequantized weights: cosine >= 0.995 at every position and the
    same greedy token wherever the reference's top-2 gap exceeds 2% of its logit range.
  * The llama.cpp-made /opt/anchor/models/small-q4_k_m.gguf, where present, loads and
    generates.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
torch = pytest.importorskip("torch")
mg = pytest.importorskip("modelgen")

QT = gguf.GGMLQuantizationType
QK_K = 256
ANCHOR = Path("/opt/anchor/models/small-q4_k_m.gguf")

SHAPE = {
    "vocab_size": 512,
    "hidden_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 512,
}


# ---------------------------------------------------------------------------------------------
# a simple K-quant quantizer (numpy), for test data only
# ---------------------------------------------------------------------------------------------


def _pack_scale_min(sc: np.ndarray, m: np.ndarray) -> np.ndarray:
    """[n, 8] 6-bit scales and minimums -> [n, 12] bytes (the inverse of kq_scale_min)."""
    sc = sc.astype(np.uint8)
    m = m.astype(np.uint8)
    out = np.zeros((sc.shape[0], 12), dtype=np.uint8)
    out[:, 0:4] = (sc[:, 0:4] & 63) | ((sc[:, 4:8] >> 4) << 6)
    out[:, 4:8] = (m[:, 0:4] & 63) | ((m[:, 4:8] >> 4) << 6)
    out[:, 8:12] = (sc[:, 4:8] & 15) | ((m[:, 4:8] & 15) << 4)
    return out


def _f16_bytes(v: np.ndarray) -> np.ndarray:
    return v.astype(np.float16).reshape(-1, 1).view(np.uint8)


def quantize_k(x: np.ndarray, qtype) -> np.ndarray:
    """Rows of x (length a multiple of 256) as Q4_K / Q5_K / Q6_K bytes [rows, bytes]."""
    rows, n = x.shape
    b = x.reshape(-1, QK_K).astype(np.float32)
    nb = b.shape[0]
    if qtype == QT.Q6_K:
        g = b.reshape(nb, 16, 16)
        gmax = np.take_along_axis(g, np.abs(g).argmax(-1)[..., None], -1)[..., 0]
        scale = gmax / -32.0  # the largest value lands on q = 0
        d = np.abs(scale).max(-1) / 127.0
        d16 = d.astype(np.float16).astype(np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            sc = np.where(d16[:, None] > 0, np.round(scale / d16[:, None]), 0).clip(-128, 127)
            step = d16[:, None, None] * sc[..., None]
            q = np.where(step != 0, np.round(g / step), 0) + 32
        q = q.clip(0, 63).astype(np.uint8).reshape(nb, 2, 4, 32)  # [h, k, l]
        ql = np.zeros((nb, 2, 64), dtype=np.uint8)
        ql[:, :, :32] = (q[:, :, 0] & 15) | ((q[:, :, 2] & 15) << 4)
        ql[:, :, 32:] = (q[:, :, 1] & 15) | ((q[:, :, 3] & 15) << 4)
        qh = (q[:, :, 0] >> 4) | ((q[:, :, 1] >> 4) << 2) | ((q[:, :, 2] >> 4) << 4) | ((q[:, :, 3] >> 4) << 6)
        out = np.concatenate(
            [ql.reshape(nb, 128), qh.reshape(nb, 64), sc.astype(np.int8).view(np.uint8), _f16_bytes(d)],
            axis=-1,
        )
        return out.reshape(rows, -1)
    qmax = 15 if qtype == QT.Q4_K else 31
    s = b.reshape(nb, 8, 32)
    mn = np.minimum(s.min(-1), 0.0)
    scale = (s.max(-1) - mn) / qmax
    d = scale.max(-1) / 63.0
    dmin = (-mn).max(-1) / 63.0
    d16 = d.astype(np.float16).astype(np.float32)
    dmin16 = dmin.astype(np.float16).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(d16[:, None] > 0, np.round(scale / d16[:, None]), 0).clip(0, 63)
        m = np.where(dmin16[:, None] > 0, np.round(-mn / dmin16[:, None]), 0).clip(0, 63)
        step = d16[:, None, None] * sc[..., None]
        q = np.where(step != 0, np.round((s + (dmin16[:, None] * m)[..., None]) / step), 0)
    q = q.clip(0, qmax).astype(np.uint8)  # [nb, 8 sub-blocks, 32]
    qs = (q[:, 0::2] & 15) | ((q[:, 1::2] & 15) << 4)  # [nb, 4, 32]
    parts = [_f16_bytes(d), _f16_bytes(dmin), _pack_scale_min(sc, m)]
    if qtype == QT.Q5_K:
        bits = (q >> 4) & 1  # [nb, 8, 32]: bit j of qh[l]
        qh = np.zeros((nb, 32), dtype=np.uint8)
        for j in range(8):
            qh |= bits[:, j] << j
        parts.append(qh)
    parts.append(qs.reshape(nb, 128))
    return np.concatenate(parts, axis=-1).reshape(rows, -1)


def random_k_blocks(rng, rows: int, n: int, qtype) -> np.ndarray:
    """Random bytes as K-quant rows, with finite random f16 super-block scales."""
    bs = gguf.GGML_QUANT_SIZES[qtype][1]
    nb = rows * n // QK_K
    raw = rng.integers(0, 256, size=(nb, bs), dtype=np.uint8)
    d = rng.uniform(-0.01, 0.01, size=nb)
    dmin = rng.uniform(-0.05, 0.05, size=nb)
    if qtype == QT.Q6_K:
        raw[:, bs - 2 :] = _f16_bytes(d)
    else:
        raw[:, 0:2] = _f16_bytes(d)
        raw[:, 2:4] = _f16_bytes(dmin)
    return raw.reshape(rows, -1)


def store(arr: np.ndarray, qtype):
    """(data, raw_dtype) for GGUFWriter.add_tensor."""
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if qtype in (QT.Q4_K, QT.Q5_K, QT.Q6_K):
        return quantize_k(arr, qtype), qtype
    return gguf.quants.quantize(arr, qtype), qtype


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------

# A Q4_K_M-like mix: attn_v, ffn_down and output in Q6_K, the embeddings in Q5_K
KMIX = {
    "attn_v": QT.Q6_K,
    "ffn_down": QT.Q6_K,
    "output.weight": QT.Q6_K,
    "token_embd": QT.Q5_K,
}
# every small type on some matrix, the K-quants on the rest
SMALLMIX = {
    "attn_q": QT.Q4_1,
    "attn_k": QT.Q5_0,
    "attn_v": QT.Q5_1,
    "attn_output": QT.Q6_K,
    "ffn_gate": QT.Q4_K,
    "ffn_up": QT.Q5_K,
    "ffn_down": QT.Q4_1,
    "token_embd": QT.Q5_0,
    "output.weight": QT.Q5_1,
}


def type_for(name: str, mix: dict, default=QT.Q4_K):
    for key, q in mix.items():
        if key in name:
            return q
    return default


def write_mixed(model, path: Path, mix: dict, extra: dict | None = None) -> Path:
    """The model as modelgen.write_gguf writes it, each 2-D matrix in type_for(name, mix);
    `extra` adds raw tensors {name: (bytes [rows, row_bytes], qtype)}."""
    c = model.config
    head_dim = c.hidden_size // c.num_attention_heads
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-kquant")
    w.add_vocab_size(c.vocab_size)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_layer_norm_rms_eps(float(c.rms_norm_eps))
    w.add_rope_freq_base(float(c.rope_parameters["rope_theta"]))
    w.add_rope_dimension_count(head_dim)
    mg.add_spm_vocab(w, c.vocab_size)
    for hf_name, arr in mg._hf_tensors(model):
        n_head = mg._qk_heads(c, hf_name)
        if n_head is not None:
            arr = mg.permute_qk(arr, n_head)
        name = mg.gguf_name(hf_name)
        if arr.ndim == 2:
            data, raw = store(arr, type_for(name, mix))
            w.add_tensor(name, data, raw_dtype=raw)
        else:
            w.add_tensor(name, np.ascontiguousarray(arr, dtype=np.float32))
    for name, (data, q) in (extra or {}).items():
        w.add_tensor(name, data, raw_dtype=q)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def reference_for(model, path: Path):
    """transformers (float64) with the weights dequantized from the file by gguf.quants."""
    c = model.config
    stored = mg.read_gguf_f32(path)
    ref = mg._model_from_config("llama", mg._config_like(model))
    state = {}
    for name in ref.state_dict():
        arr = stored[mg.gguf_name(name)]
        n_head = mg._qk_heads(c, name)
        if n_head is not None:
            arr = mg.unpermute_qk(arr, n_head)
        state[name] = torch.from_numpy(arr.copy())
    ref.load_state_dict(state, strict=True)
    ref = ref.to(torch.float64)
    ref.eval()
    ref.gguf_arch = "llama"
    return ref


@pytest.fixture(scope="module")
def hf_model():
    return mg.make_hf_model("llama", 2024, **SHAPE)


@pytest.fixture(scope="module")
def kmix_file(hf_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("kq") / "llama-kmix.gguf"
    return write_mixed(hf_model, path, KMIX)


# ---------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------


def test_quantizer_sanity():
    """The test quantizer makes blocks gguf.quants reads back close to the input."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 512)).astype(np.float32)
    for q, tol in ((QT.Q4_K, 0.2), (QT.Q5_K, 0.1), (QT.Q6_K, 0.05)):
        y = gguf.quants.dequantize(quantize_k(x, q), q).reshape(x.shape)
        assert np.abs(y - x).max() < tol * np.abs(x).max(), q.name


def test_dequantize_bit_exact(lib, hf_model, tmp_path):
    """Model.tensor equals gguf.quants.dequantize for every tensor, every type."""
    rng = np.random.default_rng(5)
    extra = {}
    for q in (QT.Q4_K, QT.Q5_K, QT.Q6_K):
        for rows, n in ((1, 256), (3, 768), (5, 1280)):
            extra[f"test.random_{q.name.lower()}_{rows}x{n}"] = (random_k_blocks(rng, rows, n, q), q)
    for q in (QT.Q4_1, QT.Q5_0, QT.Q5_1):
        x = (rng.standard_normal((7, 96)) * rng.uniform(0.1, 10)).astype(np.float32)
        extra[f"test.{q.name.lower()}_7x96"] = (gguf.quants.quantize(x, q), q)
    path = write_mixed(hf_model, tmp_path / "smallmix.gguf", SMALLMIX, extra)
    stored = mg.read_gguf_f32(path)
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(str(path)).tensors}
    seen = set()
    model = lib.Model(str(path))
    try:
        for name, want in stored.items():
            got = np.asarray(model.tensor(name), dtype=np.float32).reshape(want.shape)
            assert np.isfinite(want).all(), name
            np.testing.assert_array_equal(got, want, err_msg=f"{name} ({types[name].name})")
            seen.add(types[name])
    finally:
        model.close()
    for q in (QT.Q4_1, QT.Q5_0, QT.Q5_1, QT.Q4_K, QT.Q5_K, QT.Q6_K):
        assert q in seen, q.name


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_smallmix_model_runs(lib, hf_model, tmp_path, n_threads):
    """Q4_1 / Q5_0 / Q5_1 matrices (reference path) in a model agree with transformers."""
    from test_model_llama import compare, run_engine

    path = write_mixed(hf_model, tmp_path / "smallmix.gguf", SMALLMIX)
    ref = reference_for(hf_model, path)
    prompt = mg.random_prompt(12, seed=3, vocab_size=SHAPE["vocab_size"])
    tokens, got = run_engine(lib, str(path), prompt, 4, n_threads=n_threads)
    _, cos, mismatch = compare(got, mg.hf_logits(ref, tokens))
    assert cos.min() >= 0.995 and len(mismatch) == 0, (cos.min(), mismatch)


@pytest.mark.parametrize("layout", ["one", "chunks"])
@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_kquant_model_vs_transformers(lib, hf_model, kmix_file, record_error, n_threads, layout):
    """Q4_K / Q5_K / Q6_K kernels end to end: cosine and decisive greedy tokens."""
    from test_model_llama import compare, run_engine

    ref = reference_for(hf_model, kmix_file)
    prompt = mg.random_prompt(40, seed=11, vocab_size=SHAPE["vocab_size"])
    kw = {"chunk": 7, "n_ubatch": 16} if layout == "chunks" else {}
    tokens, got = run_engine(lib, str(kmix_file), prompt, 8, n_threads=n_threads, **kw)
    assert np.isfinite(got).all()
    want = mg.hf_logits(ref, tokens)
    rel, cos, mismatch = compare(got, want)
    record_error(
        f"llama/kmix threads={n_threads} {layout}: max rel {rel.max():.2e} "
        f"min cos {cos.min():.6f} greedy mismatches {len(mismatch)}"
    )
    assert mg.decisive_rows(want).mean() > 0.3
    assert cos.min() >= 0.995, f"min cosine {cos.min():.6f} at {int(cos.argmin())}"
    assert len(mismatch) == 0, f"greedy differs at decisive positions {mismatch.tolist()[:10]}"


@pytest.mark.skipif(not ANCHOR.exists(), reason="llama.cpp-made Q4_K_M file not present")
def test_llamacpp_q4_k_m_file_generates(lib):
    """A real Q4_K_M file (Q4_K + Q6_K) loads, and greedy decoding one token at a time gives
    the same logits as one batch over the same tokens (the tile and the streaming paths
    agree). The batch gets the stepped run's tokens: with random weights the greedy choice
    meets near-ties (0.06% of the logit range), where either path may pick the other token."""
    from test_model_llama import run_engine

    prompt = [1, 450, 4996, 17354, 1701, 432, 17204, 975, 278, 17366, 11203, 29889]
    tokens, stepped = run_engine(lib, str(ANCHOR), prompt, 6, chunk=1)
    _, batch = run_engine(lib, str(ANCHOR), tokens[:-1], 0)
    stepped = stepped[:-1]
    assert np.isfinite(batch).all()
    cos = mg.cosine_rows(stepped, batch)
    assert cos.min() > 0.999, cos.min()
    decisive = mg.decisive_rows(stepped)
    assert decisive.sum() >= 3
    assert (stepped.argmax(-1) == batch.argmax(-1))[decisive].all()
    assert os.path.getsize(ANCHOR) > 0
