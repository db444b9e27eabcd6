#!/usr/bin/env python3
"""Recurrent state vs KV cache, and Mamba speed vs llama.cpp (the numbers of docs/memory.md).

Part 1 - memory. The bytes a context keeps for its past, per sequence, at n_ctx 512 / 4096 /
32768 (``--n-ctx``): ``k + v + recurrent`` of libllm's memory breakdown, from
``Context.estimate_memory`` and, where it stays below ``--live-max-mib``, from a live
context's ``memory_breakdown()`` too (the two must agree). Rows: a Mamba model of
mamba-130m's shape (d_model 768, 24 layers, d_state 16, d_conv 4, expand 2, vocab 50280,
tied embeddings; random weights) and a llama model of similar size (``--llama``, default the
125M-parameter small-f16.gguf of the llama.cpp fixtures) with its default f16 cache.

Part 2 - speed. pp512 and tg128 tokens/s of libllm and llama.cpp on the same Mamba GGUF
files (F32 and Q8_0), interleaved (A B A B ...) by tests/bench/compare_llamacpp.py, whose
options the speed options here are forwarded to: the ratio is libllm / llama.cpp of the
medians. ``--skip-speed`` leaves this part out.

The Mamba files are written by tests/python/modelgen_mamba.py (``make_mamba`` at the shape
above, ``write_gguf_mamba``: the layout of llama.cpp's converter) into ``--model-dir`` and
reused when they exist. Generating them needs torch and transformers in this Python.

``--hybrid PATH`` adds any other GGUF (a hybrid attention + state-space model, for example) to
both parts: its memory row comes from the same breakdown (k + v + recurrent), and it joins
the speed comparison. ``memory_row`` is the function every row goes through.

Not collected by pytest. Example (about 10 minutes on 2 cores):

    LIBLLM_LIBRARY=build/libllm.so python tests/bench/recurrent_bench.py --threads 2 \\
        --passes 3 --reps 3
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)  # compare_llamacpp
sys.path.insert(0, os.path.join(REPO, "tests", "python"))  # modelgen_mamba
if os.environ.get("LIBLLM_LIBRARY"):
    sys.path.insert(0, os.path.join(REPO, "bindings", "python"))

import compare_llamacpp

import libllm

MiB = 1024 * 1024

# mamba-130m (state-spaces/mamba-130m-hf)
MAMBA_130M = {
    "vocab_size": 50280,
    "hidden_size": 768,
    "num_hidden_layers": 24,
    "state_size": 16,
    "conv_kernel": 4,
    "expand": 2,
    "tie_word_embeddings": True,
}
DEFAULT_LLAMA = "/opt/anchor/models/small-f16.gguf"


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


# -- models ----------------------------------------------------------------------------------


def mamba_files(model_dir: str, types: list[str], seed: int) -> list[str]:
    """The Mamba GGUF files of mamba-130m's shape, one per weight type, made when missing."""
    paths = {t: os.path.join(model_dir, f"mamba-130m-shape-{t}-seed{seed}.gguf") for t in types}
    missing = [t for t, p in paths.items() if not os.path.exists(p)]
    if missing:
        import modelgen_mamba

        os.makedirs(model_dir, exist_ok=True)
        log(f"making the mamba-130m-shape model (seed {seed}) ...")
        t0 = time.perf_counter()
        model = modelgen_mamba.make_mamba("mamba", seed=seed, **MAMBA_130M)
        for t in missing:
            modelgen_mamba.write_gguf_mamba(model, paths[t], t)
            log(f"  wrote {paths[t]}")
        log(f"  {time.perf_counter() - t0:.0f} s")
    return [paths[t] for t in types]


# -- part 1: memory --------------------------------------------------------------------------


@dataclass
class MemoryRow:
    label: str
    arch: str
    shape: str
    n_params: int
    bytes_by_ctx: dict[int, int]  # n_ctx -> k + v + recurrent bytes
    parts: dict[int, dict[str, int]]  # n_ctx -> the breakdown's k, v, recurrent
    live_checked: list[int]  # the n_ctx values a live context confirmed


def memory_row(label: str, path: str, n_ctxs: list[int], live_max: int) -> MemoryRow:
    """The memory a context keeps for one sequence's past, for any GGUF libllm loads: k + v
    + recurrent bytes of the breakdown at each n_ctx (estimate; a live context as well
    where the estimate is at most live_max bytes, which must give the same numbers)."""
    keys = ("k", "v", "recurrent")
    with libllm.Model(path) as model:
        shape = f"{model.n_layer} layers x {model.n_embd}"
        if model.n_head_kv > 0:
            shape += f", {model.n_head_kv} of {model.n_head} heads K/V"
        row = MemoryRow(label, model.arch, shape, model.n_params, {}, {}, [])
        for n_ctx in n_ctxs:
            est = libllm.Context.estimate_memory(model, n_ctx=n_ctx, n_seq_max=1, n_threads=1)
            parts = {k: est[k] for k in keys}
            row.parts[n_ctx] = parts
            row.bytes_by_ctx[n_ctx] = sum(parts.values())
            if row.bytes_by_ctx[n_ctx] <= live_max:
                with libllm.Context(model, n_ctx=n_ctx, n_seq_max=1, n_threads=1) as ctx:
                    live = ctx.memory_breakdown()
                if {k: live[k] for k in keys} != parts:
                    raise AssertionError(f"{label} n_ctx {n_ctx}: estimate {parts} != live {live}")
                row.live_checked.append(n_ctx)
    return row


def fmt_mib(n: int) -> str:
    return f"{n / MiB:,.2f} MiB" if n < 100 * MiB else f"{n / MiB:,.0f} MiB"


def memory_table(rows: list[MemoryRow], n_ctxs: list[int]) -> str:
    head = "| model | arch | shape | params | what | "
    head += " | ".join(f"n_ctx {n}" for n in n_ctxs) + " |"
    lines = [head, "|---|---|---|--:|---|" + "--:|" * len(n_ctxs)]
    for r in rows:
        kv = any(p["k"] + p["v"] for p in r.parts.values())
        rec = any(p["recurrent"] for p in r.parts.values())
        what = " + ".join(w for w, has in (("K + V", kv), ("recurrent", rec)) if has)
        cells = [f"{r.bytes_by_ctx[n]:,} B ({fmt_mib(r.bytes_by_ctx[n])})" for n in n_ctxs]
        lines.append(
            f"| {r.label} | {r.arch} | {r.shape} | {r.n_params / 1e6:.1f}M | {what} | "
            + " | ".join(cells)
            + " |"
        )
    base = rows[0]
    for r in rows[1:]:
        cells = [f"{r.bytes_by_ctx[n] / base.bytes_by_ctx[n]:,.1f}x" for n in n_ctxs]
        lines.append(f"| {r.label} / {base.label} | | | | | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- part 2: speed ---------------------------------------------------------------------------


def speed_argv(models: list[str], args: argparse.Namespace) -> list[str]:
    """compare_llamacpp.py's command line for these files."""
    argv = list(models)
    argv += ["--threads", str(args.threads), "--passes", str(args.passes)]
    argv += ["--reps", str(args.reps), "--pp", str(args.pp), "--tg", str(args.tg)]
    argv += ["--quiet-cores", str(args.quiet_cores), "--max-foreign", str(args.max_foreign)]
    argv += ["--retries", str(args.retries), "--quiet-wait", str(args.quiet_wait)]
    if args.json_out:
        argv += ["--json-out", args.json_out]
    return argv


# -- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model-dir", default="/tmp/libllm-recurrent-bench")
    ap.add_argument("--types", default="f32,q8_0", help="Mamba weight types (default f32,q8_0)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--llama", default=DEFAULT_LLAMA, help="the llama GGUF of the memory table")
    ap.add_argument("--hybrid", default=None, metavar="PATH", help="one more GGUF for both parts")
    ap.add_argument("--n-ctx", default="512,4096,32768", help="context sizes of the memory table")
    ap.add_argument(
        "--live-max-mib",
        type=float,
        default=2048,
        help="check the estimate against a live context up to this size",
    )
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--pp", type=int, default=512)
    ap.add_argument("--tg", type=int, default=128)
    ap.add_argument("--quiet-cores", type=float, default=0.3)
    ap.add_argument("--max-foreign", type=float, default=0.2)
    ap.add_argument("--quiet-wait", type=float, default=300)
    ap.add_argument("--retries", type=int, default=2)
    ap.add_argument("--json-out", default=None, help="compare_llamacpp.py's raw results")
    args = ap.parse_args(argv)

    n_ctxs = [int(x) for x in args.n_ctx.split(",")]
    types = [t.strip() for t in args.types.split(",") if t.strip()]
    mambas = mamba_files(args.model_dir, types, args.seed)

    # part 1: the first Mamba file stands for all (the state does not depend on the weight
    # type: it is f32)
    live_max = int(args.live_max_mib * MiB)
    named = [(f"mamba-130m shape ({types[0]})", mambas[0])]
    named.append((os.path.basename(args.llama).removesuffix(".gguf"), args.llama))
    if args.hybrid:
        named.append((os.path.basename(args.hybrid).removesuffix(".gguf"), args.hybrid))
    rows: list[MemoryRow] = []
    for label, path in named:
        log(f"memory: {label}")
        rows.append(memory_row(label, path, n_ctxs, live_max))
    out: list[Any] = ["## memory kept for one sequence's past (k + v + recurrent bytes)", ""]
    out.append(memory_table(rows, n_ctxs))
    out.append("")
    out.append(
        "live context checked at n_ctx: "
        + "; ".join(f"{r.label}: {', '.join(map(str, r.live_checked)) or '-'}" for r in rows)
    )
    print("\n".join(out), flush=True)

    if args.skip_speed:
        return 0
    # part 2
    print("\n## speed vs llama.cpp\n", flush=True)
    speed_models = mambas + ([args.hybrid] if args.hybrid else [])
    return compare_llamacpp.main(speed_argv(speed_models, args))


if __name__ == "__main__":
    sys.exit(main())
