"""Forwards the C library's log lines to the Python logger "libllm".

With no logging configuration, Python's last-resort handler prints WARNING and above to
stderr, which is what the C library does by default. File descriptors are never touched.
"""

from __future__ import annotations

import atexit
import logging
from typing import Any

from . import _lib

logger = logging.getLogger("libllm")

_LEVELS = {
    _lib.LOG_DEBUG: logging.DEBUG,
    _lib.LOG_INFO: logging.INFO,
    _lib.LOG_WARN: logging.WARNING,
    _lib.LOG_ERROR: logging.ERROR,
}


def _forward(level: int, message: bytes | None, user_data: int | None) -> None:
    # Runs on whichever libllm thread logs; ctypes takes the GIL. logging handles errors of
    # its handlers itself, and decoding with errors="replace" cannot fail.
    py_level = _LEVELS.get(level, logging.ERROR)
    if logger.isEnabledFor(py_level):
        text = message.decode("utf-8", errors="replace") if message else ""
        logger.log(py_level, "%s", text)


# The C library keeps this pointer: the CFUNCTYPE object must live as long as it is installed.
_callback: Any = _lib.llm_log_fn(_forward)
_installed = False


def install() -> None:
    """Routes C log lines to the "libllm" logger (idempotent)."""
    global _installed
    if not _installed:
        _lib.lib.llm_log_set(_callback, None)
        _installed = True
        atexit.register(uninstall)


def uninstall() -> None:
    """Restores the C default (WARN and above to stderr). Runs at interpreter exit, so that no
    log line calls into a Python that is shutting down."""
    global _installed
    if _installed:
        _lib.lib.llm_log_set(_lib.llm_log_fn(), None)  # NULL: the C default
        _installed = False


def enable_verbose(level: int = logging.DEBUG) -> None:
    """Shows every library log line on stderr (adds one stderr handler to "libllm")."""
    logger.setLevel(level)
    if not any(getattr(h, "_libllm_verbose", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("libllm: %(levelname)s: %(message)s"))
        handler._libllm_verbose = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
