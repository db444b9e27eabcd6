"""Exceptions raised for libllm statuses, carrying the C library's message."""

from __future__ import annotations

from . import _lib


class LibLLMError(Exception):
    """A libllm call returned a non-zero status.

    Attributes:
        status: the llm_status code (> 0 a recoverable outcome, < 0 an error).
        status_str: the library's short English name for the status ("memory full").
        message: the library's message (llm_last_error()), possibly empty.
    """

    status: int
    status_str: str
    message: str

    def __init__(self, status: int, message: str = "", status_str: str | None = None) -> None:
        self.status = int(status)
        self.status_str = status_str if status_str is not None else _status_str(self.status)
        self.message = message
        text = message if message else self.status_str
        super().__init__(text)


class MemoryFullError(LibLLMError):
    """No room in the cache for the batch; nothing changed (LLM_STATUS_MEMORY_FULL)."""


class AbortedError(LibLLMError):
    """A progress or abort callback asked to stop (LLM_STATUS_ABORTED)."""


class CannotRewindError(LibLLMError):
    """Recurrent state cannot drop a partial range (LLM_STATUS_CANNOT_REWIND)."""


class InvalidArgumentError(LibLLMError, ValueError):
    """A bad parameter, token, position or sequence id (LLM_STATUS_INVALID_ARGUMENT)."""


class LibLLMIOError(LibLLMError, OSError):
    """A file could not be opened, read, mapped or written (LLM_STATUS_IO)."""


class FormatError(LibLLMError):
    """A file or buffer is malformed, truncated or foreign (LLM_STATUS_BAD_FORMAT)."""


class UnsupportedError(LibLLMError):
    """Well-formed input that uses something libllm lacks (LLM_STATUS_UNSUPPORTED)."""


class OutOfMemoryError(LibLLMError, MemoryError):
    """An allocation failed (LLM_STATUS_OUT_OF_MEMORY)."""


class InternalError(LibLLMError):
    """A bug in libllm (LLM_STATUS_INTERNAL)."""


class ClosedError(ValueError):
    """A method was called on a Model, Context or Sampler after close()."""


_BY_STATUS: dict[int, type[LibLLMError]] = {
    _lib.STATUS_MEMORY_FULL: MemoryFullError,
    _lib.STATUS_ABORTED: AbortedError,
    _lib.STATUS_CANNOT_REWIND: CannotRewindError,
    _lib.STATUS_INVALID_ARGUMENT: InvalidArgumentError,
    _lib.STATUS_IO: LibLLMIOError,
    _lib.STATUS_BAD_FORMAT: FormatError,
    _lib.STATUS_UNSUPPORTED: UnsupportedError,
    _lib.STATUS_OUT_OF_MEMORY: OutOfMemoryError,
    _lib.STATUS_INTERNAL: InternalError,
}


def _status_str(status: int) -> str:
    raw: bytes | None = _lib.lib.llm_status_str(status)
    return raw.decode("utf-8", errors="replace") if raw else f"status {status}"


def last_error_message() -> str:
    """llm_last_error() of this thread, as text."""
    raw: bytes | None = _lib.lib.llm_last_error()
    return raw.decode("utf-8", errors="replace") if raw else ""


def error_for(status: int) -> LibLLMError:
    """The exception for a non-zero status, with the message of the call that just failed.

    Must be called right after the failing libllm call, on the same thread: the message is
    only valid until the next libllm call."""
    message = last_error_message()
    cls = _BY_STATUS.get(status, LibLLMError)
    return cls(status, message, _status_str(status))


def check(status: int) -> None:
    """Raises the matching LibLLMError subclass when ``status`` is not LLM_STATUS_OK."""
    if status != _lib.STATUS_OK:
        raise error_for(status)
