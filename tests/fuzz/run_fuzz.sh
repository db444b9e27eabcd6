#!/bin/sh
# run_fuzz.sh DIR SECONDS -- builds the libFuzzer target for the GGUF reader with clang
# (ASan + UBSan), writes a seed corpus, and fuzzes for SECONDS. Exits non-zero on a crash.
#
# DIR receives the binary, the seed corpus (DIR/seeds), the working corpus (DIR/corpus) and
# any crash reproducer (DIR/crash-*). Replay one with: DIR/fuzz_gguf DIR/crash-...
# Needs clang with libFuzzer (Debian: clang + libclang-rt-<ver>-dev, installed if missing when
# running as root) and python3 with the gguf and numpy packages.
set -eu

if [ $# -ne 2 ]; then
    echo "usage: $0 DIR SECONDS" >&2
    exit 2
fi
out=$1
seconds=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$out/seeds" "$out/corpus"
out=$(cd "$out" && pwd)

have_libfuzzer() {
    command -v clang >/dev/null 2>&1 || return 1
    printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' \
        > "$out/probe.c"
    clang -fsanitize=fuzzer "$out/probe.c" -o "$out/probe" >/dev/null 2>&1
}

if ! have_libfuzzer; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "run_fuzz: installing clang and its libFuzzer runtime" >&2
        apt-get update -qq
        # clang-14 on Debian bookworm ships libFuzzer in libclang-rt-14-dev; older releases
        # have it in libclang-common-<ver>-dev, which clang already depends on.
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang
        ver=$(clang --version | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -n 1)
        if ! have_libfuzzer && apt-cache show "libclang-rt-$ver-dev" >/dev/null 2>&1; then
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "libclang-rt-$ver-dev"
        fi
    fi
    if ! have_libfuzzer; then
        echo "run_fuzz: clang with libFuzzer (-fsanitize=fuzzer) is not available" >&2
        exit 2
    fi
fi
rm -f "$out/probe.c" "$out/probe"

cd "$root"
clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I libllm/include -I libllm/src \
    tests/fuzz/fuzz_gguf.c libllm/src/gguf.c libllm/src/quant.c libllm/src/util.c -lm \
    -o "$out/fuzz_gguf"

python3 tests/fuzz/make_seed_corpus.py "$out/seeds"

# The seeds are valid files: the target must accept each (a crash here is a reader bug too).
"$out/fuzz_gguf" -runs=0 "$out/seeds"

# libFuzzer exits non-zero (and writes crash-*/leak-*/timeout-* into $out) on any finding.
# Its progress lines go to a log; the summary (or the failure) is printed.
status=0
"$out/fuzz_gguf" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$out/" "$out/corpus" "$out/seeds" \
    > "$out/fuzz.log" 2>&1 || status=$?
if [ "$status" -ne 0 ]; then
    tail -n 60 "$out/fuzz.log" >&2
    echo "run_fuzz: the fuzzer found a problem (exit $status); reproducer in $out" >&2
    exit "$status"
fi
grep -E '^stat::(number_of_executed_units|peak_rss_mb)|^Done' "$out/fuzz.log" || true
echo "run_fuzz: no crash in ${seconds}s"
