"""Rewindable recurrent state: snapshots every n positions let seq_rm(seq, p, -1) roll a
Mamba / Mamba2 / Jamba sequence back (llama.cpp can only drop it whole).

The contract checked here, through the Python API: with ``snapshot_interval=n`` the state after
every position p with (p + 1) % n == 0 is kept in a bounded pool; removing the tail [p, end)
rolls the sequence back to the newest snapshot that has seen no position >= p, seq_pos_max
says where it now ends, and decoding the rest again gives the logits of a context that never
went past p (compared with transformers, float64, and with a fresh libllm context). Without a
usable snapshot the removal is refused (CannotRewindError) and changes nothing. The pool is
allocated with the context (breakdown bytes), and a full pool replaces its oldest snapshot.
On a hybrid (jamba) the KV cache is cut at the same position as the recurrent state: the
re-decoded positions land in the cache once, which the transformers comparison would expose.
"""

from __future__ import annotations

import modelgen as mg
import numpy as np
import pytest

ARCHES = ("mamba", "mamba2", "jamba")
F32_REL = 1e-4
_CACHE: dict = {}


@pytest.fixture(scope="module")
def snap_model(tmp_path_factory):
    import modelgen_mamba as mm

    root = tmp_path_factory.mktemp("snapshots")

    def make(arch):
        if arch not in _CACHE and arch == "jamba":
            import modelgen_jamba as mj

            hf = mj.make_jamba(seed=25)
            path = mj.write_gguf_jamba(hf, root / "jamba.gguf", "f32")
            _CACHE[arch] = (str(path), mj.reference_jamba(hf, path))
        elif arch not in _CACHE:
            hf = mm.make_mamba(arch, seed=21 if arch == "mamba" else 23)
            path = mm.write_gguf_mamba(hf, root / f"{arch}.gguf", "f32")
            _CACHE[arch] = (str(path), mm.reference_mamba(hf, path))
        return _CACHE[arch]

    yield make
    _CACHE.clear()


@pytest.fixture
def open_ctx(lib):
    made = []

    def make(path, **kw):
        model = lib.Model(path)
        kw.setdefault("n_seq_max", 2)
        ctx = lib.Context(model, n_batch=512, n_threads=2, **kw)
        made.append((model, ctx))
        return ctx

    yield make
    for model, ctx in made:
        ctx.close()
        model.close()


def last_logits(ctx, tokens, seq=0):
    ctx.decode_tokens(tokens, seq_id=seq, logits="last")
    return np.array(ctx.logits(-1), copy=True)


def assert_last_matches(got, ref, tokens):
    """got: the engine's logits after `tokens`; the reference's last row must match."""
    assert mg.rel_err_rows(got[None], mg.hf_logits(ref, tokens)[-1:]).max() <= F32_REL


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("p", [70, 64, 65, 100])
def test_rewind_then_redecode_equals_never_past_p(lib, snap_model, open_ctx, arch, p):
    path, ref = snap_model(arch)
    toks = mg.random_prompt(140, seed=900 + p)
    ctx = open_ctx(path, snapshot_interval=16)
    ctx.decode_tokens(toks[:120], seq_id=0)              # one batch: snapshots mid-batch
    for t in toks[120:130]:                               # then token by token
        ctx.decode_tokens([t], seq_id=0)
    ctx.seq_rm(0, p, -1)
    end = ctx.seq_pos_max(0)
    assert end == (p // 16) * 16 - 1, "rolled back to the newest snapshot before p"
    assert end < p and (end + 1) % 16 == 0
    got = last_logits(ctx, toks[end + 1 : p + 1])        # decode the rest again, then p
    assert_last_matches(got, ref, toks[: p + 1])
    fresh = open_ctx(path)
    same = last_logits(fresh, toks[: p + 1])
    np.testing.assert_allclose(got, same, rtol=0, atol=1e-5 * np.abs(same).max())
    # and the sequence goes on as if it had never been longer
    nxt = last_logits(ctx, toks[p + 1 : p + 6])
    assert_last_matches(nxt, ref, toks[: p + 6])


@pytest.mark.parametrize("arch", ARCHES)
def test_no_snapshot_before_p_is_refused_and_changes_nothing(lib, snap_model, open_ctx, arch):
    path, _ = snap_model(arch)
    ctx = open_ctx(path, snapshot_interval=16)
    ctx.decode_tokens(mg.random_prompt(40, seed=910), seq_id=0)
    before = ctx.save_state()
    with pytest.raises(lib.CannotRewindError, match="no snapshot"):
        ctx.seq_rm(0, 10, -1)                             # first snapshot is at 15
    with pytest.raises(lib.CannotRewindError):
        ctx.seq_rm(0, 20, 30)                             # not a tail: never
    assert ctx.save_state() == before and ctx.seq_pos_max(0) == 39
    assert ctx.seq_truncate(0, 35) == 32                  # rolls back to the snapshot at 31


@pytest.mark.parametrize("arch", ARCHES)
def test_a_range_past_the_end_is_a_tail(lib, snap_model, open_ctx, arch):
    path, ref = snap_model(arch)
    toks = mg.random_prompt(60, seed=960)
    ctx = open_ctx(path, snapshot_interval=16)
    ctx.decode_tokens(toks[:50], seq_id=0)
    with pytest.raises(lib.CannotRewindError):
        ctx.seq_rm(0, 40, 49)                             # keeps position 49: not a tail
    ctx.seq_rm(0, 40, 1000)                               # past the end: rolls back to 31
    assert ctx.seq_pos_max(0) == 31
    got = last_logits(ctx, toks[32:45])
    assert_last_matches(got, ref, toks[:45])


@pytest.mark.parametrize("arch", ARCHES)
def test_bounded_pool_keeps_the_newest(lib, snap_model, open_ctx, arch):
    path, ref = snap_model(arch)
    toks = mg.random_prompt(80, seed=920)
    ctx = open_ctx(path, snapshot_interval=8, n_snapshots=2)
    ctx.decode_tokens(toks[:64], seq_id=0)                # snapshots at 7, 15, ..., 63
    with pytest.raises(lib.CannotRewindError):
        ctx.seq_rm(0, 50, -1)                             # 47 and older were replaced
    ctx.seq_rm(0, 60, -1)
    assert ctx.seq_pos_max(0) == 55
    got = last_logits(ctx, toks[56:70])
    assert_last_matches(got, ref, toks[:70])
    # rewinding dropped the snapshot at 63: the next one back is the one just retaken at 63
    ctx.seq_rm(0, 66, -1)
    assert ctx.seq_pos_max(0) == 63


@pytest.mark.parametrize("arch", ARCHES)
def test_copied_sequence_shares_snapshots(lib, snap_model, open_ctx, arch):
    path, ref = snap_model(arch)
    toks = mg.random_prompt(60, seed=930)
    ctx = open_ctx(path, snapshot_interval=16)
    ctx.decode_tokens(toks[:50], seq_id=0)
    ctx.seq_cp(0, 1)
    ctx.seq_rm(1, 40, -1)                                 # sequence 1 rolls back to 31
    assert ctx.seq_pos_max(1) == 31 and ctx.seq_pos_max(0) == 49
    got1 = last_logits(ctx, toks[32:45], seq=1)
    got0 = last_logits(ctx, toks[50:55], seq=0)
    assert_last_matches(got1, ref, toks[:45])
    assert_last_matches(got0, ref, toks[:55])
    ctx.seq_rm(1)                                         # a removed sequence loses them
    ctx.decode_tokens(toks[:5], seq_id=1)
    with pytest.raises(lib.CannotRewindError):
        ctx.seq_rm(1, 3, -1)


@pytest.mark.parametrize("arch", ARCHES)
def test_pool_is_allocated_with_the_context(lib, snap_model, open_ctx, arch):
    path, _ = snap_model(arch)
    plain = open_ctx(path, n_seq_max=3).memory_breakdown()["recurrent"]
    kv = open_ctx(path, n_seq_max=3).memory_breakdown()["k"]
    snap = open_ctx(path, n_seq_max=3, snapshot_interval=32).memory_breakdown()["recurrent"]
    five = open_ctx(path, n_seq_max=3, snapshot_interval=32, n_snapshots=5)
    assert plain % 3 == 0
    per_state = plain // 3
    assert snap == per_state * (3 + 8 * 3)                # default: 8 per sequence
    assert five.memory_breakdown()["recurrent"] == per_state * (3 + 5)
    assert five.memory_breakdown()["k"] == kv            # the KV cache does not change
    model = five.model
    assert lib.Context.estimate_memory(model, n_seq_max=3, snapshot_interval=32,
                                       n_snapshots=5)["recurrent"] == per_state * 8
    # decoding with snapshots allocates nothing
    five.decode_tokens(mg.random_prompt(200, seed=940), seq_id=0)
    n0 = five.stats()["n_alloc_decode"]
    for t in mg.random_prompt(40, seed=941):
        five.decode_tokens([t], seq_id=0)
    assert five.stats()["n_alloc_decode"] == n0


@pytest.mark.parametrize("arch", ARCHES)
def test_regenerate_with_llm_reuses_the_prefix(lib, snap_model, arch):
    """LLM.generate twice on one prompt: the second call keeps the prompt's state up to the
    newest snapshot instead of decoding it all again, and generates the same tokens."""
    path, _ = snap_model(arch)
    with lib.LLM(path, n_ctx=512, snapshot_interval=16) as llm:
        prompt = llm.model.detokenize(mg.random_prompt(90, seed=950)[1:])
        n_prompt = len(llm.model.tokenize(prompt))
        assert n_prompt > 48
        first = llm.generate(prompt, max_tokens=12, temperature=0.0)
        n_before = llm.context.stats()["n_tokens_decoded"]
        second = llm.generate(prompt, max_tokens=12, temperature=0.0)
        redone = llm.context.stats()["n_tokens_decoded"] - n_before
    assert second == first
    assert redone < 16 + 12, f"re-decoded {redone} tokens of a {n_prompt}-token prompt"
