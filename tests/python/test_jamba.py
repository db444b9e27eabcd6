"""Jamba (hybrid memory: a KV cache for the attention layers, recurrent state for the Mamba
layers; dense and top-k MoE feed-forwards) end to end against transformers.

The model (modelgen_jamba.py): hidden 64, 8 layers (attention at 1, 4, 7, Mamba elsewhere; MoE
at the odd layers, so every mixer/feed-forward combination occurs), 4 heads of 16 with 2 KV
heads, 4 experts of which 2 are used, d_state 16, d_conv 4, expand 2, dt_rank 8, vocab 512.
Routing is decisive by construction (router margins >= 3.8 logits on the test prompts, checked
below against a floor of 2; f32 rounding moves router logits by ~3e-6, 8-bit weights or
activations by ~0.1), so the engine and the float64 reference always pick the same experts.

Every row of logits is compared with transformers (float64, the weights as stored in the file,
dequantized) run over each sequence alone. Bounds: F32 file with an F32 KV cache:
max|diff| / max|ref| <= 1e-4 per row (llama.cpp on the same file: 3.4e-7); F32 file with the
default F16 cache: 2e-3 (as test_model_llama; llama.cpp: 2.4e-4). Other files: cosine >= 0.995
per row and the same greedy token wherever the reference's top-2 gap exceeds 2% of the row's
logit range (llama.cpp on the q8_0 / q4_0 files: cosine >= 0.99989, no greedy mismatch).

Memory semantics: both parts act as one. seq_cp and whole-sequence seq_rm act on both; a
partial seq_rm (or seq_cp) that the recurrent part cannot do raises CannotRewindError and
changes neither part; state save/restore covers both and continues bit-identically.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import modelgen as mg
import numpy as np
import pytest
from modelgen import run_mixed

N_PROMPT = 256
N_SEQ = 4
N_GEN = 8
F32_REL = 1e-4
KV_F16_REL = 2e-3
MIN_COS = 0.995
MIN_ROUTER_MARGIN = 2.0     # router logits; f32 rounding moves them by ~3e-6, 8-bit by ~0.1
SEED = 6
F32_KV = {"type_k": "f32", "type_v": "f32"}

Case = tuple[str, Any, Any]    # (GGUF path, float32 HF model, float64 reference of the file)
_CACHE: dict[Any, Any] = {}


@pytest.fixture(scope="module")
def jamba_factory(tmp_path_factory) -> Callable[[str], Case]:
    import modelgen_jamba as mj

    root = tmp_path_factory.mktemp("jamba")

    def make(wtype: str = "f32") -> Case:
        if wtype not in _CACHE:
            if "hf" not in _CACHE:
                _CACHE["hf"] = mj.make_jamba(seed=SEED)
            hf = _CACHE["hf"]
            path = mj.write_gguf_jamba(hf, root / f"jamba-{wtype}.gguf", wtype)
            _CACHE[wtype] = (str(path), hf, mj.reference_jamba(hf, path))
        return _CACHE[wtype]

    yield make
    _CACHE.clear()


def prompts(n_seq: int = N_SEQ, n: int = N_PROMPT, seed: int = 100) -> list[list[int]]:
    return [mg.random_prompt(n, seed=seed + s) for s in range(n_seq)]


def uneven_prompts() -> list[list[int]]:
    return [p[:n] for p, n in zip(prompts(seed=200), (256, 5, 131, 64))]


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


def next_logits(ctx, tokens: Sequence[int], seq: int) -> np.ndarray:
    ctx.decode_tokens(list(tokens), seq_id=seq, logits="last")
    return np.array(ctx.logits(-1), copy=True)


def close_to_ref(got: np.ndarray, ref, tokens: Sequence[int], n_last: int = 1) -> None:
    want = mg.hf_logits(ref, tokens)[-n_last:]
    rel = mg.rel_err_rows(np.atleast_2d(got), want)
    assert rel.max() <= F32_REL, f"max rel {rel.max():.3e}"


# ---------------------------------------------------------------------------------------------
# the generator (needs no engine)
# ---------------------------------------------------------------------------------------------


def test_modelgen_jamba_file(jamba_factory):
    """The f32 file's reference equals the original model; the file has llama.cpp's layout
    (per-layer head_count_kv, per-kind tensors, expert stacks); logits are spread out."""
    import gguf
    import modelgen_jamba as mj

    path, hf, ref = jamba_factory("f32")
    c = hf.config
    toks = mg.random_prompt(64, seed=3)
    r = mg.hf_logits(ref, toks)
    assert mg.rel_err_rows(mg.hf_logits(hf, toks), r).max() < 1e-5
    assert mg.decisive_rows(r).mean() > 0.4

    reader = gguf.GGUFReader(path)
    field = reader.fields["jamba.attention.head_count_kv"]
    kv = [int(field.parts[i][0]) for i in field.data]
    attn = mj.attention_layers(c)
    assert kv == [c.num_key_value_heads if i in attn else 0 for i in range(c.num_hidden_layers)]
    assert attn and mj.mamba_layers(c)
    moe = set(mj.moe_layers(c))
    assert moe & set(attn) and moe & set(mj.mamba_layers(c))
    assert set(range(c.num_hidden_layers)) - moe - set(attn)  # a Mamba layer with dense FFN

    shapes = {t.name: tuple(int(x) for x in reversed(list(t.shape))) for t in reader.tensors}
    d, ff, n_exp = c.hidden_size, c.intermediate_size, c.num_experts
    d_inner = c.mamba_expand * d
    for i in range(c.num_hidden_layers):
        p = f"blk.{i}."
        assert p + "attn_norm.weight" in shapes and p + "ffn_norm.weight" in shapes
        assert (p + "attn_q.weight" in shapes) == (i in attn)
        assert (p + "ssm_in.weight" in shapes) == (i not in attn)
        if i not in attn:
            assert shapes[p + "ssm_conv1d.weight"] == (d_inner, c.mamba_d_conv)
            assert shapes[p + "ssm_a"] == (d_inner, c.mamba_d_state)
            assert shapes[p + "ssm_dt_norm.weight"] == (c.mamba_dt_rank,)
            assert shapes[p + "ssm_b_norm.weight"] == (c.mamba_d_state,)
        if i in moe:
            assert shapes[p + "ffn_gate_inp.weight"] == (n_exp, d)
            assert shapes[p + "ffn_gate_exps.weight"] == (n_exp, ff, d)
            assert shapes[p + "ffn_up_exps.weight"] == (n_exp, ff, d)
            assert shapes[p + "ffn_down_exps.weight"] == (n_exp, d, ff)
            assert p + "ffn_gate.weight" not in shapes
        else:
            assert shapes[p + "ffn_gate.weight"] == (ff, d)
            assert p + "ffn_gate_inp.weight" not in shapes


def test_modelgen_jamba_quantized_types(jamba_factory):
    import gguf
    from gguf import GGMLQuantizationType as QT

    path, _, _ = jamba_factory("q8_0")
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(path).tensors}
    assert types["blk.1.ffn_gate_exps.weight"] == QT.Q8_0
    assert types["blk.1.ffn_down_exps.weight"] == QT.Q8_0
    assert types["blk.1.attn_q.weight"] == QT.Q8_0
    assert types["blk.0.ssm_in.weight"] == QT.Q8_0
    for name in ("blk.1.ffn_gate_inp.weight", "blk.0.ssm_conv1d.weight", "blk.0.ssm_a",
                 "blk.0.ssm_d", "blk.0.ssm_dt.weight", "blk.0.ssm_b_norm.weight"):
        assert types[name] == QT.F32, name


def test_routing_margins_are_decisive(jamba_factory):
    """On every prompt the engine tests use, the k-th and (k+1)-th router logits are at least
    MIN_ROUTER_MARGIN apart: no rounding or 8-bit activation error can flip an expert."""
    import modelgen_jamba as mj

    _, _, ref = jamba_factory("f32")
    pool = prompts() + uneven_prompts() + [mg.random_prompt(60, seed=500)]
    worst = min(float(mj.router_margins(ref, p).min()) for p in pool)
    assert worst >= MIN_ROUTER_MARGIN, worst


# ---------------------------------------------------------------------------------------------
# engine vs transformers
# ---------------------------------------------------------------------------------------------


def test_prompt_one_batch_and_token_by_token(lib, jamba_factory, record_error):
    """One 256-token prompt: decoded in one batch, and one token per decode; every row
    within 1e-4 of transformers, and both agree."""
    path, _, ref = jamba_factory("f32")
    prompt = mg.random_prompt(N_PROMPT, seed=42)
    want = mg.hf_logits(ref, prompt)
    with lib.Model(path) as model:
        with lib.Context(model, n_ctx=512, n_batch=512, n_ubatch=512, n_threads=2,
                         **F32_KV) as ctx:
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
    record_error(f"jamba/f32 {N_PROMPT} one batch: max rel {rel_b:.2e}; "
                 f"token by token: {rel_s:.2e}")


@pytest.mark.parametrize("wtype", ["f32", "f16", "q8_0", "q4_0"])
def test_mixed_batch_matches_transformers(lib, jamba_factory, record_error, wtype):
    """Four 256-token prompts interleaved in ONE batch, then greedy steps for all four."""
    path, _, ref = jamba_factory(wtype)
    kv = F32_KV if wtype == "f32" else {}
    tokens, got = run_mixed(lib, path, prompts(), N_GEN, **kv)
    worst_rel, worst_cos = 0.0, 1.0
    for s in range(N_SEQ):
        assert np.isfinite(got[s]).all()
        rel, cos = check_rows(got[s], mg.hf_logits(ref, tokens[s]),
                              F32_REL if wtype == "f32" else None)
        worst_rel, worst_cos = max(worst_rel, rel), min(worst_cos, cos)
    record_error(f"jamba/{wtype} 4x{N_PROMPT} mixed + {N_GEN} steps: max rel {worst_rel:.2e} "
                 f"min cos {worst_cos:.6f}")


def test_mixed_batch_f16_cache(lib, jamba_factory, record_error):
    path, _, ref = jamba_factory("f32")
    tokens, got = run_mixed(lib, path, prompts(), N_GEN)   # default F16 K and V
    worst = 0.0
    for s in range(N_SEQ):
        rel, _ = check_rows(got[s], mg.hf_logits(ref, tokens[s]), KV_F16_REL)
        worst = max(worst, rel)
    record_error(f"jamba/f32 kv=f16 4x{N_PROMPT} mixed: max rel {worst:.2e}")


def test_uneven_sequences_and_small_ubatches(lib, jamba_factory):
    """Sequences of 256, 5, 131 and 64 tokens interleaved in one batch, micro-batches of 37
    tokens, one thread: every row matches each sequence run alone."""
    path, _, ref = jamba_factory("f32")
    seqs = uneven_prompts()
    tokens, got = run_mixed(lib, path, seqs, 3, n_ubatch=37, n_threads=1, **F32_KV)
    for s in range(len(seqs)):
        assert got[s].shape[0] == len(seqs[s]) + 3
        check_rows(got[s], mg.hf_logits(ref, tokens[s]), F32_REL)


def test_shared_prefix_tokens(lib, jamba_factory):
    """Prefix tokens carrying three sequence ids (one KV cell, one recurrent update for all
    three), then a different tail per sequence."""
    path, _, ref = jamba_factory("f32")
    prefix = mg.random_prompt(40, seed=300)
    tails = [mg.random_prompt(12, seed=301 + s)[1:] for s in range(3)]
    with lib.Model(path) as model, lib.Context(model, n_ctx=256, n_batch=256, n_ubatch=16,
                                               n_seq_max=3, n_threads=2, **F32_KV) as ctx:
        b = lib.Batch(256, 3)
        for i, t in enumerate(prefix):
            b.add(t, i, [0, 1, 2], i == len(prefix) - 1)
        idx = []
        for j in range(len(tails[0])):
            for s in range(3):
                idx.append(len(b))
                b.add(tails[s][j], len(prefix) + j, s, True)
        ctx.decode(b)
        close_to_ref(np.array(ctx.logits(len(prefix) - 1)), ref, prefix)
        for s in range(3):
            got = np.array([ctx.logits(idx[j * 3 + s]) for j in range(len(tails[s]))])
            close_to_ref(got, ref, prefix + tails[s], len(tails[s]))
        for s in range(3):
            assert (ctx.seq_pos_min(s), ctx.seq_pos_max(s)) == (0, len(prefix) + 10)


# ---------------------------------------------------------------------------------------------
# state save / restore
# ---------------------------------------------------------------------------------------------


def _ctx(lib, model, n_seq_max: int = 3):
    return lib.Context(model, n_ctx=512, n_batch=512, n_ubatch=512, n_seq_max=n_seq_max,
                       n_threads=2, **F32_KV)


def test_state_save_restore_bit_identical(lib, jamba_factory):
    """The whole context (two sequences) and one sequence restored into FRESH contexts with
    the same cell layout continue bit-identically; the continuation matches transformers."""
    path, _, ref = jamba_factory("f32")
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
            c.decode_tokens(p2, seq_id=2)        # same cells as in `a`
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


def test_bad_state_bytes_fail_cleanly(lib, jamba_factory, model_factory):
    """Corrupted, truncated, per-sequence-for-whole and other-model states raise FormatError
    and leave the context (KV and recurrent parts) as it was and usable."""
    path, _, _ = jamba_factory("f32")
    p0, p2 = mg.random_prompt(45, seed=700), mg.random_prompt(20, seed=701)
    cont = mg.random_prompt(6, seed=702)[1:]
    llama = model_factory("llama", "f32")
    with lib.Model(path) as model, lib.Model(llama.path) as other_model:
        with _ctx(lib, model) as a:
            a.decode_tokens(p0, seq_id=0)
            a.decode_tokens(p2, seq_id=2)
            whole = a.save_state()
            seq0 = a.save_seq(0)
            want0 = next_logits(a, cont, 0)
        with lib.Context(other_model, n_ctx=128) as other:
            other.decode_tokens([1, 5, 9])
            foreign = other.save_state()

        with _ctx(lib, model) as b:
            b.load_state(whole)
            snapshot = b.save_state()
            assert snapshot == whole
            bads = []
            for at in (60, len(whole) // 3, len(whole) // 2, len(whole) - 20):
                bad = bytearray(whole)
                bad[at] ^= 0xFF
                bads.append(bytes(bad))
            bads += [whole[:-3], whole[: len(whole) // 2], whole[:50], seq0, foreign]
            for data in bads:
                with pytest.raises(lib.FormatError):
                    b.load_state(data)
                assert b.save_state() == snapshot
            bad_seq = bytearray(seq0)
            bad_seq[len(seq0) // 2] ^= 0x55
            for data in (seq0[:-4], bytes(bad_seq), whole):
                with pytest.raises(lib.FormatError):
                    b.load_seq(data, 1)
                assert b.save_state() == snapshot
            assert np.array_equal(next_logits(b, cont, 0), want0)


# ---------------------------------------------------------------------------------------------
# memory breakdown
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cache_type,cache_bytes", [("f16", 2), ("f32", 4)])
def test_memory_breakdown_reports_kv_and_recurrent_bytes(lib, jamba_factory, cache_type,
                                                         cache_bytes):
    import modelgen_jamba as mj

    path, hf, _ = jamba_factory("f32")
    c = hf.config
    n_ctx, n_seq = 256, 3
    head_dim = c.hidden_size // c.num_attention_heads
    n_attn, n_mamba = len(mj.attention_layers(c)), len(mj.mamba_layers(c))
    d_inner = c.mamba_expand * c.hidden_size
    kv_bytes = n_ctx * n_attn * c.num_key_value_heads * head_dim * cache_bytes
    recurrent = n_seq * n_mamba * ((c.mamba_d_conv - 1) * d_inner
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
# memory operations act on both parts
# ---------------------------------------------------------------------------------------------


def test_seq_cp_then_decode_equals_original(lib, jamba_factory):
    """seq_cp shares the KV cells and copies the recurrent state: decoding on the copy gives
    the logits (bit for bit) that decoding on the original gives in a context with the same
    cells, and the original stays independent."""
    path, _, ref = jamba_factory("f32")
    p = mg.random_prompt(50, seed=400)
    a_tail, b_tail = mg.random_prompt(9, seed=401)[1:], mg.random_prompt(7, seed=402)[1:]
    with lib.Model(path) as model:
        with _ctx(lib, model, 2) as plain:
            plain.decode_tokens(p, seq_id=0)
            want_a = next_logits(plain, a_tail, 0)
        close_to_ref(want_a, ref, p + a_tail)
        with _ctx(lib, model, 2) as ctx:
            ctx.decode_tokens(p, seq_id=0)
            ctx.seq_cp(0, 1)
            assert (ctx.seq_pos_min(1), ctx.seq_pos_max(1)) == (0, 49)
            assert np.array_equal(next_logits(ctx, a_tail, 1), want_a)
            assert ctx.seq_pos_max(0) == 49 and ctx.seq_pos_max(1) == 49 + len(a_tail)
            got_b = next_logits(ctx, b_tail, 0)       # the original is untouched by the copy
            close_to_ref(got_b, ref, p + b_tail)
            before = ctx.save_state()
            with pytest.raises(lib.CannotRewindError):
                ctx.seq_cp(0, 1, 10, -1)               # part of a recurrent state
            assert ctx.save_state() == before


def test_whole_seq_rm_clears_both_parts(lib, jamba_factory):
    path, _, ref = jamba_factory("f32")
    p0, p1 = mg.random_prompt(70, seed=600), mg.random_prompt(30, seed=601)
    with lib.Model(path) as model, _ctx(lib, model, 2) as ctx:
        ctx.decode_tokens(p0, seq_id=0)
        ctx.decode_tokens(p1, seq_id=1)
        ctx.seq_rm(0, -1, -1)
        assert ctx.seq_pos_max(0) == -1 and ctx.seq_pos_min(0) == -1
        assert (ctx.seq_pos_min(1), ctx.seq_pos_max(1)) == (0, 29)
        # a new sequence 0 from position 0 sees neither old keys nor old state
        q = mg.random_prompt(40, seed=602)
        ctx.decode_tokens(q, pos0=0, seq_id=0, logits="all")
        got = np.array(ctx.all_logits(), dtype=np.float64)
        assert mg.rel_err_rows(got, mg.hf_logits(ref, q)).max() <= F32_REL
        # sequence 1 is intact
        tail = mg.random_prompt(5, seed=603)[1:]
        close_to_ref(next_logits(ctx, tail, 1), ref, p1 + tail)
        # seq_rm over every sequence, from position 0: everything goes
        ctx.seq_rm(-1, 0, -1)
        assert ctx.seq_pos_max(0) == -1 and ctx.seq_pos_max(1) == -1
        ctx.decode_tokens(q, pos0=0, seq_id=1, logits="all")
        assert mg.rel_err_rows(np.array(ctx.all_logits()), mg.hf_logits(ref, q)).max() <= F32_REL


def test_partial_seq_rm_is_refused_and_changes_nothing(lib, jamba_factory):
    """A partial seq_rm the KV part alone could do but the recurrent part cannot raises
    CannotRewindError and leaves BOTH parts as they were: the same state bytes, and the next
    decode gives exactly the logits of a context that never saw the failed calls."""
    path, _, ref = jamba_factory("f32")
    p = mg.random_prompt(60, seed=500)
    tail = mg.random_prompt(5, seed=501)[1:]
    with lib.Model(path) as model:
        with _ctx(lib, model, 2) as plain:
            plain.decode_tokens(p, seq_id=0)
            want = next_logits(plain, tail, 0)
        close_to_ref(want, ref, p + tail)
        with _ctx(lib, model, 2) as ctx:
            ctx.decode_tokens(p, seq_id=0)
            before = ctx.save_state()
            for p0, p1 in ((10, -1), (0, 30), (59, -1), (20, 40)):
                with pytest.raises(lib.CannotRewindError):
                    ctx.seq_rm(0, p0, p1)
                assert (ctx.seq_pos_min(0), ctx.seq_pos_max(0)) == (0, 59)
                assert ctx.save_state() == before
            with pytest.raises(lib.CannotRewindError):
                ctx.seq_rm(-1, 5, -1)
            assert ctx.save_state() == before
            ctx.seq_rm(0, 60, -1)      # past the end: nothing to do
            ctx.seq_rm(1, 0, -1)       # an empty sequence
            assert ctx.seq_truncate(0, 60) == 60
            assert ctx.save_state() == before
            assert np.array_equal(next_logits(ctx, tail, 0), want)
            # seq_truncate falls back to dropping the whole sequence, both parts
            assert ctx.seq_truncate(0, 10) == 0
            assert ctx.seq_pos_max(0) == -1
            q = mg.random_prompt(20, seed=502)
            ctx.decode_tokens(q, pos0=0, seq_id=0, logits="all")
            assert mg.rel_err_rows(np.array(ctx.all_logits()), mg.hf_logits(ref, q)).max() \
                <= F32_REL
