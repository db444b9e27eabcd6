#!/usr/bin/env bash
# Runs tests/python/test_onnxruntime.py under the oldest ONNX Runtime the ops support:
# onnxruntime 1.16.3 (the first release whose custom ops can return a status) with numpy<2
# on Python 3.11, in a virtual environment created inside DIR.
#
#   plugins/onnxruntime/test_old_ort.sh DIR
#
# The venv sees the system's site-packages (torch, transformers, gguf, pytest: what the test
# fixtures use to make the tiny model) and shadows onnxruntime, onnx, protobuf and numpy with
# the old versions. The libraries under test come from LIBLLM_LIBRARY / LIBLLM_ORT_LIBRARY
# when both are set, else from a fresh build in DIR/build.
set -euo pipefail

dir=${1:?usage: test_old_ort.sh DIR}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
python=${PYTHON311:-python3.11}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
venv="$dir/venv-ort116"

if [[ -z "${LIBLLM_LIBRARY:-}" || -z "${LIBLLM_ORT_LIBRARY:-}" ]]; then
    cmake -S "$root" -B "$dir/build" -DLLM_BUILD_TESTS=OFF > "$dir/cmake.log"
    cmake --build "$dir/build" -j2 >> "$dir/cmake.log"
    export LIBLLM_LIBRARY="$dir/build/libllm.so"
    export LIBLLM_ORT_LIBRARY="$dir/build/plugins/onnxruntime/libllm_ort.so"
fi

if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv --system-site-packages "$venv"
fi
# EXTRA_SITE_PACKAGES: another environment's site-packages (CI's venv with torch & co) seen
# after this venv's own, so the old onnxruntime / numpy installed here still win.
if [[ -n "${EXTRA_SITE_PACKAGES:-}" ]]; then
    own=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "$EXTRA_SITE_PACKAGES" > "$own/_extra_site.pth"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check \
    "onnxruntime==1.16.3" "onnx==1.16.2" "protobuf<5" "numpy<2"
"$venv/bin/python" -c 'import onnxruntime, numpy, sys
print("test_old_ort: onnxruntime", onnxruntime.__version__, "numpy", numpy.__version__,
      "python", sys.version.split()[0])'

cd "$root"
PYTHONPATH="$root/bindings/python${PYTHONPATH:+:$PYTHONPATH}" \
    "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/python/test_onnxruntime.py
