"""Several sequences in one context: mixed batches, per-sequence cache operations, a full
cache and bad batches. Everything is compared with the same sequences decoded alone in fresh
contexts (F32 weights and F32 KV cache, so the only differences are summation order)."""

from __future__ import annotations

import modelgen as mg
import numpy as np
import pytest

TOL = 1e-5  # max|diff| / max|ref| per row
KV = {"type_k": "f32", "type_v": "f32"}


@pytest.fixture(scope="module")
def case(model_factory):
    return model_factory("llama", "f32")


@pytest.fixture(scope="module")
def model(lib, case):
    m = lib.Model(case.path)
    yield m
    m.close()


class Ctx:
    """A context that closes itself (context manager)."""

    def __init__(self, lib, model, **kw):
        params = dict(KV)
        params.update(kw)
        self.ctx = lib.Context(model, **params)

    def __enter__(self):
        return self.ctx

    def __exit__(self, *exc):
        self.ctx.close()


def assert_close(got, ref, tol=TOL, what=""):
    got = np.atleast_2d(np.asarray(got, dtype=np.float64))
    ref = np.atleast_2d(np.asarray(ref, dtype=np.float64))
    assert got.shape == ref.shape, what
    rel = mg.rel_err_rows(got, ref)
    assert rel.max() <= tol, f"{what}: max rel {rel.max():.3e} at row {int(rel.argmax())}"


def decode_alone(lib, model, tokens, **kw):
    """Logits of every token of one sequence decoded alone in a fresh context."""
    with Ctx(lib, model, **kw) as ctx:
        ctx.decode_tokens(list(tokens), pos0=0, seq_id=0, logits="all")
        return np.array(ctx.all_logits(), copy=True)


def prompts(n_vocab):
    lens = (7, 13, 21, 30)
    return [mg.random_prompt(n, seed=100 + i, vocab_size=n_vocab) for i, n in enumerate(lens)]


def interleave(seqs, start_pos=None):
    """Round-robin order of (seq, pos, token) over several token lists."""
    start_pos = start_pos or [0] * len(seqs)
    order = []
    for k in range(max(len(s) for s in seqs)):
        for s, toks in enumerate(seqs):
            if k < len(toks):
                order.append((s, start_pos[s] + k, toks[k]))
    return order


def snapshot(ctx, n_seq):
    st = ctx.stats()
    return (
        [(ctx.seq_pos_min(s), ctx.seq_pos_max(s)) for s in range(n_seq)],
        st["n_cells_used"],
        st["n_decode"],
        st["n_tokens_decoded"],
    )


# ---------------------------------------------------------------------------------------------
# mixed batches
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "order,wtype", [("interleaved", "f32"), ("grouped", "f32"), ("interleaved", "q4_0")]
)
def test_mixed_batch_equals_alone(lib, model_factory, order, wtype):
    model = lib.Model(model_factory("llama", wtype).path)
    try:
        _mixed_batch_equals_alone(lib, model, order)
    finally:
        model.close()


def _mixed_batch_equals_alone(lib, model, order):
    ps = prompts(model.n_vocab)
    alone = [decode_alone(lib, model, p) for p in ps]
    n_gen = 6
    with Ctx(lib, model, n_seq_max=4, n_batch=128, n_ubatch=32, n_threads=2) as ctx:
        if order == "interleaved":
            items = interleave(ps)
        else:
            items = [(s, k, t) for s, p in enumerate(ps) for k, t in enumerate(p)]
        batch = lib.Batch(len(items), n_seq_max=1)
        for s, pos, tok in items:
            batch.add(tok, pos, s, True)
        ctx.decode(batch)
        assert ctx.n_outputs == len(items)
        allrows = np.array(ctx.all_logits(), copy=True)
        for s in range(4):
            idx = [i for i, it in enumerate(items) if it[0] == s]
            assert_close(allrows[idx], alone[s], what=f"prompt of seq {s}")
            # ctx.logits(i) takes the batch index of the flagged token
            assert_close(
                np.array(ctx.logits(idx[-1]), copy=True), alone[s][-1], what=f"logits(i) of seq {s}"
            )
            assert ctx.seq_pos_max(s) == len(ps[s]) - 1

        # greedy continuation, all four sequences in each batch (in reversed seq order)
        last = [alone[s][-1] for s in range(4)]
        gen = [[] for _ in range(4)]
        for _ in range(n_gen):
            batch = lib.Batch(4, n_seq_max=1)
            for s in reversed(range(4)):
                tok = int(np.argmax(last[s]))
                gen[s].append(tok)
                batch.add(tok, len(ps[s]) + len(gen[s]) - 1, s, True)
            ctx.decode(batch)
            rows = np.array(ctx.all_logits(), copy=True)
            for j, s in enumerate(reversed(range(4))):
                last[s] = rows[j]
        final = last
    for s in range(4):
        ref = decode_alone(lib, model, ps[s] + gen[s])
        assert_close(final[s], ref[-1], what=f"after generation, seq {s}")
        # the greedy tokens chosen in the mixed run are the ones an alone run would choose
        assert [int(np.argmax(r)) for r in ref[len(ps[s]) - 1 : -1]] == gen[s]


def test_multi_seq_token_shares_prefix(lib, model):
    """A prefix decoded once with seq ids [0,1,2,3] on each token serves all four."""
    pre = mg.random_prompt(12, seed=5, vocab_size=model.n_vocab)
    sufs = [mg.random_prompt(n, seed=50 + n, vocab_size=model.n_vocab)[1:] for n in (3, 5, 8, 2)]
    with Ctx(lib, model, n_seq_max=4, n_threads=2) as ctx:
        b = lib.Batch(len(pre), n_seq_max=4)
        for p, t in enumerate(pre):
            b.add(t, p, [0, 1, 2, 3], p == len(pre) - 1)
        ctx.decode(b)
        assert ctx.stats()["n_cells_used"] == len(pre)
        items = interleave(sufs, [len(pre)] * 4)
        b = lib.Batch(len(items), n_seq_max=1)
        for s, pos, tok in items:
            b.add(tok, pos, s, True)
        ctx.decode(b)
        rows = np.array(ctx.all_logits(), copy=True)
        assert ctx.stats()["n_cells_used"] == len(pre) + sum(map(len, sufs))
    for s in range(4):
        idx = [i for i, it in enumerate(items) if it[0] == s]
        ref = decode_alone(lib, model, pre + sufs[s])
        assert_close(rows[idx], ref[len(pre) :], what=f"seq {s}")


# ---------------------------------------------------------------------------------------------
# seq_rm / seq_cp / seq_keep / clear
# ---------------------------------------------------------------------------------------------


def test_seq_rm_suffix_redecode(lib, model):
    toks = mg.random_prompt(20, seed=11, vocab_size=model.n_vocab)
    with Ctx(lib, model, n_threads=2) as ctx:
        ctx.decode_tokens(toks, pos0=0, logits="all")
        before = np.array(ctx.all_logits(), copy=True)
        used = ctx.stats()["n_cells_used"]
        assert used == 20
        ctx.seq_rm(0, 12, -1)
        assert ctx.seq_pos_max(0) == 11 and ctx.seq_pos_min(0) == 0
        assert ctx.stats()["n_cells_used"] == 12
        ctx.decode_tokens(toks[12:], pos0=12, logits="all")
        assert_close(np.array(ctx.all_logits(), copy=True), before[12:], what="re-decoded")
        # and once more, a different suffix length, through the default pos0
        ctx.seq_rm(0, 17, -1)
        assert ctx.seq_pos_max(0) == 16
        ctx.decode_tokens(toks[17:], logits="all")
        assert_close(np.array(ctx.all_logits(), copy=True), before[17:], what="pos0=None")
        assert ctx.stats()["n_cells_used"] == 20


def test_seq_cp_prefix_shares_cells(lib, model):
    pre = mg.random_prompt(16, seed=21, vocab_size=model.n_vocab)
    sufs = [
        mg.random_prompt(n + 1, seed=60 + n, vocab_size=model.n_vocab)[1:] for n in (4, 9, 1, 6)
    ]
    with Ctx(lib, model, n_seq_max=4, n_ubatch=8, n_threads=2) as ctx:
        ctx.decode_tokens(pre, pos0=0, seq_id=0, logits="none")
        for dst in (1, 2, 3):
            ctx.seq_cp(0, dst, -1, -1)
            assert (ctx.seq_pos_min(dst), ctx.seq_pos_max(dst)) == (0, len(pre) - 1)
        assert ctx.stats()["n_cells_used"] == len(pre)
        items = interleave(sufs, [len(pre)] * 4)
        b = lib.Batch(len(items), n_seq_max=1)
        for s, pos, tok in items:
            b.add(tok, pos, s, True)
        ctx.decode(b)
        rows = np.array(ctx.all_logits(), copy=True)
        assert ctx.stats()["n_cells_used"] == len(pre) + sum(map(len, sufs))
        for s in range(4):
            assert ctx.seq_pos_max(s) == len(pre) + len(sufs[s]) - 1
    for s in range(4):
        idx = [i for i, it in enumerate(items) if it[0] == s]
        ref = decode_alone(lib, model, pre + sufs[s])
        assert_close(rows[idx], ref[len(pre) :], what=f"seq {s} after seq_cp")


def test_seq_cp_partial_range(lib, model):
    """seq_cp of [0, 8) only: seq 1 continues from position 8 like a fresh 8-token prefix."""
    toks = mg.random_prompt(14, seed=31, vocab_size=model.n_vocab)
    tail = mg.random_prompt(6, seed=32, vocab_size=model.n_vocab)[1:]
    with Ctx(lib, model, n_seq_max=2, n_threads=1) as ctx:
        ctx.decode_tokens(toks, pos0=0, seq_id=0, logits="none")
        ctx.seq_cp(0, 1, 0, 8)
        assert (ctx.seq_pos_min(1), ctx.seq_pos_max(1)) == (0, 7)
        ctx.decode_tokens(tail, pos0=8, seq_id=1, logits="all")
        got = np.array(ctx.all_logits(), copy=True)
        assert ctx.stats()["n_cells_used"] == len(toks) + len(tail)
    ref = decode_alone(lib, model, toks[:8] + tail)
    assert_close(got, ref[8:], what="partial seq_cp")


def test_seq_keep_clear_pos_min_max(lib, model):
    a = mg.random_prompt(10, seed=41, vocab_size=model.n_vocab)
    b = mg.random_prompt(5, seed=42, vocab_size=model.n_vocab)
    c = mg.random_prompt(3, seed=43, vocab_size=model.n_vocab)
    with Ctx(lib, model, n_seq_max=3) as ctx:
        for s in range(3):
            assert ctx.seq_pos_min(s) == -1 and ctx.seq_pos_max(s) == -1
        ctx.decode_tokens(a, pos0=0, seq_id=0, logits="none")
        ctx.decode_tokens(b, pos0=0, seq_id=1, logits="none")
        ctx.decode_tokens(c, pos0=4, seq_id=2, logits="none")  # an empty sequence may start >0
        assert (ctx.seq_pos_min(0), ctx.seq_pos_max(0)) == (0, 9)
        assert (ctx.seq_pos_min(1), ctx.seq_pos_max(1)) == (0, 4)
        assert (ctx.seq_pos_min(2), ctx.seq_pos_max(2)) == (4, 6)
        assert ctx.stats()["n_cells_used"] == 18
        ctx.seq_rm(0, 0, 3)
        assert (ctx.seq_pos_min(0), ctx.seq_pos_max(0)) == (3, 9)
        assert ctx.stats()["n_cells_used"] == 15
        ctx.seq_keep(1)
        assert ctx.seq_pos_max(0) == -1 and ctx.seq_pos_min(0) == -1
        assert ctx.seq_pos_max(2) == -1
        assert (ctx.seq_pos_min(1), ctx.seq_pos_max(1)) == (0, 4)
        assert ctx.stats()["n_cells_used"] == 5
        # seq 1 still decodes as if alone
        ctx.decode_tokens([a[1]], pos0=5, seq_id=1, logits="last")
        assert_close(
            np.array(ctx.logits(-1), copy=True),
            decode_alone(lib, model, b + [a[1]])[-1],
            what="after seq_keep",
        )
        ctx.seq_rm(-1, -1, -1)  # every sequence
        assert ctx.seq_pos_max(1) == -1 and ctx.stats()["n_cells_used"] == 0
        ctx.decode_tokens(a, pos0=0, seq_id=0, logits="none")
        ctx.memory_clear()
        assert ctx.stats()["n_cells_used"] == 0
        for s in range(3):
            assert ctx.seq_pos_min(s) == -1 and ctx.seq_pos_max(s) == -1
        ctx.decode_tokens(a, pos0=0, seq_id=0, logits="all")
        assert_close(
            np.array(ctx.all_logits(), copy=True),
            decode_alone(lib, model, a),
            what="after memory_clear",
        )


# ---------------------------------------------------------------------------------------------
# a full cache
# ---------------------------------------------------------------------------------------------


def test_memory_full_changes_nothing(lib, model):
    toks = mg.random_prompt(64, seed=51, vocab_size=model.n_vocab)
    extra = mg.random_prompt(11, seed=52, vocab_size=model.n_vocab)[1:]
    ref = decode_alone(lib, model, toks)
    with Ctx(lib, model, n_ctx=64, n_batch=64, n_ubatch=16) as ctx:
        assert ctx.stats()["n_cells_total"] == 64
        ctx.decode_tokens(toks[:60], pos0=0, logits="last")
        last = np.array(ctx.logits(-1), copy=True)
        before = snapshot(ctx, 1)
        assert before[0] == [(0, 59)] and before[1] == 60
        b = lib.Batch(10)
        for k, t in enumerate(extra):
            b.add(t, 60 + k, 0, True)
        with pytest.raises(lib.MemoryFullError) as ei:
            ctx.decode(b)
        assert isinstance(ei.value, lib.LibLLMError) and ei.value.status == 1
        assert snapshot(ctx, 1) == before
        # the same 10 tokens through decode_tokens, too
        with pytest.raises(lib.MemoryFullError):
            ctx.decode_tokens(extra, pos0=60, logits="all")
        assert snapshot(ctx, 1) == before
        # the last 4 tokens fit, and match one decode of all 64
        ctx.decode_tokens(toks[60:], pos0=60, logits="all")
        assert_close(np.array(ctx.all_logits(), copy=True), ref[60:], what="after full")
        assert ctx.stats()["n_cells_used"] == 64 and ctx.seq_pos_max(0) == 63
        with pytest.raises(lib.MemoryFullError):
            ctx.decode_tokens([5], pos0=64, logits="last")
        assert ctx.stats()["n_cells_used"] == 64 and ctx.seq_pos_max(0) == 63
    assert_close(last, ref[59], what="before full")


def test_memory_full_multi_micro_batch(lib, model):
    """A batch whose first micro-batches would fit but whose last would not leaves no trace."""
    toks = mg.random_prompt(40, seed=53, vocab_size=model.n_vocab)
    with Ctx(lib, model, n_ctx=64, n_batch=64, n_ubatch=8) as ctx:
        ctx.decode_tokens(toks[:20], pos0=0, logits="none")
        before = snapshot(ctx, 1)
        more = mg.random_prompt(48, seed=54, vocab_size=model.n_vocab)
        with pytest.raises(lib.MemoryFullError):
            ctx.decode_tokens(more, pos0=20, logits="all")
        assert snapshot(ctx, 1) == before
        ctx.decode_tokens(toks[20:], pos0=20, logits="all")
        assert_close(
            np.array(ctx.all_logits(), copy=True),
            decode_alone(lib, model, toks)[20:],
            what="after refused batch",
        )


# ---------------------------------------------------------------------------------------------
# bad batches
# ---------------------------------------------------------------------------------------------


def _bad_batches(lib, n_vocab, n_batch, n_seq_max):
    """(name, list of (token, pos, seq_ids)) for a context where seq 0 holds positions 0..9,
    seq 1 positions 0..4 and seq 2 is empty."""
    ok = 7
    return {
        "token_too_large": [(ok, 10, 0), (n_vocab, 11, 0)],
        "token_negative": [(-1, 10, 0)],
        "seq_too_large": [(ok, 0, n_seq_max)],
        "seq_negative": [(ok, 10, -1)],
        "seq_too_large_in_list": [(ok, 10, [0, n_seq_max])],
        "pos_gap": [(ok, 11, 0)],
        "pos_repeat": [(ok, 9, 0)],
        "pos_backwards": [(ok, 3, 0)],
        "pos_gap_in_batch": [(ok, 10, 0), (ok, 12, 0)],
        "pos_repeat_in_batch": [(ok, 10, 0), (ok, 10, 0)],
        "pos_backwards_in_batch": [(ok, 10, 0), (ok, 11, 0), (ok, 10, 0)],
        "pos_gap_other_seq": [(ok, 10, 0), (ok, 6, 1)],
        "pos_negative_empty_seq": [(ok, -1, 2)],
        "too_many_tokens": [(ok, 10 + k, 0) for k in range(n_batch + 1)],
        "empty": [],
    }


BAD = [
    "token_too_large",
    "token_negative",
    "seq_too_large",
    "seq_negative",
    "seq_too_large_in_list",
    "pos_gap",
    "pos_repeat",
    "pos_backwards",
    "pos_gap_in_batch",
    "pos_repeat_in_batch",
    "pos_backwards_in_batch",
    "pos_gap_other_seq",
    "pos_negative_empty_seq",
    "too_many_tokens",
    "empty",
]


@pytest.fixture(scope="module")
def bad_ctx(lib, model):
    """One context shared by the bad-batch cases (each must leave it unchanged)."""
    a = mg.random_prompt(10, seed=61, vocab_size=model.n_vocab)
    b = mg.random_prompt(5, seed=62, vocab_size=model.n_vocab)
    with Ctx(lib, model, n_seq_max=3, n_batch=32, n_ubatch=8, n_ctx=128) as ctx:
        ctx.decode_tokens(a, pos0=0, seq_id=0, logits="none")
        ctx.decode_tokens(b, pos0=0, seq_id=1, logits="last")
        yield ctx, a, b


@pytest.mark.parametrize("name", BAD)
def test_bad_batch(lib, model, bad_ctx, name):
    ctx, _a, _b = bad_ctx
    before = snapshot(ctx, 3)
    items = _bad_batches(lib, model.n_vocab, 32, 3)[name]
    with pytest.raises(lib.InvalidArgumentError):
        batch = lib.Batch(max(1, len(items)), n_seq_max=2)
        for tok, pos, seqs in items:
            batch.add(tok, pos, seqs, True)
        ctx.decode(batch)
    assert snapshot(ctx, 3) == before, name


def test_bad_batch_keeps_last_logits(lib, model):
    """A refused batch "changes nothing": the logits of the last good decode stay readable."""
    toks = mg.random_prompt(5, seed=63, vocab_size=model.n_vocab)
    with Ctx(lib, model) as ctx:
        ctx.decode_tokens(toks, pos0=0, logits="all")
        rows = np.array(ctx.all_logits(), copy=True)
        with pytest.raises(lib.InvalidArgumentError):
            ctx.decode_tokens([model.n_vocab], pos0=5, logits="all")
        assert ctx.n_outputs == 5
        assert_close(np.array(ctx.all_logits(), copy=True), rows, tol=0.0, what="all_logits")


def test_bad_batch_then_usable(lib, model, bad_ctx):
    """After every refusal, both sequences continue exactly like fresh runs."""
    ctx, a, b = bad_ctx
    extra = [17, 250, 31]
    ctx.decode_tokens(extra, pos0=10, seq_id=0, logits="all")
    assert_close(
        np.array(ctx.all_logits(), copy=True),
        decode_alone(lib, model, a + extra)[10:],
        what="seq 0",
    )
    ctx.decode_tokens(extra, pos0=5, seq_id=1, logits="all")
    assert_close(
        np.array(ctx.all_logits(), copy=True), decode_alone(lib, model, b + extra)[5:], what="seq 1"
    )
    ctx.seq_rm(0, 10, -1)
    ctx.seq_rm(1, 5, -1)


def test_bad_batch_in_fresh_context(lib, model):
    """Refusals on an empty context too, then it decodes normally."""
    toks = mg.random_prompt(6, seed=71, vocab_size=model.n_vocab)
    with Ctx(lib, model, n_batch=8) as ctx:
        for items in (
            [(model.n_vocab, 0, 0)],
            [(1, 0, 0), (2, 2, 0)],
            [(1, 0, 1)],
            [(1, k, 0) for k in range(9)],
        ):
            with pytest.raises(lib.InvalidArgumentError):
                batch = lib.Batch(len(items))
                for tok, pos, s in items:
                    batch.add(tok, pos, s, True)
                ctx.decode(batch)
            assert ctx.stats()["n_cells_used"] == 0 and ctx.stats()["n_decode"] == 0
            assert ctx.seq_pos_max(0) == -1
        ctx.decode_tokens(toks, pos0=0, logits="all")
        assert_close(
            np.array(ctx.all_logits(), copy=True),
            decode_alone(lib, model, toks),
            what="after refusals",
        )
