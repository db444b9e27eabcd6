"""Mamba and Mamba2 (recurrent-state memory) end to end against transformers.

Each case generates a tiny random model (modelgen_mamba.py: hidden 64, 3 layers, d_state 16,
d_conv 4, expand 2, vocab 512; mamba2: 8 heads of 16, 2 groups), writes it in one weight type
and decodes four 256-token prompts mixed token by token in ONE batch (the equal split makes
micro-batches of the same number of tokens per sequence), then a few greedy tokens of all four
sequences per batch. Every row of logits is compared with transformers (float64, the weights
as stored in the file, dequantized) run over each sequence alone.

Bounds: F32 files: max|diff| / max|ref| <= 1e-4 per row (the engine computes in f32; the
measured error is ~1e-6). Quantized files (Q8_0 / Q4_0 matrices whose rows are whole blocks,
the rest F32): cosine >= 0.995 per row and the same greedy token wherever the reference's
top-2 gap exceeds 2% of the row's logit range (the engine may quantize activations to 8-bit
blocks as llama.cpp does).

Memory semantics: a recurrent state summarises every position, so it can be copied (seq_cp)
or dropped whole, never cut back: a partial seq_rm raises CannotRewindError and changes
nothing; state save/restore continues bit-identically.
"""

from __future__ import annotations

import modelgen as mg
import numpy as np
import pytest
from modelgen import run_mixed

ARCHES = ("mamba", "mamba2")
N_PROMPT = 256
N_SEQ = 4
N_GEN = 8
F32_REL = 1e-4
MIN_COS = 0.995

_CACHE: dict = {}


@pytest.fixture(scope="module")
def mamba_factory(tmp_path_factory):
    import modelgen_mamba as mm

    root = tmp_path_factory.mktemp("mamba")

    def make(arch, wtype="f32"):
        key = (arch, wtype)
        if key not in _CACHE:
            hf_key = (arch, "hf")
            if hf_key not in _CACHE:
                _CACHE[hf_key] = mm.make_mamba(arch, seed=11 if arch == "mamba" else 13)
            hf = _CACHE[hf_key]
            path = mm.write_gguf_mamba(hf, root / f"{arch}-{wtype}.gguf", wtype)
            _CACHE[key] = (str(path), hf, mm.reference_mamba(hf, path))
        return _CACHE[key]

    yield make
    _CACHE.clear()


def prompts(n_seq=N_SEQ, n=N_PROMPT, seed=100):
    return [mg.random_prompt(n, seed=seed + s) for s in range(n_seq)]


def check_rows(got, ref, rel_bound=None):
    rel = mg.rel_err_rows(got, ref)
    cos = mg.cosine_rows(got, ref)
    mismatch = np.nonzero(mg.decisive_rows(ref) & (got.argmax(-1) != ref.argmax(-1)))[0]
    if rel_bound is not None:
        assert rel.max() <= rel_bound, f"max rel {rel.max():.3e} at row {int(rel.argmax())}"
    assert cos.min() >= MIN_COS, f"min cosine {cos.min():.6f} at row {int(cos.argmin())}"
    assert len(mismatch) == 0, f"greedy mismatches at rows {mismatch.tolist()[:10]}"
    return rel.max(), cos.min()


# ---------------------------------------------------------------------------------------------
# the generator
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHES)
def test_modelgen_mamba_file(mamba_factory, arch):
    """The f32 file's reference equals the original model, and logits are spread out."""
    import gguf

    path, hf, ref = mamba_factory(arch)
    toks = mg.random_prompt(64, seed=3)
    r = mg.hf_logits(ref, toks)
    assert mg.rel_err_rows(mg.hf_logits(hf, toks), r).max() < 1e-5
    assert mg.decisive_rows(r).mean() > 0.4
    names = {t.name for t in gguf.GGUFReader(path).tensors}
    assert "blk.0.ssm_a" in names and "blk.0.ssm_conv1d.weight" in names


# ---------------------------------------------------------------------------------------------
# engine vs transformers
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("wtype", ["f32", "f16", "q8_0", "q4_0"])
def test_mixed_batch_matches_transformers(lib, mamba_factory, record_error, arch, wtype):
    path, _, ref = mamba_factory(arch, wtype)
    tokens, got = run_mixed(lib, path, prompts(), N_GEN)
    worst_rel, worst_cos = 0.0, 1.0
    for s in range(N_SEQ):
        assert np.isfinite(got[s]).all()
        r = mg.hf_logits(ref, tokens[s])
        rel, cos = check_rows(got[s], r, F32_REL if wtype == "f32" else None)
        worst_rel, worst_cos = max(worst_rel, rel), min(worst_cos, cos)
    record_error(
        f"{arch}/{wtype} 4x{N_PROMPT} mixed + {N_GEN} steps: max rel {worst_rel:.2e} "
        f"min cos {worst_cos:.6f}"
    )


@pytest.mark.parametrize("arch", ARCHES)
def test_uneven_sequences_and_small_ubatches(lib, mamba_factory, arch):
    """Sequences of different lengths, micro-batches of 37 tokens, one thread: the equal split
    cuts them into uneven micro-batches; every row still matches."""
    path, _, ref = mamba_factory(arch)
    seqs = [p[:n] for p, n in zip(prompts(seed=200), (256, 5, 131, 64))]
    tokens, got = run_mixed(lib, path, seqs, 3, n_ubatch=37, n_threads=1)
    for s in range(len(seqs)):
        check_rows(got[s], mg.hf_logits(ref, tokens[s]), F32_REL)


@pytest.mark.parametrize("arch", ARCHES)
def test_shared_prefix_tokens(lib, mamba_factory, arch):
    """A token carrying several sequence ids is computed once and every sequence gets the
    resulting state (prompts laid out as a trie, as generate_batch does)."""
    path, _, ref = mamba_factory(arch)
    prefix = mg.random_prompt(40, seed=300)
    tails = [mg.random_prompt(12, seed=301 + s)[1:] for s in range(3)]
    model = lib.Model(path)
    try:
        with lib.Context(model, n_batch=256, n_ubatch=16, n_seq_max=3, n_threads=2) as ctx:
            b = lib.Batch(256, 3)
            for i, t in enumerate(prefix):
                b.add(t, i, [0, 1, 2], i == len(prefix) - 1)
            idx = []
            for j in range(len(tails[0])):
                for s in range(3):
                    idx.append(len(b))
                    b.add(tails[s][j], len(prefix) + j, s, True)
            ctx.decode(b)
            shared = np.array(ctx.logits(len(prefix) - 1))
            r0 = mg.hf_logits(ref, prefix)
            assert mg.rel_err_rows(shared[None], r0[-1:]).max() <= F32_REL
            for s in range(3):
                got = np.array([ctx.logits(idx[j * 3 + s]) for j in range(len(tails[s]))])
                r = mg.hf_logits(ref, prefix + tails[s])[len(prefix) :]
                assert mg.rel_err_rows(got, r).max() <= F32_REL
            assert ctx.stats()["n_cells_used"] == 3
    finally:
        model.close()


# ---------------------------------------------------------------------------------------------
# sequence operations and state
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def mamba_ctx(lib, mamba_factory):
    made = []

    def make(arch="mamba", n_seq_max=2, **kw):
        path, _, ref = mamba_factory(arch)
        model = lib.Model(path)
        ctx = lib.Context(model, n_batch=512, n_seq_max=n_seq_max, n_threads=2, **kw)
        made.append((model, ctx))
        return ctx, ref

    yield make
    for model, ctx in made:
        ctx.close()
        model.close()


def next_logits(ctx, tokens, seq):
    ctx.decode_tokens(tokens, seq_id=seq, logits="last")
    return np.array(ctx.logits(-1), copy=True)


@pytest.mark.parametrize("arch", ARCHES)
def test_seq_cp_gives_independent_sequences(lib, mamba_ctx, arch):
    ctx, ref = mamba_ctx(arch)
    p = mg.random_prompt(50, seed=400)
    a, b = mg.random_prompt(9, seed=401)[1:], mg.random_prompt(7, seed=402)[1:]
    ctx.decode_tokens(p, seq_id=0)
    ctx.seq_cp(0, 1)
    assert (ctx.seq_pos_min(1), ctx.seq_pos_max(1)) == (0, 49)
    assert ctx.stats()["n_cells_used"] == 2 and ctx.stats()["n_cells_total"] == 2
    got_a = next_logits(ctx, a, 0)
    got_b = next_logits(ctx, b, 1)
    for tail, got in ((a, got_a), (b, got_b)):
        r = mg.hf_logits(ref, p + tail)[-1:]
        assert mg.rel_err_rows(got[None], r).max() <= F32_REL
    with pytest.raises(lib.CannotRewindError):
        ctx.seq_cp(0, 1, 10, -1)   # part of a state


@pytest.mark.parametrize("arch", ARCHES)
def test_partial_seq_rm_is_refused_and_changes_nothing(lib, mamba_ctx, arch):
    ctx, ref = mamba_ctx(arch)
    p = mg.random_prompt(60, seed=500)
    ctx.decode_tokens(p, seq_id=0)
    before = ctx.save_state()
    for p0, p1 in ((10, -1), (0, 30), (59, -1), (20, 40)):
        with pytest.raises(lib.CannotRewindError, match="recurrent"):
            ctx.seq_rm(0, p0, p1)
        assert (ctx.seq_pos_min(0), ctx.seq_pos_max(0)) == (0, 59)
    with pytest.raises(lib.CannotRewindError):
        ctx.seq_rm(-1, 5, -1)
    assert ctx.save_state() == before
    ctx.seq_rm(0, 60, -1)      # past the end: nothing to do
    ctx.seq_rm(1, 0, -1)       # empty sequence
    assert ctx.seq_truncate(0, 60) == 60
    tail = mg.random_prompt(5, seed=501)[1:]
    got = next_logits(ctx, tail, 0)
    assert mg.rel_err_rows(got[None], mg.hf_logits(ref, p + tail)[-1:]).max() <= F32_REL
    # seq_truncate falls back to dropping the whole sequence
    assert ctx.seq_truncate(0, 10) == 0
    assert ctx.seq_pos_max(0) == -1


@pytest.mark.parametrize("arch", ARCHES)
def test_whole_seq_rm_then_decode_equals_fresh(lib, mamba_ctx, arch):
    ctx, ref = mamba_ctx(arch)
    ctx.decode_tokens(mg.random_prompt(70, seed=600), seq_id=0)
    ctx.decode_tokens(mg.random_prompt(30, seed=601), seq_id=1)
    ctx.seq_rm(0, 0, -1)
    assert ctx.seq_pos_max(0) == -1 and ctx.seq_pos_max(1) == 29
    assert ctx.stats()["n_cells_used"] == 1
    q = mg.random_prompt(40, seed=602)
    ctx.decode_tokens(q, seq_id=0, logits="all")
    got = np.array(ctx.all_logits())
    assert mg.rel_err_rows(got, mg.hf_logits(ref, q)).max() <= F32_REL
    ctx.seq_keep(1)
    assert ctx.seq_pos_max(0) == -1 and ctx.stats()["n_cells_used"] == 1
    ctx.memory_clear()
    assert ctx.stats()["n_cells_used"] == 0
    ctx.decode_tokens(q, seq_id=1, logits="all")
    assert np.array_equal(np.array(ctx.all_logits()), got)


@pytest.mark.parametrize("arch", ARCHES)
def test_state_save_restore_bit_identical(lib, mamba_ctx, arch):
    ctx, _ = mamba_ctx(arch, n_seq_max=3)
    ctx.decode_tokens(mg.random_prompt(45, seed=700), seq_id=0)
    ctx.decode_tokens(mg.random_prompt(20, seed=701), seq_id=2)
    whole = ctx.save_state()
    seq0 = ctx.save_seq(0)
    cont = mg.random_prompt(6, seed=702)[1:]
    want = next_logits(ctx, cont, 0)
    want2 = next_logits(ctx, cont, 2)

    ctx.load_state(whole)
    assert ctx.seq_pos_max(0) == 44 and ctx.seq_pos_max(2) == 19
    assert np.array_equal(next_logits(ctx, cont, 0), want)
    assert np.array_equal(next_logits(ctx, cont, 2), want2)

    ctx.load_seq(seq0, 1)   # into another sequence id
    assert (ctx.seq_pos_min(1), ctx.seq_pos_max(1)) == (0, 44)
    assert np.array_equal(next_logits(ctx, cont, 1), want)

    # bad bytes fail cleanly and change nothing
    snapshot = ctx.save_state()
    bad = bytearray(whole)
    bad[60] ^= 0xFF
    for data in (bytes(bad), whole[:-3], whole[:50]):
        with pytest.raises(lib.FormatError):
            ctx.load_state(data)
    with pytest.raises(lib.FormatError):
        ctx.load_state(seq0)          # a sequence state is not a context state
    with pytest.raises(lib.FormatError):
        ctx.load_seq(seq0[:-4], 0)
    assert ctx.save_state() == snapshot


def test_state_files(lib, mamba_ctx, tmp_path):
    ctx, _ = mamba_ctx("mamba")
    ctx.decode_tokens(mg.random_prompt(33, seed=800), seq_id=1)
    ctx.save_seq_file(1, tmp_path / "s.bin")
    ctx.save_state_file(tmp_path / "c.bin")
    cont = [5, 6, 7]
    want = next_logits(ctx, cont, 1)
    ctx.memory_clear()
    ctx.load_seq_file(0, tmp_path / "s.bin")
    assert np.array_equal(next_logits(ctx, cont, 0), want)
    ctx.load_state_file(tmp_path / "c.bin")
    assert ctx.seq_pos_max(0) == -1
    assert np.array_equal(next_logits(ctx, cont, 1), want)


def test_state_of_other_memory_is_refused(lib, mamba_ctx, model_factory):
    ctx, _ = mamba_ctx("mamba")
    llama = model_factory("llama", "f32")
    model = lib.Model(llama.path)
    try:
        with lib.Context(model, n_ctx=128) as other:
            other.decode_tokens([1, 5, 9])
            with pytest.raises(lib.FormatError):
                ctx.load_state(other.save_state())
    finally:
        model.close()


@pytest.mark.parametrize("arch", ARCHES)
def test_memory_breakdown_reports_recurrent_bytes(lib, mamba_factory, arch):
    path, hf, _ = mamba_factory(arch)
    c = hf.config
    d_inner = c.expand * c.hidden_size
    conv_ch = d_inner if arch == "mamba" else d_inner + 2 * c.n_groups * c.state_size
    per_seq = c.num_hidden_layers * ((c.conv_kernel - 1) * conv_ch + d_inner * c.state_size) * 4
    model = lib.Model(path)
    try:
        params = {"n_seq_max": 3, "n_batch": 256, "n_ubatch": 64, "n_threads": 2}
        with lib.Context(model, **params) as ctx:
            live = ctx.memory_breakdown()
            assert live["recurrent"] == 3 * per_seq
            assert live["k"] == 0 and live["v"] == 0
            assert lib.Context.estimate_memory(model, **params) == live
            for _ in range(3):
                ctx.decode_tokens([1, 2, 3], seq_id=0)
            assert ctx.stats()["n_alloc_decode"] == 0
    finally:
        model.close()


# ---------------------------------------------------------------------------------------------
# the friendly API
# ---------------------------------------------------------------------------------------------


def test_generate_on_mamba(lib, mamba_factory):
    """LLM.generate runs on a recurrent model: greedy text follows transformers' greedy
    tokens, a prompt that does not extend what the context holds starts the sequence over
    (CannotRewindError inside seq_truncate), and repeated calls agree."""
    path, _, ref = mamba_factory("mamba")
    with lib.LLM(path, n_ctx=512, n_threads=2) as llm:
        a = llm.generate("hello world", max_tokens=12, temperature=0.0)
        ids = llm.tokenize("hello world")
        want = []
        for _ in range(12):
            nxt = int(np.argmax(mg.hf_logits(ref, ids + want)[-1]))
            if nxt == mg.EOS_ID:
                break
            want.append(nxt)
        assert a == llm.detokenize(want)
        assert llm.generate("hello world", max_tokens=12, temperature=0.0) == a
        c = llm.generate("another prompt entirely", max_tokens=12, temperature=0.0)
        d = llm.generate("hello", max_tokens=12, temperature=0.0)   # shorter: starts over
        assert isinstance(c, str) and isinstance(d, str)
        assert llm.generate("hello world", max_tokens=12, temperature=0.0) == a
