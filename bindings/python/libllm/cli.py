"""The ``libllm`` command: ``libllm run`` generates text, ``libllm info`` describes a model,
``libllm bench`` measures prompt and generation speed (llama-bench's flags and fields).

Flag names follow llama-cli's. Generated text goes to stdout and nothing else does; load
time, statistics and errors go to stderr. A user mistake gives one ``libllm: error: ...``
line and exit code 1 (2 for a malformed command line, as argparse does).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, Callable

from . import bench
from ._errors import LibLLMError
from .context import CACHE_TYPES, Context
from .llm import LLM
from .model import Model
from .models import default_model_path

PROG = "libllm"


class _UserError(Exception):
    """A mistake in the command line that argparse cannot see (exit code 1)."""


def _eprint(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "unknown error"


def _human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    return f"{n} B"


def _human_count(n: int) -> str:
    for div, unit in ((10**9, "B"), (10**6, "M"), (10**3, "K")):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


# -- parser ------------------------------------------------------------------------------


def _add_generation_args(p: argparse.ArgumentParser) -> None:
    """The model, context and sampling flags that run and chat share (llama-cli's names)."""
    p.add_argument("-m", "--model", metavar="FILE",
                     help="the GGUF model file (default: the small code model bundled with "
                          "libllm)")
    p.add_argument(
        "-n",
        "--n-predict",
        type=int,
        default=128,
        metavar="N",
        help="tokens to generate (-1: until the context is full; default 128)",
    )
    p.add_argument(
        "-c",
        "--ctx-size",
        "--ctx",
        type=int,
        default=2048,
        metavar="N",
        help="context size (0: the model's; default 2048)",
    )
    p.add_argument(
        "-t",
        "--threads",
        type=int,
        default=0,
        metavar="N",
        help="compute threads (default: all cores)",
    )
    p.add_argument(
        "-b",
        "--batch-size",
        type=int,
        default=512,
        metavar="N",
        help="tokens per decode call (default 512)",
    )
    p.add_argument(
        "-ub",
        "--ubatch-size",
        type=int,
        default=512,
        metavar="N",
        help="tokens computed at once (default 512)",
    )
    p.add_argument(
        "-np",
        "--parallel",
        type=int,
        default=1,
        metavar="N",
        help="sequences the context holds (default 1)",
    )
    p.add_argument(
        "--temp", type=float, default=0.8, metavar="T", help="temperature (0: greedy; default 0.8)"
    )
    p.add_argument("--top-k", type=int, default=40, metavar="K", help="top-k (default 40)")
    p.add_argument("--top-p", type=float, default=0.95, metavar="P", help="top-p (default 0.95)")
    p.add_argument("--min-p", type=float, default=0.05, metavar="P", help="min-p (default 0.05)")
    p.add_argument(
        "--repeat-penalty",
        type=float,
        default=1.0,
        metavar="R",
        help="repeat penalty over the last 64 tokens (1: off; default 1.0)",
    )
    p.add_argument(
        "-s",
        "--seed",
        type=int,
        default=-1,
        metavar="S",
        help="sampling seed (-1: random; default -1)",
    )
    p.add_argument(
        "-ctk",
        "--type-k",
        "--cache-type-k",
        dest="type_k",
        default="f16",
        choices=list(CACHE_TYPES),
        help="KV cache type of keys (default f16)",
    )
    p.add_argument(
        "-ctv",
        "--type-v",
        "--cache-type-v",
        dest="type_v",
        default="f16",
        choices=list(CACHE_TYPES),
        help="KV cache type of values (default f16)",
    )
    p.add_argument(
        "-ngl",
        "--n-gpu-layers",
        "--gpu-layers",
        dest="n_gpu_layers",
        type=int,
        default=0,
        metavar="N",
        help="layers to offload to a GPU (default 0)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="show library log lines")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="libllm: run GGUF language models.",
        allow_abbrev=False,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="generate text from a prompt",
        description="Generate text after a prompt; only the generated text goes to stdout.",
        allow_abbrev=False,
    )
    run.add_argument("-p", "--prompt", metavar="TEXT", help="the prompt")
    run.add_argument("-f", "--file", metavar="FILE", help="read the prompt from a file")
    _add_generation_args(run)
    run.set_defaults(func=_cmd_run)

    chat = sub.add_parser(
        "chat",
        help="chat interactively with the model",
        description="An interactive chat with the model's chat template: each line you type is "
        "a user message, the reply streams back; the conversation stays in the KV cache, so "
        "only each new turn is decoded. /exit or end of input quits, /reset starts over.",
        allow_abbrev=False,
    )
    chat.add_argument("-sys", "--system", metavar="TEXT", help="a system message")
    _add_generation_args(chat)
    chat.set_defaults(func=_cmd_chat)

    info = sub.add_parser(
        "info",
        help="describe a model file",
        description="Print a model's hyper-parameters, tensor types and metadata.",
        allow_abbrev=False,
    )
    info.add_argument("model_pos", nargs="?", metavar="MODEL", help="the GGUF model file")
    info.add_argument("-m", "--model", dest="model_opt", metavar="FILE", help="the GGUF model file")
    info.add_argument("-c", "--ctx", "--ctx-size", dest="ctx_size", type=int, default=None,
                      metavar="N", help="also estimate the memory of a context of N cells "
                      "(0: the model's training context)")
    info.add_argument("-b", "--batch-size", type=int, default=512, metavar="N")
    info.add_argument("-ub", "--ubatch-size", type=int, default=512, metavar="N")
    info.add_argument("-np", "--parallel", type=int, default=1, metavar="N",
                      help="sequences the context serves")
    info.add_argument("-t", "--threads", type=int, default=0, metavar="N")
    info.add_argument("-ctk", "--type-k", "--cache-type-k", dest="type_k", default="f16",
                      choices=list(CACHE_TYPES), help="KV cache type of keys (default f16)")
    info.add_argument("-ctv", "--type-v", "--cache-type-v", dest="type_v", default="f16",
                      choices=list(CACHE_TYPES), help="KV cache type of values (default f16)")
    info.set_defaults(func=_cmd_info)

    bench_parser = sub.add_parser(
        "bench",
        help="measure prompt and generation speed",
        description="Measure prompt processing (pp) and text generation (tg) speed, with "
        "llama-bench's flags and output fields. List flags take comma lists; every "
        "combination is measured.",
        allow_abbrev=False,
    )
    bench.add_arguments(bench_parser)
    bench_parser.set_defaults(func=bench.run)
    return parser


# -- run ---------------------------------------------------------------------------------


def _need_model(path: str | None) -> str:
    if not path:
        raise _UserError("no model given: pass a GGUF file with -m MODEL")
    return path


def _read_prompt(args: argparse.Namespace) -> str:
    if args.prompt is not None and args.file is not None:
        raise _UserError("give the prompt with -p or -f, not both")
    if args.file is not None:
        try:
            with open(args.file, encoding="utf-8") as f:
                return f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise _UserError(f"cannot read the prompt file {args.file!r}: {exc}") from None
    if args.prompt is not None:
        return str(args.prompt)
    raise _UserError("no prompt given: pass one with -p PROMPT (or -f FILE)")


class _LoadBar:
    """A progress bar on stderr while the model loads (only on a terminal)."""

    def __init__(self) -> None:
        self.shown = -1

    def __call__(self, progress: float) -> bool:
        step = int(progress * 30)
        if step != self.shown:
            self.shown = step
            sys.stderr.write(f"\r{PROG}: loading [{'#' * step}{'.' * (30 - step)}]")
            if step == 30:
                sys.stderr.write("\r" + " " * 50 + "\r")
            sys.stderr.flush()
        return True


def _open_llm(args: argparse.Namespace) -> LLM:
    """The LLM the generation flags describe (the bundled model when -m is absent), with
    the load line (and with --verbose the memory breakdown) on stderr."""
    model_path = args.model or default_model_path()
    for name, value, low in (
        ("--ctx-size", args.ctx_size, 0),
        ("--batch-size", args.batch_size, 1),
        ("--ubatch-size", args.ubatch_size, 1),
        ("--parallel", args.parallel, 1),
        ("--n-gpu-layers", args.n_gpu_layers, 0),
    ):
        if value < low:
            raise _UserError(f"{name} must be at least {low}, got {value}")
    if not -1 <= args.seed < 2**32:
        raise _UserError(f"--seed must be -1 or in [0, 2**32), got {args.seed}")
    t0 = time.perf_counter()
    llm = LLM(
        model_path,
        n_ctx=args.ctx_size,
        n_threads=args.threads,
        n_batch=args.batch_size,
        n_ubatch=args.ubatch_size,
        n_seq_max=args.parallel,
        seed=args.seed,
        n_gpu_layers=args.n_gpu_layers,
        type_k=args.type_k,
        type_v=args.type_v,
        verbose=args.verbose,
        progress=_LoadBar() if sys.stderr.isatty() else None,
    )
    model = llm.model
    _eprint(
        f"{PROG}: loaded {model_path} ({model.arch}, {_human_count(model.n_params)} "
        f"params, {_human_bytes(model.size)}) in {time.perf_counter() - t0:.2f} s"
    )
    if args.verbose:
        _eprint(f"{PROG}: memory (host):")
        for line in _breakdown_lines(llm.context.memory_breakdown()):
            _eprint(f"{PROG}: {line}")
    return llm


def _sampling(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "max_tokens": args.n_predict,
        "temperature": args.temp,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "min_p": args.min_p,
        "repeat_penalty": args.repeat_penalty,
    }


def _print_stats(llm: LLM) -> None:
    stats = llm.last_stats
    _eprint(
        f"{PROG}: prompt: {stats.n_prompt_tokens} tokens ({stats.n_prompt_reused} reused) in "
        f"{stats.prompt_seconds:.3f} s ({stats.prompt_tokens_per_second:.1f} tokens/s)"
    )
    _eprint(
        f"{PROG}: generated: {stats.n_generated} tokens in {stats.generate_seconds:.3f} s "
        f"({stats.generate_tokens_per_second:.1f} tokens/s)"
    )


def _cmd_run(args: argparse.Namespace) -> int:
    prompt = _read_prompt(args)
    with _open_llm(args) as llm:
        out = sys.stdout
        for piece in llm.stream(prompt, **_sampling(args)):
            _write_text(out, piece)
        if out.isatty():
            _write_text(out, "\n")
        _print_stats(llm)
    return 0


def _cmd_chat(args: argparse.Namespace) -> int:
    """One user message per input line; the reply streams to stdout followed by a blank
    line. The whole conversation is re-rendered each turn, and LLM reuses the cached prefix,
    so only the new turn is decoded."""
    with _open_llm(args) as llm:
        system = [{"role": "system", "content": args.system}] if args.system else []
        history: list[dict[str, str]] = list(system)
        interactive = sys.stdin.isatty()
        while True:
            if interactive:
                sys.stderr.write("> ")
                sys.stderr.flush()
            line = sys.stdin.readline()
            if not line or line.strip() == "/exit":
                break
            text = line.rstrip("\n")
            if text.strip() == "/reset":
                history = list(system)
                continue
            if not text.strip():
                continue
            history.append({"role": "user", "content": text})
            pieces = []
            for piece in llm.chat_stream(history, **_sampling(args)):
                pieces.append(piece)
                _write_text(sys.stdout, piece)
            _write_text(sys.stdout, "\n\n")
            history.append({"role": "assistant", "content": "".join(pieces)})
            if args.verbose:
                _print_stats(llm)
    return 0


def _write_text(out: object, text: str) -> None:
    # Bytes go to the binary buffer when there is one, so that the text arrives as UTF-8
    # whatever the locale says.
    buffer = getattr(out, "buffer", None)
    if buffer is not None:
        buffer.write(text.encode("utf-8"))
        buffer.flush()
    else:
        write: Callable[[str], object] = getattr(out, "write")  # noqa: B009
        write(text)
        flush: Callable[[], object] = getattr(out, "flush")  # noqa: B009
        flush()


# -- info --------------------------------------------------------------------------------


_BREAKDOWN_ROWS = [
    ("weights_mapped", "weights (mapped file)"),
    ("weights_resident", "weights (own copies)"),
    ("k", "K cache"),
    ("v", "V cache"),
    ("recurrent", "recurrent state"),
    ("compute", "compute buffers"),
]


def _breakdown_lines(breakdown: dict[str, int]) -> list[str]:
    rows = [(label, breakdown[key]) for key, label in _BREAKDOWN_ROWS]
    rows.append(("total", sum(n for _, n in rows)))
    return [f"  {label:<22} {n:>14}  ({_human_bytes(n)})" for label, n in rows]


def _show_value(value: str, limit: int = 100) -> str:
    text = value.encode("unicode_escape").decode("ascii") if not value.isprintable() else value
    if len(text) > limit:
        return f"{text[:limit]}... ({len(value)} chars)"
    return text


def _cmd_info(args: argparse.Namespace) -> int:
    if args.model_pos and args.model_opt and args.model_pos != args.model_opt:
        raise _UserError("give the model once, either as MODEL or with -m")
    path = _need_model(args.model_opt or args.model_pos)
    with Model(path) as model:
        lines = [
            f"file:          {path}",
            f"file size:     {_human_bytes(os.path.getsize(path))}",
            f"architecture:  {model.arch}",
            f"parameters:    {_human_count(model.n_params)} ({model.n_params})",
            f"weights size:  {_human_bytes(model.size)} ({model.size} bytes)",
            f"n_vocab:       {model.n_vocab}",
            f"n_ctx_train:   {model.n_ctx_train}",
            f"n_embd:        {model.n_embd}",
            f"n_layer:       {model.n_layer}",
            f"n_head:        {model.n_head}",
            f"n_head_kv:     {model.n_head_kv}",
        ]
        tensors = model.tensors()
        by_type: dict[str, list[int]] = {}
        for t in tensors:
            entry = by_type.setdefault(t.type_name, [0, 0])
            entry[0] += 1
            entry[1] += t.n_bytes
        lines.append("")
        lines.append(f"tensors: {len(tensors)}")
        lines.append(f"  {'type':<8} {'count':>7} {'bytes':>14}")
        for name, (count, n_bytes) in sorted(by_type.items(), key=lambda kv: -kv[1][1]):
            lines.append(f"  {name:<8} {count:>7} {n_bytes:>14}  ({_human_bytes(n_bytes)})")
        if args.ctx_size is not None:
            estimate = Context.estimate_memory(
                model, n_ctx=args.ctx_size, n_batch=args.batch_size, n_ubatch=args.ubatch_size,
                n_seq_max=args.parallel, n_threads=args.threads, type_k=args.type_k,
                type_v=args.type_v)
            lines.append("")
            lines.append(f"memory of a context (estimate): n_ctx {args.ctx_size or 'train'}, "
                         f"K {args.type_k}, V {args.type_v}, {args.parallel} sequence(s)")
            lines += _breakdown_lines(estimate)
        metadata = model.metadata
        lines.append("")
        lines.append(f"metadata: {len(metadata)} keys")
        width = max((len(k) for k in metadata), default=0)
        for key, value in metadata.items():
            lines.append(f"  {key:<{width}} = {_show_value(value)}")
    _write_text(sys.stdout, "\n".join(lines) + "\n")
    return 0


# -- entry point -------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``libllm`` command line; returns the exit code."""
    parser = _build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return func(args)
    except _UserError as exc:
        _eprint(f"{PROG}: error: {_one_line(str(exc))}")
    except LibLLMError as exc:
        _eprint(f"{PROG}: error: {_one_line(str(exc))}")
    except (OSError, ValueError, MemoryError) as exc:
        if isinstance(exc, BrokenPipeError):
            return _broken_pipe()
        _eprint(f"{PROG}: error: {_one_line(str(exc))}")
    except KeyboardInterrupt:
        _eprint(f"\n{PROG}: interrupted")
        return 130
    return 1


def _broken_pipe() -> int:
    # The reader went away (``libllm run ... | head``): stop quietly. Closing stdout (its
    # unwritten bytes are dropped) keeps Python from reporting the pipe again at exit.
    try:
        sys.stdout.close()
    except (OSError, ValueError):
        pass
    return 0
