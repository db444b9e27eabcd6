"""Tests of the ``libllm`` command line (``python -m libllm``), run in subprocesses on a tiny
random-weight llama GGUF."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

gguf = pytest.importorskip("gguf")
try:
    import libllm
except ImportError as exc:  # the shared library is not built (or does not match)
    pytest.skip(f"libllm not importable: {exc}", allow_module_level=True)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_python_api import PROMPT, write_tiny_llama

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(libllm.__file__)))


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("cli") / "tiny-llama.gguf"
    write_tiny_llama(path)
    return str(path)


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([PACKAGE_ROOT, env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    env["LIBLLM_LIBRARY"] = libllm.library_path()
    return subprocess.run(
        [sys.executable, "-m", "libllm", *args],
        capture_output=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def assert_clean_error(proc: subprocess.CompletedProcess[bytes], code: int = 1) -> str:
    err = proc.stderr.decode()
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert proc.stdout == b""
    lines = [line for line in err.splitlines() if line.strip()]
    if code == 1:
        assert len(lines) == 1, err
        assert lines[0].startswith("libllm: error: ")
    return err


def test_run_prints_only_generated_text(tiny_path: str) -> None:
    proc = run_cli("run", "-m", tiny_path, "-p", PROMPT, "-n", "16", "--temp", "0", "-t", "2")
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    with libllm.LLM(tiny_path, n_ctx=2048, n_threads=2) as llm:
        expect = llm.generate(PROMPT, max_tokens=16, temperature=0)
        n_prompt = len(llm.tokenize(PROMPT))
    assert proc.stdout.decode("utf-8") == expect
    assert PROMPT not in proc.stdout.decode("utf-8", "replace")
    assert "loaded" in err
    assert f"prompt: {n_prompt} tokens" in err
    assert "generated: 16 tokens" in err
    assert "tokens/s" in err


def test_run_greedy_is_deterministic(tiny_path: str) -> None:
    args = ("run", "--model", tiny_path, "--prompt", "hello world", "--n-predict", "12")
    a = run_cli(*args, "--temp", "0", "--ctx-size", "64", "--threads", "1")
    b = run_cli(*args, "--temp", "0", "-c", "64", "-b", "4", "-ub", "2", "-t", "2")
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert a.stdout == b.stdout and a.stdout


def test_run_seed_reproducible(tiny_path: str) -> None:
    args = ("run", "-m", tiny_path, "-p", PROMPT, "-n", "12", "--temp", "1.5", "--top-k", "0")
    a = run_cli(*args, "--seed", "11")
    b = run_cli(*args, "-s", "11")
    assert a.returncode == 0, a.stderr
    assert a.stdout == b.stdout
    with libllm.LLM(tiny_path, n_threads=2) as llm:
        expect = llm.generate(PROMPT, max_tokens=12, temperature=1.5, top_k=0, seed=11)
    assert a.stdout.decode() == expect


def test_run_other_flags(tiny_path: str, tmp_path: Path) -> None:
    prompt_file = tmp_path / "prompt.txt"
    prompt_file.write_text(PROMPT, encoding="utf-8")
    proc = run_cli(
        "run",
        "-m",
        tiny_path,
        "-f",
        str(prompt_file),
        "-n",
        "5",
        "--temp",
        "0.7",
        "--top-p",
        "0.9",
        "--min-p",
        "0.1",
        "--repeat-penalty",
        "1.1",
        "-np",
        "2",
        "--type-k",
        "f32",
        "--type-v",
        "f32",
        "-ngl",
        "0",
        "--seed",
        "3",
    )
    assert proc.returncode == 0, proc.stderr
    assert "generated: 5 tokens" in proc.stderr.decode()


def test_run_verbose_logs_to_stderr_only(tiny_path: str) -> None:
    quiet = run_cli("run", "-m", tiny_path, "-p", PROMPT, "-n", "4", "--temp", "0")
    loud = run_cli("run", "-m", tiny_path, "-p", PROMPT, "-n", "4", "--temp", "0", "--verbose")
    assert loud.returncode == 0, loud.stderr
    assert loud.stdout == quiet.stdout


def test_run_closed_stdout_is_quiet(tiny_path: str) -> None:
    """``libllm run ... | head -c 1``: the reader goes away; no traceback, exit 0."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([PACKAGE_ROOT, env.get("PYTHONPATH", "")])
    env["LIBLLM_LIBRARY"] = libllm.library_path()
    argv = [sys.executable, "-m", "libllm", "run", "-m", tiny_path, "-p", PROMPT, "-n", "300"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "Exception" not in err


def test_info(tiny_path: str) -> None:
    proc = run_cli("info", tiny_path)
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr
    assert "architecture:  llama" in out
    assert "n_layer:       2" in out
    assert "F32" in out
    assert "general.architecture" in out and "tokenizer.ggml.tokens" in out
    assert "items]" in out  # the token array is summarised
    template = [line for line in out.splitlines() if "tokenizer.chat_template" in line]
    assert len(template) == 1 and "chars)" in template[0]  # one line, shortened
    assert len(out.splitlines()) < 200
    assert run_cli("info", "-m", tiny_path).stdout == proc.stdout


def test_info_quantized_types(tmp_path: Path) -> None:
    path = tmp_path / "q8.gguf"
    write_tiny_llama(path, wtype="q8_0")
    proc = run_cli("info", str(path))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    assert "Q8_0" in out and "F32" in out


@pytest.mark.parametrize(
    "args",
    [
        ("run", "-m", "/no/such/model.gguf", "-p", "x"),
        ("info", "/no/such/model.gguf"),
        ("info",),
        ("run", "-m", "MODEL"),  # no prompt
        ("run", "-m", "MODEL", "-p", "x", "-c", "-5"),
        ("run", "-m", "MODEL", "-p", "x", "-b", "0"),
        ("run", "-m", "MODEL", "-p", "x", "--seed", "99999999999"),
        ("run", "-m", "MODEL", "-f", "/no/such/prompt.txt"),
        ("run", "-m", "BAD", "-p", "x"),
        ("info", "BAD"),
    ],
)
def test_user_errors(args: tuple[str, ...], tiny_path: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 20)
    argv = [tiny_path if a == "MODEL" else str(bad) if a == "BAD" else a for a in args]
    err = assert_clean_error(run_cli(*argv))
    if "/no/such/model.gguf" in args:
        assert "model.gguf" in err


@pytest.mark.parametrize(
    "args",
    [
        ("run", "-m", "x.gguf", "-p", "x", "-n", "many"),
        ("run", "--type-k", "f8", "-m", "x.gguf", "-p", "x"),
        ("bogus",),
        ("run", "--no-such-flag"),
    ],
)
def test_argparse_errors(args: tuple[str, ...]) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr.decode()


def test_no_command_prints_help() -> None:
    proc = run_cli()
    assert proc.returncode == 2
    assert b"run" in proc.stderr and b"info" in proc.stderr


def test_main_in_process(tiny_path: str, capsys: Any) -> None:
    from libllm.cli import main

    assert main(["info", tiny_path]) == 0
    assert "llama" in capsys.readouterr().out
    assert main(["run", "-m", "/no/such/model.gguf", "-p", "x"]) == 1
    assert capsys.readouterr().err.startswith("libllm: error: ")


def test_run_uses_the_bundled_model(lib) -> None:
    from libllm.models import default_model_path

    proc = run_cli("run", "-p", "def fibonacci(", "-n", "16", "--temp", "0")
    assert proc.returncode == 0, proc.stderr
    with lib.LLM(default_model_path(), n_ctx=2048) as llm:
        want = llm.generate("def fibonacci(", max_tokens=16, temperature=0)
    assert proc.stdout.decode() == want and want


def test_info_estimates_and_run_verbose_reports_memory(lib, tiny_path: str) -> None:
    proc = run_cli("info", tiny_path, "--ctx", "512", "-ctk", "f32", "-np", "2")
    assert proc.returncode == 0, proc.stderr
    with lib.Model(tiny_path) as model:
        want = lib.Context.estimate_memory(model, n_ctx=512, n_seq_max=2, type_k="f32")
    out = proc.stdout.decode()
    assert str(want["k"]) in out and str(want["v"]) in out and str(want["compute"]) in out
    proc = run_cli("run", "-m", tiny_path, "-p", "x", "-n", "2", "--ctx", "256", "--verbose")
    assert proc.returncode == 0, proc.stderr
    assert "K cache" in proc.stderr.decode() and "compute buffers" in proc.stderr.decode()


def test_chat_keeps_the_conversation(lib, tiny_path: str) -> None:
    lines = "hi there\nand more\n/exit\n"
    proc = subprocess.run([sys.executable, "-m", "libllm", "chat", "-m", tiny_path, "-n", "6",
                           "--temp", "0", "-c", "8192", "-sys", "be brief"],
                          input=lines.encode(), capture_output=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    with lib.LLM(tiny_path, n_ctx=8192) as llm:
        history = [{"role": "system", "content": "be brief"},
                   {"role": "user", "content": "hi there"}]
        first = llm.chat(history, max_tokens=6, temperature=0)
        history += [{"role": "assistant", "content": first},
                    {"role": "user", "content": "and more"}]
        second = llm.chat(history, max_tokens=6, temperature=0)
    assert proc.stdout.decode() == first + "\n\n" + second + "\n\n"
