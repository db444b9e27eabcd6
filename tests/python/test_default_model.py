"""The default model bundled in the package (libllm/models/default.gguf).

It must load from the installed package with no download, have the shape its README documents,
tokenize Python source losslessly, and complete a Python prompt with something code-like.
Fast (well under a few seconds): one load, short generations, no timing assertions.
"""

from __future__ import annotations

import json
import os
import textwrap

import pytest

# The shape documented in bindings/python/libllm/models/README.md.
N_VOCAB, N_EMBD, N_LAYER, N_HEAD, N_HEAD_KV, N_CTX_TRAIN = 4096, 256, 6, 8, 4, 256
N_PARAMS = 5_475_584  # tied embeddings: no output.weight


@pytest.fixture(scope="module")
def llm(lib):
    from libllm.models import default_model_path

    m = lib.LLM(default_model_path(), n_ctx=N_CTX_TRAIN, n_threads=2, seed=1)
    yield m
    m.close()


def test_path_is_in_the_package(lib):
    from libllm.models import default_model_path

    path = default_model_path()
    assert os.path.isfile(path)
    assert os.path.basename(path) == "default.gguf"
    assert os.path.dirname(path) == os.path.join(os.path.dirname(lib.__file__), "models")
    assert os.path.getsize(path) < 8_000_000
    with open(path, "rb") as f:
        assert f.read(4) == b"GGUF"


def test_shape(llm):
    m = llm.model
    assert (m.n_vocab, m.n_embd, m.n_layer, m.n_head, m.n_head_kv, m.n_ctx_train) == (
        N_VOCAB,
        N_EMBD,
        N_LAYER,
        N_HEAD,
        N_HEAD_KV,
        N_CTX_TRAIN,
    )
    assert m.n_params == N_PARAMS
    assert m.meta("general.architecture") == "llama"
    assert m.meta("tokenizer.ggml.model") == "llama"


SNIPPETS = [
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    textwrap.dedent(
        '''\
        class Stack:
            """A LIFO stack."""

            def __init__(self):
                self._items = []

            def push(self, item):
                self._items.append(item)


        if __name__ == "__main__":
        \tprint(Stack())   # tab, trailing spaces   \n
        '''
    ),
    "x = {'a': [1, 2, 3], \"b\": (4.5e-3, 0x1F)}\n\n\n  \n",
    "    leading spaces and no newline",
    "s = 'caf\u00e9 \u00fcber \u65e5\u672c \U0001f600'\r\n",
    " ",
    "\n",
]


def _stdlib_snippets():
    import json as json_mod
    import textwrap as tw

    out = []
    for mod in (json_mod, tw):
        with open(mod.__file__, encoding="utf-8") as f:
            out.append(f.read()[:4000])
    return out


@pytest.mark.parametrize("i", range(len(SNIPPETS)))
def test_tokenizer_round_trips_python(llm, i):
    text = SNIPPETS[i]
    ids = llm.tokenize(text, add_bos=False)
    assert ids
    assert llm.detokenize(ids) == text


def test_tokenizer_round_trips_stdlib_source(llm):
    for text in _stdlib_snippets():
        ids = llm.tokenize(text, add_bos=False)
        assert llm.detokenize(ids) == text
        # a code vocabulary: indentation and keywords are whole pieces, so well under one
        # token per 2 bytes
        assert len(ids) < len(text.encode()) / 2


def test_tokenizer_has_indent_pieces(llm):
    ids = llm.tokenize("        return x", add_bos=False)
    assert len(ids) <= 3  # "▁▁▁▁▁▁▁▁", "return", "▁x" (or similar)
    assert llm.tokenize("x", add_bos=True)[0] == 1  # BOS is added by default


def test_greedy_generation_is_code_like(llm):
    out = llm.generate("def fibonacci(", max_tokens=48, temperature=0)
    assert out.strip()
    assert "\n" in out or "return" in out or ":" in out
    # greedy is deterministic
    assert llm.generate("def fibonacci(", max_tokens=48, temperature=0) == out


def test_sampled_generation(llm):
    out = llm.generate("import os\n", max_tokens=32, temperature=0.7, seed=3)
    assert isinstance(out, str)
    assert json.dumps(out)  # valid text
