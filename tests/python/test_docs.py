"""Every code sample in README.md and docs/*.md runs: Python blocks are executed (with
"model.gguf" standing for a generated test model), C blocks with a main() are compiled
against the library and run with the model's path."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _blocks(lang: str) -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for i, m in enumerate(FENCE.finditer(doc.read_text(encoding="utf-8"))):
            if m.group(1) == lang:
                found.append((f"{doc.name}#{i}", m.group(2)))
    return found


PYTHON = _blocks("python")
C = [(name, code) for name, code in _blocks("c") if "int main(" in code]


@pytest.mark.parametrize("name,code", PYTHON, ids=[n for n, _ in PYTHON])
def test_python_sample_runs(lib, model_factory, name, code, tmp_path, monkeypatch):
    path = model_factory("llama", "q8_0").path
    monkeypatch.chdir(tmp_path)
    sample = compile(code.replace("model.gguf", path), name, "exec")
    exec(sample, {"__name__": "__doc__"})  # noqa: S102 - running the docs is the point


@pytest.mark.parametrize("name,code", C, ids=[n for n, _ in C])
def test_c_sample_runs(lib, model_factory, name, code, tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    src = tmp_path / "sample.c"
    src.write_text(code)
    libpath = Path(lib.library_path())
    exe = tmp_path / "sample"
    subprocess.run([cc, "-std=c11", "-Wall", "-Wextra", "-Werror",
                    f"-I{ROOT / 'libllm' / 'include'}", str(src), str(libpath),
                    f"-Wl,-rpath,{libpath.parent}", "-o", str(exe)], check=True)
    subprocess.run([str(exe), model_factory("llama", "q8_0").path], check=True)
