"""State save/restore and position shifting, through the Python API against independent
references: a context that never saved, and a fresh decode at the shifted positions."""
from __future__ import annotations

from pathlib import Path

import modelgen
import numpy as np
import pytest


def _decode(ctx, tokens, pos0, seq=0):
    ctx.decode_tokens(tokens, pos0=pos0, seq_id=seq, logits="last")
    return ctx.logits(-1).copy()


@pytest.fixture(scope="module")
def q8(lib, model_factory):
    case = model_factory("llama", "q8_0")
    model = lib.Model(case.path)
    yield model
    model.close()


PROMPT = modelgen.random_prompt(48, 7)
MORE = modelgen.random_prompt(6, 8)


@pytest.mark.parametrize("type_k", ["f16", "bf16", "f32"])
def test_whole_state_roundtrip_is_bit_identical(lib, q8, type_k):
    a = lib.Context(q8, n_ctx=128, n_seq_max=2, type_k=type_k)
    _decode(a, PROMPT, 0)
    _decode(a, PROMPT[:20], 0, seq=1)
    blob = a.save_state()
    last = a.logits(-1).copy()
    expect = [_decode(a, [t], 48 + i) for i, t in enumerate(MORE)]

    b = lib.Context(q8, n_ctx=256, n_seq_max=3, type_k=type_k)   # other sizes, same model
    _decode(b, MORE, 0, seq=2)                                     # something to replace
    b.load_state(blob)
    np.testing.assert_array_equal(b.logits(-1), last)             # outputs come along
    assert b.seq_pos_max(2) == -1 and b.seq_pos_max(1) == 19
    got = [_decode(b, [t], 48 + i) for i, t in enumerate(MORE)]
    for e, g in zip(expect, got):
        np.testing.assert_array_equal(e, g)


def test_sequence_state_into_another_sequence(lib, q8, tmp_path: Path):
    a = lib.Context(q8, n_ctx=128)
    _decode(a, PROMPT, 0)
    path = tmp_path / "seq.state"
    a.save_seq_file(0, path)
    blob = a.save_seq(0)
    assert path.read_bytes() == blob
    expect = _decode(a, MORE, 48)

    b = lib.Context(q8, n_ctx=128, n_seq_max=4)
    _decode(b, MORE, 0, seq=0)
    b.load_seq_file(3, path)
    assert b.seq_pos_min(3) == 0 and b.seq_pos_max(3) == 47
    assert b.stats()["n_cells_used"] == 48 + len(MORE)
    np.testing.assert_array_equal(_decode(b, MORE, 48, seq=3), expect)
    # the saved sequence holds only its cells' rows, no logits
    n_vocab = q8.n_vocab
    assert len(blob) < 48 * 4 * n_vocab


def _snapshot(ctx, n_seq):
    return ([(ctx.seq_pos_min(s), ctx.seq_pos_max(s)) for s in range(n_seq)],
            ctx.stats()["n_cells_used"], ctx.logits(-1).copy())


def test_bad_states_fail_cleanly(lib, q8, model_factory):
    a = lib.Context(q8, n_ctx=64, n_seq_max=2)
    _decode(a, PROMPT[:30], 0)
    good = a.save_state()
    seq_blob = a.save_seq(0)
    b = lib.Context(q8, n_ctx=64, n_seq_max=2)
    _decode(b, PROMPT[:5], 0, seq=1)
    before = _snapshot(b, 2)

    corrupted = bytearray(good)
    corrupted[len(good) // 2] ^= 0x10
    other = model_factory("qwen2", "q8_0")
    with lib.Model(other.path) as m2, lib.Context(m2, n_ctx=64) as c2:
        c2.decode_tokens(PROMPT[:30])
        foreign = c2.save_state()
    bad = {
        "truncated": good[:-1],
        "header only": good[:40],
        "empty": b"",
        "corrupted": bytes(corrupted),
        "not a state": b"x" * len(good),
        "other model": foreign,
        "sequence as context": seq_blob,
    }
    for name, blob in bad.items():
        with pytest.raises(lib.LibLLMError) as info:
            b.load_state(blob)
        assert str(info.value), name
        assert _snapshot(b, 2)[:2] == before[:2], name
        np.testing.assert_array_equal(_snapshot(b, 2)[2], before[2])
    with pytest.raises(lib.LibLLMError):
        b.load_seq(good, 0)                      # context state as a sequence state
    # a state with more cells than fit: memory full, nothing changed
    small = lib.Context(q8, n_ctx=16)
    with pytest.raises(lib.MemoryFullError):
        small.load_state(good)
    assert small.stats()["n_cells_used"] == 0
    # still usable
    b.load_state(good)
    assert b.seq_pos_max(0) == 29


def test_global_shift_matches_decoding_at_shifted_positions(lib, q8):
    """RoPE depends only on relative positions, so moving a whole sequence by d and
    continuing must give what decoding it at positions d.. from the start gives."""
    d = 37
    a = lib.Context(q8, n_ctx=256, type_k="f32", type_v="f32")
    _decode(a, PROMPT, 0)
    a.seq_add(0, 0, -1, d)
    assert (a.seq_pos_min(0), a.seq_pos_max(0)) == (d, d + 47)
    got = _decode(a, MORE, 48 + d)
    ref = lib.Context(q8, n_ctx=256, type_k="f32", type_v="f32")
    _decode(ref, PROMPT, d)
    want = _decode(ref, MORE, 48 + d)
    # re-rotation composes two rotations instead of one: f32 rounding only
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-5


def test_context_shift_discards_and_continues(lib, q8):
    """llama.cpp-style context shift: keep the first n_keep, drop the next n_discard, slide
    the rest down. Compared with decoding the kept tokens from scratch at their new positions
    (which differs only through the dropped tokens' influence on the kept keys)."""
    n_keep, n_discard = 8, 16
    a = lib.Context(q8, n_ctx=256, type_k="f32", type_v="f32")
    _decode(a, PROMPT, 0)
    a.seq_rm(0, n_keep, n_keep + n_discard)
    a.seq_add(0, n_keep + n_discard, -1, -n_discard)
    assert a.seq_pos_max(0) == 48 - n_discard - 1
    got = _decode(a, MORE, 48 - n_discard)
    kept = PROMPT[:n_keep] + PROMPT[n_keep + n_discard:]
    ref = lib.Context(q8, n_ctx=256, type_k="f32", type_v="f32")
    want = _decode(ref, kept + MORE, 0)
    cos = float(got @ want / np.linalg.norm(got) / np.linalg.norm(want))
    # measured ~0.99 on this random model; a missing re-rotation gives far less
    assert cos > 0.9


def test_shift_of_shared_cells_copies_them(lib, q8):
    a = lib.Context(q8, n_ctx=256, n_seq_max=2, type_k="f32", type_v="f32")
    _decode(a, PROMPT, 0)
    a.seq_cp(0, 1)
    assert a.stats()["n_cells_used"] == 48
    a.seq_add(1, 0, -1, 5)                       # seq 1 moves, seq 0 must not
    assert a.stats()["n_cells_used"] == 96
    assert (a.seq_pos_min(0), a.seq_pos_max(0)) == (0, 47)
    assert (a.seq_pos_min(1), a.seq_pos_max(1)) == (5, 52)
    ref = lib.Context(q8, n_ctx=256, type_k="f32", type_v="f32")
    got, want = _decode(a, MORE, 48, seq=0), _decode(ref, PROMPT + MORE, 0)
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-5


def test_seq_div(lib, q8):
    a = lib.Context(q8, n_ctx=128)
    _decode(a, PROMPT[:20], 0)
    a.seq_div(0, 10, -1, 2)                      # llama.cpp semantics: pos -> pos / d
    assert (a.seq_pos_min(0), a.seq_pos_max(0)) == (0, 9)
    with pytest.raises(lib.InvalidArgumentError):
        a.seq_div(0, 0, -1, 0)
