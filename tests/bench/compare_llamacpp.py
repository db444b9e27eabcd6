#!/usr/bin/env python3
"""Compare libllm with llama.cpp on the same GGUF files, on the same machine, interleaved.

For every pass and every file: a memory-bandwidth probe, then libllm (``python -m libllm bench
... -o json`` in a subprocess), then llama.cpp (``llamacpp_bench.py`` run by the Python that has
llama-cpp-python), each in a fresh process so that its peak RSS is the model's own. Passes
repeat that sequence (A B A B ...), so slow minutes of a noisy machine hit both engines.

The table shows medians over every timed sample of every pass with their min-max, and the
ratio libllm / llama.cpp of the medians (with the range of the per-pass ratios). ``--parallel
K`` compares K sequences decoding together instead (total tokens/s of a K*P-token prompt batch,
then G steps of K tokens).

Not collected by pytest; it needs a llama.cpp install (see ``--llamacpp-python``). Example:

    LIBLLM_LIBRARY=build/libllm.so python tests/bench/compare_llamacpp.py \\
        /opt/anchor/models/small-{f16,q8_0,q4_0}.gguf --threads 2 --passes 3 --reps 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Optional

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_LLAMACPP_BENCH = "/work/shared/bench/llamacpp_bench.py"
DEFAULT_LLAMACPP_PYTHON = "/opt/anchor/venv/bin/python"
DEFAULT_MEMBW = "/opt/anchor/membw"

MiB = 1024 * 1024

# 1-minute load average before each engine run: other work on the machine shows up here.
LOADS: list[float] = []


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def cpu_busy_s() -> float:
    """Seconds of CPU time every process of the machine has used (/proc/stat: all but idle
    and iowait)."""
    with open("/proc/stat", encoding="ascii") as f:
        ticks = [int(x) for x in f.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def wait_quiet(max_cores: float, timeout: float) -> float:
    """Waits (up to timeout) until the rest of the machine uses less than max_cores over one
    second; returns the last measured use."""
    deadline = time.monotonic() + timeout
    while True:
        b0, t0 = cpu_busy_s(), time.monotonic()
        time.sleep(1.0)
        used = (cpu_busy_s() - b0) / (time.monotonic() - t0)
        if used < max_cores or time.monotonic() > deadline:
            return used
        log(f"    waiting for a quiet machine ({used:.2f} cores busy)")


class Run:
    """One subprocess run: its parsed JSON (or an error) and the CPU that other processes
    used meanwhile, in cores (busy CPU of the machine minus this child's own)."""

    def __init__(self, cmd: list[str], env: dict[str, str] | None, args: argparse.Namespace):
        self.data: Any = None
        self.error = ""
        self.foreign = 0.0
        for attempt in range(args.retries + 1):
            if args.quiet_cores > 0:
                wait_quiet(args.quiet_cores, args.quiet_wait)
            self._once(cmd, env, args.timeout)
            if self.data is None or self.foreign <= args.max_foreign:
                return
            if attempt < args.retries:
                log(f"    {self.foreign:.2f} cores used by other processes: run again")

    def _once(self, cmd: list[str], env: dict[str, str] | None, timeout: float) -> None:
        LOADS.append(os.getloadavg()[0])
        self.data, self.error = None, ""
        b0, c0, t0 = cpu_busy_s(), children_cpu_s(), time.perf_counter()
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            self.error = f"timed out after {timeout:.0f} s"
            return
        wall = time.perf_counter() - t0
        own = children_cpu_s() - c0
        self.foreign = max(0.0, (cpu_busy_s() - b0 - own) / wall) if wall > 0 else 0.0
        name = os.path.basename(cmd[1] if cmd[1:2] != ["-m"] else cmd[2])
        log(f"    {name}: {wall:.1f} s, rc={proc.returncode}, other load {self.foreign:.2f} cores")
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            self.error = lines[-1] if lines else f"exit code {proc.returncode}"
            return
        try:
            self.data = json.loads(proc.stdout)
        except json.JSONDecodeError as exc:
            self.error = f"bad JSON output: {exc}"


# -- engines ---------------------------------------------------------------------------------


Result = tuple[Optional[dict[str, Any]], str]


class LibLLM:
    """``python -m libllm bench`` in a subprocess."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.python = args.libllm_python
        self.env = dict(os.environ)
        path = args.pythonpath
        if path is None and os.environ.get("LIBLLM_LIBRARY"):
            path = os.path.join(REPO, "bindings", "python")  # the source tree, with its library
        if path:
            self.env["PYTHONPATH"] = os.pathsep.join(
                p for p in (path, self.env.get("PYTHONPATH", "")) if p
            )
        self.args = args

    def _bench(self, model: str, *flags: str) -> Run:
        a = self.args
        cmd = [self.python, "-m", "libllm", "bench", "-m", model, "-t", str(a.threads)]
        cmd += ["-r", str(a.reps), "-b", str(a.n_batch), "-ub", str(a.n_ubatch), "-o", "json"]
        return Run(cmd + list(flags), self.env, a)

    def single(self, model: str) -> Result:
        a = self.args
        run = self._bench(model, "-p", str(a.pp), "-n", str(a.tg))
        if run.data is None:
            return None, run.error
        res = run.data
        out: dict[str, Any] = {
            "raw": res,
            "peak_rss_bytes": max(r["peak_rss_bytes"] for r in res),
            "model_size": res[0]["model_size"],
            "foreign_cores": run.foreign,
            "pp": [],
            "tg": [],
        }
        for r in res:
            if r["n_prompt"] == a.pp and r["n_gen"] == 0:
                out["pp"] = r["samples_ts"]
            if r["n_gen"] == a.tg and r["n_prompt"] == 0:
                out["tg"] = r["samples_ts"]
        return out, ""

    def parallel(self, model: str) -> Result:
        a = self.args
        k, p, g = str(a.parallel), str(a.par_prompt), str(a.par_gen)
        pp = self._bench(model, "-np", k, "-p", p, "-n", "0")
        if pp.data is None:
            return None, pp.error
        # generation after each sequence's prompt, as llamacpp_bench.py's batched mode
        tg = self._bench(model, "-np", k, "-p", "0", "-n", g, "-d", p)
        if tg.data is None:
            return None, tg.error
        return {
            "raw": [pp.data, tg.data],
            "pp": pp.data[0]["samples_ts"],
            "tg": tg.data[0]["samples_ts"],
            "peak_rss_bytes": max(pp.data[0]["peak_rss_bytes"], tg.data[0]["peak_rss_bytes"]),
            "model_size": pp.data[0]["model_size"],
            "foreign_cores": max(pp.foreign, tg.foreign),
        }, ""


class LlamaCpp:
    """llamacpp_bench.py run by the Python that has llama-cpp-python."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    def _run(self, model: str, *flags: str) -> Run:
        a = self.args
        cmd = [a.llamacpp_python, a.llamacpp_bench, model, "--threads", str(a.threads)]
        cmd += ["--reps", str(a.reps), "--n-batch", str(a.n_batch), "--n-ubatch", str(a.n_ubatch)]
        if a.llamacpp_extra:
            cmd += a.llamacpp_extra.split()
        return Run(cmd + list(flags), None, a)

    def _result(self, run: Run, pp: list[float], tg: list[float]) -> dict[str, Any]:
        return {
            "raw": run.data,
            "pp": pp,
            "tg": tg,
            "peak_rss_bytes": int(run.data["peak_rss_MiB"] * MiB),
            "model_size": run.data.get("model_size_bytes_llama", 0),
            "foreign_cores": run.foreign,
        }

    def single(self, model: str) -> Result:
        a = self.args
        # n_ctx as libllm's largest test (llama-bench sizes the context to the test), so the
        # KV buffers of both engines are alike in the RSS.
        n_ctx = str(max(a.pp, a.tg))
        run = self._run(model, "--pp", str(a.pp), "--tg", str(a.tg), "--n-ctx", n_ctx)
        if run.data is None:
            return None, run.error
        res = run.data
        pp = res["pp"]["tps"]["all"] if "pp" in res else []
        tg = res["tg"]["tps"]["all"] if "tg" in res else []
        return self._result(run, pp, tg), ""

    def parallel(self, model: str) -> Result:
        a = self.args
        n_ctx = str(a.parallel * (a.par_prompt + a.par_gen))
        run = self._run(
            model,
            *("--parallel", str(a.parallel), "--par-prompt", str(a.par_prompt)),
            *("--par-gen", str(a.par_gen), "--n-ctx", n_ctx),
        )
        if run.data is None:
            return None, run.error
        par = run.data["parallel"]
        return self._result(run, par["S_PP_tps"]["all"], par["S_TG_tps"]["all"]), ""


def membw(args: argparse.Namespace) -> float | None:
    """--threads read bandwidth in GB/s, median of a short probe (MEMBW_READ_ONLY)."""
    if not os.access(args.membw, os.X_OK):
        return None
    env = dict(os.environ, MEMBW_READ_ONLY="1")
    run = Run([args.membw, "512", "5", str(args.threads)], env, args)
    if run.data is None:
        log(f"    membw failed: {run.error}")
        return None
    for row in run.data.get("results", []):
        if row.get("kernel") == "read" and row.get("threads") == args.threads:
            return float(row["GBps_median"])
    return None


# -- table -----------------------------------------------------------------------------------


def med_range(xs: list[float], fmt: str = "{:.1f}") -> str:
    if not xs:
        return "–"
    return f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}–{fmt.format(max(xs))})"


def ratio_cell(a: list[list[float]], b: list[list[float]]) -> str:
    """Ratio of the overall medians, with the min-max of the per-pass ratios."""
    flat_a = [x for xs in a for x in xs]
    flat_b = [x for xs in b for x in xs]
    if not flat_a or not flat_b:
        return "–"
    overall = statistics.median(flat_a) / statistics.median(flat_b)
    per_pass = [statistics.median(xa) / statistics.median(xb) for xa, xb in zip(a, b) if xa and xb]
    if len(per_pass) < 2:
        return f"{overall:.2f}"
    return f"{overall:.2f} ({min(per_pass):.2f}–{max(per_pass):.2f})"


def table(results: dict[str, Any], args: argparse.Namespace) -> str:
    if args.parallel:
        tests = [
            ("pp", f"S_PP {args.parallel}x{args.par_prompt}"),
            ("tg", f"S_TG {args.parallel}x{args.par_gen}"),
        ]
    else:
        tests = [("pp", f"pp{args.pp}"), ("tg", f"tg{args.tg}")]
    lines = [
        "| file | test | libllm | llama.cpp | libllm / llama.cpp |",
        "|---|---|--:|--:|--:|",
    ]
    for model, entry in results.items():
        name = os.path.basename(model).removesuffix(".gguf")
        if entry.get("skipped"):
            lines.append(f"| {name} | skipped | {entry['skipped']} | | |")
            continue
        a_runs = [r for r in entry["libllm"] if r]
        b_runs = [r for r in entry["llamacpp"] if r]
        pairs = [(ra, rb) for ra, rb in zip(entry["libllm"], entry["llamacpp"]) if ra and rb]
        for key, label in tests:
            a = [x for r in a_runs for x in r[key]]
            b = [x for r in b_runs for x in r[key]]
            lines.append(
                f"| {name} | {label} t/s | {med_range(a)} | {med_range(b)} | "
                f"{ratio_cell([ra[key] for ra, _ in pairs], [rb[key] for _, rb in pairs])} |"
            )
        rss_a = [r["peak_rss_bytes"] / MiB for r in a_runs]
        rss_b = [r["peak_rss_bytes"] / MiB for r in b_runs]
        ratio = (
            f"{statistics.median(rss_a) / statistics.median(rss_b):.2f}" if rss_a and rss_b else "–"
        )
        lines.append(
            f"| {name} | peak RSS MiB | {med_range(rss_a, '{:.0f}')} | "
            f"{med_range(rss_b, '{:.0f}')} | {ratio} |"
        )
        load_a = [r["foreign_cores"] for r in a_runs]
        load_b = [r["foreign_cores"] for r in b_runs]
        lines.append(
            f"| {name} | other load (cores) | {med_range(load_a, '{:.2f}')} | "
            f"{med_range(load_b, '{:.2f}')} | |"
        )
    return "\n".join(lines)


def roofline(results: dict[str, Any], args: argparse.Namespace) -> str:
    """Decode as bandwidth: weight bytes read per token x tokens/s, next to the probe."""
    if args.parallel:
        return ""
    lines = [
        "| file | weights MiB | libllm tg GB/s | llama.cpp tg GB/s | membw read GB/s (same passes) |",
        "|---|--:|--:|--:|--:|",
    ]
    for model, entry in results.items():
        if entry.get("skipped"):
            continue
        name = os.path.basename(model).removesuffix(".gguf")
        size = next((r["model_size"] for r in entry["libllm"] if r), 0)
        a = [x * size / 1e9 for r in entry["libllm"] if r for x in r["tg"]]
        b = [x * size / 1e9 for r in entry["llamacpp"] if r for x in r["tg"]]
        bw = [x for x in entry["membw"] if x is not None]
        lines.append(
            f"| {name} | {size / MiB:.0f} | {med_range(a)} | {med_range(b)} | {med_range(bw)} |"
        )
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("models", nargs="+", metavar="MODEL", help="GGUF files")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--passes", type=int, default=3, help="interleaved passes (default 3)")
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions per run (default 3)")
    ap.add_argument("--pp", type=int, default=512)
    ap.add_argument("--tg", type=int, default=128)
    ap.add_argument("--n-batch", type=int, default=512)
    ap.add_argument("--n-ubatch", type=int, default=512)
    ap.add_argument("--parallel", type=int, default=0, help="K sequences together (0: off)")
    ap.add_argument("--par-prompt", type=int, default=128, help="prompt tokens per sequence")
    ap.add_argument("--par-gen", type=int, default=128, help="generated tokens per sequence")
    ap.add_argument("--llamacpp-bench", default=DEFAULT_LLAMACPP_BENCH, metavar="PATH")
    ap.add_argument("--llamacpp-python", default=DEFAULT_LLAMACPP_PYTHON, metavar="PYTHON")
    ap.add_argument("--llamacpp-extra", default="", help="extra llamacpp_bench.py flags")
    ap.add_argument("--libllm-python", default=sys.executable, metavar="PYTHON")
    ap.add_argument(
        "--pythonpath",
        default=None,
        help="where the libllm package is (default: this repo's bindings/python when "
        "LIBLLM_LIBRARY is set, else the installed package)",
    )
    ap.add_argument("--membw", default=DEFAULT_MEMBW, metavar="PATH")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    ap.add_argument(
        "--quiet-cores",
        type=float,
        default=0.3,
        help="before each run, wait until other processes use less than this many cores "
        "(0: do not wait; default 0.3)",
    )
    ap.add_argument("--quiet-wait", type=float, default=300, help="longest such wait, seconds")
    ap.add_argument(
        "--max-foreign",
        type=float,
        default=0.2,
        help="run again when other processes used more cores than this meanwhile (default 0.2)",
    )
    ap.add_argument("--retries", type=int, default=2, help="most re-runs of a disturbed run")
    ap.add_argument("--json-out", default=None, help="write every raw result here")
    args = ap.parse_args(argv)
    if args.parallel and args.parallel * args.par_prompt > args.n_batch:
        ap.error("--parallel x --par-prompt must fit in --n-batch (one prompt batch)")

    engines: dict[str, LibLLM | LlamaCpp] = {"libllm": LibLLM(args), "llamacpp": LlamaCpp(args)}
    results: dict[str, Any] = {
        m: {"libllm": [], "llamacpp": [], "membw": [], "errors": []} for m in args.models
    }
    t_start = time.time()
    for p in range(args.passes):
        log(f"pass {p + 1}/{args.passes}")
        for model in args.models:
            entry = results[model]
            if entry.get("skipped"):
                continue
            log(f"  {os.path.basename(model)}")
            entry["membw"].append(membw(args))
            for name, engine in engines.items():
                res, err = engine.parallel(model) if args.parallel else engine.single(model)
                entry[name].append(res)
                if res is None:
                    entry["errors"].append(f"pass {p + 1} {name}: {err}")
                    log(f"    {name} failed: {err}")
                    if p == 0 and name == "libllm":
                        # a file libllm cannot load (e.g. K-quants): note it, skip it
                        entry["skipped"] = f"libllm: {err}"
                        break

    header = (
        f"machine: {platform.node()}, {cpu_model()}, {os.cpu_count()} CPUs; "
        f"threads {args.threads}; {args.passes} passes x {args.reps} reps; "
        f"{time.time() - t_start:.0f} s; load average before runs "
        f"{med_range(LOADS, '{:.2f}')}"
    )
    doc = [
        header,
        "",
        table(results, args),
    ]
    roof = roofline(results, args)
    if roof:
        doc += ["", roof]
    errors = [f"- {os.path.basename(m)}: {e}" for m, ent in results.items() for e in ent["errors"]]
    if errors:
        doc += ["", "errors:"] + errors
    print("\n".join(doc))
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=1)
    return 0


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


if __name__ == "__main__":
    sys.exit(main())
