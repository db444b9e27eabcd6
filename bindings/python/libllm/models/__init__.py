"""Models bundled with the libllm package.

``default.gguf`` is a tiny (about 5.5M parameters, Q8_0) Llama-architecture model trained from
scratch on the Python standard library's source, so that libllm runs out of the box with no
download: it completes Python code, nothing more. See README.md in this folder for its recipe.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from importlib import resources

__all__ = ["DEFAULT_MODEL_NAME", "default_model_path"]

DEFAULT_MODEL_NAME = "default.gguf"

_cached_path: str | None = None
_exit_stack = contextlib.ExitStack()
atexit.register(_exit_stack.close)


def default_model_path() -> str:
    """The filesystem path of the bundled default model (``libllm/models/default.gguf``).

    The package is normally installed as plain files and the path points into it; when it is
    imported from an archive (a zip), the file is extracted once to a temporary file that lives
    until the interpreter exits."""
    global _cached_path
    if _cached_path is None:
        ref = resources.files(__name__).joinpath(DEFAULT_MODEL_NAME)
        if isinstance(ref, os.PathLike):
            path = os.fspath(ref)
        else:  # pragma: no cover - zip imports only
            path = os.fspath(_exit_stack.enter_context(resources.as_file(ref)))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"the bundled default model is missing: {path}")
        _cached_path = path
    return _cached_path
