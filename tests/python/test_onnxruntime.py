"""The ONNX Runtime custom ops (plugins/onnxruntime, libllm.onnxruntime).

Every op is checked against the Python API on the same tiny model with the same settings:
greedy and seeded sampling give identical ids, logits agree within TOL (relative to each row's
largest magnitude). Then stateful decoding, concurrency and every kind of bad input.

Runs with the newest onnxruntime and with the oldest supported one (test_old_ort.sh).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

import modelgen as mg
import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper

from libllm import onnxruntime as lort

TOL = 1e-5  # logits: max |ort - python| / max |python| per row
N_CTX = 256
MAX_NEW = 10
THREADS = 1  # compute threads per context (the machine has 2 cores)


@pytest.fixture(scope="module")
def case(model_factory):
    return model_factory("llama", "q8_0")


@pytest.fixture(scope="module")
def path(case):
    return case.path


@pytest.fixture(scope="module")
def model(lib, path):
    m = lib.Model(path)
    yield m
    m.close()


def prompts(n_vocab, lens=(5, 11, 3, 8)):
    """Prompts of random non-special tokens; id 3 (the <0x00> byte token) is avoided so that
    texts never hold NUL bytes (the runtime's string tensors drop them)."""
    out = []
    for i, n in enumerate(lens):
        p = mg.random_prompt(n, seed=200 + i, vocab_size=n_vocab)
        out.append([t if t != 3 else 4 for t in p])
    return out


def pad(rows, value=0):
    width = max((len(r) for r in rows), default=0)
    arr = np.full((len(rows), width), value, dtype=np.int64)
    for i, r in enumerate(rows):
        arr[i, : len(r)] = r
    return arr, np.array([len(r) for r in rows], dtype=np.int64)


def session(proto, **settings):
    return ort.InferenceSession(
        proto.SerializeToString(),
        lort.session_options(**settings),
        providers=["CPUExecutionProvider"],
    )


def reference_generate(lib, model, prompt, max_new, n_ctx=N_CTX, **sampling):
    """What LLM.generate does, on token ids: decode the prompt into a fresh context, then
    sample until an end-of-generation token, max_new tokens or a full context."""
    sampling.setdefault("temperature", 0.0)
    ctx = lib.Context(model, n_ctx=n_ctx, n_threads=THREADS)
    try:
        with lib.Sampler(**sampling) as sampler:
            for t in prompt:
                sampler.accept(t)
            ctx.decode_tokens(list(prompt), pos0=0, seq_id=0, logits="last")
            out, n_past = [], len(prompt)
            while len(out) < max_new:
                tok = sampler.sample(ctx, -1)
                if model.is_eog(tok):
                    break
                out.append(tok)
                if len(out) >= max_new or n_past >= n_ctx:
                    break
                ctx.decode_tokens([tok], pos0=n_past, seq_id=0, logits="last")
                n_past += 1
            return out
    finally:
        ctx.close()


def python_logits(lib, path, tokens):
    with lib.LLM(path, n_ctx=N_CTX, n_threads=THREADS) as llm:
        return np.array(llm.logits(tokens), copy=True)


def assert_close(got, ref, what=""):
    got = np.atleast_2d(np.asarray(got, dtype=np.float64))
    ref = np.atleast_2d(np.asarray(ref, dtype=np.float64))
    assert got.shape == ref.shape, what
    rel = mg.rel_err_rows(got, ref)
    assert rel.max() <= TOL, f"{what}: max rel {rel.max():.3e} at row {int(rel.argmax())}"


# ------------------------------------------------------------------------------------------
# The library itself
# ------------------------------------------------------------------------------------------


def test_library_exports_only_register_and_links_only_libllm():
    so = lort.library_path()
    assert os.path.isfile(so)
    if not shutil.which("nm") or not shutil.which("readelf"):
        pytest.skip("binutils not installed")
    syms = subprocess.run(
        ["nm", "-D", "--defined-only", so], capture_output=True, text=True, check=True
    ).stdout.split()
    exported = [s for s in syms if s not in ("T", "W", "D", "B", "R") and not s[0].isdigit()]
    assert exported == ["RegisterCustomOps"], exported
    dyn = subprocess.run(["readelf", "-d", so], capture_output=True, text=True, check=True).stdout
    needed = [line.split("[")[1].rstrip("]") for line in dyn.splitlines() if "(NEEDED)" in line]
    assert "libllm.so" in needed
    assert not [n for n in needed if "onnxruntime" in n], needed


def test_library_path_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("LIBLLM_ORT_LIBRARY", str(tmp_path / "missing.so"))
    with pytest.raises(FileNotFoundError, match="LIBLLM_ORT_LIBRARY"):
        lort.library_path()


def test_models_load_in_old_runtimes(path):
    for proto in (
        lort.generate_model(path),
        lort.text_generation_model(path),
        lort.logits_model(path),
        lort.decode_step_model(path),
    ):
        onnx.checker.check_model(proto)
        assert proto.ir_version <= 8
        domains = {o.domain: o.version for o in proto.opset_import}
        assert domains[lort.DOMAIN] == 1


# ------------------------------------------------------------------------------------------
# Ops against the Python API
# ------------------------------------------------------------------------------------------

TEXTS = ["Hello world", "", "the quick brown fox", "héllo wörld ünïcode", "<s> special"]


@pytest.mark.parametrize("add_bos,parse_special", [(1, 1), (0, 0), (1, 0)])
def test_tokenize(model, path, add_bos, parse_special):
    sess = session(
        lort.tokenize_model(path, add_bos=add_bos, parse_special=parse_special, pad_id=-7)
    )
    ids, lens = sess.run(None, {"text": np.array(TEXTS, dtype=object)})
    assert ids.dtype == np.int64 and lens.dtype == np.int64
    for i, text in enumerate(TEXTS):
        want = model.tokenize(text, add_bos=bool(add_bos), special=bool(parse_special))
        assert lens[i] == len(want)
        assert ids[i, : lens[i]].tolist() == want
        assert (ids[i, lens[i] :] == -7).all()


@pytest.mark.parametrize("remove_special,unparse_special", [(0, 0), (1, 0), (0, 1)])
def test_detokenize(model, path, remove_special, unparse_special):
    rows = prompts(model.n_vocab) + [[1, 300, 2], []]
    arr, lens = pad(rows)
    sess = session(
        lort.detokenize_model(path, remove_special=remove_special, unparse_special=unparse_special)
    )
    (texts,) = sess.run(None, {"ids": arr, "lengths": lens})
    for row, text in zip(rows, texts):
        assert text == model.detokenize(row, bool(remove_special), bool(unparse_special))


def test_detokenize_pieces_is_streamed_text(model, path):
    rows = prompts(model.n_vocab)
    arr, lens = pad(rows)
    (texts,) = session(lort.detokenize_model(path, mode="pieces")).run(
        None, {"ids": arr, "lengths": lens}
    )
    for row, text in zip(rows, texts):
        want = b"".join(model.token_to_piece(t) for t in row).decode("utf-8", errors="replace")
        assert text == want


def test_generate_greedy_batch_equals_python(lib, model, path):
    rows = prompts(model.n_vocab)
    arr, lens = pad(rows, value=0)
    sess = session(
        lort.generate_model(path, max_new_tokens=MAX_NEW, n_ctx=N_CTX, n_threads=THREADS, pad_id=-1)
    )
    out, out_lens = sess.run(None, {"input_ids": arr, "lengths": lens})
    assert out.shape[0] == len(rows)
    for i, prompt in enumerate(rows):
        want = reference_generate(lib, model, prompt, MAX_NEW)
        assert out_lens[i] == len(want)
        assert out[i, : out_lens[i]].tolist() == want
        assert (out[i, out_lens[i] :] == -1).all()


def test_generate_more_rows_than_n_seq_max(lib, model, path):
    rows = prompts(model.n_vocab, lens=(4, 6, 9, 2, 7))
    arr, lens = pad(rows)
    sess = session(
        lort.generate_model(path, max_new_tokens=6, n_ctx=N_CTX, n_seq_max=2, n_threads=THREADS)
    )
    out, out_lens = sess.run(None, {"input_ids": arr, "lengths": lens})
    for i, prompt in enumerate(rows):
        assert out[i, : out_lens[i]].tolist() == reference_generate(lib, model, prompt, 6)


def test_generate_sampling_equals_python(lib, model, path):
    settings = {
        "temperature": 0.9,
        "top_k": 20,
        "top_p": 0.9,
        "min_p": 0.02,
        "repeat_penalty": 1.3,
        "penalty_last_n": 16,
        "seed": 1234,
    }
    rows = prompts(model.n_vocab)
    arr, lens = pad(rows)
    sess = session(
        lort.generate_model(
            path, max_new_tokens=MAX_NEW, n_ctx=N_CTX, n_threads=THREADS, **settings
        )
    )
    out, out_lens = sess.run(None, {"input_ids": arr, "lengths": lens})
    for i, prompt in enumerate(rows):
        want = reference_generate(lib, model, prompt, MAX_NEW, **settings)
        assert out[i, : out_lens[i]].tolist() == want
    again, _ = sess.run(None, {"input_ids": arr, "lengths": lens})
    assert (again == out).all(), "a fixed seed must give the same tokens on every run"


def test_text_generation_equals_llm_generate(lib, path):
    texts = ["Hello world", "the quick brown fox", "abc"]
    sess = session(
        lort.text_generation_model(path, max_new_tokens=MAX_NEW, n_ctx=N_CTX, n_threads=THREADS)
    )
    (got,) = sess.run(None, {"text": np.array(texts, dtype=object)})
    with lib.LLM(path, n_ctx=N_CTX, n_threads=THREADS) as llm:
        for text, out in zip(texts, got):
            assert out == llm.generate(text, max_tokens=MAX_NEW, temperature=0)


@pytest.mark.parametrize("which", ["all", "last"])
def test_logits_equal_python(lib, model, path, which):
    rows = prompts(model.n_vocab)
    arr, lens = pad(rows)
    sess = session(lort.logits_model(path, output=which, n_ctx=N_CTX, n_threads=THREADS))
    (logits,) = sess.run(None, {"input_ids": arr, "lengths": lens})
    n_vocab = model.n_vocab
    if which == "all":
        assert logits.shape == (len(rows), arr.shape[1], n_vocab)
    else:
        assert logits.shape == (len(rows), n_vocab)
    for i, prompt in enumerate(rows):
        ref = python_logits(lib, path, prompt)
        if which == "all":
            assert_close(logits[i, : len(prompt)], ref, f"row {i}")
            assert (logits[i, len(prompt) :] == 0).all()
        else:
            assert_close(logits[i], ref[-1], f"row {i}")


# ------------------------------------------------------------------------------------------
# DecodeStep
# ------------------------------------------------------------------------------------------


def step(sess, feeds):
    """feeds: list of (seq_id, tokens, reset). Returns (logits, next_tokens, n_past)."""
    arr, lens = pad([t for _, t, _ in feeds])
    return sess.run(
        None,
        {
            "seq_ids": np.array([k for k, _, _ in feeds], dtype=np.int64),
            "tokens": arr,
            "lengths": lens,
            "reset": np.array([r for _, _, r in feeds], dtype=bool),
        },
    )


def decode_step_session(path, **kw):
    kw.setdefault("n_ctx", N_CTX)
    kw.setdefault("n_threads", THREADS)
    return session(lort.decode_step_model(path, **kw))


def test_decode_step_matches_one_shot_generation(lib, model, path):
    rows = prompts(model.n_vocab, lens=(6, 9, 4))
    keys = [101, -5, 7]
    wants = [reference_generate(lib, model, p, MAX_NEW) for p in rows]
    sess = decode_step_session(path)

    got = {k: [] for k in keys}
    pending = {}  # key -> token to feed next
    done = set()
    # run 1: the first two prompts; run 2: their next tokens plus the third prompt; then on.
    _, nxt, n_past = step(sess, [(keys[0], rows[0], False), (keys[1], rows[1], False)])
    assert n_past.tolist() == [len(rows[0]), len(rows[1])]
    for k, t in zip(keys[:2], nxt):
        pending[k] = int(t)
    started_third = False
    while len(done) < len(keys):
        feeds = []
        for k in keys:
            if k in done or k not in pending:
                continue
            tok = pending.pop(k)
            if model.is_eog(tok):
                done.add(k)
                continue
            got[k].append(tok)
            if len(got[k]) >= MAX_NEW:
                done.add(k)
                continue
            feeds.append((k, [tok], False))
        if not started_third:
            feeds.append((keys[2], rows[2], False))
            started_third = True
        if not feeds:
            continue
        _, nxt, n_past = step(sess, feeds)
        for (k, _, _), t in zip(feeds, nxt):
            pending[k] = int(t)
    for k, want in zip(keys, wants):
        assert got[k] == want, f"sequence {k}"


def test_decode_step_logits_equal_python(lib, model, path):
    rows = prompts(model.n_vocab, lens=(6, 9))
    sess = decode_step_session(path)
    logits, nxt, _ = step(sess, [(1, rows[0], False), (2, rows[1], False)])
    for i, prompt in enumerate(rows):
        ref = python_logits(lib, path, prompt)[-1]
        assert_close(logits[i], ref, f"row {i}")
        assert nxt[i] == int(np.argmax(ref))
    # one more token on sequence 1 only: its logits continue that sequence
    logits2, _, n_past = step(sess, [(1, [int(nxt[0])], False)])
    assert n_past.tolist() == [len(rows[0]) + 1]
    assert_close(logits2[0], python_logits(lib, path, rows[0] + [int(nxt[0])])[-1], "step 2")


def test_decode_step_reset(model, path):
    prompt = prompts(model.n_vocab, lens=(7,))[0]
    sess = decode_step_session(path)
    first, nxt, n_past = step(sess, [(5, prompt, False)])
    step(sess, [(5, [int(nxt[0])], False)])
    # reset and feed the prompt again: the same as the first time
    again, nxt2, n_past2 = step(sess, [(5, prompt, True)])
    assert n_past2[0] == n_past[0] == len(prompt)
    assert nxt2[0] == nxt[0]
    assert np.array_equal(again, first)
    # reset with no tokens drops the sequence
    _, nxt3, n_past3 = step(sess, [(5, [], True)])
    assert n_past3[0] == 0 and nxt3[0] == -1
    _, _, n_past4 = step(sess, [(5, prompt[:2], False)])
    assert n_past4[0] == 2


def test_decode_step_state_is_per_session(model, path):
    prompt = prompts(model.n_vocab, lens=(7,))[0]
    a = decode_step_session(path)
    b = decode_step_session(path)
    _, nxt, _ = step(a, [(1, prompt, False)])
    _, _, n_past_b = step(b, [(1, [int(nxt[0])], False)])
    assert n_past_b[0] == 1
    _, _, n_past_a = step(a, [(1, [int(nxt[0])], False)])
    assert n_past_a[0] == len(prompt) + 1


# ------------------------------------------------------------------------------------------
# Concurrency
# ------------------------------------------------------------------------------------------


def test_concurrent_runs_on_one_session(lib, model, path):
    inputs = [pad(prompts(model.n_vocab, lens=lens)) for lens in ((5, 8), (3,), (9, 4, 6))]
    sess = session(lort.generate_model(path, max_new_tokens=6, n_ctx=N_CTX, n_threads=THREADS))
    expected = []
    for arr, lens in inputs:
        rows = [arr[i, : lens[i]].tolist() for i in range(len(lens))]
        expected.append([reference_generate(lib, model, r, 6) for r in rows])

    def work(i):
        arr, lens = inputs[i % len(inputs)]
        out, out_lens = sess.run(None, {"input_ids": arr, "lengths": lens})
        return i, [out[r, : out_lens[r]].tolist() for r in range(len(lens))]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(8 * 20)))
    assert len(results) == 160
    for i, got in results:
        assert got == expected[i % len(inputs)], f"run {i}"


def test_concurrent_decode_steps_on_one_session(lib, model, path):
    rows = prompts(model.n_vocab, lens=(4, 6, 5, 7, 3, 8, 5, 6))
    wants = [reference_generate(lib, model, p, 20) for p in rows]
    sess = decode_step_session(path, max_sequences=8)
    errors = []

    def work(i):
        try:
            got, feed = [], rows[i]
            for _ in range(20):
                _, nxt, _ = step(sess, [(1000 + i, feed, False)])
                tok = int(nxt[0])
                if model.is_eog(tok):
                    break
                got.append(tok)
                feed = [tok]
            assert got == wants[i][: len(got)] and len(got) == len(wants[i])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append((i, e))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


# ------------------------------------------------------------------------------------------
# Bad inputs: an onnxruntime exception that names the cause, never a crash
# ------------------------------------------------------------------------------------------

ORT_ERRORS = (
    ort.capi.onnxruntime_pybind11_state.Fail,
    ort.capi.onnxruntime_pybind11_state.InvalidArgument,
    ort.capi.onnxruntime_pybind11_state.RuntimeException,
    ort.capi.onnxruntime_pybind11_state.InvalidGraph,
    ort.capi.onnxruntime_pybind11_state.NoSuchFile,
    ort.capi.onnxruntime_pybind11_state.NotImplemented,
)


def test_bad_model_path(tmp_path):
    missing = str(tmp_path / "nope.gguf")
    with pytest.raises(ORT_ERRORS, match="cannot load the model .*nope.gguf"):
        session(lort.generate_model(missing))
    not_gguf = tmp_path / "bad.gguf"
    not_gguf.write_bytes(b"this is not a gguf file at all" * 10)
    with pytest.raises(ORT_ERRORS, match="cannot load the model"):
        session(lort.tokenize_model(str(not_gguf)))


def test_missing_and_unknown_attributes(path):
    node = helper.make_node("Generate", ["input_ids"], ["out"], domain=lort.DOMAIN)
    proto = lort._model(
        [node],
        [lort._tensor("input_ids", TensorProto.INT64, ["b", "n"])],
        [lort._tensor("out", TensorProto.INT64, None)],
        "g",
    )
    with pytest.raises(ORT_ERRORS, match="attribute model_path .* is required"):
        session(proto)
    with pytest.raises(ORT_ERRORS, match="attribute output = 'middle' is unknown"):
        session(lort.logits_model(path, output="middle"))
    with pytest.raises(ORT_ERRORS, match="attribute mode = 'words' is unknown"):
        session(lort.detokenize_model(path, mode="words"))
    with pytest.raises(ORT_ERRORS, match="attribute n_ctx must be an integer"):
        node = helper.make_node(
            "Logits", ["input_ids"], ["out"], domain=lort.DOMAIN, model_path=path, n_ctx=1.5
        )
        session(
            lort._model(
                [node],
                [lort._tensor("input_ids", TensorProto.INT64, ["b", "n"])],
                [lort._tensor("out", TensorProto.FLOAT, None)],
                "g",
            )
        )
    with pytest.raises(ORT_ERRORS, match="top_p = 2 is outside"):
        session(lort.generate_model(path, top_p=2.0))
    with pytest.raises(ORT_ERRORS, match="n_seq_max = 0 is outside"):
        session(lort.generate_model(path, n_seq_max=0))


def untyped_rank_model(path, op="Generate"):
    """A graph whose input has no declared shape, so the op sees whatever is fed."""
    node = helper.make_node(
        op,
        ["input_ids"],
        ["out"],
        domain=lort.DOMAIN,
        model_path=path,
        n_ctx=N_CTX,
        n_threads=THREADS,
        max_new_tokens=2,
    )
    return lort._model(
        [node],
        [lort._tensor("input_ids", TensorProto.INT64, None)],
        [lort._tensor("out", TensorProto.INT64, None)],
        "g",
    )


def test_wrong_dtype_and_shape(path):
    sess = session(lort.generate_model(path, n_ctx=N_CTX, n_threads=THREADS))
    ids = np.array([[1, 5, 6]], dtype=np.int32)
    with pytest.raises(ORT_ERRORS, match=r"tensor\(int32\).*expected.*tensor\(int64\)|int64"):
        sess.run(None, {"input_ids": ids, "lengths": np.array([3], dtype=np.int64)})
    loose = session(untyped_rank_model(path))
    with pytest.raises(ORT_ERRORS, match="input input_ids must have rank 2, got rank 1"):
        loose.run(None, {"input_ids": np.array([1, 5, 6], dtype=np.int64)})
    # a graph that feeds a float tensor to an int64 input does not load (the runtime's own
    # message: newer ones name the type, 1.16 says no kernel of Generate takes it)
    node = helper.make_node("Generate", ["x"], ["out"], domain=lort.DOMAIN, model_path=path)
    bad = lort._model(
        [node],
        [lort._tensor("x", TensorProto.FLOAT, ["b", "n"])],
        [lort._tensor("out", TensorProto.INT64, None)],
        "g",
    )
    with pytest.raises(ORT_ERRORS, match="float|Could not find an implementation for Generate"):
        session(bad)


def test_bad_lengths_and_ids(model, path):
    sess = session(lort.generate_model(path, n_ctx=N_CTX, n_threads=THREADS, max_new_tokens=2))
    ids = np.array([[1, 5, 6], [1, 7, 8]], dtype=np.int64)
    with pytest.raises(ORT_ERRORS, match=r"lengths\[1\] = 9 is outside"):
        sess.run(None, {"input_ids": ids, "lengths": np.array([3, 9], dtype=np.int64)})
    with pytest.raises(ORT_ERRORS, match=r"lengths\[0\] = 0 is outside"):
        sess.run(None, {"input_ids": ids, "lengths": np.array([0, 3], dtype=np.int64)})
    with pytest.raises(ORT_ERRORS, match=r"must have shape \[2\]"):
        sess.run(None, {"input_ids": ids, "lengths": np.array([3], dtype=np.int64)})
    with pytest.raises(ORT_ERRORS, match=r"input_ids\[0, 1\] = -4 is not a valid token id"):
        sess.run(
            None,
            {
                "input_ids": np.array([[1, -4]], dtype=np.int64),
                "lengths": np.array([2], dtype=np.int64),
            },
        )
    big = model.n_vocab + 5
    with pytest.raises(ORT_ERRORS, match=f"has id {big}, outside the vocabulary"):
        sess.run(
            None,
            {
                "input_ids": np.array([[1, big]], dtype=np.int64),
                "lengths": np.array([2], dtype=np.int64),
            },
        )
    detok = session(lort.detokenize_model(path))
    with pytest.raises(ORT_ERRORS, match="cannot detokenize"):
        detok.run(
            None,
            {"ids": np.array([[big]], dtype=np.int64), "lengths": np.array([1], dtype=np.int64)},
        )
    # the session still works after all that
    out, out_lens = sess.run(None, {"input_ids": ids, "lengths": np.array([3, 3], np.int64)})
    assert out_lens.tolist() == [len(r) for r in (out[0, : out_lens[0]], out[1, : out_lens[1]])]


def test_full_cache(model, path):
    small = session(lort.generate_model(path, n_ctx=16, n_threads=THREADS, max_new_tokens=2))
    prompt = prompts(model.n_vocab, lens=(20,))[0]
    arr, lens = pad([prompt])
    with pytest.raises(ORT_ERRORS, match="the KV cache is full"):
        small.run(None, {"input_ids": arr, "lengths": lens})

    sess = decode_step_session(path, n_ctx=16)
    step(sess, [(1, prompt[:10], False)])
    with pytest.raises(ORT_ERRORS, match="the KV cache is full"):
        step(sess, [(1, prompt[10:], False), (2, prompt[:4], False)])
    # nothing changed: sequence 1 still holds 10 tokens, sequence 2 was never added
    _, _, n_past = step(sess, [(1, [], False), (2, [], False)])
    assert n_past.tolist() == [10, 0]
    _, _, n_past = step(sess, [(1, prompt[10:14], False)])
    assert n_past.tolist() == [14]


def test_decode_step_bad_inputs(model, path):
    sess = decode_step_session(path, max_sequences=2)
    with pytest.raises(ORT_ERRORS, match="sequence id 4 appears twice"):
        step(sess, [(4, [1, 5], False), (4, [1, 6], False)])
    step(sess, [(1, [1, 5], False), (2, [1, 6], False)])
    with pytest.raises(ORT_ERRORS, match="all max_sequences = 2 slots are in use"):
        step(sess, [(3, [1, 7], False)])
    _, _, n_past = step(sess, [(1, [], True), (3, [1, 7], False)])
    assert n_past.tolist() == [0, 2]
    with pytest.raises(ORT_ERRORS, match=r"reset must have shape \[1\]"):
        sess.run(
            None,
            {
                "seq_ids": np.array([3], np.int64),
                "tokens": np.array([[8]], np.int64),
                "lengths": np.array([1], np.int64),
                "reset": np.array([True, False]),
            },
        )
