"""libllm's SentencePiece ("llama") tokenizer against the real sentencepiece library.

A BPE SentencePiece model is trained here (seeded, a few MB of text gathered offline: Python
stdlib sources, /usr/share/doc text files, generated multilingual text and emoji), written as
a vocab-only GGUF the way llama.cpp's convert_hf_to_gguf.py (_set_vocab_sentencepiece) writes
one, and loaded with libllm. On held-out text (other files, other generated lines, > 100 KB)
libllm must give exactly sp.encode(text), and decode ids exactly as sp.decode(ids).

The corpus helpers (training_text, heldout_text, edge_lines, train_spm, write_vocab_gguf) do
not need libllm, so other harnesses can reuse them.
"""
from __future__ import annotations

import hashlib
import random
import sysconfig
import time
import unicodedata
from pathlib import Path

import pytest

spm = pytest.importorskip("sentencepiece")
gguf = pytest.importorskip("gguf")

SEED = 1234
# The main model (as the brief of llama-style SentencePiece models goes: byte fallback, dummy
# prefix) and a variant without either: unknown characters become <unk>, runs of them one <unk>.
CONFIGS = {
    "bytefallback": dict(vocab_size=8000, byte_fallback=True, add_dummy_prefix=True),
    "unk-noprefix": dict(vocab_size=4000, byte_fallback=False, add_dummy_prefix=False),
}
CONTROL_SYMBOLS = ["<|im_start|>", "<|im_end|>"]
USER_DEFINED_SYMBOLS = ["<tag>", "</tag>", "[[", "]]"]
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2

SPACE = "\u2581"

# ---------------------------------------------------------------------------------------------
# corpus
# ---------------------------------------------------------------------------------------------

STDLIB = Path(sysconfig.get_paths()["stdlib"])
DOCS = Path("/usr/share/doc")

# Script ranges (inclusive) for generated text; only assigned code points are used.
SCRIPTS = {
    "latin": [(0x41, 0x5A), (0x61, 0x7A), (0xC0, 0xFF), (0x100, 0x17F)],
    "greek": [(0x391, 0x3A9), (0x3B1, 0x3C9)],
    "cyrillic": [(0x410, 0x44F)],
    "arabic": [(0x621, 0x64A)],
    "hebrew": [(0x5D0, 0x5EA)],
    "devanagari": [(0x905, 0x939), (0x93E, 0x94C)],
    "hiragana": [(0x3041, 0x3096)],
    "katakana": [(0x30A1, 0x30FA)],
    "hangul": [(0xAC00, 0xAC00 + 150)],
    "cjk": [(0x4E00, 0x4E00 + 400)],
    "emoji": [(0x1F600, 0x1F64F), (0x1F300, 0x1F3FF), (0x1F900, 0x1F9FF)],
}
# Only in held-out text: scripts the model never saw (byte fallback).
RARE_SCRIPTS = {
    "cjk_rare": [(0x4E00 + 400, 0x9FFF)],
    "runic": [(0x16A0, 0x16EA)],
    "cherokee": [(0x13A0, 0x13F4)],
    "gothic": [(0x10330, 0x1034A)],
    "linear_b": [(0x10000, 0x1000B)],
    "math_alnum": [(0x1D400, 0x1D4FF)],
    "private_use": [(0xE000, 0xE0FF)],
}

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Le cœur a ses raisons que la raison ne connaît point.",
    "Über den Wolken muss die Freiheit wohl grenzenlos sein.",
    "¿Dónde está la biblioteca? ¡Qué día tan bonito!",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "Γρήγορη καφέ αλεπού πηδάει πάνω από το τεμπέλικο σκυλί.",
    "الثعلب البني السريع يقفز فوق الكلب الكسول.",
    "השועל החום המהיר קופץ מעל הכלב העצלן.",
    "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है।",
    "素早い茶色の狐がのろまな犬を飛び越える。",
    "敏捷的棕色狐狸跳过了懒狗。",
    "빠른 갈색 여우가 게으른 개를 뛰어넘는다.",
    "Nhanh chóng con cáo nâu nhảy qua con chó lười.",
    "Pchnąć w tę łódź jeża lub ośm skrzyń fig.",
    "Příliš žluťoučký kůň úpěl ďábelské ódy.",
    "Emoji: 😀 😃 😄 🎉 🚀 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️",
]


def _assigned(ranges):
    out = []
    for lo, hi in ranges:
        for cp in range(lo, hi + 1):
            ch = chr(cp)
            if unicodedata.category(ch) != "Cn":
                out.append(ch)
    return out


def _generated_lines(rng: random.Random, scripts: dict, n_lines: int) -> list[str]:
    """Lines of pseudo-words in the given scripts, with digits, punctuation and spacing."""
    alphabets = {name: _assigned(r) for name, r in scripts.items()}
    names = sorted(alphabets)
    lines = []
    for _ in range(n_lines):
        script = rng.choice(names)
        alpha = alphabets[script]
        words = []
        for _ in range(rng.randint(1, 12)):
            k = rng.choice((1, 2, 2, 3, 3, 4, 5, 7))
            word = "".join(rng.choice(alpha) for _ in range(k))
            r = rng.random()
            if r < 0.08:
                word += rng.choice(".,;:!?")
            elif r < 0.12:
                word = str(rng.randint(0, 10 ** rng.randint(1, 6)))
            words.append(word)
        sep = " " if script not in ("cjk", "hiragana", "katakana", "cjk_rare") else rng.choice(("", " "))
        lines.append(sep.join(words))
    return lines


def _unicode_name_lines(rng: random.Random, n: int) -> list[str]:
    chars = _assigned([(0x20, 0x52F), (0x2000, 0x22FF), (0x1F300, 0x1F5FF)])
    lines = []
    for _ in range(n):
        ch = rng.choice(chars)
        name = unicodedata.name(ch, "")
        if name:
            lines.append(f"{ch}\t{name.lower()}\tU+{ord(ch):04X} {unicodedata.category(ch)}")
    return lines


def _read_text(path: Path) -> str | None:
    try:
        data = path.read_bytes()
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _stdlib_files() -> list[Path]:
    return sorted(STDLIB.glob("*.py"))


def _doc_files() -> list[Path]:
    if not DOCS.is_dir():
        return []
    files = [p for p in DOCS.rglob("*") if p.is_file() and not p.is_symlink()
             and p.suffix not in (".gz", ".bz2", ".xz", ".zip", ".png", ".jpg", ".gif", ".pdf")]
    return sorted(files)


def _collect(files, pick, budget: int) -> list[str]:
    """Texts of the files pick(index) selects, distinct by content, until budget bytes."""
    out, seen, total = [], set(), 0
    for i, path in enumerate(files):
        if not pick(i) or total >= budget:
            continue
        text = _read_text(path)
        if not text or len(text) > 300_000:
            continue
        digest = hashlib.sha1(text.encode()).digest()
        if digest in seen:
            continue
        seen.add(digest)
        out.append(text)
        total += len(text.encode())
    return out


def training_text() -> str:
    rng = random.Random(SEED)
    parts = _collect(_stdlib_files(), lambda i: i % 4 != 0, 2_000_000)
    parts += _collect(_doc_files(), lambda i: i % 3 != 0, 600_000)
    gen = _generated_lines(rng, SCRIPTS, 12000)
    gen += _unicode_name_lines(rng, 4000)
    gen += SENTENCES * 20
    gen += [f"{u} {v}" for u in USER_DEFINED_SYMBOLS for v in ("a", "b <tag>x</tag>")] * 10
    rng.shuffle(gen)
    parts.append("\n".join(gen))
    return "\n".join(parts)


def heldout_text() -> str:
    """> 100 KB of text not used in training: other files, other generated lines, oddities."""
    rng = random.Random(SEED + 1)
    parts = _collect(_stdlib_files(), lambda i: i % 4 == 0, 60_000)
    parts += _collect(_doc_files(), lambda i: i % 3 == 0, 25_000)
    gen = _generated_lines(rng, SCRIPTS, 500)
    gen += _generated_lines(rng, RARE_SCRIPTS, 120)
    gen += _unicode_name_lines(rng, 300)
    gen += SENTENCES
    gen += edge_lines()
    rng.shuffle(gen)
    parts.append("\n".join(gen))
    # runs of whitespace of every kind
    parts.append("".join(rng.choice((" ", "  ", "    ", "\t", "\n", "\r\n", " \t ", "x", "é", "😀"))
                         for _ in range(3000)))
    return "\n\n".join(parts)


def edge_lines() -> list[str]:
    return [
        "", " ", "  ", "   ", "\t", "\n", " \n ", "\t\tindented", "    four spaces",
        " leading space", "trailing space ", "  both  ", "a  b   c    d", "x" * 300,
        SPACE, SPACE * 3 + "x", "a" + SPACE + "b", "▁▁ mixed ▁",
        "😀", "😀😀😀", "👨‍👩‍👧‍👦", "🏳️‍🌈", "e\u0301", "\u200b\u200d", "\ufeffbom",
        "<tag>", " <tag> ", "<tag>inner</tag>", "a<tag>b", "<tag><tag>", "[[link]]", "[[[x]]]",
        "<|im_start|>user\nhi<|im_end|>", "<s>", "</s>", "<unk>", "<0x41>", "<0x0A>",
        "0123456789", "3.14159", "1,000,000", "x = [i ** 2 for i in range(10)]",
        "\x01\x02\x7f", "\r", "\x0b\x0c", "\u2028", "\U0001F9FF\U0001FA70", "\ue000\uf8ff",
        "ᚠᚢᚦᚨᚱᚲ", "𝐀𝐁𝐂", "ꀀꀁ", "𐌰𐌱𐌲",
    ]


# ---------------------------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------------------------

def train_spm(workdir: Path, vocab_size=8000, byte_fallback=True, add_dummy_prefix=True) -> Path:
    """Trains a BPE model into workdir/spm.model (deterministic for a given corpus)."""
    corpus = workdir / "corpus.txt"
    corpus.write_text(training_text(), encoding="utf-8")
    spm.set_random_generator_seed(SEED)
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(workdir / "spm"),
        model_type="bpe",
        vocab_size=vocab_size,
        byte_fallback=byte_fallback,
        split_digits=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=add_dummy_prefix,
        allow_whitespace_only_pieces=True,
        character_coverage=0.9995,
        input_sentence_size=400_000,
        shuffle_input_sentence=True,
        max_sentence_length=4096,
        num_threads=2,
        unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID, pad_id=-1,
        control_symbols=CONTROL_SYMBOLS,
        user_defined_symbols=USER_DEFINED_SYMBOLS,
        minloglevel=2,
    )
    return workdir / "spm.model"


def vocab_arrays(sp) -> tuple[list[bytes], list[float], list[int]]:
    """tokens, scores, token types as convert_hf_to_gguf's _set_vocab_sentencepiece writes
    them, with the user-defined symbols typed USER_DEFINED (as added tokens are)."""
    T = gguf.TokenType
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        piece = sp.id_to_piece(i)
        t = T.NORMAL
        if sp.is_unknown(i):
            t = T.UNKNOWN
        elif sp.is_control(i):
            t = T.CONTROL
        elif sp.is_unused(i):
            t = T.UNUSED
        elif sp.is_byte(i):
            t = T.BYTE
        elif piece in USER_DEFINED_SYMBOLS:
            t = T.USER_DEFINED
        tokens.append(piece.encode("utf-8"))
        scores.append(float(sp.get_score(i)))
        types.append(int(t))
    return tokens, scores, types


def write_vocab_gguf(sp, path: Path, add_space_prefix=True) -> Path:
    tokens, scores, types = vocab_arrays(sp)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("spm-bpe-vocab")
    w.add_vocab_size(len(tokens))
    w.add_context_length(512)
    w.add_embedding_length(64)
    w.add_block_count(1)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(4)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(add_space_prefix)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def spm_env(request, tmp_path_factory):
    cfg = CONFIGS[request.param]
    workdir = tmp_path_factory.mktemp("spm-" + request.param)
    t0 = time.perf_counter()
    model_path = train_spm(workdir, **cfg)
    train_s = time.perf_counter() - t0
    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    gguf_path = write_vocab_gguf(sp, workdir / "vocab.gguf", cfg["add_dummy_prefix"])
    print(f"\n[{request.param}] sentencepiece BPE training: {train_s:.1f} s, "
          f"{sp.get_piece_size()} pieces")
    return cfg, sp, gguf_path


@pytest.fixture(scope="module")
def cfg(spm_env):
    return spm_env[0]


@pytest.fixture(scope="module")
def sp(spm_env):
    return spm_env[1]


@pytest.fixture(scope="module")
def model(spm_env):
    import libllm

    m = libllm.Model(str(spm_env[2]), vocab_only=True)
    yield m
    m.close()


@pytest.fixture(scope="module")
def heldout():
    text = heldout_text()
    assert len(text.encode("utf-8")) >= 100_000
    return text


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def _first_diff(a: list, b: list) -> int:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def _explain(sp, text: str, ours: list[int], ref: list[int]) -> str:
    i = _first_diff(ours, ref)
    lo = max(0, i - 5)
    show = lambda ids: [sp.id_to_piece(t) if 0 <= t < sp.get_piece_size() else t for t in ids]
    return (f"text {text[:120]!r}{'...' if len(text) > 120 else ''}: {len(ours)} ids vs "
            f"{len(ref)} from sentencepiece, first difference at {i}:\n"
            f"  libllm:        {show(ours[lo:i + 6])}\n"
            f"  sentencepiece: {show(ref[lo:i + 6])}")


def _check_lines(sp, model, lines: list[str]):
    bad = []
    for line in lines:
        ref = sp.encode(line)
        ours = model.tokenize(line, add_bos=False)
        if ours != ref:
            bad.append(_explain(sp, line, ours, ref))
            continue
        if model.detokenize(ref) != sp.decode(ref):
            bad.append(f"decode of {line!r}: {model.detokenize(ref)!r} != {sp.decode(ref)!r}")
    assert not bad, f"{len(bad)} of {len(lines)} lines differ:\n" + "\n".join(bad[:10])


# ---------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------

def test_vocab_metadata(sp, model):
    assert model.n_vocab == sp.get_piece_size()
    assert model.bos == sp.bos_id()
    assert model.eos == sp.eos_id()


def test_edge_lines(sp, model):
    _check_lines(sp, model, edge_lines())


def test_heldout_lines(sp, model, heldout):
    lines = heldout.split("\n")
    _check_lines(sp, model, lines)
    # the same lines with the spacing around them that line splitting removed
    _check_lines(sp, model, [" " + l for l in lines[::7]] + [l + " \n" for l in lines[3::7]])


def test_heldout_whole_text(cfg, sp, model, heldout):
    ref = sp.encode(heldout)
    t0 = time.perf_counter()
    ours = model.tokenize(heldout, add_bos=False)
    dt = time.perf_counter() - t0
    n = len(heldout.encode("utf-8"))
    print(f"\nheld-out text: {n} bytes -> {len(ref)} tokens; libllm {n / dt / 1e6:.1f} MB/s")
    assert ours == ref, _explain(sp, heldout, ours, ref)
    assert model.detokenize(ref) == sp.decode(ref)
    if cfg["byte_fallback"]:
        # identity normalization: decoding gives the text back (a literal U+2581 reads as a
        # space)
        assert model.detokenize(ref) == heldout.replace(SPACE, " ")


def test_fallback_used(cfg, sp, heldout):
    """The held-out text really exercises byte fallback / <unk> and the user-defined symbols."""
    ids = sp.encode(heldout)
    if cfg["byte_fallback"]:
        assert any(sp.is_byte(i) for i in ids)
    else:
        assert sp.unk_id() in ids
        # a run of unknown characters is one <unk>
        assert sp.encode("\u16a0\u16a1\u16a2") == sp.encode("\u16a0")
        assert all(not (a == b == sp.unk_id()) for a, b in zip(ids, ids[1:]))
    assert sp.piece_to_id("<tag>") in ids


def _random_strings(rng: random.Random, n: int) -> list[str]:
    """Short strings from an alphabet chosen to meet many pieces and all the corner cases."""
    alphabet = (list(" \t\n") * 6 + list("aeinorst") * 3 + list("<>[]/|_=.,'\"()0123456789")
                + list("ABCxyzé") + ["<tag>", "</tag>", "[[", "]]", "<s>", "<|im_end|>", SPACE]
                + list("ßøçπλжшعש中国語日本") + ["😀", "🎉", "\u200d", "\u0301"]
                + list("ᚠᚢ\ue000\U00010330\U0001D400\x00\x7f"))
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24))) for _ in range(n)]


def test_random_strings(sp, model):
    _check_lines(sp, model, _random_strings(random.Random(SEED + 3), 3000))


def test_bos_and_bytes_input(sp, model):
    text = "Hello world, 世界 😀"
    ref = sp.encode(text)
    assert model.tokenize(text) == [sp.bos_id()] + ref
    assert model.tokenize(text, add_bos=True) == [sp.bos_id()] + ref
    assert model.tokenize(text.encode("utf-8"), add_bos=False) == ref
    assert model.tokenize("", add_bos=False) == []
    assert model.tokenize("") == [sp.bos_id()]


def test_special_tokens(cfg, sp, model):
    start, end = (sp.piece_to_id(s) for s in CONTROL_SYMBOLS)
    text = "<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant"
    # without parsing, the control text is plain text (sentencepiece never matches it)
    assert model.tokenize(text, add_bos=False) == sp.encode(text)
    # parsed: each run after a special token starts with the space prefix (llama.cpp rule)
    want = ([start] + sp.encode("user\nhi there") + [end] + sp.encode("\n") + [start]
            + sp.encode("assistant"))
    assert model.tokenize(text, add_bos=False, special=True) == want
    assert model.tokenize("<s>x</s>", add_bos=False, special=True) == [
        sp.bos_id()] + sp.encode("x") + [sp.eos_id()]
    # decoding: control tokens are invisible unless unparsed
    ids = [sp.bos_id(), start] + sp.encode("hello world") + [end, sp.eos_id()]
    assert model.detokenize(ids) == sp.decode(ids) == "hello world"
    # once something is shown, the space prefix of the next piece is a real space
    sp_ = " " if cfg["add_dummy_prefix"] else ""
    assert model.detokenize(ids, unparse_special=True) == f"<s><|im_start|>{sp_}hello world<|im_end|></s>"
    assert model.detokenize(ids, remove_special=True, unparse_special=True) == (
        f"<|im_start|>{sp_}hello world<|im_end|>")


def test_token_to_piece(sp, model):
    for i in range(sp.get_piece_size()):
        piece = sp.id_to_piece(i)
        if sp.is_control(i):
            want, want_special = b"", piece.encode()
        elif sp.is_unknown(i):
            want, want_special = " \u2047 ".encode(), piece.encode()
        elif sp.is_byte(i):
            want = want_special = bytes([int(piece[3:5], 16)])
        else:
            want = want_special = piece.replace(SPACE, " ").encode()
        assert model.token_to_piece(i) == want, (i, piece)
        assert model.token_to_piece(i, special=True) == want_special, (i, piece)


def test_detokenize_matches_sentencepiece_on_id_sequences(sp, model):
    """Arbitrary id sequences (not produced by encode) decode as sp.decode does: the dummy
    prefix dropped once, unknown as ' ⁇ ', control tokens invisible."""
    rng = random.Random(SEED + 2)
    n = sp.get_piece_size()
    text_ids = [i for i in range(n) if not sp.is_byte(i)]
    ascii_bytes = [i for i in range(n) if sp.is_byte(i) and 0x20 <= int(sp.id_to_piece(i)[3:5], 16) < 0x7F]
    ascii_bytes = ascii_bytes or text_ids
    for _ in range(1000):
        ids = [rng.choice(text_ids if rng.random() < 0.8 else ascii_bytes)
               for _ in range(rng.randint(0, 12))]
        assert model.detokenize(ids) == sp.decode(ids), [sp.id_to_piece(i) for i in ids]


def test_speed_linear(sp, model, heldout):
    """1 MB in one call: catches quadratic behaviour; the result still equals sentencepiece."""
    big = (heldout + "\n") * (1_000_000 // len(heldout.encode("utf-8")) + 1)
    t0 = time.perf_counter()
    ours = model.tokenize(big, add_bos=False)
    dt = time.perf_counter() - t0
    print(f"\n{len(big.encode('utf-8')) / 1e6:.2f} MB tokenized in {dt:.3f} s")
    assert dt < 10.0
    assert ours == sp.encode(big)
