"""Granite 4 hybrids (granitehybrid: Mamba2 and attention layers, top-k MoE plus a shared
expert, Granite's embedding / residual / attention / logit multipliers) end to end against
transformers' GraniteMoeHybridForCausalLM.

The models (modelgen_granite.py): hidden 64, 6 layers (attention at 1 and 4, Mamba2 elsewhere),
4 heads of 16 with 2 KV heads, Mamba2 with 8 heads of 16 in 2 groups, d_state 16, d_conv 4,
expand 2, 4 experts of 64 (2 used) plus a shared expert of 96 on every layer, vocab 512. Two
variants: "nope" (position_embedding_type none, rope.scaling.finetuned false, as Granite 4.0-H;
multipliers embedding 6, residual 0.5, attention 1/8, logits / 4) and "rope" (RoPE on the
attention layers, q/k rows permuted for llama.cpp's interleaved RoPE; multipliers 12, 0.25,
1/16, / 8). A third, "dense" (num_local_experts 0: the shared MLP is the feed-forward, of
intermediate_size == shared_intermediate_size as llama.cpp requires; attention first), is
checked on f32 only. The weights are scaled against the multipliers, so
ignoring or misplacing any one of them moves logits by several percent (a 10% change of a
multiplier: 3-15%).

Routing is decisive by construction: the k-th and (k+1)-th router logits are >= 3 apart on
every prompt used here (checked below against MIN_ROUTER_MARGIN = 1; f32 rounding moves router
logits by ~1e-5, 8-bit activations by ~0.1), so the engine and the float64 reference always
pick the same experts.

Every row of logits is compared with transformers (float64, the weights as stored in the file,
dequantized) run over each sequence alone. Bounds: F32 file with an F32 KV cache:
max|diff| / max|ref| <= 1e-4 per row (llama.cpp on the same files, F32 cache: 7e-7). Quantized
files (Q8_0 / Q4_0): cosine >= 0.995 per row and the same greedy token wherever the
reference's top-2 gap exceeds 2% of the row's logit range.

Memory: a KV cache for the attention layers and recurrent state for the Mamba2 layers, acting
as one: state save/restore covers both and continues bit-identically; with snapshots a tail
seq_rm rolls both back to the same position; a partial seq_rm the recurrent part cannot do
raises CannotRewindError and changes neither.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import modelgen as mg
import numpy as np
import pytest
from modelgen import run_mixed

N_PROMPT = 256
N_SEQ = 4
N_GEN = 8
F32_REL = 1e-4
MIN_COS = 0.995
MIN_ROUTER_MARGIN = 1.0
F32_KV = {"type_k": "f32", "type_v": "f32"}

# variant -> (seed, make_granite keyword arguments)
VARIANTS: dict[str, tuple[int, dict[str, Any]]] = {
    "nope": (7, {"rope": False}),
    "rope": (8, {"rope": True}),
    "dense": (9, {"rope": False, "num_local_experts": 0, "num_experts_per_tok": 0,
                  "intermediate_size": 96,
                  "layer_types": ["attention", "mamba", "mamba", "attention", "mamba", "mamba"]}),
}

Case = tuple[str, Any, Any]    # (GGUF path, float32 HF model, float64 reference of the file)
_CACHE: dict[Any, Any] = {}


@pytest.fixture(scope="module")
def granite_factory(tmp_path_factory) -> Callable[..., Case]:
    import modelgen_granite as mgr

    root = tmp_path_factory.mktemp("granite")

    def make(variant: str = "nope", wtype: str = "f32") -> Case:
        key = (variant, wtype)
        if key not in _CACHE:
            if (variant, "hf") not in _CACHE:
                seed, kw = VARIANTS[variant]
                _CACHE[(variant, "hf")] = mgr.make_granite(seed=seed, **kw)
            hf = _CACHE[(variant, "hf")]
            path = mgr.write_gguf_granite(hf, root / f"granite-{variant}-{wtype}.gguf", wtype)
            _CACHE[key] = (str(path), hf, mgr.reference_granite(hf, path))
        return _CACHE[key]

    yield make
    _CACHE.clear()


def prompts(n_seq: int = N_SEQ, n: int = N_PROMPT, seed: int = 100) -> list[list[int]]:
    return [mg.random_prompt(n, seed=seed + s) for s in range(n_seq)]


def check_rows(got: np.ndarray, ref: np.ndarray,
               rel_bound: float | None = None) -> tuple[float, float]:
    rel = mg.rel_err_rows(got, ref)
    cos = mg.cosine_rows(got, ref)
    mismatch = np.nonzero(mg.decisive_rows(ref) & (got.argmax(-1) != ref.argmax(-1)))[0]
    if rel_bound is not None:
        assert rel.max() <= rel_bound, f"max rel {rel.max():.3e} at row {int(rel.argmax())}"
    assert cos.min() >= MIN_COS, f"min cosine {cos.min():.6f} at row {int(cos.argmin())}"
    assert len(mismatch) == 0, f"greedy mismatches at rows {mismatch.tolist()[:10]}"
    return float(rel.max()), float(cos.min())


def next_logits(ctx, tokens: Sequence[int], seq: int = 0) -> np.ndarray:
    ctx.decode_tokens(list(tokens), seq_id=seq, logits="last")
    return np.array(ctx.logits(-1), copy=True)


def close_to_ref(got: np.ndarray, ref, tokens: Sequence[int], n_last: int = 1) -> float:
    want = mg.hf_logits(ref, tokens)[-n_last:]
    rel = mg.rel_err_rows(np.atleast_2d(got), want)
    assert rel.max() <= F32_REL, f"max rel {rel.max():.3e}"
    return float(rel.max())


def _ctx(lib, model, n_seq_max: int = 3, **kw: Any):
    return lib.Context(model, n_ctx=512, n_batch=512, n_ubatch=512, n_seq_max=n_seq_max,
                       n_threads=2, **F32_KV, **kw)


# ---------------------------------------------------------------------------------------------
# the generator (needs no engine)
# ---------------------------------------------------------------------------------------------


def _field(reader, key: str):
    import gguf

    f = reader.fields[key]
    if f.types[0] == gguf.GGUFValueType.ARRAY:
        return [f.parts[i][0].item() for i in f.data]
    v = f.parts[f.data[0]]
    return v.tobytes().decode() if f.types[0] == gguf.GGUFValueType.STRING else v[0].item()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_modelgen_granite_file(granite_factory, variant):
    """The f32 file's reference equals the original model; the file has llama.cpp's layout
    (keys, per-layer head_count_kv, per-kind tensors, expert stacks, shared expert); logits
    are spread out."""
    import gguf
    import modelgen_granite as mgr

    path, hf, ref = granite_factory(variant)
    c = hf.config
    toks = mg.random_prompt(64, seed=3)
    r = mg.hf_logits(ref, toks)
    assert mg.rel_err_rows(mg.hf_logits(hf, toks), r).max() < 1e-5
    assert mg.decisive_rows(r).mean() > 0.4

    reader = gguf.GGUFReader(path)
    a = "granitehybrid."
    assert _field(reader, "general.architecture") == "granitehybrid"
    attn, mamba = mgr.attention_layers(c), mgr.mamba_layers(c)
    assert len(attn) >= 2 and mamba
    assert _field(reader, a + "attention.head_count_kv") == [
        c.num_key_value_heads if i in attn else 0 for i in range(c.num_hidden_layers)]
    assert bool(_field(reader, a + "rope.scaling.finetuned")) == (variant == "rope")
    assert _field(reader, a + "ssm.time_step_rank") == c.mamba_n_heads
    assert _field(reader, a + "ssm.group_count") == c.mamba_n_groups
    assert _field(reader, a + "ssm.inner_size") == c.mamba_expand * c.hidden_size
    for key, want in (("attention.scale", c.attention_multiplier),
                      ("embedding_scale", c.embedding_multiplier),
                      ("residual_scale", c.residual_multiplier),
                      ("logit_scale", c.logits_scaling)):
        assert _field(reader, a + key) == pytest.approx(want), key
        assert want != 1.0, key
    assert _field(reader, a + "expert_count") == c.num_local_experts

    shapes = {t.name: tuple(int(x) for x in reversed(list(t.shape))) for t in reader.tensors}
    d, ff, n_exp, sh = c.hidden_size, c.intermediate_size, c.num_local_experts, \
        c.shared_intermediate_size
    d_inner = c.mamba_expand * d
    conv_ch = d_inner + 2 * c.mamba_n_groups * c.mamba_d_state
    hd = d // c.num_attention_heads
    for i in range(c.num_hidden_layers):
        p = f"blk.{i}."
        assert p + "attn_norm.weight" in shapes and p + "ffn_norm.weight" in shapes
        assert (p + "attn_q.weight" in shapes) == (i in attn)
        assert (p + "ssm_in.weight" in shapes) == (i in mamba)
        if i in attn:
            assert shapes[p + "attn_k.weight"] == (c.num_key_value_heads * hd, d)
        else:
            assert shapes[p + "ssm_in.weight"] == (d_inner + conv_ch + c.mamba_n_heads, d)
            assert shapes[p + "ssm_conv1d.weight"] == (conv_ch, c.mamba_d_conv)
            assert shapes[p + "ssm_a"] == (c.mamba_n_heads, 1)
            assert shapes[p + "ssm_d"] == (c.mamba_n_heads, 1)
            assert shapes[p + "ssm_dt.bias"] == (c.mamba_n_heads,)
            assert shapes[p + "ssm_norm.weight"] == (c.mamba_n_groups,
                                                     d_inner // c.mamba_n_groups)
        if n_exp:
            assert shapes[p + "ffn_gate_inp.weight"] == (n_exp, d)
            assert shapes[p + "ffn_gate_exps.weight"] == (n_exp, ff, d)
            assert shapes[p + "ffn_up_exps.weight"] == (n_exp, ff, d)
            assert shapes[p + "ffn_down_exps.weight"] == (n_exp, d, ff)
            assert shapes[p + "ffn_gate_shexp.weight"] == (sh, d)
            assert shapes[p + "ffn_up_shexp.weight"] == (sh, d)
            assert shapes[p + "ffn_down_shexp.weight"] == (d, sh)
            assert p + "ffn_gate.weight" not in shapes
        else:
            assert shapes[p + "ffn_gate.weight"] == (sh, d)
            assert shapes[p + "ffn_up.weight"] == (sh, d)
            assert shapes[p + "ffn_down.weight"] == (d, sh)
            assert p + "ffn_gate_inp.weight" not in shapes


def test_modelgen_granite_quantized_types(granite_factory):
    import gguf
    from gguf import GGMLQuantizationType as QT

    path, _, _ = granite_factory("nope", "q8_0")
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(path).tensors}
    for name in ("blk.1.ffn_gate_exps.weight", "blk.1.ffn_down_exps.weight",
                 "blk.1.ffn_gate_shexp.weight", "blk.1.ffn_down_shexp.weight",
                 "blk.1.attn_q.weight", "blk.0.ssm_in.weight", "blk.0.ssm_out.weight",
                 "token_embd.weight", "output.weight"):
        assert types[name] == QT.Q8_0, name
    for name in ("blk.1.ffn_gate_inp.weight", "blk.0.ssm_conv1d.weight", "blk.0.ssm_a",
                 "blk.0.ssm_d", "blk.0.ssm_dt.bias", "blk.0.ssm_norm.weight",
                 "blk.0.attn_norm.weight"):
        assert types[name] == QT.F32, name


@pytest.mark.parametrize("variant", ["nope", "rope"])
def test_routing_margins_are_decisive(granite_factory, record_error, variant):
    """On every prompt the engine tests use, the k-th and (k+1)-th router logits are at least
    MIN_ROUTER_MARGIN apart: no rounding or 8-bit activation error can flip an expert."""
    import modelgen_granite as mgr

    _, _, ref = granite_factory(variant)
    pool = prompts() + [mg.random_prompt(140, seed=900), mg.random_prompt(60, seed=500)]
    worst = min(float(mgr.router_margins(ref, p).min()) for p in pool)
    record_error(f"granite/{variant} min router margin (k-th - (k+1)-th logit) {worst:.2f}")
    assert worst >= MIN_ROUTER_MARGIN, worst


# llama.cpp (llama-cpp-python in another interpreter, where present) reads the same file and
# agrees with transformers: the layout is llama.cpp's, not only libllm's reading of it.
LLAMACPP_PYTHON = Path(os.environ.get("LLAMACPP_PYTHON", "/opt/anchor/venv/bin/python"))
_LLAMACPP_SCRIPT = """
import json, sys, numpy as np, llama_cpp
path, toks, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
llm = llama_cpp.Llama(model_path=path, logits_all=True, n_ctx=512, verbose=False,
                      type_k=0, type_v=0)  # F32 K and V
llm.eval(toks)
np.save(out, np.array(llm.scores[:len(toks)], dtype=np.float64))
"""


@pytest.mark.skipif(not LLAMACPP_PYTHON.exists(), reason="no llama-cpp-python interpreter")
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_llama_cpp_reads_the_file_like_transformers(granite_factory, record_error, tmp_path,
                                                    variant):
    path, _, ref = granite_factory(variant)
    toks = mg.random_prompt(N_PROMPT, seed=42)
    out = tmp_path / "logits.npy"
    run = subprocess.run([str(LLAMACPP_PYTHON), "-c", _LLAMACPP_SCRIPT, path, json.dumps(toks),
                          str(out)], check=False, capture_output=True, text=True,
                         timeout=300)
    if run.returncode != 0 and "No module named 'llama_cpp'" in run.stderr:
        pytest.skip("llama_cpp is not installed in " + str(LLAMACPP_PYTHON))
    assert run.returncode == 0, run.stderr[-2000:]
    rel = mg.rel_err_rows(np.load(out), mg.hf_logits(ref, toks)).max()
    record_error(f"granite-{variant}/f32 llama.cpp vs transformers: max rel {rel:.2e}")
    assert rel <= F32_REL


# ---------------------------------------------------------------------------------------------
# engine vs transformers
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_prompt_one_batch_and_token_by_token(lib, granite_factory, record_error, variant):
    """One 256-token prompt: decoded in one batch, and one token per decode; every row
    within 1e-4 of transformers."""
    path, _, ref = granite_factory(variant)
    prompt = mg.random_prompt(N_PROMPT, seed=42)
    want = mg.hf_logits(ref, prompt)
    with lib.Model(path) as model:
        with _ctx(lib, model, 1) as ctx:
            ctx.decode_tokens(prompt, seq_id=0, logits="all")
            batch_rows = np.array(ctx.all_logits(), dtype=np.float64)
        with lib.Context(model, n_ctx=512, n_batch=1, n_ubatch=1, n_threads=2,
                         **F32_KV) as ctx:
            step_rows = np.zeros_like(batch_rows)
            for i, t in enumerate(prompt):
                ctx.decode_tokens([t], pos0=i, seq_id=0, logits="last")
                step_rows[i] = ctx.logits(-1)
    assert batch_rows.shape == want.shape
    rel_b, _ = check_rows(batch_rows, want, F32_REL)
    rel_s, _ = check_rows(step_rows, want, F32_REL)
    record_error(f"granite-{variant}/f32 {N_PROMPT} one batch: max rel {rel_b:.2e}; "
                 f"token by token: {rel_s:.2e}")


@pytest.mark.parametrize("variant", ["nope", "rope"])
@pytest.mark.parametrize("wtype", ["f32", "q8_0", "q4_0"])
def test_mixed_batch_matches_transformers(lib, granite_factory, record_error, variant, wtype):
    """Four 256-token prompts interleaved in ONE batch, then greedy steps for all four."""
    path, _, ref = granite_factory(variant, wtype)
    kv = F32_KV if wtype == "f32" else {}
    tokens, got = run_mixed(lib, path, prompts(), N_GEN, **kv)
    worst_rel, worst_cos = 0.0, 1.0
    for s in range(N_SEQ):
        assert got[s].shape[0] == N_PROMPT + N_GEN
        assert np.isfinite(got[s]).all()
        rel, cos = check_rows(got[s], mg.hf_logits(ref, tokens[s]),
                              F32_REL if wtype == "f32" else None)
        worst_rel, worst_cos = max(worst_rel, rel), min(worst_cos, cos)
    record_error(f"granite-{variant}/{wtype} 4x{N_PROMPT} mixed + {N_GEN} steps: "
                 f"max rel {worst_rel:.2e} min cos {worst_cos:.6f}")


def test_uneven_sequences_and_small_ubatches(lib, granite_factory):
    """Sequences of 256, 5, 131 and 64 tokens interleaved in one batch, micro-batches of 37
    tokens, one thread: every row matches each sequence run alone."""
    path, _, ref = granite_factory("rope")
    seqs = [p[:n] for p, n in zip(prompts(seed=200), (256, 5, 131, 64))]
    tokens, got = run_mixed(lib, path, seqs, 3, n_ubatch=37, n_threads=1, **F32_KV)
    for s in range(len(seqs)):
        assert got[s].shape[0] == len(seqs[s]) + 3
        check_rows(got[s], mg.hf_logits(ref, tokens[s]), F32_REL)


# ---------------------------------------------------------------------------------------------
# state save / restore
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["nope", "rope"])
def test_state_save_restore_bit_identical(lib, granite_factory, variant):
    """The whole context (two sequences) and one sequence restored into FRESH contexts with
    the same cell layout, and in place after decoding past the save, continue bit-identically;
    the continuation matches transformers."""
    path, _, ref = granite_factory(variant)
    p0, p2 = mg.random_prompt(45, seed=700), mg.random_prompt(20, seed=701)
    cont = mg.random_prompt(6, seed=702)[1:]
    with lib.Model(path) as model:
        with _ctx(lib, model) as a:
            a.decode_tokens(p0, seq_id=0)
            a.decode_tokens(p2, seq_id=2)
            whole = a.save_state()
            seq0 = a.save_seq(0)
            want0 = next_logits(a, cont, 0)
            want2 = next_logits(a, cont, 2)
        close_to_ref(want0, ref, p0 + cont)
        close_to_ref(want2, ref, p2 + cont)

        with _ctx(lib, model) as b:              # the whole state
            b.load_state(whole)
            assert (b.seq_pos_min(0), b.seq_pos_max(0)) == (0, 44)
            assert (b.seq_pos_min(2), b.seq_pos_max(2)) == (0, 19)
            assert b.seq_pos_max(1) == -1
            assert np.array_equal(next_logits(b, cont, 0), want0)
            assert np.array_equal(next_logits(b, cont, 2), want2)

        with _ctx(lib, model) as c:              # one sequence, into another id
            c.load_seq(seq0, 1)
            assert (c.seq_pos_min(1), c.seq_pos_max(1)) == (0, 44)
            assert c.seq_pos_max(0) == -1
            c.decode_tokens(p2, seq_id=2)
            assert np.array_equal(next_logits(c, cont, 1), want0)

        with _ctx(lib, model) as d:              # in place, after decoding past it
            d.decode_tokens(p0, seq_id=0)
            d.decode_tokens(p2, seq_id=2)
            saved = d.save_state()
            next_logits(d, cont, 0)
            next_logits(d, mg.random_prompt(9, seed=703)[1:], 0)
            d.load_state(saved)
            assert d.seq_pos_max(0) == 44
            assert np.array_equal(next_logits(d, cont, 0), want0)
            assert np.array_equal(next_logits(d, cont, 2), want2)

        with _ctx(lib, model) as e:              # bad bytes fail cleanly and change nothing
            e.load_state(whole)
            bad = bytearray(whole)
            bad[len(whole) // 2] ^= 0xFF
            for data in (bytes(bad), whole[:-3], whole[:50], seq0):
                with pytest.raises(lib.FormatError):
                    e.load_state(data)
                assert e.save_state() == whole
            assert np.array_equal(next_logits(e, cont, 0), want0)


# ---------------------------------------------------------------------------------------------
# memory breakdown
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cache_type,cache_bytes", [("f16", 2), ("f32", 4)])
def test_memory_breakdown_reports_kv_and_recurrent_bytes(lib, granite_factory, cache_type,
                                                         cache_bytes):
    """K and V: n_ctx * attention layers * KV heads * head_dim elements each; recurrent: per
    sequence and Mamba2 layer, the conv state ((d_conv - 1) * (d_inner + 2 groups d_state))
    and the SSM state (d_inner * d_state), in f32."""
    import modelgen_granite as mgr

    path, hf, _ = granite_factory("nope")
    c = hf.config
    n_ctx, n_seq = 256, 3
    head_dim = c.hidden_size // c.num_attention_heads
    n_attn, n_mamba = len(mgr.attention_layers(c)), len(mgr.mamba_layers(c))
    d_inner = c.mamba_expand * c.hidden_size
    conv_ch = d_inner + 2 * c.mamba_n_groups * c.mamba_d_state
    kv_bytes = n_ctx * n_attn * c.num_key_value_heads * head_dim * cache_bytes
    recurrent = n_seq * n_mamba * ((c.mamba_d_conv - 1) * conv_ch
                                   + d_inner * c.mamba_d_state) * 4
    params = {"n_ctx": n_ctx, "n_seq_max": n_seq, "n_batch": 256, "n_ubatch": 64,
              "n_threads": 2, "type_k": cache_type, "type_v": cache_type}
    with lib.Model(path) as model, lib.Context(model, **params) as ctx:
        assert ctx.n_ctx == n_ctx
        live = ctx.memory_breakdown()
        assert live["k"] == kv_bytes and live["v"] == kv_bytes
        assert live["recurrent"] == recurrent
        assert lib.Context.estimate_memory(model, **params) == live
        for _ in range(3):
            ctx.decode_tokens([1, 2, 3], seq_id=0)
        assert ctx.stats()["n_alloc_decode"] == 0
        after = ctx.memory_breakdown()
        assert (after["k"], after["v"], after["recurrent"]) == (kv_bytes, kv_bytes, recurrent)


# ---------------------------------------------------------------------------------------------
# rewinding with snapshots: both memories cut at the same position
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["nope", "rope"])
def test_snapshot_rewind_cuts_kv_and_state_together(lib, granite_factory, variant):
    """snapshot_interval=16: after 120 tokens, seq_rm(0, 70, -1) rolls the recurrent state
    back to its snapshot after position 63 and must cut the KV cache at the same place
    (seq_pos_max reports 63 for both). Decoding tokens 64..70 again then gives transformers'
    logits on tokens[:71]: stale keys of positions 64..119 left in the cache, or keys cut at
    70 while the state is at 63, would change them."""
    path, _, ref = granite_factory(variant)
    toks = mg.random_prompt(130, seed=910)
    with lib.Model(path) as model, _ctx(lib, model, 2, snapshot_interval=16) as ctx:
        ctx.decode_tokens(toks[:120], seq_id=0)
        assert ctx.seq_pos_max(0) == 119
        ctx.seq_rm(0, 70, -1)
        assert (ctx.seq_pos_min(0), ctx.seq_pos_max(0)) == (0, 63)
        got = next_logits(ctx, toks[64:71])
        close_to_ref(got, ref, toks[:71])
        with _ctx(lib, model, 2) as fresh:
            same = next_logits(fresh, toks[:71])
        np.testing.assert_allclose(got, same, rtol=0, atol=1e-5 * np.abs(same).max())
        # and the sequence goes on as if it had never been longer
        close_to_ref(next_logits(ctx, toks[71:80]), ref, toks[:80])


@pytest.mark.parametrize("variant", ["nope", "rope"])
def test_refused_seq_rm_changes_nothing(lib, granite_factory, variant):
    """With snapshots, a seq_rm that is not a tail (10, 20), or a tail with no snapshot before
    it (from 10: the first snapshot is after 15), raises CannotRewindError; the context (KV
    and recurrent parts, snapshots) is as before: the same state bytes, and the next decode
    gives bit for bit the logits of a context that never saw the failed calls."""
    path, _, ref = granite_factory(variant)
    toks = mg.random_prompt(60, seed=920)
    tail = mg.random_prompt(8, seed=921)[1:]
    with lib.Model(path) as model:
        with _ctx(lib, model, 2, snapshot_interval=16) as plain:
            plain.decode_tokens(toks, seq_id=0)
            want = next_logits(plain, tail)
            plain.seq_rm(0, 40, -1)
            want_end = plain.seq_pos_max(0)
            want_after = next_logits(plain, toks[want_end + 1:50])
        close_to_ref(want, ref, toks + tail)
        with _ctx(lib, model, 2, snapshot_interval=16) as ctx:
            ctx.decode_tokens(toks, seq_id=0)
            before = ctx.save_state()
            for p0, p1 in ((10, 20), (10, -1), (0, 30), (20, 40)):
                with pytest.raises(lib.CannotRewindError):
                    ctx.seq_rm(0, p0, p1)
                assert (ctx.seq_pos_min(0), ctx.seq_pos_max(0)) == (0, 59)
                assert ctx.save_state() == before
            ctx.seq_rm(0, 60, -1)      # past the end: nothing to do
            assert ctx.save_state() == before
            assert np.array_equal(next_logits(ctx, tail), want)
            # the snapshots survived the refused calls: the same rollback as in `plain`
            ctx.seq_rm(0, 40, -1)
            assert ctx.seq_pos_max(0) == want_end == 31
            assert np.array_equal(next_logits(ctx, toks[want_end + 1:50]), want_after)
        close_to_ref(want_after, ref, toks[:50])


def test_partial_seq_rm_without_snapshots_is_refused(lib, granite_factory):
    """Without snapshots no partial seq_rm is possible; whole-sequence removal clears both
    parts (a new sequence from position 0 sees neither old keys nor old state)."""
    path, _, ref = granite_factory("rope")
    p = mg.random_prompt(60, seed=500)
    with lib.Model(path) as model, _ctx(lib, model, 2) as ctx:
        ctx.decode_tokens(p, seq_id=0)
        before = ctx.save_state()
        for p0, p1 in ((10, -1), (59, -1), (20, 40)):
            with pytest.raises(lib.CannotRewindError):
                ctx.seq_rm(0, p0, p1)
            assert ctx.save_state() == before
        ctx.seq_rm(0, -1, -1)
        assert ctx.seq_pos_max(0) == -1
        q = mg.random_prompt(40, seed=602)
        ctx.decode_tokens(q, pos0=0, seq_id=0, logits="all")
        got = np.array(ctx.all_logits(), dtype=np.float64)
        assert mg.rel_err_rows(got, mg.hf_logits(ref, q)).max() <= F32_REL
