#!/usr/bin/env python3
"""Server-like churn over one fixed-size KV cache: how full does it get before "memory full"?

Requests with random (seeded) prompt and output lengths arrive at random (Poisson, per step)
and finish when their output length is reached; up to ``n_seq_max`` run at once, one sequence
id per slot. Every step decodes **one** real batch with the engine: the next token of every
generating sequence plus the whole prompt of every request admitted this step (greedy: the
next token is the argmax of the sequence's logits row; random prompt tokens, so no two
sequences share cells). A finished sequence's cells are dropped at once (``seq_rm``).

Two admission policies:

* ``fit`` - a request is admitted when a slot is free and its prompt fits in the free cells
  (``n_cells_total - n_cells_used`` from ``ctx.stats()``, less one cell per generating
  sequence), like a server that reserves room for prompts. "Memory full" can then only come
  from the generating sequences growing into the last free cells.
* ``greedy`` - a request is admitted whenever a slot is free, whatever the cache holds; the
  first "memory full" usually comes from a prompt that does not fit.

On ``MemoryFullError`` (the cache is exactly as before) the prompts of the batch go back to the
front of the queue and the step is retried with the generating tokens only; if even that does
not fit, the youngest generating sequence is preempted (its cells dropped, its prompt and
output so far re-queued, to be recomputed) until it does.

Reported per policy: cache utilization (``n_cells_used / n_cells_total`` from the engine's own
``ctx.stats()``) at the moment the first ``MemoryFullError`` is raised, what a paged allocator
with 16-token blocks would reserve for the same live sequences at that moment (sum of
``ceil(len / 16) * 16``) and the token utilization it would reach, and how many requests had to
wait (not admitted at the step they arrived), split by cause.

Not collected by pytest. Example (about 2 minutes on 2 cores):

    LIBLLM_LIBRARY=build/libllm.so PYTHONPATH=bindings/python \\
        python tests/bench/memory_churn.py /opt/anchor/models/small-q8_0.gguf --threads 2
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import platform
import sys
import time
from typing import Any

import numpy as np

import libllm

BLOCK = 16


class Request:
    def __init__(self, index: int, arrival: int, prompt: list[int], n_out: int) -> None:
        self.index = index
        self.arrival = arrival
        self.prompt = prompt          # tokens to prefill (grows on preemption: prompt + output)
        self.n_out = n_out
        self.out: list[int] = []
        self.n_past = 0               # cells this request's sequence holds
        self.start: int | None = None  # step of first admission
        self.slot = -1
        self.memory_blocked = False   # ever held back because the cache was full
        self.slot_blocked = False     # ever held back because every slot was busy
        self.preempted = 0


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run(model: libllm.Model, args: argparse.Namespace, policy: str) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed)
    n_vocab = model.n_vocab
    ctx = libllm.Context(model, n_ctx=args.n_ctx, n_seq_max=args.n_seq_max,
                         n_batch=args.n_batch, n_ubatch=min(512, args.n_batch),
                         n_threads=args.threads)
    total = ctx.stats()["n_cells_total"]
    batch = libllm.Batch(args.n_batch, 1)

    # the whole workload is drawn up front from the seed, so both policies see the same one
    requests: list[Request] = []
    step = 0
    while len(requests) < args.requests:
        for _ in range(int(rng.poisson(args.rate))):
            if len(requests) == args.requests:
                break
            n_prompt = int(rng.integers(args.prompt_min, args.prompt_max + 1))
            n_out = int(rng.integers(args.out_min, args.out_max + 1))
            prompt = [int(t) for t in rng.integers(3, n_vocab, n_prompt)]
            requests.append(Request(len(requests), step, prompt, n_out))
        step += 1

    pending = collections.deque(requests)   # not arrived yet
    queue: collections.deque[Request] = collections.deque()  # arrived, waiting
    running: dict[int, Request] = {}        # slot -> request
    free_slots = list(range(args.n_seq_max - 1, -1, -1))
    first_full: dict[str, Any] | None = None
    n_full = n_preempt = n_steps_decoded = 0
    util_sum = 0.0
    util_peak = 0.0
    n_done = 0
    t0 = time.perf_counter()
    step = 0
    while n_done < len(requests):
        while pending and pending[0].arrival <= step:
            queue.append(pending.popleft())

        # admission
        gen = [r for r in running.values() if r.n_past > 0]
        stats = ctx.stats()
        free_cells = stats["n_cells_total"] - stats["n_cells_used"] - len(gen)
        budget = args.n_batch - len(gen)
        joining: list[Request] = []
        while queue:
            req = queue[0]
            if not free_slots:
                for r in queue:
                    r.slot_blocked = True
                break
            if len(req.prompt) > budget:
                break   # batch budget: next step
            if policy == "fit" and len(req.prompt) > free_cells:
                for r in queue:
                    r.memory_blocked = True
                break
            queue.popleft()
            req.slot = free_slots.pop()
            if req.start is None:
                req.start = step
            running[req.slot] = req
            joining.append(req)
            budget -= len(req.prompt)
            free_cells -= len(req.prompt)

        # decode; on memory full: prompts back to the queue, then preempt the youngest
        while True:
            batch.clear()
            rows: list[tuple[int, Request]] = []   # (batch index of its logits, request)
            for r in gen:
                rows.append((len(batch), r))
                batch.add(r.out[-1], r.n_past, r.slot, True)
            for r in joining:
                n = len(r.prompt)
                for i, tok in enumerate(r.prompt):
                    batch.add(tok, i, r.slot, i == n - 1)
                rows.append((len(batch) - 1, r))
            if len(batch) == 0:
                break
            try:
                ctx.decode(batch)
                break
            except libllm.MemoryFullError:
                n_full += 1
                if first_full is None:
                    s = ctx.stats()
                    lens = [r.n_past for r in running.values() if r.n_past > 0]
                    reserved = sum(math.ceil(n / BLOCK) * BLOCK for n in lens)
                    first_full = {
                        "step": step,
                        "cells_used": s["n_cells_used"],
                        "cells_total": s["n_cells_total"],
                        "utilization": s["n_cells_used"] / s["n_cells_total"],
                        "live_seqs": len(lens),
                        "live_tokens": sum(lens),
                        "batch_gen_tokens": len(gen),
                        "batch_prompt_tokens": sum(len(r.prompt) for r in joining),
                        "paged16_reserved": reserved,
                        "paged16_waste": reserved - sum(lens),
                        "paged16_utilization": sum(lens) / reserved if reserved else 1.0,
                        "paged16_blocks": reserved // BLOCK,
                        "paged16_blocks_total": s["n_cells_total"] // BLOCK,
                    }
                    assert s["n_cells_used"] == sum(lens), (s, sum(lens))
                if joining:
                    for r in reversed(joining):
                        del running[r.slot]
                        free_slots.append(r.slot)
                        r.slot = -1
                        r.memory_blocked = True
                        queue.appendleft(r)
                    joining = []
                    continue
                victim = max(gen, key=lambda r: (r.start, r.index))
                gen.remove(victim)
                ctx.seq_rm(victim.slot)
                del running[victim.slot]
                free_slots.append(victim.slot)
                victim.prompt = victim.prompt + victim.out
                victim.n_out -= len(victim.out)
                victim.out = []
                victim.n_past = 0
                victim.slot = -1
                victim.preempted += 1
                victim.memory_blocked = True
                queue.appendleft(victim)
                n_preempt += 1

        if len(batch):
            n_steps_decoded += 1
            for i, r in rows:
                r.n_past += 1 if r in gen else len(r.prompt)
                r.out.append(int(np.argmax(ctx.logits(i))))
                if len(r.out) >= r.n_out:
                    ctx.seq_rm(r.slot)
                    del running[r.slot]
                    free_slots.append(r.slot)
                    r.slot = -1
                    n_done += 1
            s = ctx.stats()
            u = s["n_cells_used"] / total
            util_sum += u
            util_peak = max(util_peak, u)
        step += 1
        if step > 100000:
            raise RuntimeError("no progress")

    wall = time.perf_counter() - t0
    stats = ctx.stats()
    ctx.close()
    waited = [r for r in requests if r.start is not None and r.start > r.arrival]
    return {
        "policy": policy,
        "wall_s": wall,
        "steps": step,
        "decode_steps": n_steps_decoded,
        "tokens_decoded": stats["n_tokens_decoded"],
        "memory_full_errors": n_full,
        "preemptions": n_preempt,
        "first_full": first_full,
        "util_mean": util_sum / max(1, n_steps_decoded),
        "util_peak": util_peak,
        "requests": len(requests),
        "waited": len(waited),
        "waited_memory": sum(1 for r in waited if r.memory_blocked),
        "waited_slot_only": sum(1 for r in waited if r.slot_blocked and not r.memory_blocked),
        "memory_blocked_any": sum(1 for r in requests if r.memory_blocked),
        "mean_wait_steps": (sum(r.start - r.arrival for r in waited) / len(waited)) if waited
        else 0.0,
    }


def report(res: dict[str, Any]) -> None:
    ff = res["first_full"]
    print(f"\n== policy {res['policy']}: {res['requests']} requests, {res['decode_steps']} decode "
          f"steps, {res['tokens_decoded']} tokens decoded, {res['wall_s']:.1f} s")
    if ff is None:
        print("  no MemoryFullError occurred (raise --rate or the lengths)")
    else:
        print(f"  first MemoryFullError at step {ff['step']}: batch of {ff['batch_gen_tokens']} "
              f"generating + {ff['batch_prompt_tokens']} prompt tokens")
        print(f"  engine (cells):   {ff['cells_used']} / {ff['cells_total']} cells used = "
              f"{100 * ff['utilization']:.2f}% utilization ({ff['live_seqs']} live sequences, "
              f"{ff['live_tokens']} tokens)")
        print(f"  paged, 16/block:  {ff['paged16_reserved']} cells reserved "
              f"({ff['paged16_blocks']} of {ff['paged16_blocks_total']} blocks) for the same "
              f"sequences, {ff['paged16_waste']} wasted = "
              f"{100 * ff['paged16_utilization']:.2f}% token utilization"
              + ("  [would not even fit]" if ff['paged16_reserved'] > ff['cells_total'] else ""))
    print(f"  utilization over the run: mean {100 * res['util_mean']:.1f}%, "
          f"peak {100 * res['util_peak']:.2f}%")
    print(f"  MemoryFullError raised {res['memory_full_errors']} times, "
          f"{res['preemptions']} preemptions")
    print(f"  requests that had to wait: {res['waited']} / {res['requests']} = "
          f"{100 * res['waited'] / res['requests']:.1f}% (held back by a full cache at some "
          f"point: {res['memory_blocked_any']}; waited for a slot only: "
          f"{res['waited_slot_only']}); mean wait {res['mean_wait_steps']:.1f} steps")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--n-ctx", type=int, default=4096)
    ap.add_argument("--n-seq-max", type=int, default=16)
    ap.add_argument("--n-batch", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--requests", type=int, default=48)
    ap.add_argument("--rate", type=float, default=0.5, help="mean arrivals per step")
    ap.add_argument("--prompt-min", type=int, default=64)
    ap.add_argument("--prompt-max", type=int, default=512)
    ap.add_argument("--out-min", type=int, default=16)
    ap.add_argument("--out-max", type=int, default=256)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--policy", choices=["fit", "greedy", "both"], default="both")
    args = ap.parse_args(argv)

    print("command:", " ".join([os.path.basename(sys.executable)] + sys.argv))
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}; libllm {libllm.__version__} "
          f"({libllm.library_path()})")
    model = libllm.Model(args.model)
    print(f"model: {args.model} ({model.arch}, {model.n_layer} layers, n_embd {model.n_embd}, "
          f"{model.n_head_kv} KV heads)")
    print(f"cache: n_ctx {args.n_ctx}, n_seq_max {args.n_seq_max}, f16 K/V; workload: "
          f"{args.requests} requests, Poisson {args.rate}/step, prompt "
          f"{args.prompt_min}..{args.prompt_max}, output {args.out_min}..{args.out_max} tokens, "
          f"seed {args.seed}")
    policies = ["fit", "greedy"] if args.policy == "both" else [args.policy]
    for policy in policies:
        report(run(model, args, policy))
    model.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
