"""The C ABI used from C alone: the header compiles as C and C++, and the example program in
docs/examples (load, tokenize, decode, sample) gives the same greedy text as the Python API."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
INCLUDE = ROOT / "libllm" / "include"


def _compiler(names: list[str]) -> str:
    for n in names:
        if shutil.which(n):
            return n
    pytest.skip(f"no compiler among {names}")


@pytest.mark.parametrize("lang", ["c", "c++"])
def test_header_compiles(tmp_path: Path, lang: str) -> None:
    src = tmp_path / ("h.c" if lang == "c" else "h.cpp")
    src.write_text('#include "libllm.h"\nint main(void) { return (int)llm_abi_version() - '
                   'LLM_ABI_VERSION; }\n')
    cc = _compiler(["cc", "gcc"] if lang == "c" else ["c++", "g++"])
    std = ["-std=c11"] if lang == "c" else ["-std=c++11"]
    subprocess.run([cc, *std, "-Wall", "-Wextra", "-pedantic", "-Werror", "-fsyntax-only",
                    f"-I{INCLUDE}", str(src)], check=True)


def test_c_example_matches_python(tmp_path: Path, lib, model_factory) -> None:
    case = model_factory("llama", "q8_0")
    libpath = Path(lib.library_path())
    exe = tmp_path / "simple"
    subprocess.run([_compiler(["cc", "gcc"]), "-std=c11", "-Wall", "-Wextra", "-Werror",
                    f"-I{INCLUDE}", str(ROOT / "docs" / "examples" / "simple.c"),
                    str(libpath), f"-Wl,-rpath,{libpath.parent}", "-o", str(exe)], check=True)
    prompt, n_predict = "hello world", 12
    out = subprocess.run([str(exe), case.path, prompt, str(n_predict)], check=True,
                         capture_output=True, env={**os.environ}).stdout

    # the same greedy loop through the Python API
    model = lib.Model(case.path)
    ctx = lib.Context(model, n_ctx=512)
    tokens = model.tokenize(prompt, add_bos=True)
    ctx.decode_tokens(tokens)
    pieces = []
    for _ in range(n_predict):
        tok = int(np.argmax(ctx.logits(-1)))
        if model.is_eog(tok):
            break
        pieces.append(model.token_to_piece(tok))
        ctx.decode_tokens([tok])
    ctx.close()
    model.close()
    assert out == b"".join(pieces) + b"\n"
