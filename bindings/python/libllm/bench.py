"""``libllm bench``: llama-bench-style throughput measurement.

Flag names and output fields follow llama.cpp's llama-bench, so results of the two tools can be
read side by side. What is timed:

- ``pp<N>`` (prompt processing): N random tokens (the first is BOS when the model adds one)
  decoded into an empty cache, in batches of ``n_batch`` tokens, logits for the last token of
  each batch; tokens/s = N / time.
- ``tg<N>`` (text generation): N single-token decode calls, one after another, each asking for
  its logits; tokens/s = N / time.
- ``-d D`` (depth): D tokens are decoded before each repetition, untimed; the test then starts
  at position D.
- ``-np K`` (parallel sequences): K sequences decode together. pp: each sequence gets its own
  N-token prompt (K*N tokens in batches of ``n_batch``); tg: N steps, each one decode call of
  K tokens (one per sequence). tokens/s counts the tokens of all sequences.

Each test runs once untimed first (warm-up, as llama-bench: the whole pp, or one tg token),
then ``-r`` timed repetitions, each on a cleared cache. The token batches are filled before the
clock starts, so a timed tg step is one ``Context.decode`` call: the Python cost per call is
measured and reported (``call_overhead_ns``) to show it is small next to a decode.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import itertools
import json
import math
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _lib
from .context import CACHE_TYPES, Batch, Context
from .model import Model, type_name

# general.file_type values (llama_ftype) of the formats libllm knows, and a few it may meet.
_FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    12: "Q3_K_M",
    14: "Q4_K_S",
    15: "Q4_K_M",
    17: "Q5_K_M",
    18: "Q6_K",
    32: "BF16",
}


# -- command line --------------------------------------------------------------------------


def _int_list(low: int) -> Callable[[str], list[int]]:
    def parse(text: str) -> list[int]:
        values = []
        for part in text.split(","):
            part = part.strip()
            try:
                value = int(part)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected integers, got {text!r}") from None
            if value < low:
                raise argparse.ArgumentTypeError(f"values must be at least {low}, got {value}")
            values.append(value)
        return values

    return parse


def _type_list(text: str) -> list[str]:
    values = [part.strip().lower() for part in text.split(",")]
    for value in values:
        if value not in CACHE_TYPES:
            raise argparse.ArgumentTypeError(
                f"cache type must be one of {', '.join(CACHE_TYPES)}; got {value!r}"
            )
    return values


def _flatten(lists: list[list[Any]] | None, default: list[Any]) -> list[Any]:
    if not lists:
        return list(default)
    out: list[Any] = []
    for values in lists:
        for value in values:
            if value not in out:
                out.append(value)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the bench flags (llama-bench's names) to ``parser``. List flags take comma lists
    and may be repeated; every combination is measured."""
    parser.add_argument(
        "-m",
        "--model",
        dest="models",
        action="append",
        metavar="FILE",
        help="GGUF model file (repeat for several)",
    )
    # the list flags: (short, long, dest, parse, metavar, help)
    list_flags: list[tuple[str, str, str, Callable[[str], list[Any]], str, str]] = [
        ("-p", "--n-prompt", "n_prompt", _int_list(0), "N",
         "prompt lengths to time, comma list (0: none; default 512)"),
        ("-n", "--n-gen", "n_gen", _int_list(0), "N",
         "generation lengths to time, comma list (0: none; default 128)"),
        ("-d", "--n-depth", "n_depth", _int_list(0), "N",
         "tokens in the cache before each test, untimed (default 0)"),
        ("-t", "--threads", "threads", _int_list(1), "N",
         "compute threads, comma list (default: all cores)"),
        ("-b", "--batch-size", "n_batch", _int_list(1), "N",
         "tokens per decode call (default 2048)"),
        ("-ub", "--ubatch-size", "n_ubatch", _int_list(1), "N",
         "tokens computed at once (default 512)"),
        ("-ctk", "--cache-type-k", "type_k", _type_list, "TYPE",
         f"KV cache type of keys: {', '.join(CACHE_TYPES)} (default f16)"),
        ("-ctv", "--cache-type-v", "type_v", _type_list, "TYPE",
         "KV cache type of values (default f16)"),
        ("-np", "--parallel", "n_parallel", _int_list(1), "K",
         "sequences decoding together; t/s counts all of them (default 1)"),
        ("-ngl", "--n-gpu-layers", "n_gpu_layers", _int_list(0), "N",
         "layers to offload to a GPU (default 0)"),
    ]
    for short, long, dest, parse, metavar, help_text in list_flags:
        parser.add_argument(short, long, dest=dest, action="append", type=parse,
                            metavar=metavar, help=help_text)
    parser.add_argument(
        "-r",
        "--repetitions",
        dest="reps",
        type=int,
        default=5,
        metavar="N",
        help="timed repetitions of each test (default 5)",
    )
    parser.add_argument(
        "-o",
        "--output",
        dest="output",
        choices=["md", "json", "jsonl"],
        default="md",
        help="output format on stdout (default md)",
    )
    parser.add_argument(
        "--seed", type=int, default=1234, metavar="S", help="seed of the random tokens"
    )
    parser.add_argument(
        "--progress", action="store_true", help="print each test as it starts (stderr)"
    )


# -- tests -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TestSpec:
    """One measured configuration: either a pp test (n_gen == 0) or a tg one (n_prompt == 0)."""

    model: str
    n_prompt: int
    n_gen: int
    n_depth: int
    n_threads: int
    n_batch: int
    n_ubatch: int
    type_k: str
    type_v: str
    n_parallel: int
    n_gpu_layers: int

    @property
    def name(self) -> str:
        kind = f"pp{self.n_prompt}" if self.n_prompt else f"tg{self.n_gen}"
        return f"{kind} @ d{self.n_depth}" if self.n_depth else kind

    @property
    def n_ctx(self) -> int:
        return max(self.n_parallel * (self.n_prompt + self.n_gen + self.n_depth), 1)

    def context_key(self) -> tuple[Any, ...]:
        return (
            self.n_ctx,
            self.n_threads,
            self.n_batch,
            self.n_ubatch,
            self.type_k,
            self.type_v,
            self.n_parallel,
        )


def _specs(args: argparse.Namespace) -> list[TestSpec]:
    models = list(args.models or [])
    if not models:
        raise ValueError("no model given: pass a GGUF file with -m MODEL")
    if args.reps < 1:
        raise ValueError(f"--repetitions must be at least 1, got {args.reps}")
    prompts = _flatten(args.n_prompt, [512])
    gens = _flatten(args.n_gen, [128])
    depths = _flatten(args.n_depth, [0])
    threads = _flatten(args.threads, [os.cpu_count() or 1])
    batches = _flatten(args.n_batch, [2048])
    ubatches = _flatten(args.n_ubatch, [512])
    types_k = _flatten(args.type_k, ["f16"])
    types_v = _flatten(args.type_v, ["f16"])
    parallels = _flatten(args.n_parallel, [1])
    gpu_layers = _flatten(args.n_gpu_layers, [0])
    specs = []
    for model, ngl in itertools.product(models, gpu_layers):
        for n_batch, n_ubatch, tk, tv, n_par, n_threads, n_depth in itertools.product(
            batches, ubatches, types_k, types_v, parallels, threads, depths
        ):
            common: dict[str, Any] = {
                "model": model,
                "n_depth": n_depth,
                "n_threads": n_threads,
                "n_batch": n_batch,
                "n_ubatch": n_ubatch,
                "type_k": tk,
                "type_v": tv,
                "n_parallel": n_par,
                "n_gpu_layers": ngl,
            }
            specs += [TestSpec(n_prompt=p, n_gen=0, **common) for p in prompts if p > 0]
            specs += [TestSpec(n_prompt=0, n_gen=n, **common) for n in gens if n > 0]
    if not specs:
        raise ValueError("nothing to measure: every -p and -n value is 0")
    return specs


class _Runner:
    """Runs the tests of one context: fills batches outside the clock, times decode calls."""

    def __init__(self, model: Model, ctx: Context, spec: TestSpec, rng: np.random.Generator):
        self.model, self.ctx, self.spec, self.rng = model, ctx, spec, rng
        self.n_vocab = model.n_vocab
        self.bos = model.bos if model.add_bos else -1

    def _tokens(self, n: int, first_is_bos: bool) -> list[int]:
        toks: list[int] = [int(t) for t in self.rng.integers(0, self.n_vocab, size=n)]
        if first_is_bos and self.bos >= 0 and n > 0:
            toks[0] = self.bos
        return toks

    def _prompt_batches(self, n: int, pos0: int) -> list[Batch]:
        """K sequences of n tokens each (positions pos0..), in batches of n_batch tokens with
        the logits of each batch's last token and of each sequence's last token."""
        items = []
        for seq in range(self.spec.n_parallel):
            toks = self._tokens(n, first_is_bos=pos0 == 0)
            items += [(tok, pos0 + i, seq, i == n - 1) for i, tok in enumerate(toks)]
        n_batch = self.spec.n_batch
        batches = []
        for start in range(0, len(items), n_batch):
            chunk = items[start : start + n_batch]
            batch = Batch(len(chunk), 1)
            for j, (tok, pos, seq, last) in enumerate(chunk):
                batch.add(tok, pos, seq, last or j == len(chunk) - 1)
            batches.append(batch)
        return batches

    def _gen_batches(self, n: int, pos0: int) -> list[Batch]:
        """n steps of one token per sequence, each wanting its logits."""
        k = self.spec.n_parallel
        toks = [self._tokens(n, first_is_bos=pos0 == 0) for _ in range(k)]
        batches = []
        for step in range(n):
            batch = Batch(k, 1)
            for seq in range(k):
                batch.add(toks[seq][step], pos0 + step, seq, True)
            batches.append(batch)
        return batches

    def _run(self, batches: list[Batch]) -> int:
        decode = self.ctx.decode
        t0 = time.perf_counter_ns()
        for batch in batches:
            decode(batch)
        return time.perf_counter_ns() - t0

    def _prefill_depth(self) -> None:
        if self.spec.n_depth:
            self._run(self._prompt_batches(self.spec.n_depth, 0))

    def warm_up(self) -> None:
        spec = self.spec
        self.ctx.memory_clear()
        self._prefill_depth()
        if spec.n_prompt:
            self._run(self._prompt_batches(spec.n_prompt, spec.n_depth))
        else:
            self._run(self._gen_batches(1, spec.n_depth))

    def sample(self) -> int:
        """One timed repetition; returns its nanoseconds."""
        spec = self.spec
        self.ctx.memory_clear()
        self._prefill_depth()
        if spec.n_prompt:
            batches = self._prompt_batches(spec.n_prompt, spec.n_depth)
        else:
            batches = self._gen_batches(spec.n_gen, spec.n_depth)
        return self._run(batches)

    def call_overhead_ns(self, calls: int = 2000) -> float:
        """Python cost of one timed step without the C decode: the same wrapper path
        (argument checks, a ctypes call with the context handle) into a trivial ABI
        function."""
        ctx = self.ctx
        fn = _lib.lib.llm_n_outputs
        batch = Batch(1, 1)
        t0 = time.perf_counter_ns()
        for _ in range(calls):
            if not isinstance(batch, Batch):
                raise TypeError
            fn(ctx.handle)
            ctypes.byref(batch.c_batch)
        return (time.perf_counter_ns() - t0) / calls


# -- results ---------------------------------------------------------------------------------


def _cpu_info() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # Linux: KiB


def _model_type(model: Model) -> str:
    """llama-bench's "arch size type" description, e.g. "llama 125.00M Q8_0"."""
    ftype = None
    raw = model.meta("general.file_type")
    if raw is not None:
        try:
            ftype = _FILE_TYPES.get(int(raw))
        except ValueError:
            ftype = None
    if ftype is None:  # the type holding most bytes among matrices
        by_type: dict[str, int] = {}
        for t in model.tensors():
            if len(t.shape) >= 2:
                by_type[t.type_name] = by_type.get(t.type_name, 0) + t.n_bytes
        ftype = max(by_type, key=lambda k: by_type[k]) if by_type else type_name(-1)
    n = model.n_params
    for div, unit in ((10**9, "B"), (10**6, "M"), (10**3, "K")):
        if n >= div:
            size = f"{n / div:.2f}{unit}"
            break
    else:
        size = str(n)
    return f"{model.arch} {size} {ftype}"


def _stddev(values: Sequence[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _result(
    spec: TestSpec, model: Model, samples_ns: list[int], overhead_ns: float
) -> dict[str, Any]:
    n_tokens = spec.n_parallel * (spec.n_prompt or spec.n_gen)
    samples_ts = [n_tokens * 1e9 / ns for ns in samples_ns]
    return {
        "build_commit": _lib.version(),
        "cpu_info": _cpu_info(),
        "backends": "CPU",
        "cpu_level": os.environ.get("LIBLLM_CPU_LEVEL") or "auto",
        "model_filename": spec.model,
        "model_type": _model_type(model),
        "model_size": model.size,
        "model_n_params": model.n_params,
        "n_batch": spec.n_batch,
        "n_ubatch": spec.n_ubatch,
        "n_threads": spec.n_threads,
        "type_k": spec.type_k,
        "type_v": spec.type_v,
        "n_gpu_layers": spec.n_gpu_layers,
        "use_mmap": True,
        "n_prompt": spec.n_prompt,
        "n_gen": spec.n_gen,
        "n_depth": spec.n_depth,
        "n_parallel": spec.n_parallel,
        "test_time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "avg_ns": round(statistics.fmean(samples_ns)),
        "stddev_ns": round(_stddev(samples_ns)),
        "avg_ts": statistics.fmean(samples_ts),
        "stddev_ts": _stddev(samples_ts),
        "samples_ns": samples_ns,
        "samples_ts": samples_ts,
        "call_overhead_ns": round(overhead_ns, 1),
        "peak_rss_bytes": _peak_rss_bytes(),
    }


def _human_bytes(n: int) -> str:
    if n >= 1024**3:
        return f"{n / 1024**3:.2f} GiB"
    return f"{n / 1024**2:.2f} MiB"


def _human_params(n: int) -> str:
    if n >= 10**9:
        return f"{n / 1e9:.2f} B"
    return f"{n / 1e6:.2f} M"


class _Markdown:
    """llama-bench's table: fixed columns, plus a column for each flag given a non-default
    value; rows are printed as tests finish."""

    def __init__(self, specs: list[TestSpec], out: Any) -> None:
        self.out = out
        self.extra: list[tuple[str, str]] = []
        defaults = {
            "n_batch": 2048,
            "n_ubatch": 512,
            "type_k": "f16",
            "type_v": "f16",
            "n_parallel": 1,
            "n_gpu_layers": 0,
        }
        headers = {
            "n_batch": "n_batch",
            "n_ubatch": "n_ubatch",
            "type_k": "type_k",
            "type_v": "type_v",
            "n_parallel": "np",
            "n_gpu_layers": "ngl",
        }
        for field, default in defaults.items():
            if any(getattr(s, field) != default for s in specs):
                self.extra.append((field, headers[field]))
        self.cols = ["model", "size", "params", "backend", "threads"]
        self.cols += [h for _, h in self.extra] + ["test", "t/s"]
        self.header_done = False

    def row(self, spec: TestSpec, res: dict[str, Any]) -> None:
        if not self.header_done:
            self._line(self.cols)
            self._line(["---"] * (len(self.cols) - 2) + ["--:", "--:"])
            self.header_done = True
        cells = [
            res["model_type"],
            _human_bytes(res["model_size"]),
            _human_params(res["model_n_params"]),
            "CPU",
            str(spec.n_threads),
        ]
        cells += [str(res[field]) for field, _ in self.extra]
        cells += [spec.name, f"{res['avg_ts']:.2f} ± {res['stddev_ts']:.2f}"]
        self._line(cells)

    def _line(self, cells: list[str]) -> None:
        self.out.write("| " + " | ".join(cells) + " |\n")
        self.out.flush()


# -- entry point -------------------------------------------------------------------------------


def _progress(enabled: bool, text: str) -> None:
    if enabled:
        print(f"libllm bench: {text}", file=sys.stderr, flush=True)


def _by_model(specs: list[TestSpec]) -> Iterator[tuple[tuple[str, int], list[TestSpec]]]:
    for key, group in itertools.groupby(specs, key=lambda s: (s.model, s.n_gpu_layers)):
        yield key, list(group)


def run(args: argparse.Namespace) -> int:
    """Runs the tests the flags describe; prints the results on stdout. Returns 0."""
    specs = _specs(args)
    out = sys.stdout
    results: list[dict[str, Any]] = []
    table = _Markdown(specs, out) if args.output == "md" else None
    rng = np.random.default_rng(args.seed)
    for (path, ngl), group in _by_model(specs):
        with Model(path, n_gpu_layers=ngl) as model:
            ctx: Context | None = None
            ctx_key: tuple[Any, ...] | None = None
            try:
                for spec in group:
                    if ctx is None or ctx_key != spec.context_key():
                        if ctx is not None:
                            ctx.close()
                        ctx = Context(
                            model,
                            n_ctx=spec.n_ctx,
                            n_batch=spec.n_batch,
                            n_ubatch=spec.n_ubatch,
                            n_seq_max=spec.n_parallel,
                            n_threads=spec.n_threads,
                            type_k=spec.type_k,
                            type_v=spec.type_v,
                        )
                        ctx_key = spec.context_key()
                    _progress(args.progress, f"{os.path.basename(path)} {spec.name} ...")
                    runner = _Runner(model, ctx, spec, rng)
                    runner.warm_up()
                    samples = [runner.sample() for _ in range(args.reps)]
                    res = _result(spec, model, samples, runner.call_overhead_ns())
                    results.append(res)
                    if table is not None:
                        table.row(spec, res)
                    elif args.output == "jsonl":
                        out.write(json.dumps(res) + "\n")
                        out.flush()
            finally:
                if ctx is not None:
                    ctx.close()
    if args.output == "json":
        out.write(json.dumps(results, indent=2) + "\n")
        out.flush()
    if table is not None:
        overhead = max((r["call_overhead_ns"] for r in results), default=math.nan)
        _progress(True, f"Python cost per decode call ~{overhead / 1000:.1f} us (not removed)")
    return 0
