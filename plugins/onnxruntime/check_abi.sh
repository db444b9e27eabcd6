#!/usr/bin/env bash
# Checks plugins/onnxruntime/ort_abi.h (the project's own declaration of the part of ONNX
# Runtime's C ABI the op library uses) against ONNX Runtime's real onnxruntime_c_api.h.
#
# The real header comes from Debian trixie's libonnxruntime-dev, fetched with `apt-get
# download` under a private apt configuration (own sources list, state and cache folders in
# a temporary directory), so the system's apt setup is never touched. The same probe program
# is compiled against each header; its outputs (slot indices, field offsets, enum values)
# must be identical.
#
#   plugins/onnxruntime/check_abi.sh            # download the header
#   ORT_HEADER_DIR=/usr/include/onnxruntime plugins/onnxruntime/check_abi.sh
#
# Exit status: 0 when the layouts match, or when the header cannot be downloaded (offline;
# a message says the check was skipped); 1 on a mismatch or a probe that does not compile.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cc=${CC:-cc}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

skip() {
    echo "check_abi: SKIPPED: $*"
    exit 0
}

header_dir=${ORT_HEADER_DIR:-}
if [[ -z "$header_dir" ]]; then
    command -v apt-get > /dev/null || skip "apt-get is not available to download libonnxruntime-dev"
    command -v dpkg-deb > /dev/null || skip "dpkg-deb is not available to unpack libonnxruntime-dev"
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    [[ -r "$keyring" ]] || skip "no Debian archive keyring at $keyring"
    # The mirror the system already uses (deb822 or one-line sources), else Debian's default.
    mirror=${ORT_ABI_MIRROR:-}
    if [[ -z "$mirror" ]]; then
        mirror=$(grep -hoE '^URIs: *http[^ ]*/debian/?$' /etc/apt/sources.list.d/*.sources 2> /dev/null |
                 head -n1 | sed -E 's/^URIs: *//') || true
    fi
    if [[ -z "$mirror" ]]; then
        mirror=$(grep -hoE '^deb +(\[[^]]*\] +)?http[^ ]*/debian/? ' /etc/apt/sources.list 2> /dev/null |
                 head -n1 | awk '{print $NF}') || true
    fi
    mirror=${mirror:-http://deb.debian.org/debian}
    apt_dir="$work/apt"
    mkdir -p "$apt_dir/etc/sources.list.d" "$apt_dir/etc/preferences.d" \
             "$apt_dir/state/lists/partial" "$apt_dir/cache/archives/partial" "$work/deb"
    echo "deb [signed-by=$keyring] ${mirror%/} trixie main" > "$apt_dir/etc/sources.list"
    apt_opts=(
        -o "Dir::Etc::SourceList=$apt_dir/etc/sources.list"
        -o "Dir::Etc::SourceParts=$apt_dir/etc/sources.list.d"
        -o "Dir::Etc::Preferences=$apt_dir/etc/preferences"
        -o "Dir::Etc::PreferencesParts=$apt_dir/etc/preferences.d"
        -o "Dir::State=$apt_dir/state"
        -o "Dir::State::Status=/dev/null"
        -o "Dir::Cache=$apt_dir/cache"
        -o "Debug::NoLocking=1"
        -o "APT::Sandbox::User=root"
        -o "Acquire::Retries=1"
    )
    echo "check_abi: fetching libonnxruntime-dev from ${mirror%/} trixie"
    if ! timeout 300 apt-get -q "${apt_opts[@]}" update > "$work/apt-update.log" 2>&1; then
        tail -n 5 "$work/apt-update.log" >&2 || true
        skip "cannot reach the Debian archive (offline?): the ABI was not compared"
    fi
    if ! (cd "$work/deb" && timeout 300 apt-get -q "${apt_opts[@]}" download libonnxruntime-dev \
            > "$work/apt-download.log" 2>&1); then
        tail -n 5 "$work/apt-download.log" >&2 || true
        skip "cannot download libonnxruntime-dev (offline?): the ABI was not compared"
    fi
    deb=$(ls "$work"/deb/libonnxruntime-dev_*.deb)
    echo "check_abi: using $(basename "$deb")"
    dpkg-deb -x "$deb" "$work/root"
    header_dir=$(dirname "$(find "$work/root" -name onnxruntime_c_api.h | head -n1)")
fi
[[ -f "$header_dir/onnxruntime_c_api.h" ]] || { echo "check_abi: no onnxruntime_c_api.h in $header_dir" >&2; exit 1; }

"$cc" -std=c11 -Wall -Werror -I"$here" -o "$work/probe_ours" "$here/abi_probe.c"
"$cc" -std=c11 -Wall -I"$header_dir" -DLLM_PROBE_REAL -o "$work/probe_real" "$here/abi_probe.c"
"$work/probe_ours" > "$work/ours.txt"
"$work/probe_real" > "$work/real.txt"
if ! diff -u "$work/real.txt" "$work/ours.txt"; then
    echo "check_abi: FAILED: ort_abi.h differs from $header_dir/onnxruntime_c_api.h (- real, + ours)" >&2
    exit 1
fi
echo "check_abi: OK: $(grep -c . "$work/ours.txt") slot indices, field offsets and enum values match $header_dir/onnxruntime_c_api.h"
