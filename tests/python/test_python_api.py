"""Tests of the Python package (libllm.Model, Context, Batch, Sampler, LLM) on a tiny
random-weight llama GGUF written here with the gguf package.

Run with the library built: LIBLLM_LIBRARY=build/libllm.so PYTHONPATH=bindings/python pytest
"""

from __future__ import annotations

import ctypes
import gc
import itertools
import os
import shutil
import subprocess
import sys
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
try:
    import libllm
except ImportError as exc:  # the shared library is not built (or does not match)
    pytest.skip(f"libllm not importable: {exc}", allow_module_level=True)

from libllm.llm import StopMatcher, Utf8Decoder

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(libllm.__file__)))

# ------------------------------------------------------------------------------------------
# A tiny llama GGUF
# ------------------------------------------------------------------------------------------

N_EMBD = 32
N_HEAD = 4
N_HEAD_KV = 2
N_FF = 64
N_LAYER = 2
N_CTX_TRAIN = 256
WORDS = ["the", "cat", "sat", "on", "mat", "dog", "hello", "world", "a", "is", "big"]
# A token with a long piece (not reachable by merges): exercises the "buffer too small,
# retry with the size needed" protocol of llm_token_to_piece / llm_detokenize.
LONG_TOKEN = "\u2581" + "supercalifragilistic-expialidocious-" * 3
LONG_META = "{% for m in messages %}\n" + "x" * 1000 + "\n{% endfor %}"


def tiny_vocab() -> tuple[list[str], list[float], list[int]]:
    """SentencePiece-style vocabulary: <unk> <s> </s>, the 256 byte tokens, then single
    letters, "▁", and every prefix of each "▁word" (so the merges can reach the words)."""
    tokens = ["<unk>", "<s>", "</s>"]
    types = [2, 3, 3]  # UNKNOWN, CONTROL, CONTROL
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        types.append(6)  # BYTE
    extra = ["\u2581"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    for word in WORDS:
        w = "\u2581" + word
        for k in range(2, len(w) + 1):
            extra.append(w[:k])
    extra.append(LONG_TOKEN)
    for t in extra:
        if t not in tokens:
            tokens.append(t)
            types.append(1)  # NORMAL
    scores = [0.0] * len(tokens)
    for i, t in enumerate(tokens):
        if types[i] == 1:
            scores[i] = float(len(t)) - i * 1e-3  # longer pieces merge first
    return tokens, scores, types


def write_tiny_llama(
    path: str | os.PathLike[str],
    *,
    seed: int = 1234,
    wtype: str = "f32",
    eos_id: int = 2,
) -> dict[str, np.ndarray]:
    """Writes the model; returns every tensor as the float32 values the file holds."""
    rng = np.random.default_rng(seed)
    tokens, scores, types = tiny_vocab()
    n_vocab = len(tokens)
    head_dim = N_EMBD // N_HEAD

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-test-llama")
    w.add_context_length(N_CTX_TRAIN)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(head_dim)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(eos_id)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template(LONG_META)

    def mat(*shape: int, scale: float = 0.3) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    def norm() -> np.ndarray:
        return (1.0 + 0.1 * rng.standard_normal(N_EMBD)).astype(np.float32)

    out_w = mat(n_vocab, N_EMBD, scale=1.0)
    out_w[1] = 0.0  # BOS and EOS get logit 0: a greedy run never ends early by chance
    out_w[2] = 0.0
    tensors: dict[str, np.ndarray] = {
        "token_embd.weight": mat(n_vocab, N_EMBD, scale=1.0),
        "output_norm.weight": norm(),
        "output.weight": out_w,
    }
    for i in range(N_LAYER):
        p = f"blk.{i}."
        tensors[p + "attn_norm.weight"] = norm()
        tensors[p + "attn_q.weight"] = mat(N_HEAD * head_dim, N_EMBD)
        tensors[p + "attn_k.weight"] = mat(N_HEAD_KV * head_dim, N_EMBD)
        tensors[p + "attn_v.weight"] = mat(N_HEAD_KV * head_dim, N_EMBD)
        tensors[p + "attn_output.weight"] = mat(N_EMBD, N_HEAD * head_dim)
        tensors[p + "ffn_norm.weight"] = norm()
        tensors[p + "ffn_gate.weight"] = mat(N_FF, N_EMBD)
        tensors[p + "ffn_up.weight"] = mat(N_FF, N_EMBD)
        tensors[p + "ffn_down.weight"] = mat(N_EMBD, N_FF)

    stored: dict[str, np.ndarray] = {}
    for name, arr in tensors.items():
        if arr.ndim == 2 and wtype == "f16":
            half = arr.astype(np.float16)
            w.add_tensor(name, half)
            stored[name] = half.astype(np.float32)
        elif arr.ndim == 2 and wtype == "q8_0":
            qtype = gguf.GGMLQuantizationType.Q8_0
            q = gguf.quants.quantize(arr, qtype)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qtype)
            stored[name] = gguf.quants.dequantize(q, qtype).astype(np.float32).reshape(arr.shape)
        else:
            w.add_tensor(name, arr)
            stored[name] = arr
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return stored


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, np.ndarray]]:
    path = tmp_path_factory.mktemp("pyapi") / "tiny-llama-f32.gguf"
    tensors = write_tiny_llama(path)
    return str(path), tensors


@pytest.fixture(scope="module")
def tiny_path(tiny: tuple[str, dict[str, np.ndarray]]) -> str:
    return tiny[0]


@pytest.fixture(scope="module")
def model(tiny_path: str) -> Any:
    m = libllm.Model(tiny_path)
    yield m
    m.close()


def fresh_ctx(model: Any, **kw: Any) -> Any:
    kw.setdefault("n_ctx", 128)
    kw.setdefault("n_threads", 2)
    return libllm.Context(model, **kw)


PROMPT = "the cat sat on the mat"

# ------------------------------------------------------------------------------------------
# Library and model
# ------------------------------------------------------------------------------------------


def test_version_and_library() -> None:
    parts = libllm.__version__.split(".")
    assert len(parts) == 3 and all(p.isdigit() for p in parts)
    assert os.path.isfile(libllm.library_path())


def _import_in_subprocess(library: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["LIBLLM_LIBRARY"] = library
    env["PYTHONPATH"] = os.pathsep.join([PACKAGE_ROOT, env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", "import libllm"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_library_path_override_must_exist(tmp_path: Path) -> None:
    proc = _import_in_subprocess(str(tmp_path / "missing.so"))
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr and "LIBLLM_LIBRARY" in proc.stderr


def test_library_of_another_abi_is_refused(tmp_path: Path) -> None:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None or sys.platform == "win32":
        pytest.skip("no C compiler")
    src = tmp_path / "fake.c"
    src.write_text("unsigned int llm_abi_version(void) { return 999; }\n")
    lib = tmp_path / "libfake.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    proc = _import_in_subprocess(str(lib))
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr and "ABI version 999" in proc.stderr


def test_model_hparams(model: Any) -> None:
    tokens, _, _ = tiny_vocab()
    assert model.arch == "llama"
    assert model.n_vocab == len(tokens)
    assert model.n_embd == N_EMBD
    assert model.n_layer == N_LAYER
    assert model.n_head == N_HEAD
    assert model.n_head_kv == N_HEAD_KV
    assert model.n_ctx_train == N_CTX_TRAIN
    assert model.bos == 1 and model.eos == 2 and model.add_bos is True
    assert model.is_eog(2) and not model.is_eog(5)
    infos = model.tensors()
    assert model.n_params == sum(t.n_elements for t in infos)
    assert model.size == sum(t.n_bytes for t in infos)


def test_metadata(model: Any) -> None:
    meta = model.metadata
    assert meta["general.architecture"] == "llama"
    assert meta["general.name"] == "tiny-test-llama"
    assert meta["llama.block_count"] == str(N_LAYER)
    assert meta["llama.embedding_length"] == str(N_EMBD)
    assert meta["tokenizer.ggml.model"] == "llama"
    assert str(model.n_vocab) in meta["tokenizer.ggml.tokens"]  # "[n items]"
    assert model.meta("llama.context_length") == str(N_CTX_TRAIN)
    assert model.meta("no.such.key") is None
    assert meta["tokenizer.chat_template"] == LONG_META  # longer than the first buffer
    assert model.meta_keys() == list(meta)


def test_tensors_match_file(model: Any, tiny: tuple[str, dict[str, np.ndarray]]) -> None:
    written = tiny[1]
    infos = model.tensors()
    assert {t.name for t in infos} == set(written)
    for t in infos:
        arr = written[t.name]
        assert t.shape == arr.shape, t.name
        assert t.type == 0 and t.type_name == "F32"
        assert t.n_bytes == arr.size * 4
        got = model.tensor(t.name)
        assert got.dtype == np.float32 and got.shape == arr.shape
        np.testing.assert_array_equal(got, arr)
    with pytest.raises(KeyError):
        model.tensor("no.such.tensor")


@pytest.mark.parametrize(
    ("wtype", "type_id", "type_name"), [("f16", 1, "F16"), ("q8_0", 8, "Q8_0")]
)
def test_tensor_types(tmp_path: Path, wtype: str, type_id: int, type_name: str) -> None:
    path = tmp_path / f"tiny-{wtype}.gguf"
    written = write_tiny_llama(path, wtype=wtype)
    with libllm.Model(path) as m:
        by_name = {t.name: t for t in m.tensors()}
        info = by_name["blk.0.ffn_down.weight"]
        assert (info.type, info.type_name) == (type_id, type_name)
        assert info.shape == (N_EMBD, N_FF)
        assert by_name["output_norm.weight"].type_name == "F32"
        for name in ("blk.0.ffn_down.weight", "blk.1.attn_q.weight", "output.weight"):
            np.testing.assert_allclose(m.tensor(name), written[name], rtol=1e-6, atol=1e-7)


def test_type_names() -> None:
    from libllm.model import type_name

    assert [type_name(i) for i in (0, 1, 2, 8, 30, 12)] == [
        "F32",
        "F16",
        "Q4_0",
        "Q8_0",
        "BF16",
        "type12",
    ]


# ------------------------------------------------------------------------------------------
# Tokenizer
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["the cat sat on the mat", "hello world", "xyz", "naïve café 日本 😀", "  two  spaces", "a"],
)
def test_tokenize_round_trip(model: Any, text: str) -> None:
    ids = model.tokenize(text)
    assert ids[0] == model.bos
    assert model.detokenize(ids, remove_special=True) == text
    no_bos = model.tokenize(text, add_bos=False)
    assert no_bos == ids[1:]
    assert model.detokenize(no_bos) == text
    assert model.tokenize(text.encode("utf-8")) == ids
    assert model.detokenize_bytes(no_bos) == text.encode("utf-8")


def test_tokenize_words_and_pieces(model: Any) -> None:
    tokens, _, _ = tiny_vocab()
    ids = model.tokenize("the cat", add_bos=False)
    assert [tokens[i] for i in ids] == ["\u2581the", "\u2581cat"]
    assert model.token_to_piece(tokens.index("\u2581cat")) == b" cat"
    assert model.token_to_piece(3 + 0x41) == b"A"  # byte token <0x41>
    assert model.token_to_piece(3 + 0xE6) == b"\xe6"
    assert model.token_to_piece(1) == b""
    assert model.token_to_piece(1, special=True) == b"<s>"
    assert model.tokenize("", add_bos=False) == []
    assert model.tokenize("", add_bos=True) == [1]
    # special parsing
    assert model.tokenize("<s>", add_bos=False, special=True) == [1]
    assert 1 not in model.tokenize("<s>", add_bos=False, special=False)
    assert model.detokenize([1, *ids], unparse_special=True).startswith("<s>")


def test_long_pieces(model: Any) -> None:
    tokens, _, _ = tiny_vocab()
    long_id = tokens.index(LONG_TOKEN)
    piece = LONG_TOKEN.replace("\u2581", " ").encode()
    assert len(piece) > 100
    assert model.token_to_piece(long_id) == piece
    ids = [long_id] * 5
    assert model.detokenize_bytes(ids) == (piece * 5)[1:]  # leading space removed
    assert model.detokenize(ids) == (piece * 5)[1:].decode()


def test_tokenize_long_text(model: Any) -> None:
    text = "the big dog is on the mat 日本 " * 300
    ids = model.tokenize(text, add_bos=False)
    assert len(ids) > 1000
    assert model.detokenize(ids) == text


def test_bad_tokens_raise(model: Any) -> None:
    n_vocab = model.n_vocab
    with pytest.raises(libllm.InvalidArgumentError) as exc:
        model.token_to_piece(n_vocab + 5)
    assert exc.value.status == -1 and str(exc.value)
    with pytest.raises(libllm.InvalidArgumentError):
        model.detokenize([5, n_vocab])
    with pytest.raises(libllm.InvalidArgumentError):
        model.token_to_piece(-1)
    with pytest.raises(ValueError):
        model.detokenize([2**40])


# ------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(libllm.LibLLMIOError) as exc:
        libllm.Model(missing)
    err = exc.value
    assert err.status == -2 and err.status_str
    assert "nope.gguf" in str(err) and err.message == str(err)
    assert isinstance(exc.value, OSError) and isinstance(exc.value, libllm.LibLLMError)


def test_truncated_and_foreign_files(tmp_path: Path, tiny_path: str) -> None:
    data = Path(tiny_path).read_bytes()
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(libllm.FormatError) as exc:
        libllm.Model(truncated)
    assert exc.value.status == -3 and exc.value.message
    foreign = tmp_path / "foreign.gguf"
    foreign.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(libllm.FormatError) as exc:
        libllm.Model(foreign)
    assert exc.value.message
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(libllm.LibLLMError):
        libllm.Model(empty)


def test_bad_batch_leaves_context_usable(model: Any) -> None:
    ids = model.tokenize(PROMPT)
    with fresh_ctx(model) as ctx:
        batch = libllm.Batch(16)
        for i, t in enumerate(ids):
            batch.add(t, i, 0, logits=i == len(ids) - 1)
        good = libllm.Batch(16)
        for i, t in enumerate(ids):
            good.add(t, i, 0, logits=i == len(ids) - 1)
        batch.add(model.n_vocab + 3, len(ids), 0, logits=True)  # out of the vocabulary
        with pytest.raises(libllm.InvalidArgumentError) as exc:
            ctx.decode(batch)
        assert exc.value.message
        assert ctx.seq_pos_max(0) == -1  # nothing changed
        bad_seq = libllm.Batch(1)
        bad_seq.add(5, 0, 3, logits=True)  # sequence id >= n_seq_max
        with pytest.raises(libllm.InvalidArgumentError):
            ctx.decode(bad_seq)
        gap = libllm.Batch(2)
        gap.add(5, 0, 0)
        gap.add(6, 5, 0, logits=True)  # positions must go up by one
        with pytest.raises(libllm.InvalidArgumentError):
            ctx.decode(gap)
        ctx.decode(good)
        after = ctx.logits().copy()
    with fresh_ctx(model) as ctx2:
        ctx2.decode_tokens(ids)
        np.testing.assert_allclose(after, ctx2.logits(), rtol=1e-5, atol=1e-5)


def test_handles_are_typed(model: Any) -> None:
    lib = libllm._lib.lib
    with fresh_ctx(model) as ctx:
        with pytest.raises(ctypes.ArgumentError):
            lib.llm_model_n_vocab(ctx.handle)
        with pytest.raises(ctypes.ArgumentError):
            lib.llm_context_n_ctx(model.handle)
        with pytest.raises(ctypes.ArgumentError):
            lib.llm_context_n_ctx(12345)
        with pytest.raises(ctypes.ArgumentError):
            lib.llm_model_n_vocab(None)
        assert lib.llm_context_model(ctx.handle).value == model.handle.value


def test_bad_parameters(model: Any) -> None:
    with pytest.raises(ValueError):
        libllm.Context(model, n_ctx=-1)
    with pytest.raises(ValueError):
        libllm.Context(model, type_k="f8")
    with pytest.raises(TypeError):
        libllm.Context("not a model")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        libllm.Batch(0)
    b = libllm.Batch(1, n_seq_max=2)
    with pytest.raises(ValueError):
        b.add(1, 0, [0, 1, 2])
    b.add(1, 0, [0, 1])
    with pytest.raises(IndexError):
        b.add(1, 1, 0)


# ------------------------------------------------------------------------------------------
# Context, Batch, logits
# ------------------------------------------------------------------------------------------


def test_logits_view(model: Any) -> None:
    ids = model.tokenize(PROMPT)
    with fresh_ctx(model) as ctx:
        ctx.decode_tokens(ids, logits="all")
        assert ctx.n_outputs == len(ids)
        row = ctx.logits()
        assert row.shape == (model.n_vocab,) and row.dtype == np.float32
        assert not row.flags.owndata
        ptr = libllm._lib.lib.llm_get_logits_ith(ctx.handle, -1)
        assert row.ctypes.data == ctypes.cast(ptr, ctypes.c_void_p).value  # zero-copy
        assert np.shares_memory(row, ctx.logits(len(ids) - 1))
        rows = ctx.all_logits()
        assert rows.shape == (len(ids), model.n_vocab) and rows.dtype == np.float32
        assert np.shares_memory(rows, row)
        np.testing.assert_array_equal(rows[-1], row)
        np.testing.assert_array_equal(rows[0], ctx.logits(0))
        assert np.isfinite(rows).all()

        ctx.decode_tokens([5, 6], logits="last")
        assert ctx.n_outputs == 1
        with pytest.raises(libllm.InvalidArgumentError):
            ctx.logits(0)  # not requested
        ctx.decode_tokens([7], logits="none")
        assert ctx.n_outputs == 0
        assert ctx.all_logits().shape == (0, model.n_vocab)


def test_context_properties_and_stats(model: Any) -> None:
    with libllm.Context(model, n_ctx=64, n_batch=32, n_ubatch=16, n_seq_max=2, n_threads=1) as ctx:
        assert ctx.n_ctx >= 64 and ctx.n_batch == 32 and ctx.n_ubatch == 16
        assert ctx.n_seq_max == 2 and ctx.model is model
        ctx.set_n_threads(2)
        stats = ctx.stats()
        assert set(stats) == {
            "n_alloc",
            "n_alloc_bytes",
            "n_alloc_decode",
            "n_decode",
            "n_tokens_decoded",
            "n_cells_used",
            "n_cells_total",
        }
        assert stats["n_decode"] == 0 and stats["n_cells_used"] == 0
        ctx.decode_tokens(model.tokenize(PROMPT))
        ctx.decode_tokens([5])
        stats = ctx.stats()
        assert stats["n_decode"] == 2
        assert stats["n_tokens_decoded"] == len(model.tokenize(PROMPT)) + 1
        assert stats["n_cells_used"] == len(model.tokenize(PROMPT)) + 1
        assert stats["n_cells_total"] >= 64


def test_decode_several_sequences(model: Any) -> None:
    prompts = ["the cat sat", "hello world is big", "a dog"]
    ids = [model.tokenize(p) for p in prompts]
    singles = []
    for seq in ids:
        with fresh_ctx(model) as ctx:
            ctx.decode_tokens(seq)
            singles.append(ctx.logits().copy())

    with fresh_ctx(model, n_seq_max=3) as ctx:
        batch = libllm.Batch(64)
        out_index = []
        for s, seq in enumerate(ids):
            for p, t in enumerate(seq):
                batch.add(t, p, s, logits=p == len(seq) - 1)
            out_index.append(len(batch) - 1)
        ctx.decode(batch)
        assert ctx.n_outputs == 3
        for s in range(3):
            np.testing.assert_allclose(ctx.logits(out_index[s]), singles[s], rtol=1e-4, atol=1e-4)
            assert ctx.seq_pos_max(s) == len(ids[s]) - 1
        # continue each sequence by one token, all in one batch
        nxt = [int(np.argmax(ctx.logits(i))) for i in out_index]
        batch.clear()
        assert len(batch) == 0
        for s in range(3):
            batch.add(nxt[s], len(ids[s]), s, logits=True)
        ctx.decode(batch)
        for s in range(3):
            with fresh_ctx(model) as single:
                single.decode_tokens([*ids[s], nxt[s]])
                np.testing.assert_allclose(ctx.logits(s), single.logits(), rtol=1e-4, atol=1e-4)


def test_shared_prefix_tokens(model: Any) -> None:
    """A token can belong to several sequences at once (seq_id arrays)."""
    prefix = model.tokenize("the cat")
    tails = [model.tokenize(" sat on", add_bos=False), model.tokenize(" is big", add_bos=False)]
    with fresh_ctx(model, n_seq_max=2) as ctx:
        batch = libllm.Batch(32, n_seq_max=2)
        for p, t in enumerate(prefix):
            batch.add(t, p, [0, 1])
        ctx.decode(batch)
        assert ctx.seq_pos_max(0) == ctx.seq_pos_max(1) == len(prefix) - 1
        got = []
        for s, tail in enumerate(tails):
            ctx.decode_tokens(tail, seq_id=s)
            got.append(ctx.logits().copy())
    for s, tail in enumerate(tails):
        with fresh_ctx(model) as single:
            single.decode_tokens(prefix + tail)
            np.testing.assert_allclose(got[s], single.logits(), rtol=1e-4, atol=1e-4)


def test_decode_tokens_chunks(model: Any) -> None:
    ids = model.tokenize("the big dog is on the mat hello world " * 3)
    with fresh_ctx(model) as ctx:
        ctx.decode_tokens(ids)
        expect = ctx.logits().copy()
    with fresh_ctx(model, n_batch=4, n_ubatch=4) as ctx:
        ctx.decode_tokens(ids)  # several chunks
        assert ctx.seq_pos_max(0) == len(ids) - 1
        np.testing.assert_allclose(ctx.logits(), expect, rtol=1e-4, atol=1e-4)
        with pytest.raises(ValueError):
            ctx.decode_tokens([])
        with pytest.raises(ValueError):
            ctx.decode_tokens([5], logits="some")


def test_memory_ops(model: Any) -> None:
    ids = model.tokenize(PROMPT)
    n = len(ids)
    with fresh_ctx(model, n_seq_max=2) as ctx:
        ctx.decode_tokens(ids, logits="all")
        all_rows = ctx.all_logits().copy()
        assert (ctx.seq_pos_min(0), ctx.seq_pos_max(0)) == (0, n - 1)
        assert ctx.seq_pos_max(1) == -1
        ctx.seq_cp(0, 1)
        assert (ctx.seq_pos_min(1), ctx.seq_pos_max(1)) == (0, n - 1)
        ctx.seq_rm(1, 3, -1)
        assert ctx.seq_pos_max(1) == 2
        # recompute position 3 of sequence 1: same logits as the first decode gave
        ctx.decode_tokens([ids[3]], seq_id=1)
        np.testing.assert_allclose(ctx.logits(), all_rows[3], rtol=1e-4, atol=1e-4)
        assert ctx.seq_pos_max(1) == 3
        ctx.seq_keep(0)
        assert ctx.seq_pos_max(1) == -1 and ctx.seq_pos_max(0) == n - 1
        ctx.seq_rm(0, 2, 4)
        assert ctx.seq_pos_min(0) == 0 and ctx.seq_pos_max(0) == n - 1
        ctx.seq_rm(-1)
        assert ctx.seq_pos_max(0) == -1
        ctx.decode_tokens(ids)
        ctx.memory_clear()
        assert ctx.seq_pos_max(0) == -1 and ctx.stats()["n_cells_used"] == 0
        with pytest.raises(libllm.InvalidArgumentError):
            ctx.seq_cp(0, 7)


def test_seq_add_and_div(model: Any) -> None:
    ids = model.tokenize(PROMPT)
    n = len(ids)
    with fresh_ctx(model, n_seq_max=2) as ctx:
        ctx.decode_tokens(ids)
        ctx.seq_add(0, 0, -1, 10)
        assert (ctx.seq_pos_min(0), ctx.seq_pos_max(0)) == (10, n + 9)
        ctx.seq_add(0, -1, -1, -10)
        assert (ctx.seq_pos_min(0), ctx.seq_pos_max(0)) == (0, n - 1)
        ctx.seq_div(0, 2, -1, 2)  # llama.cpp semantics: pos = pos / d for pos in [p0, p1)
        assert (ctx.seq_pos_min(0), ctx.seq_pos_max(0)) == (0, (n - 1) // 2)
        with pytest.raises(libllm.InvalidArgumentError):
            ctx.seq_div(0, 0, -1, 0)


def test_state_round_trips(model: Any, tmp_path: Path) -> None:
    ids = model.tokenize(PROMPT)
    more = model.tokenize(" hello world", add_bos=False)
    with fresh_ctx(model, n_seq_max=2) as a:
        a.decode_tokens(ids)
        state = a.save_state()
        seq_state = a.save_seq(0)
        assert isinstance(state, bytes) and isinstance(seq_state, bytes)
        a.save_state_file(tmp_path / "ctx.state")
        a.save_seq_file(0, tmp_path / "seq.state")
        assert (tmp_path / "ctx.state").read_bytes() == state
        assert (tmp_path / "seq.state").read_bytes() == seq_state
        last = a.logits().copy()
        a.decode_tokens(more)
        expect = a.logits().copy()
    with fresh_ctx(model, n_seq_max=2) as b:
        b.load_state(bytearray(state))
        np.testing.assert_array_equal(b.logits(), last)
        b.decode_tokens(more)
        np.testing.assert_allclose(b.logits(), expect, rtol=1e-5, atol=1e-5)
        b.load_state_file(tmp_path / "ctx.state")
        assert b.seq_pos_max(0) == len(ids) - 1
        b.load_seq(seq_state, 1)
        b.load_seq_file(1, tmp_path / "seq.state")
        assert b.seq_pos_max(1) == len(ids) - 1
        b.decode_tokens(more, seq_id=1)
        np.testing.assert_allclose(b.logits(), expect, rtol=1e-5, atol=1e-5)
        before = (b.seq_pos_max(0), b.seq_pos_max(1))
        for bad in (state[:-1], b"", b"x" * 100, memoryview(state)[:50]):
            with pytest.raises(libllm.FormatError) as exc:
                b.load_state(bad)
            assert exc.value.message
        assert (b.seq_pos_max(0), b.seq_pos_max(1)) == before
        with pytest.raises(libllm.LibLLMIOError):
            b.load_state_file(tmp_path / "missing.state")


def test_memory_full(model: Any) -> None:
    with libllm.Context(model, n_ctx=32, n_batch=512, n_threads=2) as ctx:
        n_ctx = ctx.n_ctx
        ids = (model.tokenize("the cat sat on the mat " * 100, add_bos=False))[: n_ctx + 1]
        assert len(ids) == n_ctx + 1
        with pytest.raises(libllm.MemoryFullError) as exc:
            ctx.decode_tokens(ids)
        assert exc.value.status == 1
        assert ctx.seq_pos_max(0) == -1  # nothing changed
        ctx.decode_tokens(ids[:n_ctx])
        with pytest.raises(libllm.MemoryFullError):
            ctx.decode_tokens(ids[n_ctx:])
        assert ctx.seq_pos_max(0) == n_ctx - 1
        ctx.seq_rm(0, n_ctx - 1)
        ctx.decode_tokens(ids[n_ctx - 1 : n_ctx])


def test_abort_callback(model: Any) -> None:
    ids = model.tokenize("the big dog is on the mat " * 3)
    calls = []

    def abort() -> bool:
        calls.append(1)
        return True

    with fresh_ctx(model, n_batch=64, n_ubatch=4, abort_callback=abort) as ctx:
        with pytest.raises(libllm.AbortedError) as exc:
            ctx.decode_tokens(ids)
        assert exc.value.status == 2 and calls

    def boom() -> bool:
        raise RuntimeError("boom from the callback")

    ctx = fresh_ctx(model, n_batch=64, n_ubatch=4, abort_callback=boom)
    with ctx, pytest.raises(RuntimeError, match="boom"):
        ctx.decode_tokens(ids)

    with fresh_ctx(model, n_batch=64, n_ubatch=4, abort_callback=lambda: False) as ctx:
        ctx.decode_tokens(ids)
        assert ctx.seq_pos_max(0) == len(ids) - 1


def test_progress_callback(tiny_path: str) -> None:
    seen: list[float] = []
    with libllm.Model(tiny_path, progress=seen.append) as m:
        assert m.n_vocab > 0
    assert seen and all(0.0 <= p <= 1.0 for p in seen)
    with pytest.raises(libllm.AbortedError):
        libllm.Model(tiny_path, progress=lambda p: False)

    def boom(p: float) -> None:
        raise KeyError("from progress")

    with pytest.raises(KeyError, match="from progress"):
        libllm.Model(tiny_path, progress=boom)


def test_vocab_only(tiny_path: str) -> None:
    with libllm.Model(tiny_path, vocab_only=True, use_mmap=False) as m:
        ids = m.tokenize(PROMPT)
        assert m.detokenize(ids, remove_special=True) == PROMPT
        with pytest.raises(libllm.LibLLMError):
            libllm.Context(m)


# ------------------------------------------------------------------------------------------
# Sampler
# ------------------------------------------------------------------------------------------


def test_sampler_greedy_is_argmax(model: Any) -> None:
    with fresh_ctx(model) as ctx, libllm.Sampler(temperature=0) as greedy:
        ctx.decode_tokens(model.tokenize(PROMPT))
        logits = ctx.logits()
        expect = int(np.argmax(logits))
        assert greedy.sample(ctx) == expect
        assert greedy.sample(ctx, -1) == expect
        assert libllm.Sampler.chain().add_greedy().sample_logits(logits) == expect
        assert libllm.Sampler.chain().sample_logits(logits) == expect  # no selector: greedy
        chain = libllm.Sampler.chain().add_top_k(1).add_dist(5)
        assert chain.sample_logits(logits) == expect


def test_sampler_chain_arguments() -> None:
    logits = np.array([1.0, 5.0, 4.9, -3.0, 0.5], dtype=np.float32)
    before = logits.copy()
    s = libllm.Sampler.chain().add_penalties(64, 2.0).add_greedy()
    assert s.sample_logits(logits) == 1
    s.accept(1)  # 5.0 / 2 < 4.9
    assert s.sample_logits(logits) == 2
    s.reset()
    assert s.sample_logits(logits) == 1
    np.testing.assert_array_equal(logits, before)  # not modified
    # presence penalty
    p = libllm.Sampler.chain().add_penalties(64, 1.0, 0.0, 0.2).add_greedy()
    p.accept(1)
    assert p.sample_logits(logits) == 2
    # works from lists and float64 too
    assert libllm.Sampler(temperature=0).sample_logits([0.0, 1.0, 3.0]) == 2
    with pytest.raises(ValueError):
        libllm.Sampler(temperature=0).sample_logits(np.zeros((2, 2)))


def test_sampler_seeds() -> None:
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((40, 50)).astype(np.float32)

    def draw(seed: int) -> list[int]:
        with libllm.Sampler(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=seed) as s:
            return [s.sample_logits(r) for r in rows]

    a = draw(42)
    assert a == draw(42)
    assert len(set(a)) > 3
    assert any(draw(s) != a for s in (1, 2, 3))
    with libllm.Sampler(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=42) as s:
        first = [s.sample_logits(r) for r in rows[:10]]
        s.reset()
        assert [s.sample_logits(r) for r in rows[:10]] == first == a[:10]
    with pytest.raises(ValueError):
        libllm.Sampler(seed=2**40)


def test_sampler_top_k_restricts() -> None:
    logits = np.array([0.0, 3.0, 2.9, 2.8, -1.0, 1.0], dtype=np.float32)
    with libllm.Sampler(temperature=5.0, top_k=2, top_p=1.0, min_p=0.0, seed=1) as s:
        picks = {s.sample_logits(logits) for _ in range(200)}
    assert picks == {1, 2}


# ------------------------------------------------------------------------------------------
# LLM
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llm(tiny_path: str) -> Any:
    with libllm.LLM(tiny_path, n_ctx=256, n_threads=2) as obj:
        yield obj


def greedy_tokens(model: Any, prompt: str, n: int) -> list[int]:
    """The greedy continuation computed by hand with Context + argmax."""
    ids = model.tokenize(prompt, special=True)
    out: list[int] = []
    with fresh_ctx(model, n_ctx=256) as ctx:
        ctx.decode_tokens(ids)
        for _ in range(n):
            tok = int(np.argmax(ctx.logits()))
            if model.is_eog(tok):
                break
            out.append(tok)
            ctx.decode_tokens([tok])
    return out


def test_generate_greedy_matches_manual_loop(llm: Any) -> None:
    toks = greedy_tokens(llm.model, PROMPT, 24)
    assert len(toks) == 24
    expect = b"".join(llm.model.token_to_piece(t) for t in toks).decode("utf-8", "replace")
    got = llm.generate(PROMPT, max_tokens=24, temperature=0)
    assert got == expect
    assert llm.generate(PROMPT, max_tokens=24, temperature=0) == got
    assert llm.last_stats.n_generated == 24
    assert llm.last_stats.n_prompt_tokens == len(llm.tokenize(PROMPT))


def test_stream_equals_generate(llm: Any) -> None:
    pieces = list(llm.stream(PROMPT, max_tokens=30, temperature=0))
    assert all(isinstance(p, str) and p for p in pieces)
    assert "".join(pieces) == llm.generate(PROMPT, max_tokens=30, temperature=0)
    seeded = list(llm.stream(PROMPT, max_tokens=30, temperature=1.0, seed=99))
    assert "".join(seeded) == llm.generate(PROMPT, max_tokens=30, temperature=1.0, seed=99)


def test_seeds_reproducible(llm: Any, tiny_path: str) -> None:
    kw: dict[str, Any] = {"max_tokens": 20, "temperature": 1.2, "top_k": 0, "min_p": 0.0}
    a = llm.generate(PROMPT, seed=7, **kw)
    assert a == llm.generate(PROMPT, seed=7, **kw)
    assert any(llm.generate(PROMPT, seed=s, **kw) != a for s in (8, 9, 10))
    with libllm.LLM(tiny_path, n_ctx=128, seed=7, n_threads=2) as other:
        assert other.generate(PROMPT, **kw) == a  # the LLM's seed is the default


def test_repeat_penalty_changes_output(llm: Any) -> None:
    plain = llm.generate(PROMPT, max_tokens=30, temperature=0)
    penalised = llm.generate(PROMPT, max_tokens=30, temperature=0, repeat_penalty=50.0)
    assert plain != penalised


def test_max_tokens(llm: Any) -> None:
    for n in (0, 1, 5):
        llm.generate(PROMPT, max_tokens=n, temperature=0)
        assert llm.last_stats.n_generated == n
    assert llm.generate(PROMPT, max_tokens=0) == ""


def test_stop_strings_cut_exactly(llm: Any) -> None:
    toks = greedy_tokens(llm.model, PROMPT, 40)
    decoder = Utf8Decoder()
    pieces = [decoder.feed(llm.model.token_to_piece(t)) for t in toks]
    pieces.append(decoder.flush())
    full = llm.generate(PROMPT, max_tokens=40, temperature=0)
    assert full == "".join(pieces)
    assert len(full) > 12
    # a stop string straddling a token boundary
    boundary = max(2, len(pieces[0]) + len(pieces[1]) + len(pieces[2]))
    stop = full[boundary - 2 : boundary + 2]
    assert len(stop) == 4
    expect = full[: full.find(stop)]
    assert llm.generate(PROMPT, max_tokens=40, temperature=0, stop=[stop]) == expect
    assert "".join(llm.stream(PROMPT, max_tokens=40, temperature=0, stop=[stop])) == expect
    # several stops: the earliest wins; a stop that never appears changes nothing
    later = full[len(full) - 5 :]
    assert (
        llm.generate(PROMPT, max_tokens=40, temperature=0, stop=[later, stop, "\x00never"])
        == full[: min(full.find(stop), full.find(later))]
    )
    assert llm.generate(PROMPT, max_tokens=40, temperature=0, stop=["\x00never"]) == full
    assert llm.generate(PROMPT, max_tokens=40, temperature=0, stop=[full[:3]]) == ""
    assert llm.generate(PROMPT, max_tokens=40, temperature=0, stop=[""]) == full
    # every single-character-aligned cut
    for k in range(1, len(full) - 2, 7):
        s = full[k : k + 3]
        assert llm.generate(PROMPT, max_tokens=40, temperature=0, stop=[s]) == full[: full.find(s)]


def test_stop_at_end_of_generation(tmp_path: Path, tiny_path: str) -> None:
    with libllm.LLM(tiny_path, n_ctx=128, n_threads=2) as a:
        toks = greedy_tokens(a.model, PROMPT, 8)
        full = a.generate(PROMPT, max_tokens=8, temperature=0)
    # the same weights, with a generated token (not seen before it) declared end-of-sequence
    j = next((j for j in range(1, len(toks)) if toks[j] not in toks[:j]), None)
    if j is None:
        pytest.skip("the greedy continuation repeats one token")
    path = tmp_path / "eos.gguf"
    write_tiny_llama(path, eos_id=toks[j])
    with libllm.LLM(path, n_ctx=128, n_threads=2) as b:
        assert b.model.eos == toks[j] and b.model.is_eog(toks[j])
        got = b.generate(PROMPT, max_tokens=8, temperature=0)
        assert b.last_stats.n_generated == j
        pieces = b"".join(b.model.token_to_piece(t) for t in toks[:j])
        assert got == pieces.decode("utf-8", "replace")
        assert full.startswith(got)


def test_context_full_stops_quietly(tiny_path: str) -> None:
    with libllm.LLM(tiny_path, n_ctx=16, n_threads=2) as small:
        n_ctx = small.context.n_ctx
        n_prompt = len(small.tokenize(PROMPT))
        text = small.generate(PROMPT, max_tokens=10 * n_ctx, temperature=0)
        assert isinstance(text, str)
        # every cell is used: the last sampled token is yielded but never decoded
        assert small.last_stats.n_generated == n_ctx - n_prompt + 1
        # unlimited tokens also stop at the full context
        small.generate(PROMPT, max_tokens=-1, temperature=0)
        assert small.last_stats.n_generated == n_ctx - n_prompt + 1
        with pytest.raises(ValueError):
            small.generate("the cat " * n_ctx, max_tokens=4)


def test_new_generation_ends_old_stream(llm: Any) -> None:
    first = llm.stream(PROMPT, max_tokens=20, temperature=0)
    next(first)
    llm.generate(PROMPT, max_tokens=2, temperature=0)
    with pytest.raises(RuntimeError):
        list(first)


def test_llm_logits_rows_match_decodes(llm: Any, tiny_path: str) -> None:
    ids = llm.tokenize("the cat sat on the big mat hello")
    rows = llm.logits(ids)
    assert rows.shape == (len(ids), llm.model.n_vocab) and rows.dtype == np.float32
    assert rows.flags.owndata
    assert not np.shares_memory(rows, llm.context.all_logits())
    model = llm.model
    for i in range(len(ids)):
        with fresh_ctx(model) as ctx:
            ctx.decode_tokens(ids[: i + 1])
            np.testing.assert_allclose(rows[i], ctx.logits(), rtol=1e-4, atol=1e-4)
    with libllm.LLM(tiny_path, n_ctx=64, n_batch=3, n_threads=2) as chunked:
        np.testing.assert_allclose(chunked.logits(ids), rows, rtol=1e-4, atol=1e-4)
    assert llm.logits([]).shape == (0, model.n_vocab)
    # generation after scoring starts from a cleared sequence
    assert llm.generate(PROMPT, max_tokens=8, temperature=0) == llm.generate(
        PROMPT, max_tokens=8, temperature=0
    )


def test_utf8_output_is_valid(llm: Any) -> None:
    # random weights pick byte tokens too: whatever comes out must be a valid str
    for seed in range(3):
        text = llm.generate(PROMPT, max_tokens=40, temperature=2.0, top_k=0, min_p=0.0, seed=seed)
        text.encode("utf-8")  # no lone surrogates


# ------------------------------------------------------------------------------------------
# Helpers: incremental UTF-8 and stop strings
# ------------------------------------------------------------------------------------------

UTF8_SAMPLE = "aé€日😀b\u0301 z".encode()


def test_utf8_decoder_every_split() -> None:
    text = UTF8_SAMPLE.decode()
    n = len(UTF8_SAMPLE)
    for i, j in itertools.combinations(range(n + 1), 2):
        d = Utf8Decoder()
        parts = [d.feed(UTF8_SAMPLE[:i]), d.feed(UTF8_SAMPLE[i:j]), d.feed(UTF8_SAMPLE[j:])]
        parts.append(d.flush())
        assert "".join(parts) == text
        assert "\ufffd" not in "".join(parts)
    d = Utf8Decoder()
    assert "".join(d.feed(bytes([b])) for b in UTF8_SAMPLE) + d.flush() == text


def test_utf8_decoder_invalid_bytes() -> None:
    d = Utf8Decoder()
    assert d.feed(b"a\xff") == "a\ufffd"
    assert d.feed(b"\xe6\x97") == ""  # held: incomplete
    assert d.feed(b"\xa5") == "日"
    assert d.feed(b"\xe6") == ""
    assert d.flush() == "\ufffd"  # incomplete at the end


def test_stop_matcher_every_split() -> None:
    text = "one two three four"
    for stop, expect in (
        ("three", "one two "),
        ("o t", "one tw"),
        ("xyz", text),
        ("r", "one two th"),
    ):
        for i, j in itertools.combinations(range(len(text) + 1), 2):
            m = StopMatcher([stop])
            out = m.feed(text[:i]) + m.feed(text[i:j]) + m.feed(text[j:]) + m.flush()
            assert out == expect, (stop, i, j)
        m = StopMatcher([stop])
        out = "".join(m.feed(c) for c in text) + m.flush()
        assert out == expect


def test_stop_matcher_holds_back_only_prefixes() -> None:
    m = StopMatcher(["abc", "xy"])
    assert m.feed("hello a") == "hello "
    assert m.feed("b") == ""
    assert m.feed("d") == "abd"
    assert m.feed("x") == ""
    assert m.feed("y") == ""
    assert m.stopped
    assert m.feed("more") == "" and m.flush() == ""
    m = StopMatcher(["abc"])
    assert m.feed("zab") == "z"
    assert m.flush() == "ab"
    assert StopMatcher([]).feed("anything") == "anything"


# ------------------------------------------------------------------------------------------
# Lifetime
# ------------------------------------------------------------------------------------------


def test_closed_objects_raise(tiny_path: str) -> None:
    with libllm.Model(tiny_path) as m:
        ctx = libllm.Context(m, n_ctx=32)
        s = libllm.Sampler()
    assert m.closed and ctx.closed  # closing the model closed its context first
    with pytest.raises(libllm.ClosedError):
        _ = m.n_vocab
    with pytest.raises(libllm.ClosedError):
        m.tokenize("x")
    with pytest.raises(libllm.ClosedError):
        ctx.decode_tokens([1])
    with pytest.raises(libllm.ClosedError):
        ctx.logits()
    s.close()
    s.close()  # idempotent
    with pytest.raises(libllm.ClosedError):
        s.sample_logits([1.0, 2.0])
    m.close()
    ctx.close()
    assert "closed" in repr(m) and "closed" in repr(ctx)


def test_context_keeps_model_alive(tiny_path: str) -> None:
    m = libllm.Model(tiny_path)
    ref = weakref.ref(m)
    ctx = libllm.Context(m, n_ctx=32)
    del m
    gc.collect()
    assert ref() is not None
    ctx.decode_tokens([1, 5, 6])
    assert ctx.logits().shape[0] == ctx.model.n_vocab
    ctx_ref = weakref.ref(ctx)
    del ctx
    gc.collect()
    assert ctx_ref() is None and ref() is None


def test_garbage_cycles_free_in_order(tiny_path: str) -> None:
    for _ in range(3):
        m = libllm.Model(tiny_path)
        ctx = libllm.Context(m, n_ctx=32)
        s = libllm.Sampler()
        m.cycle = (ctx, s)  # type: ignore[attr-defined]
        ctx.cycle = m  # type: ignore[attr-defined]
        s.cycle = ctx  # type: ignore[attr-defined]
        refs = [weakref.ref(o) for o in (m, ctx, s)]
        del m, ctx, s
        gc.collect()
        assert all(r() is None for r in refs)


def test_llm_context_manager(tiny_path: str) -> None:
    with libllm.LLM(tiny_path, n_ctx=64, n_threads=2) as obj:
        assert obj.generate("the", max_tokens=3, temperature=0) is not None
    assert obj.model.closed and obj.context.closed
    with pytest.raises(libllm.ClosedError):
        obj.generate("the", max_tokens=3)
    obj.close()


def test_logging_goes_to_python_logger(tiny_path: str, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from libllm import _log

    with caplog.at_level(logging.DEBUG, logger="libllm"):
        # the installed C callback, called through its C function pointer
        _log._callback(2, "a warning from C: caf\u00e9".encode(), None)
        _log._callback(0, b"a debug line", None)
        with libllm.Model(tiny_path) as m:
            libllm.Context(m, n_ctx=32).close()
    records = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "libllm"]
    assert (logging.WARNING, "a warning from C: caf\u00e9") in records
    assert (logging.DEBUG, "a debug line") in records
