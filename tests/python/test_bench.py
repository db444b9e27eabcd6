"""Tests of ``libllm bench`` on a tiny generated model: the flags parse, the output has
llama-bench's fields with sane values. Nothing here asserts a speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

try:
    import libllm
    from libllm import cli
except ImportError as exc:  # the shared library is not built (or does not match)
    pytest.skip(f"libllm not importable: {exc}", allow_module_level=True)

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(libllm.__file__)))

FIELDS = (
    "model_filename",
    "model_type",
    "model_size",
    "model_n_params",
    "n_batch",
    "n_ubatch",
    "n_threads",
    "type_k",
    "type_v",
    "n_prompt",
    "n_gen",
    "avg_ns",
    "stddev_ns",
    "avg_ts",
    "stddev_ts",
    "samples_ns",
    "samples_ts",
    "peak_rss_bytes",
    "cpu_level",
)


@pytest.fixture(scope="module")
def q8_path(model_factory: Any) -> str:
    return str(model_factory("llama", "q8_0").path)


def bench_json(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    code = cli.main(["bench", *args, "-o", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    results = json.loads(out)
    assert isinstance(results, list)
    return results


def check_result(res: dict[str, Any], reps: int) -> None:
    for field in FIELDS:
        assert field in res, field
    assert len(res["samples_ns"]) == reps
    assert len(res["samples_ts"]) == reps
    assert all(ns > 0 for ns in res["samples_ns"])
    assert all(ts > 0 for ts in res["samples_ts"])
    assert res["avg_ts"] > 0 and res["avg_ns"] > 0
    assert res["stddev_ts"] >= 0 and res["stddev_ns"] >= 0
    assert min(res["samples_ts"]) <= res["avg_ts"] * (1 + 1e-9)
    assert res["avg_ts"] <= max(res["samples_ts"]) * (1 + 1e-9)
    assert res["model_size"] > 0 and res["model_n_params"] > 0
    assert res["peak_rss_bytes"] > 1024 * 1024
    assert res["model_type"].startswith("llama ") and res["model_type"].endswith("Q8_0")
    assert res["cpu_level"] == (os.environ.get("LIBLLM_CPU_LEVEL") or "auto")


def test_bench_json_fields(q8_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    results = bench_json(capsys, "-m", q8_path, "-p", "16", "-n", "4", "-r", "2", "-t", "2")
    assert [(r["n_prompt"], r["n_gen"]) for r in results] == [(16, 0), (0, 4)]
    for res in results:
        check_result(res, 2)
        assert res["model_filename"] == q8_path
        assert res["n_threads"] == 2
        assert (res["n_batch"], res["n_ubatch"]) == (2048, 512)
        assert (res["type_k"], res["type_v"]) == ("f16", "f16")
        n_tokens = res["n_prompt"] or res["n_gen"]
        for ns, ts in zip(res["samples_ns"], res["samples_ts"]):
            assert ts == pytest.approx(n_tokens * 1e9 / ns)


def test_bench_lists_and_parallel(q8_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    results = bench_json(
        capsys,
        "-m", q8_path,
        "-p", "8,12", "-n", "0", "-r", "1",
        "-t", "1,2", "-b", "8", "-ub", "4", "-ctk", "bf16", "-np", "2",
    )  # fmt: skip
    assert sorted((r["n_threads"], r["n_prompt"]) for r in results) == [
        (1, 8),
        (1, 12),
        (2, 8),
        (2, 12),
    ]
    for res in results:
        check_result(res, 1)
        assert res["n_gen"] == 0 and res["n_parallel"] == 2
        assert (res["n_batch"], res["n_ubatch"], res["type_k"]) == (8, 4, "bf16")
        # both sequences' tokens count
        assert res["samples_ts"][0] == pytest.approx(2 * res["n_prompt"] * 1e9 / res["avg_ns"])


def test_bench_depth_and_jsonl(q8_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(
        ["bench", "-m", q8_path, "-p", "0", "-n", "3", "-d", "5", "-r", "2", "-o", "jsonl"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 1
    res = json.loads(lines[0])
    check_result(res, 2)
    assert (res["n_prompt"], res["n_gen"], res["n_depth"]) == (0, 3, 5)


def test_bench_markdown_subprocess(q8_path: str) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([PACKAGE_ROOT, env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    env["LIBLLM_LIBRARY"] = libllm.library_path()
    proc = subprocess.run(
        [sys.executable, "-m", "libllm", "bench", "-m", q8_path, "-p", "16", "-n", "4", "-r", "2"],
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    lines = proc.stdout.decode().splitlines()
    assert lines[0].startswith("| model ") and "t/s" in lines[0]
    assert len(lines) == 4
    assert "| pp16 |" in lines[2] and "| tg4 |" in lines[3]
    assert "Traceback" not in proc.stderr.decode()


@pytest.mark.parametrize(
    "args",
    [
        ["bench", "-p", "16"],  # no model
        ["bench", "-m", "/nonexistent/model.gguf", "-p", "4", "-n", "1", "-r", "1"],
        ["bench", "-m", "MODEL", "-p", "0", "-n", "0"],  # nothing to measure
        ["bench", "-m", "MODEL", "-r", "0"],
    ],
)
def test_bench_user_errors(
    args: list[str], q8_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main([q8_path if a == "MODEL" else a for a in args])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("libllm: error: "), err


def test_bench_bad_flag_values(q8_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    for bad in (["-t", "0"], ["-p", "x"], ["-ctk", "q3"], ["-o", "csv"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(["bench", "-m", q8_path, *bad])
        assert exc.value.code == 2
    capsys.readouterr()
