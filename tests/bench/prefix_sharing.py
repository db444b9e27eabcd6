#!/usr/bin/env python3
"""What sharing a prefix saves: KV bytes and prompt time, and time to first token from a
prompt cache.

Part 1 - 8 sequences, one shared system prompt (512 tokens) + a distinct 32-token suffix each:

* shared: the prefix is decoded once into sequence 0, ``seq_cp`` gives it to sequences 1..7
  (no data copied), then the 8 suffixes are decoded in one batch;
* separate: every sequence decodes prefix + suffix itself.

KV bytes used = ``n_cells_used`` (``ctx.stats()``) x bytes per cell, where bytes per cell =
(k + v of ``ctx.memory_breakdown()``) / n_ctx. Both runs must give every sequence the same
greedy next token.

Part 2 - time to first token for a prompt = a 2,000-token prefix that is in a
:class:`libllm.RAMPromptCache` + a 16-token question: restore the prefix (``longest_prefix``,
``get``, ``Context.load_seq``) and decode the 16 tokens, vs decoding all 2,016 tokens. Same
greedy next token required; the largest logit difference is shown.

Token ids come from tokenizing ``--text`` (default: the sp32k corpus next to the models); a
fresh context is used for every timed run; times are the median of ``--reps`` runs.

Not collected by pytest. Example (about 1.5 minutes on 2 cores):

    LIBLLM_LIBRARY=build/libllm.so PYTHONPATH=bindings/python \\
        python tests/bench/prefix_sharing.py /opt/anchor/models/small-q8_0.gguf --threads 2
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np

import libllm

MiB = 1024 * 1024


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def fmt_bytes(n: float) -> str:
    return f"{int(n):,} bytes ({n / MiB:.2f} MiB)"


def median_run(reps: int, fn: Callable[[], Any]) -> tuple[float, list[float], Any]:
    times = []
    result = None
    for _ in range(reps):
        t, result = fn()
        times.append(t)
    return statistics.median(times), times, result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-seqs", type=int, default=8)
    ap.add_argument("--prefix", type=int, default=512)
    ap.add_argument("--suffix", type=int, default=32)
    ap.add_argument("--cached", type=int, default=2000)
    ap.add_argument("--question", type=int, default=16)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--text", default="/opt/anchor/models/sp32k.corpus.txt")
    args = ap.parse_args(argv)

    print("command:", " ".join([os.path.basename(sys.executable)] + sys.argv))
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}; libllm {libllm.__version__} "
          f"({libllm.library_path()})")
    model = libllm.Model(args.model)
    print(f"model: {args.model} ({model.arch}, {model.n_layer} layers, {model.n_head_kv} KV "
          f"heads); f16 K/V, {args.threads} threads, median of {args.reps} runs")

    with open(args.text, encoding="utf-8", errors="replace") as f:
        text = f.read(400_000)
    ids = model.tokenize(text, add_bos=False)
    need = args.prefix + args.n_seqs * args.suffix
    need = max(need, args.cached + args.question)
    if len(ids) < need:
        raise SystemExit(f"--text gives {len(ids)} tokens, {need} needed")
    bos = model.bos
    prefix = [bos] + ids[: args.prefix - 1]
    suffixes = [ids[args.prefix + i * args.suffix: args.prefix + (i + 1) * args.suffix]
                for i in range(args.n_seqs)]
    n = args.n_seqs

    # ---------------------------------------------------------------- part 1
    n_ctx = n * (args.prefix + args.suffix) + 64
    n_ctx = (n_ctx + 255) // 256 * 256

    def new_ctx(n_ctx: int, n_seq_max: int) -> libllm.Context:
        return libllm.Context(model, n_ctx=n_ctx, n_seq_max=n_seq_max, n_batch=512,
                              n_ubatch=512, n_threads=args.threads)

    def bytes_per_cell(ctx: libllm.Context) -> float:
        b = ctx.memory_breakdown()
        return (b["k"] + b["v"]) / ctx.n_ctx

    def suffix_batch(ctx: libllm.Context) -> list[np.ndarray]:
        batch = libllm.Batch(n * args.suffix, 1)
        last = []
        for s, suf in enumerate(suffixes):
            for i, tok in enumerate(suf):
                batch.add(tok, args.prefix + i, s, i == len(suf) - 1)
            last.append(len(batch) - 1)
        ctx.decode(batch)
        return [ctx.logits(i).copy() for i in last]

    def shared() -> tuple[float, Any]:
        ctx = new_ctx(n_ctx, n)
        t = time.perf_counter()
        ctx.decode_tokens(prefix, pos0=0, seq_id=0, logits="none")
        for s in range(1, n):
            ctx.seq_cp(0, s)
        logits = suffix_batch(ctx)
        dt = time.perf_counter() - t
        out = (ctx.stats(), bytes_per_cell(ctx), logits)
        ctx.close()
        return dt, out

    def separate() -> tuple[float, Any]:
        ctx = new_ctx(n_ctx, n)
        t = time.perf_counter()
        logits = []
        for s in range(n):
            ctx.decode_tokens(prefix + suffixes[s], pos0=0, seq_id=s, logits="last")
            logits.append(ctx.logits(-1).copy())
        dt = time.perf_counter() - t
        out = (ctx.stats(), bytes_per_cell(ctx), logits)
        ctx.close()
        return dt, out

    print(f"\n== part 1: {n} sequences x ({args.prefix}-token shared prefix + {args.suffix}-token "
          f"suffix), n_ctx {n_ctx}")
    rows = {}
    for name, fn in (("shared", shared), ("separate", separate)):
        med, times, (stats, bpc, logits) = median_run(args.reps, fn)
        rows[name] = (med, stats, bpc, logits)
        used = stats["n_cells_used"]
        print(f"  {name:8s}: {used} cells x {bpc:.0f} bytes/cell = {fmt_bytes(used * bpc)}; "
              f"{stats['n_tokens_decoded']} tokens decoded; prompt time {med:.3f} s "
              f"(runs {', '.join(f'{x:.3f}' for x in times)})")
    (t_sh, st_sh, bpc, lg_sh), (t_se, st_se, _, lg_se) = rows["shared"], rows["separate"]
    saved = (st_se["n_cells_used"] - st_sh["n_cells_used"]) * bpc
    print(f"  saving: {fmt_bytes(saved)} "
          f"({st_se['n_cells_used'] / st_sh['n_cells_used']:.2f}x fewer bytes), "
          f"prompt time {t_se / t_sh:.2f}x faster")
    tok_sh = [int(np.argmax(x)) for x in lg_sh]
    tok_se = [int(np.argmax(x)) for x in lg_se]
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(lg_sh, lg_se))
    print(f"  greedy next tokens shared   {tok_sh}")
    print(f"  greedy next tokens separate {tok_se}  -> "
          f"{'equal' if tok_sh == tok_se else 'DIFFERENT'}; max |logit diff| {diff:.3g}")
    for s, (a, b) in enumerate(zip(lg_sh, lg_se)):
        if int(np.argmax(a)) != int(np.argmax(b)):
            top = np.sort(a)[-2:]
            print(f"  seq {s}: near tie, shared run's top-2 margin {top[1] - top[0]:.3g}, "
                  f"logit diff {float(np.max(np.abs(a - b))):.3g}")
    ok = tok_sh == tok_se

    # ---------------------------------------------------------------- part 2
    cached = [bos] + ids[: args.cached - 1]
    question = ids[args.cached: args.cached + args.question]
    prompt = cached + question
    n_ctx2 = (len(prompt) + 64 + 255) // 256 * 256
    print(f"\n== part 2: time to first token, {len(cached)}-token cached prefix + "
          f"{len(question)}-token question, n_ctx {n_ctx2}")

    # fill the prompt cache once (not timed)
    cache = libllm.RAMPromptCache(1 << 30)
    ctx = new_ctx(n_ctx2, 1)
    t = time.perf_counter()
    ctx.decode_tokens(cached, pos0=0, seq_id=0, logits="none")
    t_fill = time.perf_counter() - t
    state = ctx.save_seq(0)
    cache.put(cached, state)
    ctx.close()
    print(f"  prompt cache entry: {len(state):,} bytes saved state ({len(state) / MiB:.2f} MiB; "
          f"{len(state) / len(cached):.0f} bytes/token); filling it took {t_fill:.3f} s")

    def cold() -> tuple[float, Any]:
        ctx = new_ctx(n_ctx2, 1)
        t = time.perf_counter()
        ctx.decode_tokens(prompt, pos0=0, seq_id=0, logits="last")
        logits = ctx.logits(-1).copy()
        dt = time.perf_counter() - t
        ctx.close()
        return dt, logits

    def restored() -> tuple[float, Any]:
        ctx = new_ctx(n_ctx2, 1)
        t = time.perf_counter()
        found = cache.longest_prefix(prompt)
        assert found is not None
        key, n_common = found
        data = cache.get(key)
        assert data is not None
        ctx.load_seq(data, 0)
        ctx.seq_rm(0, n_common, -1)   # nothing to drop here: the whole entry is a prefix
        ctx.decode_tokens(prompt[n_common:], pos0=n_common, seq_id=0, logits="last")
        logits = ctx.logits(-1).copy()
        dt = time.perf_counter() - t
        ctx.close()
        return dt, (logits, n_common)

    t_cold, times_cold, lg_cold = median_run(args.reps, cold)
    t_rest, times_rest, (lg_rest, n_common) = median_run(args.reps, restored)
    print(f"  re-decode {len(prompt)} tokens:          TTFT {t_cold:.3f} s "
          f"(runs {', '.join(f'{x:.3f}' for x in times_cold)})")
    print(f"  restore {n_common} + decode {len(prompt) - n_common}: TTFT {t_rest:.3f} s "
          f"(runs {', '.join(f'{x:.3f}' for x in times_rest)})  -> {t_cold / t_rest:.1f}x faster")
    a, b = int(np.argmax(lg_cold)), int(np.argmax(lg_rest))
    diff = float(np.max(np.abs(lg_cold - lg_rest)))
    print(f"  greedy next token: re-decoded {a}, restored {b} -> "
          f"{'equal' if a == b else 'DIFFERENT'}; max |logit diff| {diff:.3g}")
    ok = ok and a == b
    model.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
